//! The op vocabulary: one enum read by backends (to execute), autograd (to
//! differentiate) and the jit (graph nodes). [`Op::infer`] is the single place
//! that validates inputs and derives output shapes and dtypes.

use crate::device::DeviceLocation;
use crate::{DType, Result, Shape};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    Relu,
    /// The error function (the exact GELU's gradient needs it).
    Erf,
    /// Exact GELU, `x * Phi(x)` with the error function.
    Gelu,
    /// GELU with the tanh approximation.
    GeluTanh,
    Silu,
    /// `log(1 + exp(x))`, linear above 20 as PyTorch's default threshold.
    Softplus,
    Recip,
    Square,
    Sign,
    Floor,
    Ceil,
    /// Round half to even, as `torch.round`.
    Round,
}

impl UnaryOp {
    /// Ops that are also defined on integer tensors.
    pub fn supports_int(self) -> bool {
        matches!(self, UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign | UnaryOp::Square | UnaryOp::Relu)
    }
    pub fn name(self) -> &'static str {
        use UnaryOp::*;
        match self {
            Neg => "neg",
            Abs => "abs",
            Exp => "exp",
            Log => "log",
            Sqrt => "sqrt",
            Rsqrt => "rsqrt",
            Sin => "sin",
            Cos => "cos",
            Tanh => "tanh",
            Sigmoid => "sigmoid",
            Relu => "relu",
            Erf => "erf",
            Gelu => "gelu",
            GeluTanh => "gelu_tanh",
            Silu => "silu",
            Softplus => "softplus",
            Recip => "recip",
            Square => "square",
            Sign => "sign",
            Floor => "floor",
            Ceil => "ceil",
            Round => "round",
        }
    }

    /// Name of [`Op::UnaryBackward`] for this op (`tanh_backward`, ...).
    pub fn backward_name(self) -> &'static str {
        use UnaryOp::*;
        match self {
            Neg => "neg_backward",
            Abs => "abs_backward",
            Exp => "exp_backward",
            Log => "log_backward",
            Sqrt => "sqrt_backward",
            Rsqrt => "rsqrt_backward",
            Sin => "sin_backward",
            Cos => "cos_backward",
            Tanh => "tanh_backward",
            Sigmoid => "sigmoid_backward",
            Relu => "relu_backward",
            Erf => "erf_backward",
            Gelu => "gelu_backward",
            GeluTanh => "gelu_tanh_backward",
            Silu => "silu_backward",
            Softplus => "softplus_backward",
            Recip => "recip_backward",
            Square => "square_backward",
            Sign => "sign_backward",
            Floor => "floor_backward",
            Ceil => "ceil_backward",
            Round => "round_backward",
        }
    }

    /// Whether [`Op::UnaryBackward`] takes this op's output (its derivative
    /// is cheapest from it: `tanh`, `sigmoid`, ...) rather than its input.
    pub fn backward_uses_output(self) -> bool {
        use UnaryOp::*;
        matches!(self, Exp | Sqrt | Rsqrt | Tanh | Sigmoid | Recip)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Maximum,
    Minimum,
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
        }
    }
    pub(crate) fn float_only(self) -> bool {
        matches!(self, BinaryOp::Div)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    LogSumExp,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Prod => "prod",
            ReduceOp::LogSumExp => "logsumexp",
        }
    }
}

/// Attributes of `conv2d` (PyTorch's `F.conv2d`). Weight is `[out, in/groups, kh, kw]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Conv2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

