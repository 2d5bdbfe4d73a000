//! [`Layout`]: how a tensor's logical elements map into its storage.

use crate::shape::DimVec;
use crate::{Error, Result, Shape};
use smallvec::SmallVec;

/// Shape, element strides and starting offset of a tensor view into storage.
/// Strides are non-negative; a stride of 0 repeats an element (broadcasting).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    shape: Shape,
    strides: DimVec,
    offset: usize,
    /// Cached [`Layout::is_contiguous`] and [`Layout::numel`]: every kernel
    /// asks, and small ops pay for each recomputation.
    contiguous: bool,
    numel: usize,
}

impl Clone for Layout {
    #[inline]
    fn clone(&self) -> Self {
        Layout {
            shape: self.shape.clone(),
            strides: crate::shape::dims_from_slice(&self.strides),
            offset: self.offset,
            contiguous: self.contiguous,
            numel: self.numel,
        }
    }
}

impl Layout {
    /// A row-major layout starting at offset 0.
    pub fn contiguous(shape: impl Into<Shape>) -> Self {
        let shape = shape.into();
        let strides = shape.contiguous_strides();
        let numel = shape.numel();
        Layout { shape, strides, offset: 0, contiguous: true, numel }
    }

    pub fn new(shape: Shape, strides: DimVec, offset: usize) -> Self {
        debug_assert_eq!(shape.rank(), strides.len());
        Self::make(shape, strides, offset)
    }

    /// The one general constructor: an empty view addresses no element, so it
    /// gets offset 0 (no kernel ever indexes past the end of an empty buffer),
    /// and contiguity is computed once here.
    fn make(shape: Shape, strides: DimVec, offset: usize) -> Self {
        let offset = if shape.dims().contains(&0) { 0 } else { offset };
        let contiguous = compute_contiguous(shape.dims(), &strides);
        let numel = shape.numel();
        Layout { shape, strides, offset, contiguous, numel }
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn offset(&self) -> usize {
        self.offset
    }
    #[inline]
    pub fn numel(&self) -> usize {
        self.numel
    }

    /// True when elements are laid out row-major with no gaps (size-1 dims may
    /// have any stride).
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        self.contiguous
    }

    /// The storage range `[offset, offset + numel)` when the layout is contiguous.
    #[inline]
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        if self.numel == 0 {
            Some(0..0)
        } else if self.contiguous {
            Some(self.offset..self.offset + self.numel)
        } else {
            None
        }
    }

    /// One past the largest storage index this layout can touch (0 if empty).
    pub fn storage_extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset + self.shape.dims().iter().zip(self.strides.iter()).map(|(&d, &s)| (d - 1) * s).sum::<usize>() + 1
    }

    /// A view with a new shape of the same element count, without copying, when
    /// the strides allow it (PyTorch's `view` rule); `None` when a copy is needed.
    pub fn reshape(&self, shape: &Shape) -> Option<Layout> {
        if self.is_contiguous() {
            return Some(Self::make(shape.clone(), shape.contiguous_strides(), self.offset));
        }
        if self.numel() == 0 {
            return Some(Self::make(shape.clone(), shape.contiguous_strides(), 0));
        }
        // Group old dims into contiguous chunks and map new dims onto them
        // (ATen's computeStride).
        let old_d = self.shape.dims();
        let old_s = &self.strides;
        let new_d = shape.dims();
        let mut new_s: DimVec = SmallVec::from_elem(0, new_d.len());
        let mut view_d = new_d.len() as isize - 1;
        let mut chunk_base_stride = *old_s.last().unwrap_or(&1);
        let mut tensor_numel = 1usize;
        let mut view_numel = 1usize;
        for tensor_d in (0..old_d.len()).rev() {
            tensor_numel *= old_d[tensor_d];
            let end_of_chunk =
                tensor_d == 0 || (old_d[tensor_d - 1] != 1 && old_s[tensor_d - 1] != tensor_numel * chunk_base_stride);
            if end_of_chunk {
                while view_d >= 0 && (view_numel < tensor_numel || new_d[view_d as usize] == 1) {
                    new_s[view_d as usize] = view_numel * chunk_base_stride;
                    view_numel *= new_d[view_d as usize];
                    view_d -= 1;
                }
                if view_numel != tensor_numel {
                    return None;
                }
                if tensor_d > 0 {
                    chunk_base_stride = old_s[tensor_d - 1];
                    tensor_numel = 1;
                    view_numel = 1;
                }
            }
        }
        if view_d != -1 {
            return None;
        }
        Some(Self::make(shape.clone(), new_s, self.offset))
    }

    /// Reorders dims: dim `i` of the result is dim `perm[i]` of `self`.
    pub fn permute(&self, perm: &[usize]) -> Layout {
        let dims: DimVec = perm.iter().map(|&p| self.shape.dims()[p]).collect();
        let strides: DimVec = perm.iter().map(|&p| self.strides[p]).collect();
        Self::make(Shape::from(dims), strides, self.offset)
    }

    /// Broadcasts to `shape` (which may add leading dims) using zero strides.
    pub fn broadcast_to(&self, shape: &Shape, op: &'static str) -> Result<Layout> {
        let (r, nr) = (self.shape.rank(), shape.rank());
        if nr < r {
            return Err(Error::shape(op, &[&self.shape, shape], "target rank is smaller than the tensor's"));
        }
        let mut strides: DimVec = SmallVec::from_elem(0, nr);
        for i in 0..r {
            let (d, s) = (self.shape.dims()[i], self.strides[i]);
            let t = shape.dims()[nr - r + i];
            strides[nr - r + i] = if d == t {
                s
            } else if d == 1 {
                0
            } else {
                return Err(Error::shape(
                    op,
                    &[&self.shape, shape],
                    format!("dim {i} of size {d} cannot expand to {t} (only size-1 dims expand)"),
                ));
            };
        }
        Ok(Self::make(shape.clone(), strides, self.offset))
    }

    /// The elements `start, start + step, ...` below `end` along `dim`.
    /// Arguments must already be validated (`start <= end <= size`, `step >= 1`).
    pub fn slice(&self, dim: usize, start: usize, end: usize, step: usize) -> Layout {
        let mut shape = self.shape.clone();
        let len = if end > start { (end - start).div_ceil(step) } else { 0 };
        shape.dims_mut()[dim] = len;
        let mut strides = self.strides.clone();
        let offset = self.offset + start * self.strides[dim];
        strides[dim] *= step;
        Self::make(shape, strides, offset)
    }
}

/// Row-major with no gaps; size-1 dims may have any stride.
fn compute_contiguous(dims: &[usize], strides: &[usize]) -> bool {
    let mut expected = 1;
    for (&d, &s) in dims.iter().zip(strides).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected *= d;
    }
    true
}
