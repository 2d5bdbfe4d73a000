//! Reductions (sum, mean, max, min, prod, logsumexp, var, argmax/argmin) and
//! softmax / log-softmax. Reduced dims are moved last so every reduction works
//! on contiguous rows.

use super::simd::vectorized;
use super::storage::with_storage;
use super::strided::contiguous;
use super::team;
use super::threads::{worth_parallel, worth_parallel_heavy};
use super::CpuStorage;
use crate::dtype::{Float, FloatDType};
use crate::op::ReduceOp;
use crate::{Error, ErrorKind, Layout, Result, WithDType};
use std::borrow::Cow;

/// The input as `rows x rlen` row-major data, reduced dims last.
fn rows_of<'a, T: WithDType>(v: &'a [T], l: &Layout, dims: &[usize]) -> (Cow<'a, [T]>, usize, usize) {
    let rank = l.shape().rank();
    let mut perm: Vec<usize> = (0..rank).filter(|d| !dims.contains(d)).collect();
    perm.extend_from_slice(dims);
    let rlen: usize = dims.iter().map(|&d| l.dims()[d]).product();
    let rows: usize = (0..rank).filter(|d| !dims.contains(d)).map(|d| l.dims()[d]).product();
    (contiguous(v, &l.permute(&perm)), rows, rlen)
}

/// Maps every row to one value, in parallel when there is enough work.
fn per_row<T: Sync, U: Send>(data: &[T], rows: usize, rlen: usize, f: impl Fn(&[T]) -> U + Sync + Send) -> Vec<U> {
    if rlen == 0 {
        return (0..rows).map(|_| f(&[])).collect();
    }
    if rows > 1 && worth_parallel(rows * rlen) {
        // Tasks of whole rows, about 16K elements each: a claim per short row
        // would cost more than the row.
        let per_task = (16_384 / rlen).max(1);
        let mut out: Vec<U> = super::arena::with_capacity(rows);
        team::chunks_mut(true, &mut out.spare_capacity_mut()[..rows], per_task, |t, slots| {
            for (j, slot) in slots.iter_mut().enumerate() {
                slot.write(f(&data[(t * per_task + j) * rlen..][..rlen]));
            }
        });
        // SAFETY: the tasks' slots tile `0..rows` and each was written.
        unsafe { out.set_len(rows) };
        out
    } else {
        let mut out = super::arena::with_capacity(rows);
        out.extend(data.chunks(rlen).map(f));
        out
    }
}

/// Folds rows with an associative `fold`/`combine`; long rows are split into
/// blocks reduced in parallel (a full sum over 1M elements uses every thread).
fn fold_rows<T: Sync, A: Send + Copy>(
    data: &[T],
    rows: usize,
    rlen: usize,
    fold: impl Fn(&[T]) -> A + Sync + Send,
    combine: impl Fn(A, A) -> A + Sync + Send,
) -> Vec<A> {
    const BLOCK: usize = 1 << 15;
    if rows < crate::cpu::num_threads() && rlen >= 2 * BLOCK {
        return data
            .chunks(rlen)
            .map(|row| {
                let parts = team::map(true, row.len().div_ceil(BLOCK), |i| {
                    fold(&row[i * BLOCK..((i + 1) * BLOCK).min(row.len())])
                });
                parts.into_iter().reduce(&combine).expect("row is non-empty")
            })
            .collect();
    }
    per_row(data, rows, rlen, fold)
}

/// Sum in the accumulator type with 64 independent lanes: several vector
/// accumulators hide the add latency, and the blocked order is more accurate
/// than a sequential sum.
#[inline(always)]
fn sum_acc<T: FloatDType>(x: &[T]) -> T::Acc {
    const LANES: usize = 64;
    let mut acc = [<T::Acc as Float>::ZERO; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] += c[i].to_acc();
        }
    }
    let mut tail = <T::Acc as Float>::ZERO;
    for &v in chunks.remainder() {
        tail += v.to_acc();
    }
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] += acc[i + w];
        }
    }
    acc[0] + tail
}

#[inline]
fn is_nan<T: PartialEq>(x: T) -> bool {
    #[allow(clippy::eq_op)]
    {
        x != x
    }
}

/// Max (or min) propagating NaN, as PyTorch.
fn extremum<T: WithDType>(x: &[T], max: bool) -> T {
    let mut best = x[0];
    for &v in &x[1..] {
        if is_nan(best) {
            break;
        }
        if is_nan(v) || (max && v > best) || (!max && v < best) {
            best = v;
        }
    }
    best
}

