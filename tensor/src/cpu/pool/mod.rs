//! max / avg / adaptive-avg 2-d pooling over NCHW planes.

#[cfg(target_arch = "x86_64")]
mod avx512;

use super::simd::vectorized;
use super::strided::contiguous;
use super::team;
use super::threads::worth_parallel;
use super::CpuStorage;
use crate::dtype::{Float, FloatDType};
use crate::op::{AvgPool2dParams, MaxPool2dParams};
use crate::{Error, ErrorKind, Layout, Result, Shape};
use std::mem::MaybeUninit;
use std::ops::Range;

/// Runs `f(in_plane, out_plane, idx_plane)` over the N*C planes.
/// Planes per parallel task: about 16K input elements, so that a task's
/// claim is amortized over small planes.
fn planes_per_task(in_sz: usize) -> usize {
    (16_384 / in_sz).max(1)
}

fn planes<T: Sync, U: Send>(
    x: &[T],
    in_sz: usize,
    out: &mut [U],
    out_sz: usize,
    f: impl Fn(&[T], &mut [U]) + Sync + Send,
) {
    if in_sz == 0 || out_sz == 0 {
        return;
    }
    let per = planes_per_task(in_sz);
    team::chunks_mut(worth_parallel(x.len()), out, per * out_sz, |t, o| {
        for (j, o) in o.chunks_mut(out_sz).enumerate() {
            f(&x[(t * per + j) * in_sz..][..in_sz], o)
        }
    });
}

/// Sum of `src[rows, cols]` in a row-major plane of width `w`, in the accumulator type.
fn window_sum<T: FloatDType>(src: &[T], w: usize, rows: Range<usize>, cols: Range<usize>) -> T::Acc {
    let mut sum = <T::Acc as Float>::ZERO;
    for iy in rows {
        for v in &src[iy * w + cols.start..iy * w + cols.end] {
            sum += v.to_acc();
        }
    }
    sum
}

fn dims4(s: &Shape) -> [usize; 4] {
    let d = s.dims();
    [d[0], d[1], d[2], d[3]]
}

/// Max pooling values and the i64 index of each maximum in its input plane.
pub(crate) fn max_pool2d_with_indices(
    s: &CpuStorage,
    l: &Layout,
    p: &MaxPool2dParams,
    out: &Shape,
) -> Result<(CpuStorage, CpuStorage)> {
    let (values, indices) = max_pool2d::<true>(s, l, p, out)?;
    Ok((values, CpuStorage::I64(indices)))
}

/// Max pooling values alone.
pub(crate) fn max_pool2d_values(s: &CpuStorage, l: &Layout, p: &MaxPool2dParams, out: &Shape) -> Result<CpuStorage> {
    Ok(max_pool2d::<false>(s, l, p, out)?.0)
}

/// Max pooling values, and with `IDX` the indices (empty without).
fn max_pool2d<const IDX: bool>(
    s: &CpuStorage,
    l: &Layout,
    p: &MaxPool2dParams,
    out: &Shape,
) -> Result<(CpuStorage, Vec<i64>)> {
    fn go<T: FloatDType, const IDX: bool>(v: &[T], l: &Layout, p: &MaxPool2dParams, out: &Shape) -> (Vec<T>, Vec<i64>) {
        let [_, _, h, w] = dims4(l.shape());
        let [_, _, oh, ow] = dims4(out);
        match l.contiguous_range() {
            Some(r) if h * w > 0 && out.numel() > 0 => max_pool_fast::<T, IDX>(&v[r], [h, w], [oh, ow], p),
            _ => max_pool_general(v, l, p, out),
        }
    }
    macro_rules! arm {
        ($var:ident, $v:expr) => {{
            let (vals, idx) = go::<_, IDX>($v, l, p, out);
            (CpuStorage::$var(vals), idx)
        }};
    }
    #[cfg(target_arch = "x86_64")]
    if let (CpuStorage::F32(v), false, Some(r)) = (s, IDX, l.contiguous_range()) {
        let ([_, _, h, w], [_, _, oh, ow]) = (dims4(l.shape()), dims4(out));
        let geometry = p.kernel == [2, 2] && p.stride == [2, 2] && p.dilation == [1, 1];
        if geometry && h * w > 0 && out.numel() > 0 && super::simd::level() == 4 {
            let vals = max_pool_2x2s2_f32(&v[r], [h, w], [oh, ow], p);
            return Ok((CpuStorage::F32(vals), Vec::new()));
        }
    }
    Ok(match s {
        CpuStorage::F32(v) => arm!(F32, v),
        CpuStorage::F64(v) => arm!(F64, v),
        CpuStorage::F16(v) => arm!(F16, v),
        CpuStorage::BF16(v) => arm!(BF16, v),
        other => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: "max_pool2d",
                dtype: other.dtype(),
                msg: "expected a floating-point tensor",
            }))
        }
    })
}

