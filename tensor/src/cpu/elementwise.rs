//! Element-wise CPU kernels: unary, clamp, binary (tensor and scalar),
//! comparisons, `where` and dtype casts.

use super::simd::vectorized;
use super::storage::{map_storage, with_storage};
use super::strided::{map1, map1_costed, map2, map3};
use super::threads::worth_parallel;
use super::CpuStorage;
use crate::dtype::{Float, FloatDType};
use crate::op::{BinaryOp, CmpOp, Op, UnaryOp};
use crate::{DType, Error, ErrorKind, Layout, Result, WithDType};
use std::borrow::Cow;

// The kernels' closures are `move`: constants they capture by value can be
// kept in registers; captured by reference they were reloaded per element
// (through the reference) and the loops did not vectorize.
/// Where an element-wise kernel's function goes: into a fresh vector from a
/// strided input, or back into a contiguous buffer in place (the epilogue of
/// a fused op). One kernel body serves both.
pub(crate) trait Apply<T> {
    type Out;
    fn apply<F: Fn(T) -> T + Sync + Send>(self, f: F) -> Self::Out;
}

/// `heavy`: the function costs tens of instructions per element (see
/// [`is_heavy`]), so the map splits across threads at a smaller size.
struct Fresh<'a, T> {
    src: &'a [T],
    layout: &'a Layout,
    heavy: bool,
}

impl<'a, T> Fresh<'a, T> {
    fn new(src: &'a [T], layout: &'a Layout) -> Self {
        Fresh { src, layout, heavy: false }
    }
}

impl<T: Copy + Send + Sync + Default> Apply<T> for Fresh<'_, T> {
    type Out = Vec<T>;
    fn apply<F: Fn(T) -> T + Sync + Send>(self, f: F) -> Vec<T> {
        map1_costed(self.src, self.layout, f, self.heavy)
    }
}

/// Unary float ops built on an exponential, logarithm or polynomial: tens of
/// instructions per element, where a 2-thread split of a [64, 1000] input
/// already pays for the hand-off (a 1-thread exp took 23 us there).
fn is_heavy(op: UnaryOp) -> bool {
    use UnaryOp::*;
    matches!(op, Exp | Log | Sin | Cos | Tanh | Sigmoid | Erf | Gelu | GeluTanh | Silu | Softplus)
}

/// A contiguous buffer updated in place, on the calling thread (callers
/// split large buffers into chunks across threads).
pub(crate) struct InPlace<'a, T>(pub &'a mut [T]);

impl<T: Copy> Apply<T> for InPlace<'_, T> {
    type Out = ();
    fn apply<F: Fn(T) -> T + Sync + Send>(self, f: F) {
        vectorized(|| fill_in_place(self.0, &f))
    }
}

/// `buf[i] = f(buf[i])`; a function of its own for the reason `fill1` is.
#[inline(always)]
fn fill_in_place<T: Copy, F: Fn(T) -> T>(buf: &mut [T], f: &F) {
    for x in buf.iter_mut() {
        *x = f(*x);
    }
}

