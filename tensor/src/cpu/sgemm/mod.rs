//! Oar's own f32 matrix product for CPUs with AVX2 + FMA and no AVX-512,
//! organised as in BLIS (Van Zee & van de Geijn, "BLIS: A Framework for
//! Rapidly Instantiating BLAS Functionality", 2015):
//!
//! - the right operand is packed `KC` rows × `NC` columns at a time into
//!   `NR`-column panels, the left operand `MC` × `KC` into `MR`-row panels,
//!   zero-padded to whole panels, so the micro-kernel reads both with unit
//!   stride whatever the operands' strides (a transposed weight costs only its
//!   packing);
//! - the micro-kernel keeps an `MR` × `NR` block of the result in registers
//!   for a whole `KC` slice.
//!
//! Why not the `gemm` crate here: on a 2-core AVX2 host it reached 52–60% of
//! the FMA peak at 1024³ (59 GFLOP/s on one thread, 102 on two, against about
//! 98 per core for a loop of independent FMAs; one-off timing loops), where
//! MKL reaches about 70%. In one bench sitting these kernels took 15.3 ms at
//! 1024³ against the crate's 19.6 ms and MKL's 17.4 ms.
//! AVX-512 CPUs keep the `gemm` crate's 16-lane kernels; this module has no
//! AVX-512 micro-kernel yet.
//!
//! Threads split the result into column (or row) strips; each packs its own
//! operands, so a product is one fork and one join.
//!
//! On AVX-512 CPUs, products with at most 16 columns or at most 8 rows whose
//! right operand is a transposed weight run as dot products instead ([`dots`]).

mod avx2;
#[cfg(target_arch = "x86_64")]
mod dots;

use super::matmul::{MatRef, Strips};
use super::team;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Rows of the register block (six broadcasts of the left operand).
const MR: usize = 6;
/// Columns of the register block (two 8-lane vectors).
const NR: usize = 16;
/// Depth of one packed slice: a 16 × 256 panel of the right operand (16 KiB)
/// stays in L1 while the left operand's panels stream past it.
const KC: usize = 256;
/// Rows of the left operand packed at once (144 KiB with `KC`: L2-resident).
const MC: usize = 144;
/// Columns of the right operand packed at once (4 MiB with `KC`).
const NC: usize = 4096;

/// Whether [`try_sgemm`] serves f32 products on this CPU: AVX2 + FMA without
/// AVX-512, unless `OAR_SGEMM=gemm` asks for the `gemm` crate (for A/B
/// comparisons).
pub(crate) fn available() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| super::simd::level() == 3 && std::env::var("OAR_SGEMM").map_or(true, |v| v.trim() != "gemm"))
}

/// A destination matrix: first element, row stride, column stride.
#[derive(Clone, Copy)]
pub(crate) struct DstRef {
    pub ptr: *mut f32,
    pub rs: usize,
    pub cs: usize,
}

/// Raw operands handed to the worker threads of one product.
#[derive(Clone, Copy)]
struct Product {
    c: DstRef,
    a: MatRef<f32>,
    b: MatRef<f32>,
    accumulate: bool,
}

// SAFETY: the pointers are only dereferenced inside `run`'s fork-join, for
// disjoint blocks of `c` and read-only elements of `a` and `b`, all of which
// the caller of `run` keeps alive and unaliased for its duration.
unsafe impl Send for Product {}
// SAFETY: as above.
unsafe impl Sync for Product {}

/// Whether a product of these sizes, with operands of these `(row, column)`
/// strides, runs as dot products ([`dots::applies`]) on `threads` threads.
pub(crate) fn runs_as_dots(a: (usize, usize), b: (usize, usize), mnk: (usize, usize, usize), threads: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let m = |(rs, cs)| MatRef { ptr: std::ptr::null::<f32>(), rs, cs };
        dots::applies(m(a), m(b), mnk, threads)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (a, b, mnk, threads);
        false
    }
}

/// `c (m x n) = a (m x k) @ b (k x n)`, or `c += a @ b` with `accumulate`,
/// every matrix with arbitrary strides, if these kernels serve it: the dot
/// products take it ([`dots::applies`]), or they are [`available`] and the product, as [`with_unit_column_stride`] turns it,
/// has at least two register blocks of rows and `NR` columns. With fewer
/// rows, packing the whole right operand costs about as much as the product
/// (a [1, 784] x [784, 512] product took 2-6x the `gemm` crate's time in a
/// one-off timing loop; the crate's vector-matrix kernels do not pack), and
/// fewer columns leave lanes of every block idle. Returns `false`, having
/// touched nothing, when it leaves the product to the caller.
///
/// # Safety
/// As [`run`].
pub(crate) unsafe fn try_sgemm(
    c: DstRef,
    a: MatRef<f32>,
    b: MatRef<f32>,
    mnk: (usize, usize, usize),
    threads: usize,
    accumulate: bool,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if dots::applies(a, b, mnk, threads) {
        let parallel = dots::parallel(threads, mnk);
        // SAFETY: the caller's guarantee, for the same elements; `applies` held.
        unsafe { dots::dots(c, a, b, mnk, parallel, accumulate) };
        return true;
    }
    if !available() {
        return false;
    }
    let (c, a, b, (m, n, k)) = with_unit_column_stride(c, a, b, mnk);
    if m < 2 * MR || n < NR {
        return false;
    }
    // SAFETY: the caller's guarantee, for the same elements.
    unsafe { run(c, a, b, (m, n, k), threads, accumulate) };
    true
}