/// Attributes of `conv_transpose2d`. Weight is `[in, out/groups, kh, kw]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvTranspose2dParams {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub output_padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for ConvTranspose2dParams {
    fn default() -> Self {
        ConvTranspose2dParams { stride: [1, 1], padding: [0, 0], output_padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

/// Attributes of `max_pool2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MaxPool2dParams {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

impl MaxPool2dParams {
    /// Square kernel `k` with stride `k`, as `nn.MaxPool2d(k)`.
    pub fn new(k: usize) -> Self {
        MaxPool2dParams { kernel: [k, k], stride: [k, k], padding: [0, 0], dilation: [1, 1], ceil_mode: false }
    }
}

impl Default for MaxPool2dParams {
    fn default() -> Self {
        Self::new(1)
    }
}

/// Attributes of `avg_pool2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AvgPool2dParams {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

impl AvgPool2dParams {
    /// Square kernel `k` with stride `k`, as `nn.AvgPool2d(k)`.
    pub fn new(k: usize) -> Self {
        AvgPool2dParams { kernel: [k, k], stride: [k, k], padding: [0, 0], ceil_mode: false, count_include_pad: true }
    }
}

impl Default for AvgPool2dParams {
    fn default() -> Self {
        Self::new(1)
    }
}

/// A primitive operation. Dims are already resolved (non-negative).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Unary(UnaryOp),
    /// Inputs `(grad, saved)` of one shape: `grad` times the op's derivative,
    /// where `saved` is the op's output when [`UnaryOp::backward_uses_output`]
    /// and its input otherwise. One pass instead of the two to five ops of the
    /// composite rule; autograd uses it when it is not recording the backward
    /// pass itself (it has no derivative of its own).
    UnaryBackward(UnaryOp),
    Clamp {
        min: Option<f64>,
        max: Option<f64>,
    },
    Binary(BinaryOp),
    /// `x op scalar`, the scalar converted to x's dtype.
    BinaryScalar {
        op: BinaryOp,
        scalar: f64,
    },
    Compare(CmpOp),
    /// Inputs `(cond, on_true, on_false)`, all broadcast.
    Where,
    Cast(DType),
    Reduce {
        op: ReduceOp,
        dims: Vec<usize>,
        keepdim: bool,
    },
    Var {
        dims: Vec<usize>,
        correction: usize,
        keepdim: bool,
    },
    ArgMax {
        dim: usize,
        keepdim: bool,
    },
    ArgMin {
        dim: usize,
        keepdim: bool,
    },
    Softmax {
        dim: usize,
    },
    LogSoftmax {
        dim: usize,
    },
    /// Batched matmul of two tensors of rank >= 2 with broadcast batch dims.
    Matmul,
    /// Inputs `(x, weight)` or `(x, weight, bias)`; x is NCHW.
    Conv2d(Conv2dParams),
    ConvTranspose2d(ConvTranspose2dParams),
    /// Inputs `(x, grad_out)`: the gradient of `conv2d(x, w, params)` with
    /// respect to a weight `w` of spatial size `kernel`, `[out, in/groups,
    /// kh, kw]` (PyTorch's `convolution_backward` weight output). Autograd
    /// uses it unless `create_graph` records the backward pass; it has no
    /// derivative of its own.
    Conv2dWeightGrad {
        params: Conv2dParams,
        kernel: [usize; 2],
    },
    /// Two outputs: values and i64 indices into each input H*W plane.
    MaxPool2d(MaxPool2dParams),
    /// The values of [`Op::MaxPool2d`] alone: what inference and no-grad
    /// code use, since finding and writing the i64 indices costs more than
    /// the maxima themselves.
    MaxPool2dValues(MaxPool2dParams),
    AvgPool2d(AvgPool2dParams),
    AdaptiveAvgPool2d {
        output: [usize; 2],
    },
    Cat {
        dim: usize,
    },
    /// Inputs `(x, index)`.
    IndexSelect {
        dim: usize,
    },
    /// Inputs `(x, index)`.
    Gather {
        dim: usize,
    },
    /// Inputs `(x, index, src)`: `x` with `src` added at `index` along `dim`.
    ScatterAdd {
        dim: usize,
    },
    OneHot {
        num_classes: usize,
    },
    /// Constant padding, `(before, after)` for every dim, outermost first.
    Pad {
        pads: Vec<(usize, usize)>,
        value: f64,
    },
    // Views: they share storage and never reach a backend.
    Reshape {
        shape: Vec<usize>,
    },
    Permute {
        perm: Vec<usize>,
    },
    Expand {
        shape: Vec<usize>,
    },
    Slice {
        dim: usize,
        start: usize,
        end: usize,
        step: usize,
    },
    /// A row-major copy (identity on values).
    Contiguous,
    /// `head` followed by element-wise `epilogue` ops (unary, tensor-scalar,
    /// clamp, binary) applied to its fresh output in place, in cache-sized
    /// chunks: one pass over memory instead of one per op and no
    /// intermediate buffers. The op's inputs are the head's, then one
    /// operand per binary epilogue op, in order: `Binary(b)` computes
    /// `acc b operand`, the operand broadcast to the output's shape and of
    /// its dtype. The jit's fusion pass builds these (linear + bias + ReLU,
    /// a residual add after a convolution, chains of activations); it has no
    /// derivative of its own.
    Fused {
        head: Box<Op>,
        epilogue: Vec<Op>,
    },
    /// `op` with its input number `input` given in a layout its backend
    /// packed it into once ([`crate::Tensor::prepack`]): executors build
    /// these for weights, so a convolution run a thousand times reorders its
    /// weights once. `logical` is that input's shape and dtype as `op` sees
    /// it. The packed layout belongs to one backend and one CPU, so these are
    /// never saved (serializing one is an error), traced or differentiated.
    #[serde(skip)]
    Prepacked {
        op: Box<Op>,
        input: usize,
        logical: TensorMeta,
    },
    ToDevice(DeviceLocation),
}

/// Borrowed shape and dtype of an op input (what inference reads).
#[derive(Clone, Copy, Debug)]
pub struct MetaRef<'a> {
    pub shape: &'a Shape,
    pub dtype: DType,
}

impl<'a> From<&'a TensorMeta> for MetaRef<'a> {
    fn from(m: &'a TensorMeta) -> Self {
        MetaRef { shape: &m.shape, dtype: m.dtype }
    }
}

/// Output metadata of one op (inline: ops have at most two outputs).
pub type Metas = smallvec::SmallVec<[TensorMeta; 2]>;