fn unary_float<T: FloatDType, A: Apply<T>>(op: UnaryOp, a: A) -> A::Out {
    macro_rules! m {
        (|$x:ident| $e:expr) => {
            a.apply(move |v: T| {
                let $x = v.to_acc();
                T::from_acc($e)
            })
        };
    }
    let one = <T::Acc as Float>::ONE;
    let zero = <T::Acc as Float>::ZERO;
    let half = <T::Acc as Float>::from_f64(0.5);
    match op {
        UnaryOp::Neg => m!(|x| -x),
        UnaryOp::Abs => m!(|x| x.abs()),
        UnaryOp::Exp => m!(|x| x.exp()),
        UnaryOp::Log => m!(|x| x.ln()),
        UnaryOp::Sqrt => m!(|x| x.sqrt()),
        UnaryOp::Rsqrt => m!(|x| one / x.sqrt()),
        UnaryOp::Sin => m!(|x| x.sin()),
        UnaryOp::Cos => m!(|x| x.cos()),
        UnaryOp::Tanh => m!(|x| x.tanh()),
        UnaryOp::Sigmoid => m!(|x| one / (one + (-x).exp())),
        UnaryOp::Relu => m!(|x| if x < zero { zero } else { x }),
        UnaryOp::Erf => m!(|x| x.erf()),
        UnaryOp::Gelu => {
            let inv_sqrt2 = <T::Acc as Float>::from_f64(std::f64::consts::FRAC_1_SQRT_2);
            m!(|x| x * half * (one + (x * inv_sqrt2).erf()))
        }
        UnaryOp::GeluTanh => {
            let k = <T::Acc as Float>::from_f64((2.0 / std::f64::consts::PI).sqrt());
            let c = <T::Acc as Float>::from_f64(0.044715);
            m!(|x| half * x * (one + (k * (x + c * x * x * x)).tanh()))
        }
        UnaryOp::Silu => m!(|x| x / (one + (-x).exp())),
        UnaryOp::Softplus => {
            let threshold = <T::Acc as Float>::from_f64(20.0);
            m!(|x| if x > threshold { x } else { x.exp().ln_1p() })
        }
        UnaryOp::Recip => m!(|x| one / x),
        UnaryOp::Square => m!(|x| x * x),
        UnaryOp::Sign => m!(|x| x.signum_torch()),
        UnaryOp::Floor => m!(|x| x.floor()),
        UnaryOp::Ceil => m!(|x| x.ceil()),
        UnaryOp::Round => m!(|x| x.round_even()),
    }
}

macro_rules! unary_int {
    ($op:expr, $v:expr, $l:expr, $t:ty) => {
        match $op {
            UnaryOp::Neg => map1($v, $l, move |x: $t| x.wrapping_neg()),
            UnaryOp::Abs => map1($v, $l, move |x: $t| if x < (0 as $t) { x.wrapping_neg() } else { x }),
            UnaryOp::Sign => map1($v, $l, move |x: $t| (x > 0 as $t) as $t - ((x < 0 as $t) as $t)),
            UnaryOp::Square => map1($v, $l, move |x: $t| x.wrapping_mul(x)),
            UnaryOp::Relu => map1($v, $l, move |x: $t| if x < (0 as $t) { 0 as $t } else { x }),
            _ => unreachable!("infer rejects float-only unary ops on integers"),
        }
    };
}

#[inline(always)]
pub(crate) fn unary(op: UnaryOp, s: &CpuStorage, l: &Layout) -> Result<CpuStorage> {
    let heavy = is_heavy(op);
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(unary_float(op, Fresh { src: v, layout: l, heavy })),
        CpuStorage::F64(v) => CpuStorage::F64(unary_float(op, Fresh { src: v, layout: l, heavy })),
        CpuStorage::F16(v) => CpuStorage::F16(unary_float(op, Fresh { src: v, layout: l, heavy })),
        CpuStorage::BF16(v) => CpuStorage::BF16(unary_float(op, Fresh { src: v, layout: l, heavy })),
        CpuStorage::I64(v) => CpuStorage::I64(unary_int!(op, v, l, i64)),
        CpuStorage::I32(v) => CpuStorage::I32(unary_int!(op, v, l, i32)),
        CpuStorage::U8(v) => CpuStorage::U8(match op {
            UnaryOp::Sign => map1(v, l, move |x: u8| (x > 0) as u8),
            UnaryOp::Abs | UnaryOp::Relu => map1(v, l, move |x: u8| x),
            _ => unary_int!(op, v, l, u8),
        }),
        CpuStorage::Bool(_) => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: op.name(),
                dtype: DType::Bool,
                msg: "not defined for bool",
            }))
        }
    })
}

