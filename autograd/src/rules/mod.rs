//! One vector-Jacobian product rule per [`Op`]. Rules are written with
//! ordinary tensor ops, so a backward pass is itself recorded when grad mode
//! (`create_graph`) or a jit trace is on.

mod elementwise;
mod index;
mod nn;
mod reduce;
mod view;

use oar_tensor::{DType, Error, ErrorKind, Op, Result, Shape, Tensor};

/// Gradients for one node: one entry per input, `None` where an input gets no
/// gradient (integer indices, masks, non-differentiable ops).
pub(crate) type Grads = Vec<Option<Tensor>>;

/// What a rule sees of one recorded node.
pub(crate) struct Ctx<'a> {
    pub op: &'a Op,
    pub inputs: &'a [Tensor],
    outputs: &'a [Option<Tensor>],
}

impl Ctx<'_> {
    pub fn x(&self, i: usize) -> &Tensor {
        &self.inputs[i]
    }

    /// Whether input `i` wants a gradient: rules skip the work for the rest
    /// (constants, the data batch of a first layer).
    pub fn needs(&self, i: usize) -> bool {
        self.inputs[i].requires_grad()
    }

    /// Output `i` of the node (kept alive by its consumers during the pass).
    pub fn out(&self, i: usize) -> Result<&Tensor> {
        self.maybe_out(i).ok_or_else(|| {
            Error::from(ErrorKind::Autograd {
                msg: format!("internal error: output {i} of the node is not available to its VJP"),
            })
        })
    }

    /// Output `i` when something kept it alive.
    pub fn maybe_out(&self, i: usize) -> Option<&Tensor> {
        self.outputs[i].as_ref()
    }
}

/// Applies the VJP of `op` to the output gradients `grads` (`None`: zero).
pub(crate) fn vjp(op: &Op, inputs: &[Tensor], outputs: &[Option<Tensor>], grads: &[Option<Tensor>]) -> Result<Grads> {
    let c = Ctx { op, inputs, outputs };
    // Every op but max_pool2d has one output; its second (indices) has no gradient.
    let Some(g) = grads[0].as_ref() else { return Ok(vec![None; inputs.len()]) };
    match op {
        Op::Unary(u) => elementwise::unary(*u, &c, g),
        Op::UnaryBackward(_) | Op::Conv2dWeightGrad { .. } | Op::Fused { .. } | Op::Prepacked { .. } => {
            Err(Error::from(ErrorKind::Autograd {
                msg: format!(
                "`{}` has no derivative; a backward pass recorded with create_graph uses differentiable ops instead",
                op.name()
            ),
            }))
        }
        Op::Clamp { min, max } => elementwise::clamp(&c, g, *min, *max),
        Op::Binary(b) => elementwise::binary(*b, &c, g),
        Op::BinaryScalar { op, scalar } => elementwise::binary_scalar(*op, *scalar, &c, g),
        Op::Where => elementwise::where_cond(&c, g),
        Op::Cast(_) => Ok(vec![Some(g.to_dtype(c.x(0).dtype())?)]),
        Op::Compare(_) | Op::ArgMax { .. } | Op::ArgMin { .. } | Op::OneHot { .. } => Ok(vec![None; inputs.len()]),
        Op::Reduce { op, dims, keepdim } => reduce::reduce(*op, dims, *keepdim, &c, g),
        Op::Var { dims, correction, keepdim } => reduce::var(dims, *correction, *keepdim, &c, g),
        Op::Softmax { dim } => reduce::softmax(*dim, &c, g),
        Op::LogSoftmax { dim } => reduce::log_softmax(*dim, &c, g),
        Op::Matmul => nn::matmul(&c, g),
        Op::Conv2d(p) => nn::conv2d(p, &c, g),
        Op::ConvTranspose2d(p) => nn::conv_transpose2d(p, &c, g),
        Op::MaxPool2d(p) | Op::MaxPool2dValues(p) => nn::max_pool2d(p, &c, g),
        Op::AvgPool2d(p) => nn::avg_pool2d(p, &c, g),
        Op::AdaptiveAvgPool2d { output } => nn::adaptive_avg_pool2d(*output, &c, g),
        Op::Cat { dim } => index::cat(*dim, &c, g),
        Op::IndexSelect { dim } => index::index_select(*dim, &c, g),
        Op::Gather { dim } => index::gather(*dim, &c, g),
        Op::ScatterAdd { dim } => index::scatter_add(*dim, &c, g),
        Op::Pad { pads, .. } => index::pad(pads, &c, g),
        Op::Reshape { .. } => Ok(vec![Some(g.reshape(c.x(0).shape().clone())?)]),
        Op::Permute { perm } => view::permute(perm, g),
        Op::Expand { .. } => Ok(vec![Some(sum_to(g, c.x(0).shape())?)]),
        Op::Slice { dim, start, end, step } => view::slice(*dim, *start, *end, *step, &c, g),
        Op::Contiguous => Ok(vec![Some(g.clone())]),
        Op::ToDevice(_) => Ok(vec![Some(g.to_device(c.x(0).device())?)]),
    }
}

/// `f()` when `need`, else `None`.
pub(crate) fn when(need: bool, f: impl FnOnce() -> Result<Tensor>) -> Result<Option<Tensor>> {
    need.then(f).transpose()
}

/// Sums a broadcast gradient back to `shape` (the input's shape before
/// broadcasting): over added leading dims and over dims that were 1.
pub(crate) fn sum_to(g: &Tensor, shape: &Shape) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let lead = g.rank() - shape.rank();
    let dims: Vec<usize> =
        (0..g.rank()).filter(|&d| d < lead || (shape.dims()[d - lead] == 1 && g.dims()[d] != 1)).collect();
    let summed = if dims.is_empty() { g.clone() } else { g.sum(dims, true)? };
    summed.reshape(shape.clone())
}

/// A 0-d constant of `like`'s dtype on its device (broadcasts against it).
pub(crate) fn scalar(value: f64, like: &Tensor) -> Result<Tensor> {
    Tensor::full((), value, like.dtype(), like.device())
}

/// A bool mask as 0/1 in `like`'s dtype.
pub(crate) fn as_float(mask: &Tensor, like: &Tensor) -> Result<Tensor> {
    debug_assert_eq!(mask.dtype(), DType::Bool);
    mask.to_dtype(like.dtype())
}

/// `g` reshaped so it broadcasts against the unreduced input: the reduced
/// `dims` are put back as size 1 when the op dropped them.
pub(crate) fn unsqueeze_reduced(g: &Tensor, input: &Shape, dims: &[usize], keepdim: bool) -> Result<Tensor> {
    if keepdim {
        return Ok(g.clone());
    }
    let kept: Vec<usize> =
        input.dims().iter().enumerate().map(|(d, &n)| if dims.contains(&d) { 1 } else { n }).collect();
    g.reshape(kept)
}
