//! Shapes, dim arguments (with negative indexing) and broadcasting.

use crate::{Error, ErrorKind, Result};
use smallvec::SmallVec;
use std::fmt;

/// Inline storage for dims: tensors of rank <= 4 never allocate for their shape
/// (a larger inline size makes every layout copy on the per-op path dearer).
pub type DimVec = SmallVec<[usize; 4]>;

/// The extent of each dimension of a tensor, outermost first.
#[derive(Eq, Default)]
pub struct Shape(DimVec);

impl std::hash::Hash for Shape {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_slice().hash(state)
    }
}

// Shapes are compared on every op; the derived comparison calls `memcmp`,
// which costs more than the handful of dims being compared.
impl PartialEq for Shape {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(other.0.iter()).all(|(a, b)| a == b)
    }
}

// SmallVec's derived clone extends element by element; shapes are cloned on
// every op, so copy the inline array instead.
impl Clone for Shape {
    #[inline]
    fn clone(&self) -> Self {
        Shape(dims_from_slice(&self.0))
    }
}

/// A [`DimVec`] holding `d`: ranks up to the inline size copy a fixed-size
/// array (no `memcpy` call, no branch per element).
#[inline]
pub(crate) fn dims_from_slice(d: &[usize]) -> DimVec {
    const INLINE: usize = 4;
    if d.len() <= INLINE {
        let buf: [usize; INLINE] = std::array::from_fn(|i| if i < d.len() { d[i] } else { 0 });
        SmallVec::from_buf_and_len(buf, d.len())
    } else {
        SmallVec::from_slice(d)
    }
}

impl Shape {
    pub fn new(dims: &[usize]) -> Self {
        Shape(SmallVec::from_slice(dims))
    }
    /// The 0-d (scalar) shape.
    pub fn scalar() -> Self {
        Shape(SmallVec::new())
    }
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// Number of elements (1 for a 0-d shape); saturates at `usize::MAX`
    /// (such a shape can never be allocated; see [`Shape::checked_numel`]).
    pub fn numel(&self) -> usize {
        self.checked_numel().unwrap_or(usize::MAX)
    }

    /// Number of elements, or `None` if it overflows `usize`. A zero dim
    /// makes it 0 whatever the others multiply to.
    pub fn checked_numel(&self) -> Option<usize> {
        if self.0.contains(&0) {
            return Some(0);
        }
        self.0.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }
    /// Row-major (C-contiguous) strides of this shape.
    pub fn contiguous_strides(&self) -> DimVec {
        let d = self.dims();
        let n = d.len();
        if n <= 4 {
            // Every op output's layout is built here. Padding the dims with 1s
            // to rank 4 gives each stride as a product of scalars, written once
            // into the inline buffer (a loop through a stack array stalls on
            // store forwarding when the array is then copied).
            // Products only wrap when another dim is 0 (the tensor is empty and
            // no stride is ever used), hence the wrapping multiplies.
            let p = |i: usize| if i < n { d[i] } else { 1 };
            let (p1, p2, p3) = (p(1), p(2), p(3));
            let s1 = p2.wrapping_mul(p3);
            return SmallVec::from_buf_and_len([p1.wrapping_mul(s1), s1, p3, 1], n);
        }
        let mut strides = dims_from_slice(&self.0);
        let mut acc: usize = 1;
        for (s, &d) in strides.iter_mut().zip(self.0.iter()).rev() {
            *s = acc;
            acc = acc.wrapping_mul(d);
        }
        strides
    }
    pub(crate) fn dims_mut(&mut self) -> &mut DimVec {
        &mut self.0
    }
    /// The shape both operands broadcast to, following NumPy/PyTorch rules.
    pub fn broadcast_with(&self, other: &Shape, op: &'static str) -> Result<Shape> {
        if self == other {
            return Ok(self.clone());
        }
        let rank = self.rank().max(other.rank());
        let mut out: DimVec = SmallVec::from_elem(0, rank);
        for i in 0..rank {
            let a = dim_from_end(self, rank - 1 - i);
            let b = dim_from_end(other, rank - 1 - i);
            out[i] = match (a, b) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => {
                    return Err(Error::shape(
                        op,
                        &[self, other],
                        format!("cannot broadcast: dim {i} of the result has sizes {a} and {b}"),
                    ))
                }
            };
        }
        Ok(Shape(out))
    }
}