/// `g * f'(x)` of the unary op `f`, from its input `x` or output `y` (see
/// [`UnaryOp::backward_uses_output`]); the formulas are the composite VJP
/// rules' (autograd/src/rules/elementwise.rs), in the same order of operations.
fn unary_backward_float<T: FloatDType>(op: UnaryOp, g: &[T], lg: &Layout, s: &[T], ls: &Layout) -> Vec<T> {
    macro_rules! m {
        (|$g:ident, $v:ident| $e:expr) => {
            map2(g, lg, s, ls, move |p: T, q: T| {
                let ($g, $v) = (p.to_acc(), q.to_acc());
                T::from_acc($e)
            })
        };
    }
    let c = |v: f64| <T::Acc as Float>::from_f64(v);
    let (zero, one, half, two) = (c(0.0), c(1.0), c(0.5), c(2.0));
    let sigmoid = move |x: T::Acc| one / (one + (-x).exp());
    match op {
        UnaryOp::Neg => m!(|g, _x| -g),
        UnaryOp::Abs => m!(|g, x| g * x.signum_torch()),
        UnaryOp::Exp => m!(|g, y| g * y),
        UnaryOp::Log => m!(|g, x| g / x),
        UnaryOp::Sqrt => m!(|g, y| g / (y * two)),
        UnaryOp::Rsqrt => m!(|g, y| g * (y * y * y * c(-0.5))),
        UnaryOp::Sin => m!(|g, x| g * x.cos()),
        UnaryOp::Cos => m!(|g, x| g * -x.sin()),
        UnaryOp::Tanh => m!(|g, y| g * (-(y * y) + one)),
        UnaryOp::Sigmoid => m!(|g, y| g * (y * (-y + one))),
        // A select, not `g * (x > 0)`: it vectorizes (the product kept a branch),
        // and like PyTorch's threshold_backward it gives 0 where x <= 0 even for a NaN g.
        UnaryOp::Relu => m!(|g, x| if x > zero { g } else { zero }),
        UnaryOp::Erf => {
            let k = c(2.0 / std::f64::consts::PI.sqrt());
            m!(|g, x| g * ((-(x * x)).exp() * k))
        }
        UnaryOp::Gelu => {
            let (r2, rpi) = (c(std::f64::consts::FRAC_1_SQRT_2), c(1.0 / (2.0 * std::f64::consts::PI).sqrt()));
            m!(|g, x| {
                let cdf = ((x * r2).erf() + one) * half;
                let pdf = (x * x * c(-0.5)).exp() * rpi;
                g * (cdf + x * pdf)
            })
        }
        UnaryOp::GeluTanh => {
            let (k, a) = (c((2.0 / std::f64::consts::PI).sqrt()), c(0.044715));
            m!(|g, x| {
                let x2 = x * x;
                let t = (x * (x2 * a + one) * k).tanh();
                let dinner = (x2 * (c(3.0) * a) + one) * k;
                let left = (t + one) * half;
                let right = x * (-(t * t) + one) * dinner * half;
                g * (left + right)
            })
        }
        UnaryOp::Silu => m!(|g, x| {
            let s = sigmoid(x);
            g * (s * (x * (-s + one) + one))
        }),
        UnaryOp::Softplus => m!(|g, x| if x > c(20.0) { g } else { g * sigmoid(x) }),
        UnaryOp::Recip => m!(|g, y| g * -(y * y)),
        UnaryOp::Square => m!(|g, x| g * (x * two)),
        UnaryOp::Sign | UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => m!(|_g, _x| zero),
    }
}

#[inline(always)]
pub(crate) fn unary_backward(
    op: UnaryOp,
    g: &CpuStorage,
    lg: &Layout,
    s: &CpuStorage,
    ls: &Layout,
) -> Result<CpuStorage> {
    Ok(match (g, s) {
        (CpuStorage::F32(g), CpuStorage::F32(s)) => CpuStorage::F32(unary_backward_float(op, g, lg, s, ls)),
        (CpuStorage::F64(g), CpuStorage::F64(s)) => CpuStorage::F64(unary_backward_float(op, g, lg, s, ls)),
        (CpuStorage::F16(g), CpuStorage::F16(s)) => CpuStorage::F16(unary_backward_float(op, g, lg, s, ls)),
        (CpuStorage::BF16(g), CpuStorage::BF16(s)) => CpuStorage::BF16(unary_backward_float(op, g, lg, s, ls)),
        _ => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: op.backward_name(),
                dtype: g.dtype(),
                msg: "expected floating-point tensors of one dtype",
            }))
        }
    })
}