/// The reference kernel for any layout: per-tap bounds checks, NaN wins (the
/// first one), otherwise the first of equal maxima.
fn max_pool_general<T: FloatDType>(v: &[T], l: &Layout, p: &MaxPool2dParams, out: &Shape) -> (Vec<T>, Vec<i64>) {
    let x = contiguous(v, l);
    let [_, _, h, w] = dims4(l.shape());
    let [_, _, oh, ow] = dims4(out);
    // Values and indices are computed together: each plane entry is (value, index).
    let mut res = vec![(T::zero(), 0i64); out.numel()];
    planes(&x, h * w, &mut res, oh * ow, |src, dst| {
        for oy in 0..oh {
            for ox in 0..ow {
                let y0 = (oy * p.stride[0]) as isize - p.padding[0] as isize;
                let x0 = (ox * p.stride[1]) as isize - p.padding[1] as isize;
                let mut best = <T::Acc as Float>::NEG_INFINITY;
                let mut bi: i64 = -1;
                'win: for ki in 0..p.kernel[0] {
                    let iy = y0 + (ki * p.dilation[0]) as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kj in 0..p.kernel[1] {
                        let ix = x0 + (kj * p.dilation[1]) as isize;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        let i = iy as usize * w + ix as usize;
                        let val = src[i].to_acc();
                        if val > best || val.is_nan() || bi < 0 {
                            best = val;
                            bi = i as i64;
                            if val.is_nan() {
                                break 'win;
                            }
                        }
                    }
                }
                dst[oy * ow + ox] = (T::from_acc(best), bi.max(0));
            }
        }
    });
    res.into_iter().unzip()
}

/// The taps of one window along one axis that land inside the input: window
/// position `o` starts at input coordinate `start` (negative inside the
/// padding), and taps `lo..hi` (of `0..k`) are in `0..n`.
#[derive(Clone, Copy)]
struct Taps {
    start: isize,
    lo: usize,
    hi: usize,
}

impl Taps {
    /// One entry per output position along an axis of input size `n`.
    fn axis(outs: usize, n: usize, k: usize, stride: usize, pad: usize, dil: usize) -> Vec<Taps> {
        (0..outs)
            .map(|o| {
                let start = (o * stride) as isize - pad as isize;
                // First tap with start + t * dil >= 0, and one past the last with start + t * dil < n.
                let lo = if start >= 0 { 0 } else { start.unsigned_abs().div_ceil(dil) };
                let hi = if start >= n as isize { 0 } else { (n as isize - start).unsigned_abs().div_ceil(dil) };
                let hi = hi.min(k);
                Taps { start, lo: lo.min(hi), hi }
            })
            .collect()
    }

    /// Whether every tap of a `k`-tap window is inside the input.
    fn full(&self, k: usize) -> bool {
        self.lo == 0 && self.hi == k
    }

    /// The positions whose `k` taps are all inside: one run, since window
    /// starts increase (empty if there are none).
    fn inner(axis: &[Taps], k: usize) -> Range<usize> {
        let first = axis.iter().position(|t| t.full(k)).unwrap_or(0);
        let end = axis.iter().rposition(|t| t.full(k)).map_or(0, |i| i + 1);
        first..end.max(first)
    }
}

