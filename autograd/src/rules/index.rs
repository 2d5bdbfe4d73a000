//! VJPs of joining, indexing and padding ops.

use super::{Ctx, Grads};
use oar_tensor::{Result, Tensor};

/// Each input gets its slice of the gradient.
pub(super) fn cat(dim: usize, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let mut start = 0;
    let mut grads = Vec::with_capacity(c.inputs.len());
    for x in c.inputs {
        let len = x.dims()[dim];
        grads.push(Some(g.narrow(dim, start, len)?));
        start += len;
    }
    Ok(grads)
}

/// Rows picked (possibly repeatedly) get their gradients summed back.
pub(super) fn index_select(dim: usize, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let (x, index) = (c.x(0), c.x(1));
    let mut shape = vec![1; g.rank()];
    shape[dim] = index.numel();
    let index = index.reshape(shape)?.expand(g.shape().clone())?;
    Ok(vec![Some(x.zeros_like()?.scatter_add(dim, &index, g)?), None])
}

pub(super) fn gather(dim: usize, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let (x, index) = (c.x(0), c.x(1));
    Ok(vec![Some(x.zeros_like()?.scatter_add(dim, index, g)?), None])
}

/// `x` passes the gradient through; `src` gets it back from where it was
/// added (zero for the part of `src` the index does not cover).
pub(super) fn scatter_add(dim: usize, c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let (index, src) = (c.x(1), c.x(2));
    let mut gsrc = g.gather(dim, index)?;
    if gsrc.shape() != src.shape() {
        let pads: Vec<i64> =
            src.dims().iter().zip(gsrc.dims()).rev().flat_map(|(&s, &i)| [0, (s - i) as i64]).collect();
        gsrc = gsrc.pad(&pads, 0.0)?;
    }
    Ok(vec![Some(g.clone()), None, Some(gsrc)])
}

/// The gradient of the unpadded region.
pub(super) fn pad(pads: &[(usize, usize)], c: &Ctx<'_>, g: &Tensor) -> Result<Grads> {
    let x = c.x(0);
    let mut gx = g.clone();
    for (d, &(before, _)) in pads.iter().enumerate() {
        gx = gx.narrow(d, before, x.dims()[d])?;
    }
    Ok(vec![Some(gx)])
}
