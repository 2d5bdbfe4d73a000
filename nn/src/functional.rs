//! Functional forms of the layers (PyTorch's `torch.nn.functional`): what
//! the layer modules call, usable directly with tensors you hold yourself.
//! Losses are in [`crate::loss`].

use oar_tensor::{DType, Error, ErrorKind, Result, Tensor};

/// `x @ weight^T + bias`, with `weight` `[out, in]` as `nn.Linear` stores it;
/// `x` is `[*, in]`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if weight.rank() != 2 || x.rank() == 0 || x.dims()[x.rank() - 1] != weight.dims()[1] {
        return Err(Error::from(ErrorKind::ShapeMismatch {
            op: "linear",
            shapes: vec![x.shape().clone(), weight.shape().clone()],
            msg: "expected input [*, in] and weight [out, in]".into(),
        }));
    }
    let y = x.matmul(&weight.t()?)?;
    match bias {
        Some(b) => y.add(b),
        None => Ok(y),
    }
}

/// Leaky ReLU: `x` where positive, `negative_slope * x` elsewhere (the
/// gradient at 0 is the slope, as PyTorch's).
pub fn leaky_relu(x: &Tensor, negative_slope: f64) -> Result<Tensor> {
    x.gt_scalar(0.0)?.where_cond(x, &x.mul_scalar(negative_slope)?)
}

/// Inverted dropout: in training, zeroes each element with probability `p`
/// (drawn from the global generator) and scales the rest by `1 / (1 - p)`;
/// outside training, the identity.
pub fn dropout(x: &Tensor, p: f64, training: bool) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid_arg("dropout", format!("probability must be in [0, 1], got {p}")));
    }
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    if p == 1.0 {
        return x.mul_scalar(0.0);
    }
    let draw = if x.dtype() == DType::F64 { DType::F64 } else { DType::F32 };
    let keep = Tensor::rand(x.shape().clone(), draw, x.device())?.ge_scalar(p)?;
    let scale = Tensor::full((), 1.0 / (1.0 - p), x.dtype(), x.device())?;
    let zero = Tensor::zeros((), x.dtype(), x.device())?;
    keep.where_cond(&x.mul(&scale)?, &zero)
}

/// The shape `[1, C, 1, ...]` a per-channel vector takes to broadcast over
/// an `[N, C, ...]` input.
fn channel_view(v: &Tensor, rank: usize) -> Result<Tensor> {
    let mut shape = vec![1; rank];
    shape[1] = v.numel();
    v.reshape(shape)
}