/// Max (or min) of a float row in the accumulator type, propagating NaN as
/// PyTorch. The branchy scalar loop of [`extremum`] ran at several cycles per
/// element; this one keeps 64 lanes that ignore NaN plus 16 lanes summing
/// `v * 0`, which is 0 unless `v` is NaN or infinite, and rescans the row
/// exactly only when that sum says a NaN may be present.
#[inline(always)]
fn extremum_float<T: FloatDType>(x: &[T], max: bool) -> T::Acc {
    let pick = move |a: T::Acc, b: T::Acc| if (max && b > a) || (!max && b < a) { b } else { a };
    let zero = <T::Acc as Float>::ZERO;
    let init = if max { <T::Acc as Float>::NEG_INFINITY } else { <T::Acc as Float>::INFINITY };
    // Separate arrays updated by plain loops: one 64-element array was kept
    // in memory, and `array::from_fn` was not inlined.
    let (mut a0, mut a1, mut a2, mut a3) = ([init; 16], [init; 16], [init; 16], [init; 16]);
    let mut special = [zero; 16];
    let mut chunks = x.chunks_exact(64);
    for c in &mut chunks {
        let (c0, c1, c2, c3) = (&c[..16], &c[16..32], &c[32..48], &c[48..]);
        for i in 0..16 {
            a0[i] = pick(a0[i], c0[i].to_acc());
            a1[i] = pick(a1[i], c1[i].to_acc());
            a2[i] = pick(a2[i], c2[i].to_acc());
            a3[i] = pick(a3[i], c3[i].to_acc());
            special[i] += (c0[i].to_acc() + c1[i].to_acc() + c2[i].to_acc() + c3[i].to_acc()) * zero;
        }
    }
    let tail = chunks.remainder();
    let mut m = tail.iter().fold(init, |a, v| pick(a, v.to_acc()));
    for i in 0..16 {
        m = pick(m, pick(pick(a0[i], a1[i]), pick(a2[i], a3[i])));
    }
    let maybe_nan = special.into_iter().any(|v| v != zero) || tail.iter().any(|v| v.to_acc().is_nan());
    if maybe_nan {
        if let Some(nan) = x.iter().find(|v| v.to_acc().is_nan()) {
            return nan.to_acc();
        }
    }
    m
}

/// The sum over `dims` of a contiguous input whose last dims are reduced
/// along with some leading ones (a bias gradient: `[N, C, H, W]` over 0, 2
/// and 3): each trailing run is summed where it lies, then the small array
/// of partial sums is reduced over the rest. Moving the reduced dims last
/// instead would first copy the whole input transposed. `None` when the
/// layout is not of that form.
fn sum_split<T: FloatDType>(v: &[T], l: &Layout, dims: &[usize]) -> Option<Vec<T::Acc>>
where
    T::Acc: FloatDType<Acc = T::Acc>,
{
    let r = l.contiguous_range()?;
    let d = l.dims();
    let mut k = d.len();
    while k > 0 && dims.contains(&(k - 1)) {
        k -= 1;
    }
    let inner: usize = d[k..].iter().product();
    // Nothing reduced before the trailing run (rows_of needs no copy then), or runs too short to matter.
    if dims.len() == d.len() - k || inner < 16 {
        return None;
    }
    let x = &v[r];
    let partial: Vec<T::Acc> = per_row(x, x.len() / inner, inner, |row| vectorized(|| sum_acc(row)));
    let rest: Vec<usize> = dims.iter().copied().filter(|&dd| dd < k).collect();
    let (data, rows, rlen) = rows_of(&partial, &Layout::contiguous(&d[..k]), &rest);
    Some(fold_rows(&data, rows, rlen, |x| vectorized(|| sum_acc::<T::Acc>(x)), |a, b| a + b))
}

