//! Walking strided (possibly broadcast) views in row-major order, and the
//! element-wise map helpers every CPU kernel builds on.

use super::simd::vectorized;
use super::threads::{worth_parallel, worth_parallel_heavy};
use crate::shape::DimVec;
use crate::Layout;
use std::borrow::Cow;
use std::mem::MaybeUninit;

/// A walk over `N` layouts of one logical shape, with adjacent dims merged
/// wherever every layout allows it (so `[N,C,H,W] + [1,C,1,1]` walks three dims).
pub(crate) struct Walk<const N: usize> {
    dims: DimVec,
    strides: [DimVec; N],
    base: [usize; N],
}

impl<const N: usize> Walk<N> {
    pub(crate) fn new(layouts: [&Layout; N]) -> Self {
        let shape = layouts[0].dims();
        let mut dims = DimVec::new();
        let mut strides: [DimVec; N] = std::array::from_fn(|_| DimVec::new());
        for d in (0..shape.len()).rev() {
            let size = shape[d];
            if size == 1 {
                continue;
            }
            let mergeable = !dims.is_empty() && (0..N).all(|k| layouts[k].strides()[d] == strides[k][0] * dims[0]);
            if mergeable {
                dims[0] *= size;
            } else {
                dims.insert(0, size);
                for k in 0..N {
                    strides[k].insert(0, layouts[k].strides()[d]);
                }
            }
        }
        let base = std::array::from_fn(|k| layouts[k].offset());
        Walk { dims, strides, base }
    }

    /// Strides of the innermost merged dim, one per layout.
    pub(crate) fn inner_strides(&self) -> [usize; N] {
        std::array::from_fn(|k| self.strides[k].last().copied().unwrap_or(1))
    }

    // Indexing by `k` walks several parallel arrays (offsets and per-layout strides).
    #[allow(clippy::needless_range_loop)]
    /// Calls `f(position, offsets, len)` for every run along the innermost dim
    /// covering logical positions `[start, end)`. Always inlined, so that `f`
    /// is compiled inside the callers' [`vectorized`] functions.
    #[inline(always)]
    pub(crate) fn runs(&self, start: usize, end: usize, mut f: impl FnMut(usize, [usize; N], usize)) {
        if start >= end {
            return;
        }
        let rank = self.dims.len();
        if rank == 0 {
            f(start, self.base, 1);
            return;
        }
        let last = rank - 1;
        let inner = self.dims[last];
        let mut idx: DimVec = smallvec::smallvec![0; rank];
        let mut rem = start;
        for d in (0..rank).rev() {
            idx[d] = rem % self.dims[d];
            rem /= self.dims[d];
        }
        let mut offs = self.base;
        for k in 0..N {
            for d in 0..rank {
                offs[k] += idx[d] * self.strides[k][d];
            }
        }
        let mut pos = start;
        while pos < end {
            let len = (inner - idx[last]).min(end - pos);
            f(pos, offs, len);
            pos += len;
            idx[last] += len;
            for k in 0..N {
                offs[k] += len * self.strides[k][last];
            }
            if idx[last] == inner && pos < end {
                for k in 0..N {
                    offs[k] -= inner * self.strides[k][last];
                }
                idx[last] = 0;
                let mut d = last;
                while d > 0 {
                    d -= 1;
                    idx[d] += 1;
                    for k in 0..N {
                        offs[k] += self.strides[k][d];
                    }
                    if idx[d] < self.dims[d] {
                        break;
                    }
                    for k in 0..N {
                        offs[k] -= self.dims[d] * self.strides[k][d];
                    }
                    idx[d] = 0;
                }
            }
        }
    }
}

/// Elements per parallel task: at most 16K (64 KiB of f32, a few
/// microseconds of work), and small enough that every thread gets about four
/// tasks (a 32K-element add splits into 4K-element pieces).
fn chunk_len(n: usize) -> usize {
    (n / (4 * super::threads::num_threads())).clamp(1 << 12, 1 << 14)
}

