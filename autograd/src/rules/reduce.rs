//! VJPs of reductions, variance and (log-)softmax.

use super::{as_float, unsqueeze_reduced, Ctx, Grads};
use oar_tensor::{ReduceOp, Result, Tensor};

pub(super) fn reduce(op: ReduceOp, dims: &[usize], keepdim: bool, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let x = c.x(0);
    let shape = x.shape();
    let g = unsqueeze_reduced(g, shape, dims, keepdim)?;
    let count: usize = dims.iter().map(|&d| shape.dims()[d]).product();
    let gx = match op {
        ReduceOp::Sum => g.expand(shape.clone())?,
        ReduceOp::Mean => g.div_scalar(count as f64)?.expand(shape.clone())?,
        ReduceOp::Max | ReduceOp::Min => {
            // Ties share the gradient evenly (PyTorch's amax/amin and full max/min).
            let out = unsqueeze_reduced(c.out(0)?, shape, dims, keepdim)?;
            let hit = as_float(&x.eq(&out)?, x)?;
            let n = hit.sum(dims.to_vec(), true)?;
            g.mul(&hit)?.div(&n)?
        }
        ReduceOp::LogSumExp => {
            let out = unsqueeze_reduced(c.out(0)?, shape, dims, keepdim)?;
            g.mul(&x.sub(&out)?.exp()?)?
        }
        ReduceOp::Prod => prod(x, dims, &g)?,
    };
    Ok(vec![Some(gx)])
}

/// d prod / d x_i = product of the other elements, without dividing by x_i
/// (which fails at zeros): with no zero in the group it is prod / x_i; with
/// exactly one zero only that element gets the product of the rest; with more,
/// all are 0.
fn prod(x: &Tensor, dims: &[usize], g: &Tensor) -> Result<Tensor> {
    let is_zero = x.eq_scalar(0.0)?;
    let zero = super::scalar(0.0, x)?;
    let one = super::scalar(1.0, x)?;
    let nonzero = is_zero.where_cond(&one, x)?;
    let p = nonzero.prod(dims.to_vec(), true)?;
    let zeros = as_float(&is_zero, x)?.sum(dims.to_vec(), true)?;
    let at_zero = zeros.eq_scalar(1.0)?.where_cond(&p, &zero)?;
    let elsewhere = zeros.eq_scalar(0.0)?.where_cond(&p.div(&nonzero)?, &zero)?;
    g.mul(&is_zero.where_cond(&at_zero, &elsewhere)?)
}

/// d var / d x = 2 (x - mean) / (N - correction).
pub(super) fn var(dims: &[usize], correction: usize, keepdim: bool, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let x = c.x(0);
    let n: usize = dims.iter().map(|&d| x.dims()[d]).product();
    let g = unsqueeze_reduced(g, x.shape(), dims, keepdim)?;
    let centered = x.sub(&x.mean(dims.to_vec(), true)?)?;
    let denom = n as f64 - correction as f64;
    Ok(vec![Some(g.mul(&centered)?.mul_scalar(2.0 / denom)?)])
}

/// y (g - sum(g y)).
pub(super) fn softmax(dim: usize, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let y = c.out(0)?;
    let dot = g.mul(y)?.sum(dim, true)?;
    Ok(vec![Some(y.mul(&g.sub(&dot)?)?)])
}

/// g - exp(y) sum(g).
pub(super) fn log_softmax(dim: usize, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let y = c.out(0)?;
    Ok(vec![Some(g.sub(&y.exp()?.mul(&g.sum(dim, true)?)?)?)])
}
