//! Joining, indexing and padding.

use crate::op::Op;
use crate::{Dim, Error, ErrorKind, Result, Tensor};

impl Tensor {
    /// Concatenates along `dim`, as `torch.cat`.
    pub fn cat(tensors: &[&Tensor], dim: impl Dim) -> Result<Tensor> {
        let first = tensors.first().ok_or_else(|| Error::invalid("cat", "expected at least one tensor"))?;
        let d = dim.resolve(first.shape(), "cat")?;
        if tensors.len() == 1 {
            return Ok((*first).clone());
        }
        Tensor::apply1(Op::Cat { dim: d }, tensors)
    }

    /// Stacks along a new dim `dim`, as `torch.stack`.
    pub fn stack(tensors: &[&Tensor], dim: impl Dim) -> Result<Tensor> {
        let first = tensors.first().ok_or_else(|| Error::invalid("stack", "expected at least one tensor"))?;
        let d = crate::shape::resolve_dim(dim.to_i64(), first.rank() + 1, first.shape(), "stack")?;
        for t in tensors {
            if t.shape() != first.shape() {
                return Err(Error::shape("stack", &[first.shape(), t.shape()], "all tensors must have the same shape"));
            }
            if t.dtype() != first.dtype() {
                return Err(Error::from(ErrorKind::DTypeMismatch {
                    op: "stack",
                    expected: first.dtype(),
                    got: t.dtype(),
                }));
            }
        }
        let parts = tensors.iter().map(|t| t.unsqueeze(d)).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::cat(&refs, d)
    }

    /// Entries of `dim` at the positions in `index` (i64, 1-d), as `torch.index_select`.
    pub fn index_select(&self, dim: impl Dim, index: &Tensor) -> Result<Tensor> {
        let dim = dim.resolve(self.shape(), "index_select")?;
        Tensor::apply1(Op::IndexSelect { dim }, &[self, index])
    }

    /// `out[i][j] = self[index[i][j]][j]` (for dim 0), as `torch.gather`.
    pub fn gather(&self, dim: impl Dim, index: &Tensor) -> Result<Tensor> {
        let dim = dim.resolve(self.shape(), "gather")?;
        Tensor::apply1(Op::Gather { dim }, &[self, index])
    }

    /// A copy of `self` with `src` added at `index` along `dim`, as `torch.scatter_add`.
    pub fn scatter_add(&self, dim: impl Dim, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        let dim = dim.resolve(self.shape(), "scatter_add")?;
        Tensor::apply1(Op::ScatterAdd { dim }, &[self, index, src])
    }

    /// One-hot encoding of an i64 tensor with `num_classes` classes (i64 output).
    pub fn one_hot(&self, num_classes: usize) -> Result<Tensor> {
        Tensor::apply1(Op::OneHot { num_classes }, &[self])
    }

    /// Constant padding with PyTorch's `F.pad` convention: `(before, after)`
    /// pairs starting from the last dim; negative amounts crop.
    pub fn pad(&self, pads: &[i64], value: f64) -> Result<Tensor> {
        if !pads.len().is_multiple_of(2) || pads.len() / 2 > self.rank() {
            return Err(Error::invalid(
                "pad",
                format!(
                    "expected an even number of pad amounts, at most 2 per dim, got {} for shape {}",
                    pads.len(),
                    self.shape()
                ),
            ));
        }
        let mut x = self.clone();
        let mut amounts = vec![(0usize, 0usize); self.rank()];
        for (i, pair) in pads.chunks(2).enumerate() {
            let d = self.rank() - 1 - i;
            // i128: negating i64::MIN and adding two crops must not overflow.
            let (before, after) = (pair[0] as i128, pair[1] as i128);
            let size = x.dims()[d] as i128;
            let (crop_b, crop_a) = ((-before).max(0), (-after).max(0));
            if crop_b + crop_a > size {
                return Err(Error::invalid(
                    "pad",
                    format!("negative padding {pair:?} removes more than dim {d} of size {size}"),
                ));
            }
            if crop_b + crop_a > 0 {
                x = x.narrow(d, crop_b as usize, (size - crop_b - crop_a) as usize)?;
            }
            let grow = |v: i128| {
                usize::try_from(v.max(0)).map_err(|_| Error::invalid("pad", format!("padding {v} is too large")))
            };
            amounts[d] = (grow(before)?, grow(after)?);
        }
        if amounts.iter().all(|&(a, b)| a == 0 && b == 0) {
            return Ok(x);
        }
        Tensor::apply1(Op::Pad { pads: amounts, value }, &[&x])
    }
}