/// A vector of `n` elements produced by `fill(chunk, start)` over chunks of
/// uninitialized memory, in parallel when `n` is large (no zero-fill pass).
/// `fill` must write every element of its chunk.
fn collect_chunks<U: Send>(n: usize, fill: impl Fn(&mut [MaybeUninit<U>], usize) + Sync) -> Vec<U> {
    collect_chunks_if(worth_parallel(n), n, fill)
}

/// [`collect_chunks`], in parallel when `par`.
fn collect_chunks_if<U: Send>(par: bool, n: usize, fill: impl Fn(&mut [MaybeUninit<U>], usize) + Sync) -> Vec<U> {
    let mut out = super::arena::with_capacity(n);
    let buf = &mut out.spare_capacity_mut()[..n];
    if par {
        let chunk = chunk_len(n);
        super::team::chunks_mut(true, buf, chunk, |i, c| fill(c, i * chunk));
    } else {
        fill(buf, 0);
    }
    // SAFETY: every caller's `fill` writes each element of the chunk it is given,
    // and the chunks cover `0..n`.
    unsafe { out.set_len(n) };
    out
}

/// `dst[i] = f(src[i])`. A function of its own, called inside the
/// vectorized closure: its `&mut`/`&` parameters tell the compiler that the
/// output cannot alias the input or the constants `f` captured. Written as a
/// loop in the closure itself, those references were captures, which carry
/// no such guarantee: every constant was reloaded per element and the loop
/// stayed scalar (ReLU ran 4x slower than a plain loop).
#[inline(always)]
fn fill1<T: Copy, U, F: Fn(T) -> U>(dst: &mut [MaybeUninit<U>], src: &[T], f: &F) {
    for (d, &x) in dst.iter_mut().zip(src) {
        d.write(f(x));
    }
}

/// `dst[i] = f(a[i], b[i])`; see [`fill1`].
#[inline(always)]
fn fill2<T: Copy, U, F: Fn(T, T) -> U>(dst: &mut [MaybeUninit<U>], a: &[T], b: &[T], f: &F) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        d.write(f(x, y));
    }
}

/// `f` applied to every element of a strided view, row-major.
pub(crate) fn map1<T, U, F>(src: &[T], l: &Layout, f: F) -> Vec<U>
where
    T: Copy + Sync,
    U: Copy + Send + Sync + Default,
    F: Fn(T) -> U + Sync,
{
    map1_costed(src, l, f, false)
}

/// [`map1`] for a function of tens of instructions per element (`heavy`:
/// an exponential, a logarithm, `tanh`), which splits across threads from
/// [`worth_parallel_heavy`]'s smaller size on.
pub(crate) fn map1_costed<T, U, F>(src: &[T], l: &Layout, f: F, heavy: bool) -> Vec<U>
where
    T: Copy + Sync,
    U: Copy + Send + Sync + Default,
    F: Fn(T) -> U + Sync,
{
    let n = l.numel();
    let par = if heavy { worth_parallel_heavy(n) } else { worth_parallel(n) };
    if let Some(r) = l.contiguous_range() {
        let s = &src[r];
        if par {
            // Chunks with plain inner loops: a per-element iterator collect would not vectorize.
            return collect_chunks_if(true, n, |chunk, start| {
                let src = &s[start..start + chunk.len()];
                vectorized(|| fill1(chunk, src, &f))
            });
        }
        return collect_chunks_if(false, n, |chunk, _| vectorized(|| fill1(chunk, s, &f)));
    }
    let walk = Walk::new([l]);
    // Strided walks run vectorized too: element functions such as `exp_f32`
    // use `mul_add`, a libm call outside an FMA function (exp of a
    // transposed view ran 60x slower than of a contiguous one, in a one-off
    // timing loop).
    collect_chunks_if(par, n, |chunk, start| {
        vectorized(
            #[inline(always)]
            || strided1(&walk, chunk, start, src, &f),
        )
    })
}

/// One chunk of [`map1`]'s strided case: the runs of `walk` from `start`.
#[inline(always)]
fn strided1<T: Copy, U, F: Fn(T) -> U>(walk: &Walk<1>, chunk: &mut [MaybeUninit<U>], start: usize, src: &[T], f: &F) {
    let [st] = walk.inner_strides();
    walk.runs(start, start + chunk.len(), |pos, [o], len| {
        let dst = &mut chunk[pos - start..pos - start + len];
        for (i, d) in dst.iter_mut().enumerate() {
            d.write(f(src[o + i * st]));
        }
    })
}