fn reduce_float<T: FloatDType>(op: ReduceOp, v: &[T], l: &Layout, dims: &[usize]) -> Vec<T>
where
    T::Acc: FloatDType<Acc = T::Acc>,
{
    let to = |a: T::Acc| T::from_acc(a);
    if matches!(op, ReduceOp::Sum | ReduceOp::Mean) {
        if let Some(sums) = sum_split(v, l, dims) {
            let n: usize = dims.iter().map(|&dd| l.dims()[dd]).product();
            let n = <T::Acc as Float>::from_usize(n);
            let mean = op == ReduceOp::Mean;
            return sums.into_iter().map(|s| to(if mean { s / n } else { s })).collect();
        }
    }
    let (data, rows, rlen) = rows_of(v, l, dims);
    match op {
        ReduceOp::Sum => {
            fold_rows(&data, rows, rlen, |x| vectorized(|| sum_acc(x)), |a, b| a + b).into_iter().map(to).collect()
        }
        ReduceOp::Mean => {
            let n = <T::Acc as Float>::from_usize(rlen);
            fold_rows(&data, rows, rlen, |x| vectorized(|| sum_acc(x)), |a, b| a + b)
                .into_iter()
                .map(|s| to(s / n))
                .collect()
        }
        ReduceOp::Prod => fold_rows(
            &data,
            rows,
            rlen,
            |x: &[T]| x.iter().fold(<T::Acc as Float>::ONE, |p, &v| p * v.to_acc()),
            |a, b| a * b,
        )
        .into_iter()
        .map(to)
        .collect(),
        ReduceOp::Max | ReduceOp::Min => {
            let max = op == ReduceOp::Max;
            let row = |x: &[T]| {
                to(vectorized(
                    #[inline(always)]
                    || extremum_float(x, max),
                ))
            };
            fold_rows(&data, rows, rlen, row, |a, b| extremum(&[a, b], max))
        }
        ReduceOp::LogSumExp => per_row(&data, rows, rlen, |x: &[T]| {
            if x.is_empty() {
                return to(<T::Acc as Float>::NEG_INFINITY);
            }
            vectorized(
                #[inline(always)]
                || {
                    let m = extremum_float(x, true);
                    if m.is_nan() || m == <T::Acc as Float>::INFINITY || m == <T::Acc as Float>::NEG_INFINITY {
                        return to(m);
                    }
                    to(m + exp_sum(x, m).ln())
                },
            )
        }),
    }
}

fn reduce_int<T: WithDType>(op: ReduceOp, v: &[T], l: &Layout, dims: &[usize]) -> Result<CpuStorage> {
    let (data, rows, rlen) = rows_of(v, l, dims);
    Ok(match op {
        ReduceOp::Sum => CpuStorage::I64(fold_rows(
            &data,
            rows,
            rlen,
            |x: &[T]| x.iter().fold(0i64, |s, &v| s.wrapping_add(v.to_i64())),
            i64::wrapping_add,
        )),
        ReduceOp::Prod => CpuStorage::I64(per_row(&data, rows, rlen, |x: &[T]| {
            x.iter().fold(1i64, |s, &v| s.wrapping_mul(v.to_i64()))
        })),
        ReduceOp::Max | ReduceOp::Min => {
            let max = op == ReduceOp::Max;
            T::into_storage(per_row(&data, rows, rlen, |x: &[T]| extremum(x, max)))
        }
        ReduceOp::Mean | ReduceOp::LogSumExp => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: op.name(),
                dtype: T::DTYPE,
                msg: "expected a floating-point tensor",
            }))
        }
    })
}

pub(crate) fn reduce(op: ReduceOp, s: &CpuStorage, l: &Layout, dims: &[usize]) -> Result<CpuStorage> {
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(reduce_float(op, v, l, dims)),
        CpuStorage::F64(v) => CpuStorage::F64(reduce_float(op, v, l, dims)),
        CpuStorage::F16(v) => CpuStorage::F16(reduce_float(op, v, l, dims)),
        CpuStorage::BF16(v) => CpuStorage::BF16(reduce_float(op, v, l, dims)),
        CpuStorage::I64(v) => reduce_int(op, v, l, dims)?,
        CpuStorage::I32(v) => reduce_int(op, v, l, dims)?,
        CpuStorage::U8(v) => reduce_int(op, v, l, dims)?,
        CpuStorage::Bool(v) => reduce_int(op, v, l, dims)?,
    })
}