/// Batch normalization over dim 1 of an `[N, C, *]` input.
///
/// In training (or without running statistics), normalizes with the batch's
/// mean and biased variance and, when given, updates `running_mean` and
/// `running_var` in place of their handles' values:
/// `running = (1 - momentum) * running + momentum * batch` with the unbiased
/// variance, as PyTorch. Otherwise normalizes with the running statistics.
/// Returns the output and, in training, the new running statistics.
#[allow(clippy::too_many_arguments)] // PyTorch's F.batch_norm signature
pub fn batch_norm(
    x: &Tensor,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
    if x.rank() < 2 {
        return Err(Error::from(ErrorKind::ShapeMismatch {
            op: "batch_norm",
            shapes: vec![x.shape().clone()],
            msg: "expected an input of shape [N, C, *]".into(),
        }));
    }
    let c = x.dims()[1];
    for (what, t) in [("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)]
    {
        if let Some(t) = t {
            if t.dims() != [c] {
                return Err(Error::from(ErrorKind::ShapeMismatch {
                    op: "batch_norm",
                    shapes: vec![x.shape().clone(), t.shape().clone()],
                    msg: format!("{what} must have one entry per channel ({c})"),
                }));
            }
        }
    }
    let rank = x.rank();
    let dims: Vec<usize> = (0..rank).filter(|&d| d != 1).collect();
    let use_batch = training || running_mean.is_none() || running_var.is_none();
    let (mean, var, updated) = if use_batch {
        let n: usize = dims.iter().map(|&d| x.dims()[d]).product();
        if training && n <= 1 {
            return Err(Error::from(ErrorKind::ShapeMismatch {
                op: "batch_norm",
                shapes: vec![x.shape().clone()],
                msg: "expected more than 1 value per channel when training".into(),
            }));
        }
        let mean = x.mean(dims.as_slice(), false)?;
        let var = x.var(dims.as_slice(), 0, false)?;
        let updated = match (training, running_mean, running_var) {
            (true, Some(rm), Some(rv)) => {
                let _guard = oar_tensor::no_grad();
                let (m, v) = (mean.detach(), var.detach());
                let unbiased = v.mul_scalar(n as f64 / (n as f64 - 1.0))?;
                let rm = rm.mul_scalar(1.0 - momentum)?.add(&m.mul_scalar(momentum)?)?;
                let rv = rv.mul_scalar(1.0 - momentum)?.add(&unbiased.mul_scalar(momentum)?)?;
                Some((rm, rv))
            }
            _ => None,
        };
        (mean, var, updated)
    } else {
        (running_mean.expect("checked").clone(), running_var.expect("checked").clone(), None)
    };
    // y = x * scale + shift, with scale = w / sqrt(var + eps) and
    // shift = b - mean * scale: two passes over x instead of four.
    let inv_std = var.add_scalar(eps)?.rsqrt()?;
    let scale = match weight {
        Some(w) => inv_std.mul(w)?,
        None => inv_std,
    };
    let shift = mean.mul(&scale)?.neg()?;
    let shift = match bias {
        Some(b) => shift.add(b)?,
        None => shift,
    };
    let y = x.mul(&channel_view(&scale, rank)?)?.add(&channel_view(&shift, rank)?)?;
    Ok((y, updated))
}

/// Layer normalization over the trailing dims `normalized_shape`, with an
/// optional elementwise affine transform of that shape.
pub fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let k = normalized_shape.len();
    let fits = k >= 1 && x.rank() >= k && x.dims()[x.rank() - k..] == *normalized_shape;
    if !fits {
        return Err(Error::from(ErrorKind::ShapeMismatch {
            op: "layer_norm",
            shapes: vec![x.shape().clone(), normalized_shape.into()],
            msg: "the input's trailing dims must equal normalized_shape".into(),
        }));
    }
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t {
            if t.dims() != normalized_shape {
                return Err(Error::from(ErrorKind::ShapeMismatch {
                    op: "layer_norm",
                    shapes: vec![t.shape().clone(), normalized_shape.into()],
                    msg: format!("{what} must have shape normalized_shape"),
                }));
            }
        }
    }
    let dims: Vec<usize> = (x.rank() - k..x.rank()).collect();
    let mean = x.mean(dims.as_slice(), true)?;
    let var = x.var(dims.as_slice(), 0, true)?;
    let mut y = x.sub(&mean)?.mul(&var.add_scalar(eps)?.rsqrt()?)?;
    if let Some(w) = weight {
        y = y.mul(w)?;
    }
    if let Some(b) = bias {
        y = y.add(b)?;
    }
    Ok(y)
}

/// Group normalization: the `C` channels of an `[N, C, *]` input split into
/// `num_groups` groups, each normalized over its channels and positions, then
/// an optional per-channel affine transform.
pub fn group_norm(
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    if x.rank() < 2 || num_groups == 0 || !x.dims()[1].is_multiple_of(num_groups) {
        return Err(Error::from(ErrorKind::ShapeMismatch {
            op: "group_norm",
            shapes: vec![x.shape().clone()],
            msg: format!("expected [N, C, *] with C divisible by num_groups ({num_groups})"),
        }));
    }
    let (n, c) = (x.dims()[0], x.dims()[1]);
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t {
            if t.dims() != [c] {
                return Err(Error::from(ErrorKind::ShapeMismatch {
                    op: "group_norm",
                    shapes: vec![x.shape().clone(), t.shape().clone()],
                    msg: format!("{what} must have one entry per channel ({c})"),
                }));
            }
        }
    }
    let grouped = x.reshape([n, num_groups, x.numel() / (n * num_groups).max(1)])?;
    let mean = grouped.mean(2, true)?;
    let var = grouped.var(2, 0, true)?;
    let y = grouped.sub(&mean)?.mul(&var.add_scalar(eps)?.rsqrt()?)?.reshape(x.shape().clone())?;
    let rank = x.rank();
    let y = match weight {
        Some(w) => y.mul(&channel_view(w, rank)?)?,
        None => y,
    };
    match bias {
        Some(b) => y.add(&channel_view(b, rank)?),
        None => Ok(y),
    }
}