/// `f` applied pairwise; both layouts must already have the output's shape
/// (broadcast with zero strides).
pub(crate) fn map2<T, U, F>(a: &[T], la: &Layout, b: &[T], lb: &Layout, f: F) -> Vec<U>
where
    T: Copy + Sync,
    U: Copy + Send + Sync + Default,
    F: Fn(T, T) -> U + Sync,
{
    let n = la.numel();
    if let (Some(ra), Some(rb)) = (la.contiguous_range(), lb.contiguous_range()) {
        let (a, b) = (&a[ra], &b[rb]);
        if worth_parallel(n) {
            return collect_chunks(n, |chunk, start| {
                let end = start + chunk.len();
                vectorized(|| fill2(chunk, &a[start..end], &b[start..end], &f))
            });
        }
        return collect_chunks(n, |chunk, _| vectorized(|| fill2(chunk, a, b, &f)));
    }
    let walk = Walk::new([la, lb]);
    collect_chunks(n, |chunk, start| {
        vectorized(
            #[inline(always)]
            || strided2(&walk, chunk, start, a, b, &f),
        )
    })
}

/// One chunk of [`map2`]'s strided case: the runs of `walk` from `start`.
#[inline(always)]
fn strided2<T: Copy, U, F: Fn(T, T) -> U>(
    walk: &Walk<2>,
    chunk: &mut [MaybeUninit<U>],
    start: usize,
    a: &[T],
    b: &[T],
    f: &F,
) {
    let [sa, sb] = walk.inner_strides();
    walk.runs(start, start + chunk.len(), |pos, [oa, ob], len| {
        let dst = &mut chunk[pos - start..pos - start + len];
        match (sa, sb) {
            (1, 1) => {
                for ((d, &x), &y) in dst.iter_mut().zip(&a[oa..oa + len]).zip(&b[ob..ob + len]) {
                    d.write(f(x, y));
                }
            }
            (1, 0) => {
                let y = b[ob];
                for (d, &x) in dst.iter_mut().zip(&a[oa..oa + len]) {
                    d.write(f(x, y));
                }
            }
            (0, 1) => {
                let x = a[oa];
                for (d, &y) in dst.iter_mut().zip(&b[ob..ob + len]) {
                    d.write(f(x, y));
                }
            }
            _ => {
                for (i, d) in dst.iter_mut().enumerate() {
                    d.write(f(a[oa + i * sa], b[ob + i * sb]));
                }
            }
        }
    })
}

/// Three-input map (for `where`); layouts must already have the output's shape.
pub(crate) fn map3<A, T, U, F>(a: &[A], la: &Layout, b: &[T], lb: &Layout, c: &[T], lc: &Layout, f: F) -> Vec<U>
where
    A: Copy + Sync,
    T: Copy + Sync,
    U: Copy + Send + Sync + Default,
    F: Fn(A, T, T) -> U + Sync,
{
    let walk = Walk::new([la, lb, lc]);
    let [sa, sb, sc] = walk.inner_strides();
    collect_chunks(la.numel(), |chunk, start| {
        walk.runs(start, start + chunk.len(), |pos, [oa, ob, oc], len| {
            for (i, d) in chunk[pos - start..pos - start + len].iter_mut().enumerate() {
                d.write(f(a[oa + i * sa], b[ob + i * sb], c[oc + i * sc]));
            }
        })
    })
}

/// A row-major copy of a strided view.
pub(crate) fn copy_strided<T: Copy + Send + Sync + Default>(src: &[T], l: &Layout) -> Vec<T> {
    map1(src, l, |x| x)
}

/// The view's elements row-major: borrowed when already contiguous, else copied.
pub(crate) fn contiguous<'a, T: Copy + Send + Sync + Default>(src: &'a [T], l: &Layout) -> Cow<'a, [T]> {
    match l.contiguous_range() {
        Some(r) => Cow::Borrowed(&src[r]),
        None => Cow::Owned(copy_strided(src, l)),
    }
}