/// f32 values of 2x2 stride-2 windows on an AVX-512 CPU (the caller checks):
/// the rows and columns of windows all inside the input go through
/// [`avx512::max_row_2x2s2`], border windows (padding, ceil mode) one at a
/// time. The same results as [`max_pool_fast`].
#[cfg(target_arch = "x86_64")]
fn max_pool_2x2s2_f32(x: &[f32], [h, w]: [usize; 2], [oh, ow]: [usize; 2], p: &MaxPool2dParams) -> Vec<f32> {
    let rows = Taps::axis(oh, h, 2, 2, p.padding[0], 1);
    let cols = Taps::axis(ow, w, 2, 2, p.padding[1], 1);
    let inner = Taps::inner(&cols, 2);
    planes1(x, h * w, oh * ow, |src, dv| {
        for (vrow, ry) in dv.chunks_exact_mut(ow).zip(&rows) {
            let run = if ry.full(2) { inner.clone() } else { 0..0 };
            for c in (0..run.start).chain(run.end.max(run.start)..ow) {
                vrow[c].write(window_max(src, w, ry, &cols[c], [1, 1]).0);
            }
            if !run.is_empty() {
                // Both rows and every column of these windows are inside the plane.
                let base = ry.start as usize * w + cols[run.start].start as usize;
                // SAFETY: the caller checked that the CPU has AVX-512F.
                unsafe { avx512::max_row_2x2s2(&src[base..], &src[base + w..], &mut vrow[run]) };
            }
        }
    })
}

/// Keeps the running maximum: a NaN replaces any non-NaN (and then stays), a
/// value replaces a smaller one; ties keep the earlier tap.
/// Branch-free (random data would mispredict): with `best` not NaN, `v` is
/// taken unless `v <= best`, which is false for a NaN `v`.
#[inline(always)]
#[allow(clippy::eq_op, clippy::neg_cmp_op_on_partial_ord)] // `best == best` is the not-NaN test; `!(v <= best)` is true for a NaN `v`
fn take_max<A: Float>(best: &mut A, bi: &mut usize, v: A, i: usize) {
    let take = !(v <= *best) & (*best == *best);
    *best = if take { v } else { *best };
    *bi = if take { i } else { *bi };
}

/// Runs `f(in_plane, out_plane)` over the N*C planes, writing `out_sz`
/// elements per plane into uninitialized memory. `f` must write every element
/// of the output plane it is given.
fn planes1<T: Sync, U: Send>(
    x: &[T],
    in_sz: usize,
    out_sz: usize,
    f: impl Fn(&[T], &mut [MaybeUninit<U>]) + Sync + Send,
) -> Vec<U> {
    let n = x.len() / in_sz * out_sz;
    let mut a = super::arena::with_capacity(n);
    let da = &mut a.spare_capacity_mut()[..n];
    planes(x, in_sz, da, out_sz, f);
    // SAFETY: the `n / out_sz` output planes pair up with the `x.len() / in_sz`
    // input planes (the same count), so they cover `0..n`, and `f` writes every
    // element of the plane it is given.
    unsafe { a.set_len(n) };
    a
}

/// Runs `f(in_plane, value_plane, index_plane)` over the N*C planes: with
/// `IDX` as [`planes2`], without it as [`planes1`] with an empty index plane
/// (and an empty index vector returned).
fn planes_max<T: Sync, U: Send, const IDX: bool>(
    x: &[T],
    in_sz: usize,
    out_sz: usize,
    f: impl Fn(&[T], &mut [MaybeUninit<U>], &mut [MaybeUninit<i64>]) + Sync + Send,
) -> (Vec<U>, Vec<i64>) {
    if IDX {
        planes2(x, in_sz, out_sz, f)
    } else {
        (planes1(x, in_sz, out_sz, |src, dv| f(src, dv, &mut [])), Vec::new())
    }
}

/// Row `r` of an index plane of width `ow`, or an empty row without `IDX`.
#[inline(always)]
fn index_row<const IDX: bool>(di: &mut [MaybeUninit<i64>], r: usize, ow: usize) -> &mut [MaybeUninit<i64>] {
    if IDX {
        &mut di[r * ow..][..ow]
    } else {
        &mut []
    }
}