fn clamp_vec<T: WithDType>(v: &[T], l: &Layout, lo: Option<f64>, hi: Option<f64>) -> Vec<T> {
    clamp_with(Fresh::new(v, l), lo, hi)
}

fn clamp_with<T: WithDType, A: Apply<T>>(a: A, lo: Option<f64>, hi: Option<f64>) -> A::Out {
    let lo = lo.map(T::from_f64);
    let hi = hi.map(T::from_f64);
    a.apply(move |x: T| {
        let y = match lo {
            Some(lo) if x < lo => lo,
            _ => x,
        };
        match hi {
            Some(hi) if y > hi => hi,
            _ => y,
        }
    })
}

/// The tensor operand of a binary epilogue op, as the epilogue reads it:
/// output element `i` meets `data[start + i % period]`. A same-shape
/// operand has the output's length as its period; a bias row broadcast over
/// the leading dims has the row's length.
pub(crate) struct Operand<'a> {
    data: Cow<'a, CpuStorage>,
    start: usize,
    period: usize,
}

impl<'a> Operand<'a> {
    /// `x` (laid out as `l`) as the operand of an output of shape `out`:
    /// read in place when `l` is a contiguous block repeated along leading
    /// dims (a same-shape tensor, a bias row), else first broadcast to `out`
    /// in a buffer of its own (a per-channel `[c, 1, 1]` scale, a transposed
    /// view).
    pub(crate) fn new(x: &'a CpuStorage, l: &Layout, out: &crate::Shape) -> Result<Self> {
        let dims = l.dims();
        let trailing = &dims[dims.iter().take_while(|&&d| d == 1).count()..];
        let repeats = trailing.len() <= out.rank() && out.dims()[out.rank() - trailing.len()..] == *trailing;
        // An empty block belongs to an empty output, which reads nothing.
        Ok(match l.contiguous_range() {
            Some(range) if repeats => {
                Operand { data: Cow::Borrowed(x), start: range.start, period: range.len().max(1) }
            }
            _ => {
                let full = cast(x, &l.broadcast_to(out, "fused")?, x.dtype());
                Operand { data: Cow::Owned(full), start: 0, period: out.numel().max(1) }
            }
        })
    }
}

/// Element-wise ops that passed [`Epilogue::new`]'s check, with the tensor
/// operands of its binary ops, one per binary op, in order.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    ops: &'a [Op],
    operands: &'a [Operand<'a>],
}