fn dim_from_end(s: &Shape, k: usize) -> usize {
    if k < s.rank() {
        s.0[s.rank() - 1 - k]
    } else {
        1
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.dims())
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape::new(d)
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape::new(&d)
    }
}
impl<const N: usize> From<&[usize; N]> for Shape {
    fn from(d: &[usize; N]) -> Self {
        Shape::new(d)
    }
}
impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Self {
        Shape(SmallVec::from_vec(d))
    }
}
impl From<&Vec<usize>> for Shape {
    fn from(d: &Vec<usize>) -> Self {
        Shape::new(d)
    }
}
impl From<DimVec> for Shape {
    fn from(d: DimVec) -> Self {
        Shape(d)
    }
}
impl From<()> for Shape {
    fn from(_: ()) -> Self {
        Shape::scalar()
    }
}
impl From<usize> for Shape {
    fn from(d: usize) -> Self {
        Shape::new(&[d])
    }
}
impl From<&Shape> for Shape {
    fn from(s: &Shape) -> Self {
        s.clone()
    }
}

/// A dimension argument; negative values count from the end, as in PyTorch.
pub trait Dim: Copy {
    fn to_i64(self) -> i64;
    /// Resolves against a rank, naming `op` and `shape` in the error.
    fn resolve(self, shape: &Shape, op: &'static str) -> Result<usize> {
        resolve_dim(self.to_i64(), shape.rank(), shape, op)
    }
}

pub(crate) fn resolve_dim(d: i64, rank: usize, shape: &Shape, op: &'static str) -> Result<usize> {
    let r = rank as i64;
    let idx = if d < 0 { d + r } else { d };
    if idx < 0 || idx >= r {
        return Err(Error::from(ErrorKind::DimOutOfRange { op, dim: d, rank, shape: shape.clone() }));
    }
    Ok(idx as usize)
}

macro_rules! impl_dim {
    ($($t:ty),*) => {$(
        impl Dim for $t {
            #[inline]
            fn to_i64(self) -> i64 { self as i64 }
        }
    )*};
}
impl_dim!(usize, isize, i32, i64, u32);

/// A list of dimensions (for reductions and permutes).
pub trait Dims {
    fn to_i64s(&self) -> SmallVec<[i64; 6]>;
    /// Resolves every dim; rejects duplicates.
    fn resolve(&self, shape: &Shape, op: &'static str) -> Result<DimVec> {
        let mut out = DimVec::new();
        for &d in self.to_i64s().iter() {
            let r = resolve_dim(d, shape.rank(), shape, op)?;
            if out.contains(&r) {
                return Err(Error::invalid(op, format!("dim {d} repeated in the dim list for shape {shape}")));
            }
            out.push(r);
        }
        Ok(out)
    }
}
impl<D: Dim> Dims for D {
    fn to_i64s(&self) -> SmallVec<[i64; 6]> {
        smallvec::smallvec![self.to_i64()]
    }
}
impl<D: Dim, const N: usize> Dims for [D; N] {
    fn to_i64s(&self) -> SmallVec<[i64; 6]> {
        self.iter().map(|d| d.to_i64()).collect()
    }
}
impl<D: Dim> Dims for &[D] {
    fn to_i64s(&self) -> SmallVec<[i64; 6]> {
        self.iter().map(|d| d.to_i64()).collect()
    }
}
impl<D: Dim> Dims for Vec<D> {
    fn to_i64s(&self) -> SmallVec<[i64; 6]> {
        self.iter().map(|d| d.to_i64()).collect()
    }
}
impl<D: Dim, const N: usize> Dims for &[D; N] {
    fn to_i64s(&self) -> SmallVec<[i64; 6]> {
        self.iter().map(|d| d.to_i64()).collect()
    }
}