/// Runs `f(in_plane, out_plane, idx_plane)` over the N*C planes, writing two
/// outputs of `out_sz` elements per plane into uninitialized memory.
/// `f` must write every element of both output planes.
fn planes2<T: Sync, U: Send, V: Send>(
    x: &[T],
    in_sz: usize,
    out_sz: usize,
    f: impl Fn(&[T], &mut [MaybeUninit<U>], &mut [MaybeUninit<V>]) + Sync + Send,
) -> (Vec<U>, Vec<V>) {
    let n = x.len() / in_sz * out_sz;
    let (mut a, mut b) = (super::arena::with_capacity(n), super::arena::with_capacity(n));
    let (da, db) = (&mut a.spare_capacity_mut()[..n], &mut b.spare_capacity_mut()[..n]);
    let per = planes_per_task(in_sz);
    team::chunks_mut2(worth_parallel(x.len()), da, per * out_sz, db, per * out_sz, |t, a, b| {
        for (j, (a, b)) in a.chunks_exact_mut(out_sz).zip(b.chunks_exact_mut(out_sz)).enumerate() {
            f(&x[(t * per + j) * in_sz..][..in_sz], a, b)
        }
    });
    // SAFETY: the `n / out_sz` output planes pair up with the `x.len() / in_sz`
    // input planes (the same count), so they cover `0..n`, and `f` writes every
    // element of the planes it is given.
    unsafe {
        a.set_len(n);
        b.set_len(n);
    }
    (a, b)
}

/// Max pooling of a contiguous NCHW input with non-empty planes and output:
/// the same results as [`max_pool_general`], written straight into the two
/// outputs, with the taps outside the input skipped per row and column
/// instead of per tap. Square 2x2 and 3x3 kernels with stride 1 or 2 (no
/// dilation) take a vectorized path over blocks of [`block`] windows.
/// Without `IDX` only the values are computed (the index vector is empty).
fn max_pool_fast<T: FloatDType, const IDX: bool>(
    x: &[T],
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    p: &MaxPool2dParams,
) -> (Vec<T>, Vec<i64>) {
    let (k, s, d) = (p.kernel, p.stride, p.dilation);
    let rows = Taps::axis(oh, h, k[0], s[0], p.padding[0], d[0]);
    let cols = Taps::axis(ow, w, k[1], s[1], p.padding[1], d[1]);
    let inner = Taps::inner(&cols, k[1]);
    let (rows, cols, inner) = (&rows, &cols, &inner);
    macro_rules! fixed {
        ($k:literal, $s:literal) => {
            planes_max::<_, _, IDX>(x, h * w, oh * ow, |src, dv, di| {
                vectorized(
                    #[inline(always)]
                    || max_plane_fixed::<T, $k, $s, IDX>(src, w, rows, cols, inner.clone(), dv, di),
                )
            })
        };
    }
    match (k, s[0] == s[1], s[1], d) {
        ([2, 2], true, 2, [1, 1]) => fixed!(2, 2),
        ([3, 3], true, 2, [1, 1]) => fixed!(3, 2),
        ([3, 3], true, 1, [1, 1]) => fixed!(3, 1),
        ([2, 2], true, 1, [1, 1]) => fixed!(2, 1),
        _ => planes_max::<_, _, IDX>(x, h * w, oh * ow, |src, dv, di| {
            max_plane_any::<T, IDX>(src, w, rows, cols, d, dv, di)
        }),
    }
}

/// Any window geometry, one window at a time.
fn max_plane_any<T: FloatDType, const IDX: bool>(
    src: &[T],
    w: usize,
    rows: &[Taps],
    cols: &[Taps],
    dil: [usize; 2],
    dv: &mut [MaybeUninit<T>],
    di: &mut [MaybeUninit<i64>],
) {
    let ow = cols.len();
    for (r, (vrow, ry)) in dv.chunks_exact_mut(ow).zip(rows).enumerate() {
        let irow = index_row::<IDX>(di, r, ow);
        for (c, (v, cx)) in vrow.iter_mut().zip(cols).enumerate() {
            let (best, bi) = window_max(src, w, ry, cx, dil);
            v.write(T::from_acc(best));
            if IDX {
                irow[c].write(bi as i64);
            }
        }
    }
}

