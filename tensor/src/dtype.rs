//! Element types: the [`DType`] enum and the Rust types that carry them.

use half::{bf16, f16};
use std::fmt;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    U8,
    Bool,
}

impl DType {
    /// Every dtype, in a fixed order (useful for exhaustive tests).
    pub const ALL: [DType; 8] =
        [DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64, DType::I32, DType::U8, DType::Bool];

    /// Size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// True for f32, f64, f16 and bf16.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// True for i64, i32 and u8.
    pub fn is_int(self) -> bool {
        matches!(self, DType::I64 | DType::I32 | DType::U8)
    }

    /// Short lowercase name, as PyTorch and safetensors spell it (`f32`, `bf16`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

mod private {
    pub trait Sealed {}
}

/// A Rust type that is the element type of some [`DType`].
///
/// Conversions through `f64` define casts: float to integer truncates toward
/// zero (saturating, NaN to 0), anything to bool is `!= 0`.
pub trait WithDType:
    private::Sealed + Copy + Clone + Send + Sync + PartialOrd + PartialEq + fmt::Debug + Default + 'static
{
    const DTYPE: DType;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    /// Exact for integers; floats truncate toward zero.
    fn to_i64(self) -> i64;
    fn zero() -> Self;
    fn one() -> Self;
    /// Wraps a vector of this type as CPU storage.
    fn into_storage(v: Vec<Self>) -> crate::cpu::CpuStorage;
    /// The slice of this type inside CPU storage, if the dtype matches.
    fn storage_slice(s: &crate::cpu::CpuStorage) -> Option<&[Self]>;
}

macro_rules! with_dtype {
    ($t:ty, $variant:ident, $to:expr, $from:expr, $toi:expr, $zero:expr, $one:expr) => {
        impl private::Sealed for $t {}
        impl WithDType for $t {
            const DTYPE: DType = DType::$variant;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                $to(self)
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                $from(v)
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                $toi(self)
            }
            #[inline(always)]
            fn zero() -> Self {
                $zero
            }
            #[inline(always)]
            fn one() -> Self {
                $one
            }
            fn into_storage(v: Vec<Self>) -> crate::cpu::CpuStorage {
                crate::cpu::CpuStorage::$variant(v)
            }
            fn storage_slice(s: &crate::cpu::CpuStorage) -> Option<&[Self]> {
                match s {
                    crate::cpu::CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

with_dtype!(f32, F32, |v: f32| v as f64, |v: f64| v as f32, |v: f32| v as i64, 0.0, 1.0);
with_dtype!(f64, F64, |v: f64| v, |v: f64| v, |v: f64| v as i64, 0.0, 1.0);
with_dtype!(f16, F16, |v: f16| v.to_f64(), f16::from_f64, |v: f16| v.to_f32() as i64, f16::ZERO, f16::ONE);
with_dtype!(bf16, BF16, |v: bf16| v.to_f64(), bf16::from_f64, |v: bf16| v.to_f32() as i64, bf16::ZERO, bf16::ONE);
with_dtype!(i64, I64, |v: i64| v as f64, |v: f64| v as i64, |v: i64| v, 0, 1);
with_dtype!(i32, I32, |v: i32| v as f64, |v: f64| v as i32, |v: i32| v as i64, 0, 1);
with_dtype!(u8, U8, |v: u8| v as f64, |v: f64| v as i64 as u8, |v: u8| v as i64, 0, 1);
with_dtype!(bool, Bool, |v: bool| v as u8 as f64, |v: f64| v != 0.0, |v: bool| v as i64, false, true);

/// Native float arithmetic used by kernels: implemented for `f32` and `f64`.
pub trait Float:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    const INFINITY: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_usize(v: usize) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn sqrt(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tanh(self) -> Self;
    fn erf(self) -> Self;
    fn abs(self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    fn round_even(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn is_nan(self) -> bool;
    fn signum_torch(self) -> Self;
    /// Maximum that propagates NaN, as `torch.maximum`.
    #[inline(always)]
    fn max_nan(self, o: Self) -> Self {
        if self.is_nan() || self > o {
            self
        } else {
            o
        }
    }
    /// Minimum that propagates NaN, as `torch.minimum`.
    #[inline(always)]
    fn min_nan(self, o: Self) -> Self {
        if self.is_nan() || self < o {
            self
        } else {
            o
        }
    }
}

/// `e^x` for f32 without a libm call, so loops over it vectorize: Cephes'
/// range reduction and degree-5 polynomial (within 2.5e-7 relative error on
/// the normal range, checked below; results below the smallest normal float
/// flush to 0, as the vectorized kernels of other frameworks do). Written for
/// few vector instructions (about 28 per vector in the AVX-512 kernels): a
/// NaN flows through the arithmetic instead of being selected at the end,
/// and rounding uses the add-a-magic-constant trick instead of conversions.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    /// ln of the largest and of the smallest normal float.
    const HI: f32 = 88.722_83;
    const LO: f32 = -87.336_55;
    /// 1.5 * 2^23: floats near it are spaced 1 apart, so adding it rounds to
    /// the nearest integer, which then sits in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    // Each comparison is false for NaN, which therefore passes unchanged
    // (one max/min instruction each, where `f32::max` adds NaN fix-ups).
    let xc = if x < LO { LO } else { x };
    let xc = if xc > HI { HI } else { xc };
    let t = xc.mul_add(LOG2E, MAGIC);
    let fx = t - MAGIC; // round(xc * log2(e)), an integer in [-126, 128]
    let n = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = (-C2).mul_add(fx, (-C1).mul_add(fx, xc)); // |r| <= ln(2) / 2
    let z = r * r;
    let mut p = 1.987_569_1e-4f32;
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = p.mul_add(r, c);
    }
    let y = p.mul_add(z, r) + 1.0;
    // 2^n as two exponent-bit factors, each a normal float for every n in
    // [-126, 128] (a single one would be inf at 128). Wrapping: for a NaN
    // input `n` is meaningless (the product is NaN through `y` anyway).
    let h = n >> 1;
    let pow2 = |e: i32| f32::from_bits((e.wrapping_add(127) as u32) << 23);
    let out = y * pow2(h) * pow2(n.wrapping_sub(h));
    if x > HI {
        f32::INFINITY
    } else if x < LO {
        0.0 // below the smallest normal (and exp(-inf) = 0, which softmax masks rely on)
    } else {
        out
    }
}

macro_rules! impl_float {
    ($t:ty, $erf:path, $exp:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const INFINITY: Self = <$t>::INFINITY;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_usize(v: usize) -> Self {
                v as $t
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            #[inline(always)]
            fn ceil(self) -> Self {
                <$t>::ceil(self)
            }
            #[inline(always)]
            fn round_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn signum_torch(self) -> Self {
                if self > 0.0 {
                    1.0
                } else if self < 0.0 {
                    -1.0
                } else {
                    self // 0, -0 and NaN map to themselves, as torch.sign
                }
            }
        }
    };
}
impl_float!(f32, libm::erff, exp_f32);
impl_float!(f64, libm::erf, f64::exp);

/// A floating element type together with the native type its math runs in:
/// f32 and f64 compute natively, f16 and bf16 compute in f32 (as PyTorch's CPU
/// kernels do) and round once on store.
pub trait FloatDType: WithDType {
    type Acc: Float;
    fn to_acc(self) -> Self::Acc;
    fn from_acc(v: Self::Acc) -> Self;
}

impl FloatDType for f32 {
    type Acc = f32;
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_acc(v: f32) -> Self {
        v
    }
}
impl FloatDType for f64 {
    type Acc = f64;
    #[inline(always)]
    fn to_acc(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_acc(v: f64) -> Self {
        v
    }
}
impl FloatDType for f16 {
    type Acc = f32;
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_acc(v: f32) -> Self {
        f16::from_f32(v)
    }
}
impl FloatDType for bf16 {
    type Acc = f32;
    #[inline(always)]
    fn to_acc(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn from_acc(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

#[cfg(test)]
mod tests {
    use super::exp_f32;

    #[test]
    fn exp_f32_error_against_f64() {
        let mut worst = 0f64;
        for i in 0..=400_000 {
            let x = -87.3 + 175.9 * i as f64 / 400_000.0;
            let (got, want) = (exp_f32(x as f32) as f64, (x as f32 as f64).exp());
            worst = worst.max(((got - want) / want).abs());
        }
        // f32 epsilon is 1.19e-7: the polynomial stays within ~2 ulp.
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }
}