/// Variance with Bessel-style `correction`, two-pass in f64 for accuracy.
pub(crate) fn var(s: &CpuStorage, l: &Layout, dims: &[usize], correction: usize) -> Result<CpuStorage> {
    fn go<T: FloatDType>(v: &[T], l: &Layout, dims: &[usize], correction: usize) -> Vec<T> {
        let (data, rows, rlen) = rows_of(v, l, dims);
        per_row(&data, rows, rlen, |x: &[T]| {
            let n = x.len() as f64;
            let mean = x.iter().map(|v| v.to_f64()).sum::<f64>() / n;
            let ss: f64 = x.iter().map(|v| (v.to_f64() - mean).powi(2)).sum();
            let denom = (x.len() as f64 - correction as f64).max(0.0);
            T::from_f64(ss / denom)
        })
    }
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(go(v, l, dims, correction)),
        CpuStorage::F64(v) => CpuStorage::F64(go(v, l, dims, correction)),
        CpuStorage::F16(v) => CpuStorage::F16(go(v, l, dims, correction)),
        CpuStorage::BF16(v) => CpuStorage::BF16(go(v, l, dims, correction)),
        other => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: "var",
                dtype: other.dtype(),
                msg: "expected a floating-point tensor",
            }))
        }
    })
}

/// Index of the first maximum (or minimum) along `dim`; NaN wins, as PyTorch.
pub(crate) fn arg_extremum(s: &CpuStorage, l: &Layout, dim: usize, max: bool) -> Result<CpuStorage> {
    fn go<T: WithDType>(v: &[T], l: &Layout, dim: usize, max: bool) -> Vec<i64> {
        let (data, rows, rlen) = rows_of(v, l, &[dim]);
        per_row(&data, rows, rlen, |x: &[T]| {
            let (mut bi, mut best) = (0usize, x[0]);
            for (i, &v) in x.iter().enumerate().skip(1) {
                if is_nan(best) {
                    break;
                }
                if is_nan(v) || (max && v > best) || (!max && v < best) {
                    bi = i;
                    best = v;
                }
            }
            bi as i64
        })
    }
    Ok(CpuStorage::I64(with_storage!(s, v => go(v, l, dim, max))))
}

/// Softmax rows are padded with `-inf` to a multiple of this many elements,
/// so the exponential pass runs whole vectors with no scalar remainder (the
/// padding's exponentials are 0 and it is never copied out).
const SOFTMAX_PAD: usize = 64;

/// Lanes of the exponential passes: the exponential's own instructions give
/// each vector enough independent work, so one accumulator does not wait on
/// the add, and fewer live registers leave room for its constants.
const EXP_LANES: usize = 16;

/// Replaces each `t` by `exp(t - m)` and returns their sum; `x.len()` is a
/// multiple of [`EXP_LANES`] (a padded softmax row).
#[inline(always)]
fn exp_in_place_sum<A: Float>(x: &mut [A], m: A) -> A {
    let mut acc = [A::ZERO; EXP_LANES];
    for c in x.chunks_exact_mut(EXP_LANES) {
        for i in 0..EXP_LANES {
            let e = (c[i] - m).exp();
            c[i] = e;
            acc[i] += e;
        }
    }
    acc.into_iter().fold(A::ZERO, |a, v| a + v)
}

/// The sum of `exp(t - m)` (what log-softmax and logsumexp need).
#[inline(always)]
fn exp_sum<T: FloatDType>(x: &[T], m: T::Acc) -> T::Acc {
    let mut acc = [<T::Acc as Float>::ZERO; EXP_LANES];
    let mut chunks = x.chunks_exact(EXP_LANES);
    for c in &mut chunks {
        for i in 0..EXP_LANES {
            acc[i] += (c[i].to_acc() - m).exp();
        }
    }
    let tail = chunks.remainder().iter().fold(<T::Acc as Float>::ZERO, |a, v| a + (v.to_acc() - m).exp());
    acc.into_iter().fold(tail, |a, v| a + v)
}

/// Softmax (or log-softmax) in place over one row of `len` elements held in
/// the accumulator type and padded with `-inf` to a multiple of [`SOFTMAX_PAD`].
#[inline(always)]
fn softmax_row<A: FloatDType<Acc = A> + Float>(row: &mut [A], len: usize, log: bool) {
    // A NaN max makes every output NaN, as PyTorch gives. The max skips the
    // padding: its infinities would send the NaN screen to its exact rescan.
    let mut m = extremum_float(&row[..len], true);
    if m == A::NEG_INFINITY {
        m = A::ZERO; // all -inf: exp gives 0s, then NaN as PyTorch
    }
    if log {
        let shift = m + exp_sum(row, m).ln();
        row.iter_mut().for_each(|t| *t = *t - shift);
    } else {
        let inv = A::ONE / exp_in_place_sum(row, m);
        row.iter_mut().for_each(|t| *t = *t * inv);
    }
}

