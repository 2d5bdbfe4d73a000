//! VJPs of the view ops that need more than a reshape back.

use super::{Ctx, Grads};
use oar_tensor::{Result, Tensor};

pub(super) fn permute(perm: &[usize], g: &Tensor) -> Result<Grads> {
    Ok(vec![Some(g.permute(oar_tensor::op::inverse_permutation(perm))?)])
}

/// Zeros everywhere but the sliced positions `start, start + step, ...`:
/// interleave `step - 1` zeros after each element, then pad/crop to the dim.
pub(super) fn slice(dim: usize, start: usize, _end: usize, step: usize, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let x = c.x(0);
    let (size, len) = (x.dims()[dim], g.dims()[dim]);
    let mut spread = g.clone();
    if step > 1 && len > 0 {
        let mut shape = g.dims().to_vec();
        spread = g.unsqueeze(dim + 1)?;
        spread = pad_dim(&spread, dim + 1, 0, step as i64 - 1)?;
        shape[dim] = len * step;
        spread = spread.reshape(shape)?;
    }
    let covered = spread.dims()[dim] as i64;
    let gx = pad_dim(&spread, dim, start as i64, size as i64 - start as i64 - covered)?;
    Ok(vec![Some(gx)])
}

/// Pads (or, for negative amounts, crops) one dim.
fn pad_dim(t: &Tensor, dim: usize, before: i64, after: i64) -> Result<Tensor> {
    let mut pads = vec![0i64; 2 * (t.rank() - dim)];
    let k = t.rank() - 1 - dim;
    pads[2 * k] = before;
    pads[2 * k + 1] = after;
    t.pad(&pads, 0.0)
}