/// The product as it is run: a column-major destination (convolution
/// computes out^T into NCHW) becomes `c^T = b^T @ a^T`, whose unit column
/// stride lets full blocks store from registers instead of through the tile.
/// The same elements, addressed through transposed strides.
fn with_unit_column_stride(
    c: DstRef,
    a: MatRef<f32>,
    b: MatRef<f32>,
    (m, n, k): (usize, usize, usize),
) -> (DstRef, MatRef<f32>, MatRef<f32>, (usize, usize, usize)) {
    if c.cs != 1 && c.rs == 1 {
        let t = |x: MatRef<f32>| MatRef { ptr: x.ptr, rs: x.cs, cs: x.rs };
        (DstRef { ptr: c.ptr, rs: c.cs, cs: 1 }, t(b), t(a), (n, m, k))
    } else {
        (c, a, b, (m, n, k))
    }
}

/// `c (m x n) = a (m x k) @ b (k x n)`, or `c += a @ b` with `accumulate`.
/// Without `accumulate`, `c` is only written (it may be uninitialized).
/// Splits across `threads` workers when the product is large enough.
///
/// # Safety
/// [`available`] must be true and `m`, `n`, `k` nonzero. `a`, `b` and `c`
/// must address in-bounds elements for every index the sizes and strides
/// give; `c` must not alias `a` or `b`, and distinct `(i, j)` must address
/// distinct elements of `c`; with `accumulate`, `c` must be initialized.
unsafe fn run(
    c: DstRef,
    a: MatRef<f32>,
    b: MatRef<f32>,
    (m, n, k): (usize, usize, usize),
    threads: usize,
    accumulate: bool,
) {
    debug_assert!(m > 0 && n > 0 && k > 0, "sgemm of an empty product");
    let p = Product { c, a, b, accumulate };
    let parts = if super::matmul::gemm_is_parallel(threads, m, n, k) { threads } else { 1 };
    if parts == 1 {
        // SAFETY: the caller's guarantee, for the whole product.
        return with_buffers(|bufs| unsafe { block(p, (0, m), (0, n), k, bufs) });
    }
    // Strips along whichever side has more register blocks, aligned to them.
    let strips = Strips::new((m, n), (MR, NR), parts);
    team::for_each(true, strips.parts, |t| {
        let (rows, cols) = strips.strip(t);
        // SAFETY: strips are disjoint blocks of c; the rest is the caller's guarantee.
        with_buffers(|bufs| unsafe { block(p, rows, cols, k, bufs) });
    });
}

/// A reusable 64-byte-aligned f32 scratch buffer.
#[derive(Default)]
struct Aligned(Vec<f32>);

impl Aligned {
    /// At least `len` floats starting on a 64-byte boundary.
    fn get(&mut self, len: usize) -> *mut f32 {
        const PAD: usize = 16;
        if self.0.len() < len + PAD {
            self.0 = vec![0.0; len + PAD];
        }
        let base = self.0.as_mut_ptr();
        // f32 pointers are 4-byte aligned, so this is a whole number of floats below PAD.
        let skip = (64 - base as usize % 64) % 64 / 4;
        base.wrapping_add(skip)
    }
}

/// Packing buffers of one thread.
#[derive(Default)]
struct Buffers {
    a: Aligned,
    b: Aligned,
}

/// Runs `f` with this thread's packing buffers (fresh ones if a product is
/// already using them on this thread).
fn with_buffers<R>(f: impl FnOnce(&mut Buffers) -> R) -> R {
    thread_local! {
        static BUFFERS: RefCell<Buffers> = RefCell::default();
    }
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => f(&mut bufs),
        Err(_) => f(&mut Buffers::default()),
    })
}