/// Shape and dtype of a tensor, without data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorMeta {
    pub shape: Shape,
    pub dtype: DType,
}

impl TensorMeta {
    pub fn new(shape: Shape, dtype: DType) -> Self {
        TensorMeta { shape, dtype }
    }
}

impl Op {
    /// A short name for errors and graph dumps (`conv2d`, `sum`, `add`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(u) => u.name(),
            Op::UnaryBackward(u) => u.backward_name(),
            Op::Clamp { .. } => "clamp",
            Op::Binary(b) => b.name(),
            Op::BinaryScalar { op, .. } => match op {
                BinaryOp::Add => "add_scalar",
                BinaryOp::Sub => "sub_scalar",
                BinaryOp::Mul => "mul_scalar",
                BinaryOp::Div => "div_scalar",
                BinaryOp::Pow => "pow_scalar",
                BinaryOp::Maximum => "maximum_scalar",
                BinaryOp::Minimum => "minimum_scalar",
            },
            Op::Compare(c) => c.name(),
            Op::Where => "where",
            Op::Cast(_) => "to_dtype",
            Op::Reduce { op, .. } => op.name(),
            Op::Var { .. } => "var",
            Op::ArgMax { .. } => "argmax",
            Op::ArgMin { .. } => "argmin",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::Matmul => "matmul",
            Op::Conv2d(_) => "conv2d",
            Op::ConvTranspose2d(_) => "conv_transpose2d",
            Op::Conv2dWeightGrad { .. } => "conv2d_weight_grad",
            Op::MaxPool2d(_) => "max_pool2d",
            Op::MaxPool2dValues(_) => "max_pool2d_values",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::AdaptiveAvgPool2d { .. } => "adaptive_avg_pool2d",
            Op::Cat { .. } => "cat",
            Op::IndexSelect { .. } => "index_select",
            Op::Gather { .. } => "gather",
            Op::ScatterAdd { .. } => "scatter_add",
            Op::OneHot { .. } => "one_hot",
            Op::Pad { .. } => "pad",
            Op::Reshape { .. } => "reshape",
            Op::Permute { .. } => "permute",
            Op::Expand { .. } => "expand",
            Op::Slice { .. } => "slice",
            Op::Contiguous => "contiguous",
            Op::Fused { .. } => "fused",
            Op::Prepacked { .. } => "prepacked",
            Op::ToDevice(_) => "to_device",
        }
    }

    /// True for ops that only change the layout and share storage.
    pub fn is_view(&self) -> bool {
        matches!(self, Op::Reshape { .. } | Op::Permute { .. } | Op::Expand { .. } | Op::Slice { .. })
    }

    /// How many of the op's inputs are tensor operands of its epilogue
    /// (its binary epilogue ops' right-hand sides, the last inputs); 0 for
    /// ops other than [`Op::Fused`].
    pub fn epilogue_operands(&self) -> usize {
        match self {
            Op::Fused { epilogue, .. } => binary_ops(epilogue),
            _ => 0,
        }
    }

    /// Number of outputs the op produces.
    pub fn num_outputs(&self) -> usize {
        match self {
            Op::MaxPool2d(_) => 2,
            _ => 1,
        }
    }

    /// Validates the inputs and returns the output metadata.
    pub fn infer(&self, inputs: &[TensorMeta]) -> Result<Metas> {
        let refs: smallvec::SmallVec<[MetaRef<'_>; 4]> = inputs.iter().map(MetaRef::from).collect();
        crate::infer::infer(self, &refs)
    }

    /// [`Op::infer`] over borrowed metadata (no shape copies).
    pub fn infer_refs(&self, inputs: &[MetaRef<'_>]) -> Result<Metas> {
        crate::infer::infer(self, inputs)
    }
}

/// True for the ops an [`Op::Fused`] epilogue can run: unary, tensor-scalar,
/// clamp and binary ops.
pub fn is_epilogue_op(op: &Op) -> bool {
    !accumulator_inputs(op).is_empty()
}

/// How many of `ops` are binary, so many tensor operands a chain of them
/// (an epilogue) reads.
pub fn binary_ops(ops: &[Op]) -> usize {
    ops.iter().filter(|o| matches!(o, Op::Binary(_))).count()
}

/// The inputs of an element-wise op that its result may overwrite, as a
/// chain's running value (a fused epilogue's, an in-place step's): the
/// left operand, or either for `add` and `mul`, whose operands commute
/// bit for bit. Empty for other ops.
pub fn accumulator_inputs(op: &Op) -> &'static [usize] {
    match op {
        Op::Unary(_) | Op::BinaryScalar { .. } | Op::Clamp { .. } => &[0],
        Op::Binary(BinaryOp::Add | BinaryOp::Mul) => &[0, 1],
        Op::Binary(_) => &[0],
        _ => &[],
    }
}

/// The permutation that undoes `perm` (`x.permute(perm).permute(inverse)`
/// is `x`).
pub fn inverse_permutation(perm: &[usize]) -> Vec<usize> {
    let mut inverse = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    inverse
}
