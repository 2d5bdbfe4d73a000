//! AVX-512 f32 products with few output columns or few rows, as dot
//! products: `c = a @ b` where `b` is `k x n` with unit row stride (a linear
//! layer's transposed `[n, k]` weight) and `a` has unit column stride, and
//! either `n <= 16` (a classifier head's 10 classes) or `m <= 8` with
//! `n >= 48` (a linear layer at batch 1 to 8, as a served model sees).
//!
//! The `gemm` crate packs such products into 16 x 6 register blocks, two
//! column blocks for 10 columns, and reached about 75 GFLOP/s on the seed
//! model's `[64, 2250] x [2250, 10]` (12% of its batch-64 static run). Here
//! two rows of `a` and up to 12 columns of `b` stream through 16-lane FMAs
//! along `k` into 24 accumulators, reduced once at the end: each loaded
//! vector of `a` feeds up to 12 FMAs, each of `b` two.
//!
//! With few rows the crate's kernels fare worse: for `[m, 784] x [784, 512]`
//! with the weight transposed, a one-off loop (2 threads) measured 23 µs at
//! `m = 1`, 119 µs at 2, 53 µs at 4 and 62 µs at 8 (24, 16 and 31 µs for the
//! last three with a contiguous weight). There the threads split the columns
//! instead of the rows, and each reads its share of the weight once per row
//! pair.

use super::DstRef;
use crate::cpu::matmul::MatRef;
use crate::cpu::team;
use std::arch::x86_64::*;

/// Columns per register block, at most (2 rows x 12 = 24 accumulators).
const NB: usize = 12;

/// Rows up to which a product with at least [`FEW_ROWS_MIN_COLS`] columns
/// runs here.
const FEW_ROWS: usize = 8;

/// Columns a few-row product needs to give each of two threads two column
/// blocks (see [`applies`]).
const FEW_ROWS_MIN_COLS: usize = 4 * NB;

/// Whether [`dots`] serves a product of these sizes and strides with
/// `threads` kernel threads. A single row runs here only on several threads:
/// on one, the crate's vector-matrix kernel was as fast at `[1, 784] x
/// [784, 512]` (18 µs each) and faster at `[1, 400] x [400, 120]` (1.5 µs
/// against 2.3; one-off loops). Few rows need enough columns to share
/// out: a LeNet-5 training step, whose first convolution's weight gradient
/// is a `[6, 50176] x [50176, 25]` product (three column blocks for two
/// threads), took 1-3% longer with it here.
pub(super) fn applies(a: MatRef<f32>, b: MatRef<f32>, (m, n, k): (usize, usize, usize), threads: usize) -> bool {
    let few_rows = m <= FEW_ROWS && n >= FEW_ROWS_MIN_COLS && (m > 1 || parallel(threads, (m, n, k)));
    (n <= 16 || few_rows) && k >= 64 && a.cs == 1 && b.rs == 1 && crate::cpu::simd::level() == 4
}

/// Whether [`dots`] should use the kernel team: from about 64k
/// multiply-adds, a few microseconds of work. Lower than the `gemm` crate's
/// threshold because a small-batch product is bound by reading the weight,
/// which two threads do twice as fast.
pub(super) fn parallel(threads: usize, (m, n, k): (usize, usize, usize)) -> bool {
    threads > 1 && m * n * k >= 1 << 16
}