/// Softmax (or log-softmax) over `d` of consecutive `[d, inner]` blocks of
/// `src`, written to `dst` (same length, every element written). `tmp` holds
/// one row in the accumulator type: gathered from a strided dim or widened
/// from f16/bf16, and reused across rows.
#[inline(always)]
fn softmax_blocks<T: FloatDType>(
    src: &[T],
    dst: &mut [std::mem::MaybeUninit<T>],
    d: usize,
    inner: usize,
    log: bool,
    tmp: &mut Vec<T::Acc>,
) where
    T::Acc: FloatDType<Acc = T::Acc>,
{
    tmp.resize(d.div_ceil(SOFTMAX_PAD) * SOFTMAX_PAD, <T::Acc as Float>::NEG_INFINITY);
    for (src, dst) in src.chunks_exact(d * inner).zip(dst.chunks_exact_mut(d * inner)) {
        for i in 0..inner {
            // Iterators, not indexing: bounds checks would stop vectorization
            // (and a softmax over the last dim reads plain rows).
            if inner == 1 {
                tmp.iter_mut().zip(src).for_each(|(t, s)| *t = s.to_acc());
            } else {
                tmp.iter_mut().zip(src.iter().skip(i).step_by(inner)).for_each(|(t, s)| *t = s.to_acc());
            }
            // The previous row's pass overwrote the padding.
            tmp[d..].fill(<T::Acc as Float>::NEG_INFINITY);
            softmax_row(tmp, d, log);
            // (The copies out stop at `d`: `zip` ends with `dst`'s row.)
            if inner == 1 {
                dst.iter_mut().zip(tmp.iter()).for_each(|(d, t)| {
                    d.write(T::from_acc(*t));
                });
            } else {
                dst.iter_mut().skip(i).step_by(inner).zip(tmp.iter()).for_each(|(d, t)| {
                    d.write(T::from_acc(*t));
                });
            }
        }
    }
}

/// Softmax or log-softmax along `dim`, subtracting the max for stability.
pub(crate) fn softmax(s: &CpuStorage, l: &Layout, dim: usize, log: bool) -> Result<CpuStorage> {
    fn go<T: FloatDType>(v: &[T], l: &Layout, dim: usize, log: bool) -> Vec<T>
    where
        T::Acc: FloatDType<Acc = T::Acc>,
    {
        let data = contiguous(v, l);
        let dims = l.dims();
        let d = dims[dim];
        let inner: usize = dims[dim + 1..].iter().product();
        let block = d * inner;
        let n = data.len();
        let mut out: Vec<T> = super::arena::with_capacity(n);
        if block == 0 {
            return out;
        }
        let dst = &mut out.spare_capacity_mut()[..n];
        // The row loop is a function of its own and the closure is forced
        // inline: a closure this large was not inlined into `vectorized`'s
        // AVX-512 function and ran with 4 SSE lanes (2.3x slower).
        let run = |src: &[T], dst: &mut [std::mem::MaybeUninit<T>], tmp: &mut Vec<T::Acc>| {
            vectorized(
                #[inline(always)]
                || softmax_blocks(src, dst, d, inner, log, tmp),
            )
        };
        if worth_parallel_heavy(n) && n > block {
            // Tasks of whole blocks, about 16K elements each, so a task's
            // scratch row and dispatch are amortized over several rows.
            let per_task = block * (16_384 / block).max(1);
            team::chunks_mut_init(true, dst, per_task, Vec::new, |tmp, t, dst| {
                run(&data[t * per_task..][..dst.len()], dst, tmp)
            });
        } else {
            run(&data, dst, &mut Vec::new());
        }
        // SAFETY: `softmax_blocks` wrote every element of `dst`, the first `n`
        // slots of the capacity: the blocks tile `data` (n is a multiple of
        // `block`) and within a block each of the `inner` strided rows writes
        // its `d` elements.
        unsafe { out.set_len(n) };
        out
    }
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(go(v, l, dim, log)),
        CpuStorage::F64(v) => CpuStorage::F64(go(v, l, dim, log)),
        CpuStorage::F16(v) => CpuStorage::F16(go(v, l, dim, log)),
        CpuStorage::BF16(v) => CpuStorage::BF16(go(v, l, dim, log)),
        other => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op: "softmax",
                dtype: other.dtype(),
                msg: "expected a floating-point tensor",
            }))
        }
    })
}