/// Windows per block of the vectorized loop: a multiple of its vector width,
/// plus one where the compiler keeps a scalar last iteration (stride 2 with
/// overlapping windows reads an incomplete interleave group).
const fn block(k: usize, s: usize) -> usize {
    if s == 1 || k == s {
        8
    } else {
        9
    }
}

/// KxK windows with stride S (both axes) and no dilation. In rows whose taps
/// are all inside, the run of `inner` columns (all taps inside) goes through
/// one loop over constant tap offsets, which vectorizes across windows;
/// everything else one window at a time. Indices are written only with `IDX`.
#[inline(always)]
fn max_plane_fixed<T: FloatDType, const K: usize, const S: usize, const IDX: bool>(
    src: &[T],
    w: usize,
    rows: &[Taps],
    cols: &[Taps],
    inner: Range<usize>,
    dv: &mut [MaybeUninit<T>],
    di: &mut [MaybeUninit<i64>],
) {
    let ow = cols.len();
    // Window `c` of the row into `vrow[c]` (and `irow[c]`).
    let one = |vrow: &mut [MaybeUninit<T>], irow: &mut [MaybeUninit<i64>], c: usize, ry: &Taps| {
        let (best, bi) = window_max(src, w, ry, &cols[c], [1, 1]);
        vrow[c].write(T::from_acc(best));
        if IDX {
            irow[c].write(bi as i64);
        }
    };
    for (r, (vrow, ry)) in dv.chunks_exact_mut(ow).zip(rows).enumerate() {
        let irow = index_row::<IDX>(di, r, ow);
        if !ry.full(K) || inner.is_empty() {
            for c in 0..ow {
                one(vrow, irow, c, ry);
            }
            continue;
        }
        let (c0, c1) = (inner.start, inner.end);
        for c in (0..c0).chain(c1..ow) {
            one(vrow, irow, c, ry);
        }
        let vr = &mut vrow[c0..c1];
        let ir = if IDX { &mut irow[c0..c1] } else { &mut [] };
        // All taps inside: the first window starts at row ry.start >= 0, column cols[c0].start >= 0.
        let base = ry.start as usize * w + cols[c0].start as usize;
        // The vectorized loop leaves `len % VF` windows to a scalar tail, which
        // would dominate short rows: run a multiple of `b` windows, then
        // the last `b` windows again (rewriting a few with the same values).
        let (n, b) = (vr.len(), block(K, S));
        let full = if n >= b { n / b * b } else { n };
        let head = if IDX { &mut ir[..full] } else { &mut [] };
        let mut ok = max_run::<T, K, S, IDX>(src, w, base, &mut vr[..full], head);
        if ok && full < n {
            // Opaque, so the compiler keeps the loop instead of unrolling it (scalar).
            let c = n - std::hint::black_box(b);
            let tail = if IDX { &mut ir[c..] } else { &mut [] };
            ok = max_run::<T, K, S, IDX>(src, w, base + c * S, &mut vr[c..], tail);
        }
        if !ok {
            // Unreachable (the windows are inside the plane); kept so every output is written.
            for c in c0..c1 {
                one(vrow, irow, c, ry);
            }
        }
    }
}

/// `dv.len()` neighbouring KxK windows, stride S; the first starts at `base`.
/// Same tap order and tie rule as the general kernel; with `IDX` the index
/// of each maximum goes to `di` (as long as `dv`), without it `di` is unused.
/// Writes nothing and returns false unless every tap is inside `src` (and,
/// with `IDX`, `di` is as long as `dv`).
#[inline(always)]
fn max_run<T: FloatDType, const K: usize, const S: usize, const IDX: bool>(
    src: &[T],
    w: usize,
    base: usize,
    dv: &mut [MaybeUninit<T>],
    di: &mut [MaybeUninit<i64>],
) -> bool {
    let n = dv.len();
    if IDX && di.len() != n {
        return false;
    }
    if n == 0 {
        return true;
    }
    // The last tap of the last window.
    let last = (K - 1)
        .checked_mul(w + 1)
        .and_then(|t| t.checked_add(base))
        .and_then(|t| t.checked_add((n - 1).checked_mul(S)?));
    if last.is_none_or(|l| l >= src.len()) {
        return false;
    }
    for (j, v) in dv.iter_mut().enumerate() {
        let o = base + j * S;
        // SAFETY: with j < n, ki < K and kj < K, o + ki * w + kj <= `last`,
        // which is in bounds (checked above). Unchecked reads let the loop
        // vectorize (a bounds check is an early exit).
        let at = |ki: usize, kj: usize| unsafe { src.get_unchecked(o + ki * w + kj) }.to_acc();
        let (mut best, mut bi) = (at(0, 0), o);
        for ki in 0..K {
            for kj in 0..K {
                if ki + kj > 0 {
                    take_max(&mut best, &mut bi, at(ki, kj), o + ki * w + kj);
                }
            }
        }
        v.write(T::from_acc(best));
        if IDX {
            // SAFETY: j < n == di.len() (checked above).
            unsafe { di.get_unchecked_mut(j) }.write(bi as i64);
        }
    }
    true
}

