//! Matrix products, convolutions and pooling.

use crate::op::{AvgPool2dParams, Conv2dParams, ConvTranspose2dParams, MaxPool2dParams, Op};
use crate::{Error, ErrorKind, Result, Tensor};

impl Tensor {
    /// Matrix product with `torch.matmul` semantics: 1-d operands are promoted
    /// to matrices and the added dim removed; batch dims broadcast.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let (ra, rb) = (self.rank(), rhs.rank());
        if ra == 0 || rb == 0 {
            return Err(Error::shape("matmul", &[self.shape(), rhs.shape()], "both arguments need at least one dim"));
        }
        let a = if ra == 1 { self.unsqueeze(0)? } else { self.clone() };
        let b = if rb == 1 { rhs.unsqueeze(1)? } else { rhs.clone() };
        let out = Tensor::apply1(Op::Matmul, &[&a, &b]).map_err(|e| match e.into_kind() {
            ErrorKind::ShapeMismatch { op, msg, .. } => Error::from(ErrorKind::ShapeMismatch {
                op,
                msg,
                shapes: vec![self.shape().clone(), rhs.shape().clone()],
            }),
            e => e.into(),
        })?;
        let out = if rb == 1 { out.squeeze(-1)? } else { out };
        if ra == 1 {
            out.squeeze(if rb == 1 { -1 } else { -2 })
        } else {
            Ok(out)
        }
    }

    /// Runs `f` on a batch of one when the input is unbatched (CHW), as PyTorch allows.
    fn with_batch(&self, op: &'static str, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        match self.rank() {
            4 => f(self),
            3 => f(&self.unsqueeze(0)?)?.squeeze(0),
            _ => Err(Error::shape(op, &[self.shape()], "expected a 3-d (CHW) or 4-d (NCHW) input")),
        }
    }

    /// 2-d convolution (cross-correlation), as `F.conv2d`. `weight` is `[out, in/groups, kh, kw]`.
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, params: &Conv2dParams) -> Result<Tensor> {
        self.with_batch("conv2d", |x| match bias {
            Some(b) => Tensor::apply1(Op::Conv2d(*params), &[x, weight, b]),
            None => Tensor::apply1(Op::Conv2d(*params), &[x, weight]),
        })
    }

    /// Transposed 2-d convolution, as `F.conv_transpose2d`. `weight` is `[in, out/groups, kh, kw]`.
    /// The gradient of `conv2d(self, w, params)` with respect to a weight
    /// `w` of spatial size `kernel`, given the output gradient `grad_out`:
    /// `[out, in/groups, kh, kw]` (PyTorch's `convolution_backward` weight
    /// output). Both inputs are 4-d NCHW. It has no derivative of its own.
    pub fn conv2d_weight_grad(&self, grad_out: &Tensor, kernel: [usize; 2], params: &Conv2dParams) -> Result<Tensor> {
        Tensor::apply1(Op::Conv2dWeightGrad { params: *params, kernel }, &[self, grad_out])
    }

    pub fn conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        params: &ConvTranspose2dParams,
    ) -> Result<Tensor> {
        self.with_batch("conv_transpose2d", |x| match bias {
            Some(b) => Tensor::apply1(Op::ConvTranspose2d(*params), &[x, weight, b]),
            None => Tensor::apply1(Op::ConvTranspose2d(*params), &[x, weight]),
        })
    }

    /// 2-d max pooling, as `F.max_pool2d`. The indices are computed only
    /// when autograd will need them (grad mode on and the input requiring
    /// grad); otherwise the values-only kernel runs.
    pub fn max_pool2d(&self, params: &MaxPool2dParams) -> Result<Tensor> {
        if crate::is_grad_enabled() && self.requires_grad() {
            return Ok(self.max_pool2d_with_indices(params)?.0);
        }
        self.with_batch("max_pool2d", |x| Tensor::apply1(Op::MaxPool2dValues(*params), &[x]))
    }

    /// Max pooling values and the i64 index of each maximum within its input
    /// H*W plane (as PyTorch's `return_indices=True`).
    pub fn max_pool2d_with_indices(&self, params: &MaxPool2dParams) -> Result<(Tensor, Tensor)> {
        let unbatched = self.rank() == 3;
        let x = match self.rank() {
            4 => self.clone(),
            3 => self.unsqueeze(0)?,
            _ => return Err(Error::shape("max_pool2d", &[self.shape()], "expected a 3-d (CHW) or 4-d (NCHW) input")),
        };
        let mut out = Tensor::apply(Op::MaxPool2d(*params), &[&x])?;
        let (v, i) = (out.remove(0), out.remove(0));
        if unbatched {
            Ok((v.squeeze(0)?, i.squeeze(0)?))
        } else {
            Ok((v, i))
        }
    }

    /// 2-d average pooling, as `F.avg_pool2d`.
    pub fn avg_pool2d(&self, params: &AvgPool2dParams) -> Result<Tensor> {
        self.with_batch("avg_pool2d", |x| Tensor::apply1(Op::AvgPool2d(*params), &[x]))
    }

    /// Adaptive average pooling to `[oh, ow]`, as `F.adaptive_avg_pool2d`.
    pub fn adaptive_avg_pool2d(&self, output: [usize; 2]) -> Result<Tensor> {
        self.with_batch("adaptive_avg_pool2d", |x| Tensor::apply1(Op::AdaptiveAvgPool2d { output }, &[x]))
    }
}