impl<'a> Epilogue<'a> {
    /// `ops`, if each is an op an epilogue can run (unary, scalar binary,
    /// clamp, binary with the next of `operands` on its right), on an output
    /// of dtype `dtype`.
    pub(crate) fn new(ops: &'a [Op], operands: &'a [Operand<'a>], dtype: DType) -> Result<Self> {
        if let Some(bad) = ops.iter().find(|o| !crate::op::is_epilogue_op(o)) {
            return Err(Error::invalid("fused", format!("`{}` cannot run as an epilogue", bad.name())));
        }
        let binary = crate::op::binary_ops(ops);
        if binary != operands.len() {
            return Err(Error::invalid(
                "fused",
                format!("{binary} binary epilogue ops take as many operands, got {}", operands.len()),
            ));
        }
        if let Some(o) = operands.iter().find(|o| o.data.dtype() != dtype) {
            return Err(Error::from(ErrorKind::DTypeMismatch { op: "fused", expected: dtype, got: o.data.dtype() }));
        }
        Ok(Epilogue { ops, operands })
    }

    /// Applies the ops in place, on this thread, in cache-sized chunks, to
    /// `v`: the output elements from flat index `start` on.
    pub(crate) fn apply<T: FloatDType>(self, v: &mut [T], start: usize) {
        for (k, c) in v.chunks_mut(EPILOGUE_CHUNK).enumerate() {
            self.chunk(c, start + k * EPILOGUE_CHUNK);
        }
    }

    /// The ops over `chunk`, output elements `at..at + chunk.len()`.
    fn chunk<T: FloatDType>(self, chunk: &mut [T], at: usize) {
        let mut operands = self.operands.iter();
        for op in self.ops {
            match op {
                Op::Unary(u) => unary_float(*u, InPlace(&mut *chunk)),
                Op::BinaryScalar { op, scalar } => binary_scalar_float(*op, *scalar, InPlace(&mut *chunk)),
                Op::Clamp { min, max } => clamp_with(InPlace(&mut *chunk), *min, *max),
                Op::Binary(b) => {
                    let o = operands.next().expect("checked by Epilogue::new");
                    let data = T::storage_slice(&o.data).expect("checked by Epilogue::new");
                    // Segments that do not cross the end of the operand's period.
                    let mut done = 0;
                    while done < chunk.len() {
                        let p = (at + done) % o.period;
                        let n = (o.period - p).min(chunk.len() - done);
                        binary_float(*b, ZipInPlace(&mut chunk[done..done + n], &data[o.start + p..o.start + p + n]));
                        done += n;
                    }
                }
                _ => unreachable!("checked by Epilogue::new"),
            }
        }
    }
}

/// `acc[i] = f(acc[i], y[i])`; a function of its own for the reason `fill1` is.
#[inline(always)]
fn zip_in_place<T: Copy, F: Fn(T, T) -> T>(acc: &mut [T], y: &[T], f: &F) {
    for (p, &q) in acc.iter_mut().zip(y) {
        *p = f(*p, q);
    }
}

const EPILOGUE_CHUNK: usize = 4096;

/// Applies `ops` to a whole output in place, chunks across the team when large.
pub(crate) fn epilogue(s: &mut CpuStorage, ops: Epilogue<'_>) -> Result<()> {
    fn go<T: FloatDType>(v: &mut [T], ops: Epilogue<'_>) {
        if worth_parallel(v.len()) {
            super::team::chunks_mut(true, v, EPILOGUE_CHUNK, |i, c| ops.chunk(c, i * EPILOGUE_CHUNK));
        } else {
            ops.apply(v, 0);
        }
    }
    match s {
        CpuStorage::F32(v) => go(v, ops),
        CpuStorage::F64(v) => go(v, ops),
        CpuStorage::F16(v) => go(v, ops),
        CpuStorage::BF16(v) => go(v, ops),
        other => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: "fused",
                dtype: other.dtype(),
                msg: "epilogues run on floating-point outputs",
            }))
        }
    }
    Ok(())
}

pub(crate) fn clamp(s: &CpuStorage, l: &Layout, lo: Option<f64>, hi: Option<f64>) -> Result<CpuStorage> {
    Ok(map_storage!(s, v => clamp_vec(v, l, lo, hi)))
}

/// Where a binary kernel's function goes: a fresh vector from two strided
/// inputs, or into the left operand in place (a binary epilogue op).
trait Apply2<T> {
    type Out;
    fn apply2<F: Fn(T, T) -> T + Sync + Send>(self, f: F) -> Self::Out;
}

struct Fresh2<'a, T>(&'a [T], &'a Layout, &'a [T], &'a Layout);

impl<T: Copy + Send + Sync + Default> Apply2<T> for Fresh2<'_, T> {
    type Out = Vec<T>;
    fn apply2<F: Fn(T, T) -> T + Sync + Send>(self, f: F) -> Vec<T> {
        map2(self.0, self.1, self.2, self.3, f)
    }
}