/// The maximum over the in-bounds taps of one window and its index (`-inf`
/// at index 0 when no tap is inside, as the general kernel gives).
#[inline(always)]
fn window_max<T: FloatDType>(src: &[T], w: usize, ry: &Taps, cx: &Taps, dil: [usize; 2]) -> (T::Acc, usize) {
    if ry.lo >= ry.hi || cx.lo >= cx.hi {
        return (<T::Acc as Float>::NEG_INFINITY, 0);
    }
    // lo..hi keeps start + t * dil inside the plane.
    let at = |ki: usize, kj: usize| {
        (ry.start + (ki * dil[0]) as isize) as usize * w + (cx.start + (kj * dil[1]) as isize) as usize
    };
    let i0 = at(ry.lo, cx.lo);
    // Starting from the first tap; seeing it again below changes nothing.
    let (mut best, mut bi) = (src[i0].to_acc(), i0);
    for ki in ry.lo..ry.hi {
        for kj in cx.lo..cx.hi {
            let i = at(ki, kj);
            take_max(&mut best, &mut bi, src[i].to_acc(), i);
        }
    }
    (best, bi)
}

pub(crate) fn avg_pool2d(s: &CpuStorage, l: &Layout, p: &AvgPool2dParams, out: &Shape) -> Result<CpuStorage> {
    fn go<T: FloatDType>(v: &[T], l: &Layout, p: &AvgPool2dParams, out: &Shape) -> Vec<T> {
        let [_, _, h, w] = dims4(l.shape());
        let [_, _, oh, ow] = dims4(out);
        match l.contiguous_range() {
            Some(r) if h * w > 0 && out.numel() > 0 => avg_pool_fast(&v[r], [h, w], [oh, ow], p),
            _ => avg_pool_general(v, l, p, out),
        }
    }
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(go(v, l, p, out)),
        CpuStorage::F64(v) => CpuStorage::F64(go(v, l, p, out)),
        CpuStorage::F16(v) => CpuStorage::F16(go(v, l, p, out)),
        CpuStorage::BF16(v) => CpuStorage::BF16(go(v, l, p, out)),
        other => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: "avg_pool2d",
                dtype: other.dtype(),
                msg: "expected a floating-point tensor",
            }))
        }
    })
}

/// The reference kernel for any layout.
fn avg_pool_general<T: FloatDType>(v: &[T], l: &Layout, p: &AvgPool2dParams, out: &Shape) -> Vec<T> {
    let x = contiguous(v, l);
    let [_, _, h, w] = dims4(l.shape());
    let [_, _, oh, ow] = dims4(out);
    let mut res = super::arena::filled(out.numel(), T::zero());
    planes(&x, h * w, &mut res, oh * ow, |src, dst| {
        for oy in 0..oh {
            for ox in 0..ow {
                // PyTorch: the divisor counts padding up to the padded border only.
                let ys = (oy * p.stride[0]) as isize - p.padding[0] as isize;
                let xs = (ox * p.stride[1]) as isize - p.padding[1] as isize;
                let ye = (ys + p.kernel[0] as isize).min((h + p.padding[0]) as isize);
                let xe = (xs + p.kernel[1] as isize).min((w + p.padding[1]) as isize);
                let pool = ((ye - ys) * (xe - xs)) as usize;
                let (ys, xs) = (ys.max(0) as usize, xs.max(0) as usize);
                let (ye, xe) = ((ye as usize).min(h), (xe as usize).min(w));
                if ys >= ye || xs >= xe {
                    dst[oy * ow + ox] = T::zero();
                    continue;
                }
                let sum = window_sum(src, w, ys..ye, xs..xe);
                let div = if p.count_include_pad { pool } else { (ye - ys) * (xe - xs) };
                dst[oy * ow + ox] = T::from_acc(sum / <T::Acc as Float>::from_usize(div));
            }
        }
    });
    res
}