/// Rows `rows` × columns `cols` of the product, through the packed loops.
///
/// # Safety
/// As [`run`], for this block of `c`.
unsafe fn block(p: Product, rows: (usize, usize), cols: (usize, usize), k: usize, bufs: &mut Buffers) {
    let (m0, m1) = rows;
    let (n0, n1) = cols;
    let a_buf = bufs.a.get(MC.div_ceil(MR) * MR * KC);
    let b_buf = bufs.b.get(NC.min((n1 - n0).div_ceil(NR) * NR) * KC);
    for jc in (n0..n1).step_by(NC) {
        let nc = NC.min(n1 - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let add = p.accumulate || pc > 0;
            // SAFETY: the packed block fits the buffer (nc <= NC columns
            // rounded up to NR, kc <= KC); the source elements are in bounds.
            unsafe { avx2::pack_b(b_buf, p.b.ptr.add(pc * p.b.rs + jc * p.b.cs), p.b.rs, p.b.cs, kc, nc) };
            for ic in (m0..m1).step_by(MC) {
                let mc = MC.min(m1 - ic);
                // SAFETY: as above, for mc <= MC rows.
                unsafe { avx2::pack_a(a_buf, p.a.ptr.add(ic * p.a.rs + pc * p.a.cs), p.a.rs, p.a.cs, mc, kc) };
                let c = DstRef { ptr: p.c.ptr.wrapping_add(ic * p.c.rs + jc * p.c.cs), ..p.c };
                // SAFETY: the packed panels cover mc x nc; c's block is in bounds.
                unsafe { avx2::macro_kernel(a_buf, b_buf, c, mc, nc, kc, add) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small integers: every product and partial sum is exact in f32, so the
    /// kernel must match the reference bit for bit, whatever its summation order.
    fn ints(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) % 7) as f32 - 3.0
            })
            .collect()
    }

    /// An operand of `rows x cols` stored row-major, column-major, or with
    /// both strides padded; returns (buffer, row stride, column stride).
    fn operand(rows: usize, cols: usize, form: usize, seed: u64) -> (Vec<f32>, usize, usize) {
        match form {
            0 => (ints(rows * cols, seed), cols, 1),
            1 => (ints(rows * cols, seed), 1, rows),
            _ => (ints(rows * cols * 6, seed), cols * 3, 2),
        }
    }

    fn check(m: usize, n: usize, k: usize, forms: (usize, usize, usize), threads: usize, accumulate: bool) {
        let (a, ars, acs) = operand(m, k, forms.0, 1);
        let (b, brs, bcs) = operand(k, n, forms.1, 2);
        let (init, crs, ccs) = operand(m, n, forms.2, 3);
        let mut c = if accumulate { init.clone() } else { vec![f32::NAN; init.len()] };
        let prod = (MatRef { ptr: a.as_ptr(), rs: ars, cs: acs }, MatRef { ptr: b.as_ptr(), rs: brs, cs: bcs });
        let dst = DstRef { ptr: c.as_mut_ptr(), rs: crs, cs: ccs };
        // The kernels at any size (try_sgemm leaves small products to the gemm crate).
        let (dst, lhs, rhs, mnk) = with_unit_column_stride(dst, prod.0, prod.1, (m, n, k));
        // SAFETY: available() was checked by the caller; the buffers hold every strided element.
        unsafe { run(dst, lhs, rhs, mnk, threads, accumulate) };
        for i in 0..m {
            for j in 0..n {
                let mut want = if accumulate { init[i * crs + j * ccs] as f64 } else { 0.0 };
                for p in 0..k {
                    want += a[i * ars + p * acs] as f64 * b[p * brs + j * bcs] as f64;
                }
                let got = c[i * crs + j * ccs];
                assert_eq!(
                    got as f64, want,
                    "({m}x{k})@({k}x{n}) forms {forms:?} threads {threads} acc {accumulate} at ({i},{j})"
                );
            }
        }
        if forms.2 == 2 && !accumulate {
            let written: usize = c.iter().filter(|v| !v.is_nan()).count();
            assert_eq!(written, m * n, "elements outside the destination view were written");
        }
    }

    #[test]
    fn matches_an_exact_reference_for_edge_sizes_strides_and_splits() {
        if !available() {
            println!("skipped: this CPU does not use Oar's AVX2 sgemm (level {})", super::super::simd::level());
            return;
        }
        let sizes = [1, 5, 6, 7, 16, 17, 31];
        for &m in &sizes {
            for &n in &sizes {
                for &k in &[1, 8, 9, 31] {
                    for forms in [(0, 0, 0), (1, 1, 1), (2, 2, 2), (0, 1, 0), (1, 0, 2)] {
                        check(m, n, k, forms, 1, false);
                        check(m, n, k, forms, 1, true);
                    }
                }
            }
        }
        // Past one packed block in every direction (MC, KC, NC), and split across threads.
        check(MC + 7, 40, KC + 9, (0, 0, 0), 1, false);
        check(3, NC + 21, 5, (0, 1, 0), 1, true);
        for forms in [(0, 0, 0), (1, 1, 0), (2, 2, 1), (0, 1, 2), (0, 0, 1)] {
            check(130, 131, 70, forms, 2, false);
            check(131, 130, 70, forms, 3, true);
            check(40, 1000, 30, forms, 2, true);
            check(1000, 40, 30, forms, 2, false);
        }
    }
}