/// `acc[i] = f(acc[i], y[i])` over two contiguous slices of one length.
struct ZipInPlace<'a, T>(&'a mut [T], &'a [T]);

impl<T: Copy> Apply2<T> for ZipInPlace<'_, T> {
    type Out = ();
    fn apply2<F: Fn(T, T) -> T + Sync + Send>(self, f: F) {
        vectorized(|| zip_in_place(self.0, self.1, &f))
    }
}

fn binary_float<T: FloatDType, A: Apply2<T>>(op: BinaryOp, a: A) -> A::Out {
    macro_rules! m {
        (|$x:ident, $y:ident| $e:expr) => {
            a.apply2(move |p: T, q: T| {
                let ($x, $y) = (p.to_acc(), q.to_acc());
                T::from_acc($e)
            })
        };
    }
    match op {
        BinaryOp::Add => m!(|x, y| x + y),
        BinaryOp::Sub => m!(|x, y| x - y),
        BinaryOp::Mul => m!(|x, y| x * y),
        BinaryOp::Div => m!(|x, y| x / y),
        BinaryOp::Pow => m!(|x, y| x.powf(y)),
        BinaryOp::Maximum => m!(|x, y| x.max_nan(y)),
        BinaryOp::Minimum => m!(|x, y| x.min_nan(y)),
    }
}

/// Integer power with wrapping; negative exponents give 0 except for bases 1
/// and -1, as PyTorch's integer `pow`.
macro_rules! int_pow {
    ($x:expr, $y:expr, $t:ty) => {{
        let (x, y) = ($x, $y);
        #[allow(unused_comparisons)]
        if y < (0 as $t) {
            if x == (1 as $t) {
                1 as $t
            } else if x == (0 as $t).wrapping_sub(1 as $t) {
                if (y as i64) % 2 == 0 {
                    1 as $t
                } else {
                    x
                }
            } else {
                0 as $t
            }
        } else {
            x.wrapping_pow(y as u32)
        }
    }};
}

macro_rules! binary_int {
    ($op:expr, $a:expr, $la:expr, $b:expr, $lb:expr, $t:ty) => {
        match $op {
            BinaryOp::Add => map2($a, $la, $b, $lb, move |x: $t, y: $t| x.wrapping_add(y)),
            BinaryOp::Sub => map2($a, $la, $b, $lb, move |x: $t, y: $t| x.wrapping_sub(y)),
            BinaryOp::Mul => map2($a, $la, $b, $lb, move |x: $t, y: $t| x.wrapping_mul(y)),
            BinaryOp::Maximum => map2($a, $la, $b, $lb, move |x: $t, y: $t| x.max(y)),
            BinaryOp::Minimum => map2($a, $la, $b, $lb, move |x: $t, y: $t| x.min(y)),
            BinaryOp::Pow => map2($a, $la, $b, $lb, move |x: $t, y: $t| int_pow!(x, y, $t)),
            BinaryOp::Div => unreachable!("infer rejects div on integers"),
        }
    };
}

/// Binary op; both layouts must already be broadcast to the output shape.
#[inline(always)]
pub(crate) fn binary(op: BinaryOp, a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<CpuStorage> {
    Ok(match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(binary_float(op, Fresh2(a, la, b, lb))),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(binary_float(op, Fresh2(a, la, b, lb))),
        (CpuStorage::F16(a), CpuStorage::F16(b)) => CpuStorage::F16(binary_float(op, Fresh2(a, la, b, lb))),
        (CpuStorage::BF16(a), CpuStorage::BF16(b)) => CpuStorage::BF16(binary_float(op, Fresh2(a, la, b, lb))),
        (CpuStorage::I64(a), CpuStorage::I64(b)) => CpuStorage::I64(binary_int!(op, a, la, b, lb, i64)),
        (CpuStorage::I32(a), CpuStorage::I32(b)) => CpuStorage::I32(binary_int!(op, a, la, b, lb, i32)),
        (CpuStorage::U8(a), CpuStorage::U8(b)) => CpuStorage::U8(binary_int!(op, a, la, b, lb, u8)),
        _ => return Err(Error::from(ErrorKind::DTypeMismatch { op: op.name(), expected: a.dtype(), got: b.dtype() })),
    })
}