/// `c = a @ b`, or `c += a @ b` with `accumulate`, rows split across the
/// kernel team when `parallel`.
///
/// # Safety
/// [`applies`] must hold and `m`, `n`, `k` be nonzero; `a`, `b` and `c`
/// must address in-bounds elements for every index the sizes and strides
/// give; `c` must not alias `a` or `b`, distinct `(i, j)` must address
/// distinct elements of `c`, and with `accumulate` `c` must be initialized.
pub(super) unsafe fn dots(
    c: DstRef,
    a: MatRef<f32>,
    b: MatRef<f32>,
    (m, n, k): (usize, usize, usize),
    parallel: bool,
    accumulate: bool,
) {
    let product = super::Product { c, a, b, accumulate };
    let pairs = m.div_ceil(2);
    if n <= 16 && pairs > 1 {
        // Row pairs, in at most 16 tasks (the team balances them).
        let tasks = if parallel { pairs.min(16) } else { 1 };
        team::for_each(parallel, tasks, |t| {
            let (lo, hi) = (t * pairs / tasks * 2, ((t + 1) * pairs / tasks * 2).min(m));
            let p = &product;
            // SAFETY: rows lo..hi of the caller's product (disjoint across
            // tasks), on a CPU with AVX-512F (`applies`).
            unsafe { tile(p, lo..hi, 0..n, k) }
        });
    } else {
        // Few rows: column blocks of about NB, in at most 16 tasks.
        let blocks = n.div_ceil(NB);
        let tasks = if parallel { blocks.min(16) } else { 1 };
        team::for_each(parallel, tasks, |t| {
            let (lo, hi) = (t * n / tasks, (t + 1) * n / tasks);
            let p = &product;
            // SAFETY: columns lo..hi of the caller's product (disjoint across
            // tasks), on a CPU with AVX-512F (`applies`).
            unsafe { tile(p, 0..m, lo..hi, k) }
        });
    }
}

/// Rows `range` by columns `cols` of the product, in near-equal column blocks.
///
/// # Safety
/// As [`dots`], for these rows and columns.
#[target_feature(enable = "avx512f")]
unsafe fn tile(p: &super::Product, range: std::ops::Range<usize>, cols: std::ops::Range<usize>, k: usize) {
    let n = cols.len();
    let blocks = n.div_ceil(NB);
    let mut j0 = cols.start;
    for blk in 0..blocks {
        let w = (cols.end - j0) / (blocks - blk);
        let mut i = range.start;
        while i < range.end {
            let r = (range.end - i).min(2);
            macro_rules! go {
                ($($nn:literal)*) => {
                    match (w, r) {
                        $(
                            // SAFETY: rows i..i + r and columns j0..j0 + w are inside the product.
                            ($nn, 2) => unsafe { block::<$nn, 2>(p, i, j0, k) },
                            ($nn, _) => unsafe { block::<$nn, 1>(p, i, j0, k) },
                        )*
                        _ => unreachable!("blocks have 1 to {NB} columns"),
                    }
                };
            }
            go!(1 2 3 4 5 6 7 8 9 10 11 12);
            i += r;
        }
        j0 += w;
    }
}

/// Lanes `0..n` (n <= 16) of a mask.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        !0
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// `R` rows from `i` by `N` columns from `j0` of the product.
///
/// # Safety
/// As [`rows`], for these rows and columns.
#[target_feature(enable = "avx512f")]
unsafe fn block<const N: usize, const R: usize>(p: &super::Product, i: usize, j0: usize, k: usize) {
    let (a, b) = (p.a, p.b);
    // 16 lanes of k from `at` (the first `m` of them), by value: LLVM kept a
    // mutated accumulator array partly on the stack.
    let step = |mut acc: [[__m512; N]; R], at: usize, m: __mmask16| {
        // SAFETY: lanes below `m`'s count (at most k - at) of row i + r of `a`
        // and column j0 + j of `b` from index `at` are in bounds (unit strides
        // along k); masked-off lanes are not read.
        let xs: [__m512; R] =
            std::array::from_fn(|r| unsafe { _mm512_maskz_loadu_ps(m, a.ptr.add((i + r) * a.rs + at)) });
        for j in 0..N {
            // SAFETY: as above.
            let w = unsafe { _mm512_maskz_loadu_ps(m, b.ptr.add((j0 + j) * b.cs + at)) };
            for (row, x) in acc.iter_mut().zip(&xs) {
                row[j] = _mm512_fmadd_ps(*x, w, row[j]);
            }
        }
        acc
    };
    let mut acc = [[_mm512_setzero_ps(); N]; R];
    let full = k / 16 * 16;
    for at in (0..full).step_by(16) {
        acc = step(acc, at, !0);
    }
    if full < k {
        acc = step(acc, full, lanes(k - full));
    }
    for (r, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            let s = _mm512_reduce_add_ps(*v);
            // SAFETY: (i + r, j0 + j) is an element of `c` that this task alone writes.
            unsafe {
                let d = p.c.ptr.add((i + r) * p.c.rs + (j0 + j) * p.c.cs);
                *d = if p.accumulate { *d + s } else { s };
            }
        }
    }
}
