//! Views (no copy) and the splitting helpers built on them.

use crate::op::Op;
use crate::{Dim, Dims, Error, Result, Shape, Tensor};

impl Tensor {
    /// Same elements with a new shape; a view when strides allow, else a copy.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape == *self.shape() {
            return Ok(self.clone());
        }
        Tensor::apply1(Op::Reshape { shape: shape.dims().to_vec() }, &[self])
    }

    /// Reorders dims: dim `i` of the result is dim `dims[i]` of `self`.
    pub fn permute(&self, dims: impl Dims) -> Result<Tensor> {
        let perm = dims.resolve(self.shape(), "permute")?;
        Tensor::apply1(Op::Permute { perm: perm.to_vec() }, &[self])
    }

    pub fn transpose(&self, d0: impl Dim, d1: impl Dim) -> Result<Tensor> {
        let (a, b) = (d0.resolve(self.shape(), "transpose")?, d1.resolve(self.shape(), "transpose")?);
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        Tensor::apply1(Op::Permute { perm }, &[self])
    }

    /// Transpose of a matrix (rank <= 2), as `torch.Tensor.t`.
    pub fn t(&self) -> Result<Tensor> {
        match self.rank() {
            0 | 1 => Ok(self.clone()),
            2 => self.transpose(0, 1),
            _ => Err(Error::shape("t", &[self.shape()], "expects a tensor of rank <= 2; use transpose")),
        }
    }

    /// Broadcasts to `shape` without copying (size-1 dims repeat, leading dims may be added).
    pub fn expand(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape == *self.shape() {
            return Ok(self.clone());
        }
        Tensor::apply1(Op::Expand { shape: shape.dims().to_vec() }, &[self])
    }

    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        self.expand(shape)
    }

    /// `len` elements of `dim` starting at `start`, as `torch.narrow`.
    pub fn narrow(&self, dim: impl Dim, start: usize, len: usize) -> Result<Tensor> {
        let d = dim.resolve(self.shape(), "narrow")?;
        let size = self.dims()[d];
        if start.checked_add(len).is_none_or(|e| e > size) {
            return Err(Error::invalid(
                "narrow",
                format!("start {start} + length {len} exceeds dim {d} of size {size} (shape {})", self.shape()),
            ));
        }
        if start == 0 && len == size {
            return Ok(self.clone());
        }
        Tensor::apply1(Op::Slice { dim: d, start, end: start + len, step: 1 }, &[self])
    }

    /// Python-style slice `start:end:step` of `dim` (bounds are clamped to the size).
    pub fn slice(&self, dim: impl Dim, start: usize, end: usize, step: usize) -> Result<Tensor> {
        let d = dim.resolve(self.shape(), "slice")?;
        if step == 0 {
            return Err(Error::invalid("slice", "step must be positive"));
        }
        let size = self.dims()[d];
        let end = end.min(size);
        let start = start.min(end);
        Tensor::apply1(Op::Slice { dim: d, start, end, step }, &[self])
    }

    /// Removes `dim` if its size is 1 (otherwise returns the tensor unchanged, as PyTorch).
    pub fn squeeze(&self, dim: impl Dim) -> Result<Tensor> {
        let d = dim.resolve(self.shape(), "squeeze")?;
        if self.dims()[d] != 1 {
            return Ok(self.clone());
        }
        let mut s = self.dims().to_vec();
        s.remove(d);
        self.reshape(s)
    }

    /// Inserts a size-1 dim at `dim` (which may equal the rank).
    pub fn unsqueeze(&self, dim: impl Dim) -> Result<Tensor> {
        let r = self.rank();
        let d = crate::shape::resolve_dim(dim.to_i64(), r + 1, self.shape(), "unsqueeze")?;
        let mut s = self.dims().to_vec();
        s.insert(d, 1);
        self.reshape(s)
    }

    /// Merges dims `start..=end` into one, as `torch.flatten`.
    pub fn flatten(&self, start: impl Dim, end: impl Dim) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape([1]);
        }
        let (s, e) = (start.resolve(self.shape(), "flatten")?, end.resolve(self.shape(), "flatten")?);
        if s > e {
            return Err(Error::invalid("flatten", format!("start dim {s} is after end dim {e}")));
        }
        let d = self.dims();
        let mut out = d[..s].to_vec();
        out.push(d[s..=e].iter().product());
        out.extend_from_slice(&d[e + 1..]);
        self.reshape(out)
    }

    /// A row-major copy, or the tensor itself if it already is row-major.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        Tensor::apply1(Op::Contiguous, &[self])
    }

    /// Pieces of `size` along `dim` (the last may be smaller), as `torch.split`.
    pub fn split(&self, size: usize, dim: impl Dim) -> Result<Vec<Tensor>> {
        let d = dim.resolve(self.shape(), "split")?;
        if size == 0 {
            return Err(Error::invalid("split", "split size must be positive"));
        }
        let n = self.dims()[d];
        if n == 0 {
            return Ok(vec![self.clone()]);
        }
        (0..n).step_by(size).map(|s| self.narrow(d, s, size.min(n - s))).collect()
    }

    /// Pieces of sizes `sizes` along `dim` (they must add up to the dim's size).
    pub fn split_sizes(&self, sizes: &[usize], dim: impl Dim) -> Result<Vec<Tensor>> {
        let d = dim.resolve(self.shape(), "split")?;
        if sizes.iter().sum::<usize>() != self.dims()[d] {
            return Err(Error::invalid(
                "split",
                format!("sizes {sizes:?} do not add up to dim {d} of shape {}", self.shape()),
            ));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&s| {
                let t = self.narrow(d, start, s);
                start += s;
                t
            })
            .collect()
    }

    /// Up to `chunks` pieces of equal size along `dim`, as `torch.chunk`.
    pub fn chunk(&self, chunks: usize, dim: impl Dim) -> Result<Vec<Tensor>> {
        let d = dim.resolve(self.shape(), "chunk")?;
        if chunks == 0 {
            return Err(Error::invalid("chunk", "number of chunks must be positive"));
        }
        let size = self.dims()[d].div_ceil(chunks).max(1);
        self.split(size, d)
    }
}