/// One axis of an average-pooling window: the in-bounds input range and the
/// extent counted by `count_include_pad` (clipped at the padded border).
#[derive(Clone, Copy)]
struct AvgSpan {
    start: usize,
    end: usize,
    padded: usize,
}

impl AvgSpan {
    fn axis(outs: usize, n: usize, k: usize, stride: usize, pad: usize) -> Vec<AvgSpan> {
        (0..outs)
            .map(|o| {
                let s = (o * stride) as isize - pad as isize;
                let e = (s + k as isize).min((n + pad) as isize);
                AvgSpan { start: s.max(0) as usize, end: (e.max(0) as usize).min(n), padded: (e - s) as usize }
            })
            .collect()
    }
}

/// Average pooling of a contiguous NCHW input with non-empty planes and
/// output: the same sums (same order) and divisors as [`avg_pool_general`],
/// with the window bounds computed once per row and column.
fn avg_pool_fast<T: FloatDType>(x: &[T], [h, w]: [usize; 2], [oh, ow]: [usize; 2], p: &AvgPool2dParams) -> Vec<T> {
    let rows = AvgSpan::axis(oh, h, p.kernel[0], p.stride[0], p.padding[0]);
    let cols = AvgSpan::axis(ow, w, p.kernel[1], p.stride[1], p.padding[1]);
    let (rows, cols) = (&rows, &cols);
    planes1(x, h * w, oh * ow, |src, dv| {
        for (vrow, ry) in dv.chunks_exact_mut(ow).zip(rows) {
            for (v, cx) in vrow.iter_mut().zip(cols) {
                if ry.start >= ry.end || cx.start >= cx.end {
                    v.write(T::zero());
                    continue;
                }
                let sum = window_sum(src, w, ry.start..ry.end, cx.start..cx.end);
                let div =
                    if p.count_include_pad { ry.padded * cx.padded } else { (ry.end - ry.start) * (cx.end - cx.start) };
                v.write(T::from_acc(sum / <T::Acc as Float>::from_usize(div)));
            }
        }
    })
}

pub(crate) fn adaptive_avg_pool2d(s: &CpuStorage, l: &Layout, out: &Shape) -> Result<CpuStorage> {
    fn go<T: FloatDType>(v: &[T], l: &Layout, out: &Shape) -> Vec<T> {
        let x = contiguous(v, l);
        let [_, _, h, w] = dims4(l.shape());
        let [_, _, oh, ow] = dims4(out);
        let mut res = super::arena::filled(out.numel(), T::zero());
        planes(&x, h * w, &mut res, oh * ow, |src, dst| {
            for oy in 0..oh {
                let (ys, ye) = (oy * h / oh, ((oy + 1) * h).div_ceil(oh));
                for ox in 0..ow {
                    let (xs, xe) = (ox * w / ow, ((ox + 1) * w).div_ceil(ow));
                    let sum = window_sum(src, w, ys..ye, xs..xe);
                    dst[oy * ow + ox] = T::from_acc(sum / <T::Acc as Float>::from_usize((ye - ys) * (xe - xs)));
                }
            }
        });
        res
    }
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(go(v, l, out)),
        CpuStorage::F64(v) => CpuStorage::F64(go(v, l, out)),
        CpuStorage::F16(v) => CpuStorage::F16(go(v, l, out)),
        CpuStorage::BF16(v) => CpuStorage::BF16(go(v, l, out)),
        other => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: "adaptive_avg_pool2d",
                dtype: other.dtype(),
                msg: "expected a floating-point tensor",
            }))
        }
    })
}