/// `x op scalar` for floats (f16/bf16 compute in f32), through `a`.
fn binary_scalar_float<T: FloatDType, A: Apply<T>>(op: BinaryOp, s: f64, a: A) -> A::Out {
    let y = <T::Acc as Float>::from_f64(s);
    macro_rules! m {
        (|$x:ident| $e:expr) => {
            a.apply(move |p: T| {
                let $x = p.to_acc();
                T::from_acc($e)
            })
        };
    }
    match op {
        BinaryOp::Add => m!(|x| x + y),
        BinaryOp::Sub => m!(|x| x - y),
        BinaryOp::Mul => m!(|x| x * y),
        BinaryOp::Div => m!(|x| x / y),
        BinaryOp::Pow if s == 2.0 => m!(|x| x * x),
        BinaryOp::Pow => m!(|x| x.powf(y)),
        BinaryOp::Maximum => m!(|x| x.max_nan(y)),
        BinaryOp::Minimum => m!(|x| x.min_nan(y)),
    }
}

/// `x op scalar` with the scalar in x's dtype (f16/bf16 compute in f32).
#[inline(always)]
pub(crate) fn binary_scalar(op: BinaryOp, s: &CpuStorage, l: &Layout, scalar: f64) -> Result<CpuStorage> {
    fn float<T: FloatDType>(op: BinaryOp, v: &[T], l: &Layout, s: f64) -> Vec<T> {
        binary_scalar_float(op, s, Fresh::new(v, l))
    }
    macro_rules! int {
        ($v:expr, $t:ty) => {{
            let y = <$t as WithDType>::from_f64(scalar);
            match op {
                BinaryOp::Add => map1($v, l, move |x: $t| x.wrapping_add(y)),
                BinaryOp::Sub => map1($v, l, move |x: $t| x.wrapping_sub(y)),
                BinaryOp::Mul => map1($v, l, move |x: $t| x.wrapping_mul(y)),
                BinaryOp::Maximum => map1($v, l, move |x: $t| x.max(y)),
                BinaryOp::Minimum => map1($v, l, move |x: $t| x.min(y)),
                BinaryOp::Pow => map1($v, l, move |x: $t| int_pow!(x, y, $t)),
                BinaryOp::Div => unreachable!("infer rejects div on integers"),
            }
        }};
    }
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(float(op, v, l, scalar)),
        CpuStorage::F64(v) => CpuStorage::F64(float(op, v, l, scalar)),
        CpuStorage::F16(v) => CpuStorage::F16(float(op, v, l, scalar)),
        CpuStorage::BF16(v) => CpuStorage::BF16(float(op, v, l, scalar)),
        CpuStorage::I64(v) => CpuStorage::I64(int!(v, i64)),
        CpuStorage::I32(v) => CpuStorage::I32(int!(v, i32)),
        CpuStorage::U8(v) => CpuStorage::U8(int!(v, u8)),
        CpuStorage::Bool(_) => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: op.name(),
                dtype: DType::Bool,
                msg: "not defined for bool",
            }))
        }
    })
}

