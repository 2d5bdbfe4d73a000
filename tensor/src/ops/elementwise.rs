//! Element-wise methods: unary math, clamp, binary arithmetic (tensor and
//! scalar), comparisons, `where`, `masked_fill` and dtype casts.

use crate::op::{BinaryOp, CmpOp, Op, UnaryOp};
use crate::{DType, Error, ErrorKind, Result, Tensor};

macro_rules! unary {
    ($($name:ident => $op:ident, $doc:literal;)*) => {$(
        #[doc = $doc]
        pub fn $name(&self) -> Result<Tensor> {
            Tensor::apply1(Op::Unary(UnaryOp::$op), &[self])
        }
    )*};
}

macro_rules! binary {
    ($($name:ident, $scalar:ident => $op:ident;)*) => {$(
        #[doc = concat!("Element-wise `", stringify!($name), "` with broadcasting; dtypes must match.")]
        pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
            Tensor::apply1(Op::Binary(BinaryOp::$op), &[self, rhs])
        }
        #[doc = concat!("`", stringify!($name), "` with a scalar converted to this tensor's dtype.")]
        pub fn $scalar(&self, scalar: f64) -> Result<Tensor> {
            Tensor::apply1(Op::BinaryScalar { op: BinaryOp::$op, scalar }, &[self])
        }
    )*};
}

macro_rules! compare {
    ($($name:ident, $scalar:ident => $op:ident;)*) => {$(
        #[doc = concat!("Element-wise `", stringify!($name), "` with broadcasting; gives a bool tensor.")]
        pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
            Tensor::apply1(Op::Compare(CmpOp::$op), &[self, rhs])
        }
        #[doc = concat!("`", stringify!($name), "` against a scalar; gives a bool tensor.")]
        pub fn $scalar(&self, scalar: f64) -> Result<Tensor> {
            let s = Tensor::full((), scalar, self.dtype(), self.device())?;
            Tensor::apply1(Op::Compare(CmpOp::$op), &[self, &s])
        }
    )*};
}

impl Tensor {
    /// This output gradient times the derivative of `op`, in one pass:
    /// `saved` is `op`'s output when [`UnaryOp::backward_uses_output`] (as for
    /// `tanh`, `sigmoid`) and its input otherwise (PyTorch's `tanh_backward`,
    /// `threshold_backward`, ...). It has no derivative of its own.
    pub fn unary_backward(&self, op: UnaryOp, saved: &Tensor) -> Result<Tensor> {
        Tensor::apply1(Op::UnaryBackward(op), &[self, saved])
    }

    unary! {
        neg => Neg, "`-x`";
        abs => Abs, "`|x|`";
        exp => Exp, "`e^x`";
        log => Log, "Natural logarithm.";
        sqrt => Sqrt, "Square root.";
        rsqrt => Rsqrt, "`1 / sqrt(x)`";
        sin => Sin, "Sine.";
        cos => Cos, "Cosine.";
        tanh => Tanh, "Hyperbolic tangent.";
        sigmoid => Sigmoid, "`1 / (1 + e^-x)`";
        relu => Relu, "`max(x, 0)`";
        erf => Erf, "The error function.";
        gelu => Gelu, "Exact GELU, `x * Phi(x)` (erf form), as `F.gelu`.";
        gelu_tanh => GeluTanh, "GELU, tanh approximation, as `F.gelu(approximate='tanh')`.";
        silu => Silu, "`x * sigmoid(x)`";
        softplus => Softplus, "`log(1 + e^x)` (linear above 20), as `F.softplus`.";
        recip => Recip, "`1 / x`";
        square => Square, "`x * x`";
        sign => Sign, "-1, 0 or 1 (NaN stays NaN).";
        floor => Floor, "Round down.";
        ceil => Ceil, "Round up.";
        round => Round, "Round half to even, as `torch.round`.";
    }

    /// Limits values to `[min, max]` (either bound optional), as `torch.clamp`.
    pub fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Result<Tensor> {
        Tensor::apply1(Op::Clamp { min, max }, &[self])
    }

    binary! {
        add, add_scalar => Add;
        sub, sub_scalar => Sub;
        mul, mul_scalar => Mul;
        div, div_scalar => Div;
        pow, pow_scalar => Pow;
        maximum, maximum_scalar => Maximum;
        minimum, minimum_scalar => Minimum;
    }

    compare! {
        eq, eq_scalar => Eq;
        ne, ne_scalar => Ne;
        lt, lt_scalar => Lt;
        le, le_scalar => Le;
        gt, gt_scalar => Gt;
        ge, ge_scalar => Ge;
    }

    /// `on_true` where `self` (bool) is set, else `on_false`; all three broadcast.
    pub fn where_cond(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        Tensor::apply1(Op::Where, &[self, on_true, on_false])
    }

    /// `value` where `mask` (bool, broadcast to this shape) is set.
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor> {
        if mask.dtype() != DType::Bool {
            return Err(Error::from(ErrorKind::DTypeMismatch {
                op: "masked_fill",
                expected: DType::Bool,
                got: mask.dtype(),
            }));
        }
        if mask.shape().broadcast_with(self.shape(), "masked_fill")? != *self.shape() {
            return Err(Error::shape(
                "masked_fill",
                &[self.shape(), mask.shape()],
                "mask must broadcast to the tensor's shape",
            ));
        }
        let fill = Tensor::full((), value, self.dtype(), self.device())?;
        mask.where_cond(&fill, self)
    }

    /// Converts elements to `dtype` (floats to integers truncate toward zero).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        Tensor::apply1(Op::Cast(dtype), &[self])
    }
}