fn compare_vec<T: WithDType>(op: CmpOp, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<bool> {
    match op {
        CmpOp::Eq => map2(a, la, b, lb, move |x, y| x == y),
        CmpOp::Ne => map2(a, la, b, lb, move |x, y| x != y),
        CmpOp::Lt => map2(a, la, b, lb, move |x, y| x < y),
        CmpOp::Le => map2(a, la, b, lb, move |x, y| x <= y),
        CmpOp::Gt => map2(a, la, b, lb, move |x, y| x > y),
        CmpOp::Ge => map2(a, la, b, lb, move |x, y| x >= y),
    }
}

/// Comparison; both layouts must already be broadcast to the output shape.
pub(crate) fn compare(op: CmpOp, a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout) -> Result<CpuStorage> {
    let out = match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => compare_vec(op, a, la, b, lb),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => compare_vec(op, a, la, b, lb),
        (CpuStorage::F16(a), CpuStorage::F16(b)) => compare_vec(op, a, la, b, lb),
        (CpuStorage::BF16(a), CpuStorage::BF16(b)) => compare_vec(op, a, la, b, lb),
        (CpuStorage::I64(a), CpuStorage::I64(b)) => compare_vec(op, a, la, b, lb),
        (CpuStorage::I32(a), CpuStorage::I32(b)) => compare_vec(op, a, la, b, lb),
        (CpuStorage::U8(a), CpuStorage::U8(b)) => compare_vec(op, a, la, b, lb),
        (CpuStorage::Bool(a), CpuStorage::Bool(b)) => compare_vec(op, a, la, b, lb),
        _ => return Err(Error::from(ErrorKind::DTypeMismatch { op: op.name(), expected: a.dtype(), got: b.dtype() })),
    };
    Ok(CpuStorage::Bool(out))
}

/// `where(cond, a, b)`; all layouts must already be broadcast to the output shape.
pub(crate) fn where_cond(
    c: &CpuStorage,
    lc: &Layout,
    a: &CpuStorage,
    la: &Layout,
    b: &CpuStorage,
    lb: &Layout,
) -> Result<CpuStorage> {
    let CpuStorage::Bool(c) = c else {
        return Err(Error::from(ErrorKind::DTypeMismatch { op: "where", expected: DType::Bool, got: c.dtype() }));
    };
    macro_rules! arm {
        ($($var:ident),*) => {
            match (a, b) {
                $((CpuStorage::$var(a), CpuStorage::$var(b)) =>
                    CpuStorage::$var(map3(c, lc, a, la, b, lb, move |k, x, y| if k { x } else { y })),)*
                _ => return Err(Error::from(ErrorKind::DTypeMismatch { op: "where", expected: a.dtype(), got: b.dtype() })),
            }
        };
    }
    Ok(arm!(F32, F64, F16, BF16, I64, I32, U8, Bool))
}

/// Converts to `dtype`: floats to integers truncate toward zero, anything to
/// bool is `!= 0`, integers between themselves wrap.
pub(crate) fn cast(s: &CpuStorage, l: &Layout, dtype: DType) -> CpuStorage {
    fn via_f64<S: WithDType, D: WithDType>(v: &[S], l: &Layout) -> Vec<D> {
        map1(v, l, move |x| D::from_f64(x.to_f64()))
    }
    macro_rules! to {
        ($v:expr) => {
            match dtype {
                DType::F32 => CpuStorage::F32(via_f64($v, l)),
                DType::F64 => CpuStorage::F64(via_f64($v, l)),
                DType::F16 => CpuStorage::F16(via_f64($v, l)),
                DType::BF16 => CpuStorage::BF16(via_f64($v, l)),
                DType::I64 => CpuStorage::I64(via_f64($v, l)),
                DType::I32 => CpuStorage::I32(via_f64($v, l)),
                DType::U8 => CpuStorage::U8(via_f64($v, l)),
                DType::Bool => CpuStorage::Bool(via_f64($v, l)),
            }
        };
    }
    if s.dtype() == dtype {
        return map_storage!(s, v => map1(v, l, move |x| x));
    }
    // i64 does not round-trip through f64 above 2^53: integer-to-integer casts wrap directly.
    match (s, dtype) {
        (CpuStorage::I64(v), DType::I32) => CpuStorage::I32(map1(v, l, move |x| x as i32)),
        (CpuStorage::I64(v), DType::U8) => CpuStorage::U8(map1(v, l, move |x| x as u8)),
        (CpuStorage::I64(v), DType::Bool) => CpuStorage::Bool(map1(v, l, move |x| x != 0)),
        _ => with_storage!(s, v => to!(v)),
    }
}
