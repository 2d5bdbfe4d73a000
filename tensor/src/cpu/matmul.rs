//! Batched matrix products through the `gemm` crate (AVX-512 kernels picked at
//! run time), or for f32 on AVX2-only CPUs through Oar's own kernels
//! (`super::sgemm`). Strided operands are passed on as they are: transposed
//! and sliced inputs cost no copy.

use super::strided::copy_strided;
use super::threads::num_threads;
use super::CpuStorage;
use crate::{Error, ErrorKind, Layout, Result, Shape, WithDType};
use half::{bf16, f16};
use std::mem::MaybeUninit;

/// Geometry of one batched product: matrix sizes, strides and per-batch offsets.
pub(crate) struct MatmulPlan {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_rs: usize,
    pub a_cs: usize,
    pub b_rs: usize,
    pub b_cs: usize,
    /// `(offset into a, offset into b)` for every batch, row-major over the output batch dims.
    pub offsets: Vec<(usize, usize)>,
}

impl MatmulPlan {
    /// The left operand of the batch starting at `offset`.
    fn lhs<T>(&self, a: &[T], offset: usize) -> MatRef<T> {
        MatRef { ptr: a[offset..].as_ptr(), rs: self.a_rs, cs: self.a_cs }
    }

    fn rhs<T>(&self, b: &[T], offset: usize) -> MatRef<T> {
        MatRef { ptr: b[offset..].as_ptr(), rs: self.b_rs, cs: self.b_cs }
    }

    pub(crate) fn new(la: &Layout, lb: &Layout, out: &Shape) -> Result<Self> {
        let (ra, rb, ro) = (la.shape().rank(), lb.shape().rank(), out.rank());
        let (m, k) = (la.dims()[ra - 2], la.dims()[ra - 1]);
        let n = lb.dims()[rb - 1];
        let batch = Shape::new(&out.dims()[..ro - 2]);
        let batch_layout = |l: &Layout, r: usize| -> Result<Layout> {
            let part = Layout::new(Shape::new(&l.dims()[..r - 2]), l.strides()[..r - 2].into(), l.offset());
            part.broadcast_to(&batch, "matmul")
        };
        let (ba, bb) = (batch_layout(la, ra)?, batch_layout(lb, rb)?);
        let bdims = batch.dims();
        let offsets = (0..batch.numel())
            .map(|i| {
                let mut rem = i;
                let (mut oa, mut ob) = (ba.offset(), bb.offset());
                for d in (0..bdims.len()).rev() {
                    let c = rem % bdims[d];
                    rem /= bdims[d];
                    oa += c * ba.strides()[d];
                    ob += c * bb.strides()[d];
                }
                (oa, ob)
            })
            .collect();
        Ok(MatmulPlan {
            m,
            n,
            k,
            a_rs: la.strides()[ra - 2],
            a_cs: la.strides()[ra - 1],
            b_rs: lb.strides()[rb - 2],
            b_cs: lb.strides()[rb - 1],
            offsets,
        })
    }
}

/// Types gemm multiplies natively.
pub(crate) trait GemmElem: WithDType {
    /// Runs the product with Oar's own kernels if they cover this type on
    /// this CPU (see `sgemm`); `false` leaves it to the `gemm` crate.
    ///
    /// # Safety
    /// As [`gemm_call`], with `m`, `n` and `k` nonzero.
    unsafe fn own_gemm(
        _dst: *mut Self,
        _dst_strides: (usize, usize),
        _a: MatRef<Self>,
        _b: MatRef<Self>,
        _mnk: (usize, usize, usize),
        _threads: usize,
        _accumulate: bool,
    ) -> bool {
        false
    }
}
impl GemmElem for f32 {
    #[cfg(target_arch = "x86_64")]
    unsafe fn own_gemm(
        dst: *mut f32,
        (rs, cs): (usize, usize),
        a: MatRef<f32>,
        b: MatRef<f32>,
        mnk: (usize, usize, usize),
        threads: usize,
        accumulate: bool,
    ) -> bool {
        let dst = super::sgemm::DstRef { ptr: dst, rs, cs };
        // SAFETY: the caller's guarantee, passed on.
        unsafe { super::sgemm::try_sgemm(dst, a, b, mnk, threads, accumulate) }
    }
}
impl GemmElem for f64 {}
impl GemmElem for f16 {}

/// A strided matrix operand: first element, row stride, column stride.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<T> {
    pub ptr: *const T,
    pub rs: usize,
    pub cs: usize,
}

impl<T> MatRef<T> {
    /// Row-major matrix with `cols` columns starting at `s[0]`.
    pub(crate) fn rows(s: &[T], cols: usize) -> Self {
        MatRef { ptr: s.as_ptr(), rs: cols, cs: 1 }
    }
}

/// `dst (m x n) = a (m x k) @ b (k x n)` for a row-major `dst` slice; see [`gemm_strided`].
///
/// # Safety
/// As [`gemm_strided`]; `dst` must have `m * n` elements.
pub(crate) unsafe fn gemm_raw<T: GemmElem>(
    dst: &mut [T],
    a: MatRef<T>,
    b: MatRef<T>,
    (m, n, k): (usize, usize, usize),
    threads: usize,
) {
    debug_assert_eq!(dst.len(), m * n);
    // SAFETY: dst is exactly m x n row-major; the operands are the caller's guarantee.
    unsafe { gemm_strided(dst.as_mut_ptr(), (n, 1), a, b, (m, n, k), threads) }
}

/// `dst (m x n) = a (m x k) @ b (k x n)`, every matrix with arbitrary strides
/// (`dst_strides` = (row stride, column stride)). `threads > 1` lets gemm split
/// the product across the kernel team.
///
/// # Safety
/// `a`, `b` and `dst` must point to buffers in which every element addressed by
/// the given sizes and strides is in bounds, and `dst` must not alias them.
pub(crate) unsafe fn gemm_strided<T: GemmElem>(
    dst: *mut T,
    dst_strides: (usize, usize),
    a: MatRef<T>,
    b: MatRef<T>,
    (m, n, k): (usize, usize, usize),
    threads: usize,
) {
    // SAFETY: the caller's guarantee, passed on.
    unsafe { gemm_call(dst, dst_strides, a, b, (m, n, k), threads, false) }
}

/// `dst += a @ b` on one thread, otherwise as [`gemm_strided`].
///
/// # Safety
/// As [`gemm_strided`]; `dst` must be initialized.
pub(crate) unsafe fn gemm_accumulate<T: GemmElem>(
    dst: *mut T,
    dst_strides: (usize, usize),
    a: MatRef<T>,
    b: MatRef<T>,
    (m, n, k): (usize, usize, usize),
) {
    // SAFETY: the caller's guarantee, passed on.
    unsafe { gemm_call(dst, dst_strides, a, b, (m, n, k), 1, true) }
}

/// Whether a gemm of this size splits across the kernel team: below ~1M
/// multiply-adds, splitting costs more than it saves.
pub(super) fn gemm_is_parallel(threads: usize, m: usize, n: usize, k: usize) -> bool {
    threads > 1 && m * n * k >= 1 << 20
}

/// # Safety
/// As [`gemm_strided`]; with `accumulate`, `dst` must be initialized.
unsafe fn gemm_call<T: GemmElem>(
    dst: *mut T,
    dst_strides: (usize, usize),
    a: MatRef<T>,
    b: MatRef<T>,
    (m, n, k): (usize, usize, usize),
    threads: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 || k == 0 {
        return; // nothing to add: callers' destination buffers start zeroed
    }
    // SAFETY: the caller's guarantee, passed on.
    if unsafe { T::own_gemm(dst, dst_strides, a, b, (m, n, k), threads, accumulate) } {
        return;
    }
    if !gemm_is_parallel(threads, m, n, k) {
        // SAFETY: the caller's guarantee, passed on.
        return unsafe { gemm_serial(dst, dst_strides, a, b, (m, n, k), accumulate) };
    }
    // Strips of the output, one gemm each, on the kernel team: gemm's own
    // rayon split paid two thread wake-ups per product (see `team`).
    let strips = Strips::new((m, n), (16, 16), threads);
    let ptrs = Operands { dst, a, b };
    super::team::for_each(true, strips.parts, |t| {
        let ptrs = &ptrs;
        let ((r0, r1), (c0, c1)) = strips.strip(t);
        // SAFETY: the strip is the caller's product restricted to output rows
        // r0..r1 and columns c0..c1, so every element it addresses is one the
        // caller vouched for; distinct strips write disjoint parts of `dst`.
        unsafe {
            let d = ptrs.dst.add(r0 * dst_strides.0 + c0 * dst_strides.1);
            let a = MatRef { ptr: ptrs.a.ptr.add(r0 * ptrs.a.rs), ..ptrs.a };
            let b = MatRef { ptr: ptrs.b.ptr.add(c0 * ptrs.b.cs), ..ptrs.b };
            gemm_serial(d, dst_strides, a, b, (r1 - r0, c1 - c0, k), accumulate)
        }
    });
}

/// An `m x n` product's output cut into at most `threads` strips, along the
/// side with more `mr x nr` register blocks, with edges on block boundaries.
#[derive(Clone, Copy)]
pub(super) struct Strips {
    along_n: bool,
    blocks: usize,
    unit: usize,
    m: usize,
    n: usize,
    /// How many strips there are (at most one per block).
    pub(super) parts: usize,
}

impl Strips {
    pub(super) fn new((m, n): (usize, usize), (mr, nr): (usize, usize), threads: usize) -> Self {
        let (bm, bn) = (m.div_ceil(mr), n.div_ceil(nr));
        let (along_n, blocks, unit) = if bn >= bm { (true, bn, nr) } else { (false, bm, mr) };
        Strips { along_n, blocks, unit, m, n, parts: threads.min(blocks).max(1) }
    }

    /// Strip `t`'s output rows and columns, as `(start, end)` pairs.
    pub(super) fn strip(&self, t: usize) -> ((usize, usize), (usize, usize)) {
        let extent = if self.along_n { self.n } else { self.m };
        let lo = (t * self.blocks / self.parts * self.unit).min(extent);
        let hi = ((t + 1) * self.blocks / self.parts * self.unit).min(extent);
        if self.along_n {
            ((0, self.m), (lo, hi))
        } else {
            ((lo, hi), (0, self.n))
        }
    }
}

/// The operands of one product, shared by its strips.
struct Operands<T> {
    dst: *mut T,
    a: MatRef<T>,
    b: MatRef<T>,
}
// SAFETY: the strips of a product read the operands and write disjoint
// parts of `dst` (see `gemm_call`); the element types are plain numbers.
unsafe impl<T: Send> Sync for Operands<T> {}

/// One gemm call on the calling thread.
///
/// # Safety
/// As [`gemm_call`], with `m`, `n` and `k` nonzero.
unsafe fn gemm_serial<T: GemmElem>(
    dst: *mut T,
    dst_strides: (usize, usize),
    a: MatRef<T>,
    b: MatRef<T>,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    // SAFETY: the caller guarantees every extent.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_strides.1 as isize,
            dst_strides.0 as isize,
            accumulate,
            a.ptr,
            a.cs as isize,
            a.rs as isize,
            b.ptr,
            b.cs as isize,
            b.rs as isize,
            if accumulate { T::one() } else { T::zero() },
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

fn matmul_gemm<T: GemmElem>(a: &[T], b: &[T], plan: &MatmulPlan) -> Vec<T> {
    let MatmulPlan { m, n, k, .. } = *plan;
    let len = plan.offsets.len() * m * n;
    if len == 0 || k == 0 {
        return vec![T::zero(); len]; // an empty inner dim sums nothing; operands are never read
    }
    // gemm with beta = 0 writes every destination element without reading it,
    // so the buffer needs no zero fill (a memset that cost 3% of an MLP step).
    let mut out = super::arena::with_capacity::<T>(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let threads = num_threads();
    let run = |dst: &mut [MaybeUninit<T>], (oa, ob): (usize, usize), threads: usize| {
        // SAFETY: the plan's offsets and strides come from layouts validated
        // against these storages, so every addressed element is in bounds;
        // `dst` holds exactly m x n row-major elements, written, never read.
        unsafe { gemm_strided(dst.as_mut_ptr().cast(), (n, 1), plan.lhs(a, oa), plan.rhs(b, ob), (m, n, k), threads) }
    };
    let batches = plan.offsets.len();
    if threads > 1 && batches >= threads && m * n * k >= 4096 {
        super::team::chunks_mut(true, spare, m * n, |i, dst| run(dst, plan.offsets[i], 1));
    } else {
        for (dst, &offs) in spare.chunks_mut(m * n).zip(plan.offsets.iter()) {
            run(dst, offs, threads);
        }
    }
    // SAFETY: every chunk of the `len` elements was written by one gemm call
    // (m, n, k > 0 here, so gemm stores its whole destination).
    unsafe { out.set_len(len) };
    out
}

fn matmul_naive<T: WithDType>(a: &[T], b: &[T], plan: &MatmulPlan) -> Vec<T> {
    let MatmulPlan { m, n, k, .. } = *plan;
    let mut out = super::arena::with_capacity(plan.offsets.len() * m * n);
    for &(oa, ob) in &plan.offsets {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0i64;
                for p in 0..k {
                    let x = a[oa + i * plan.a_rs + p * plan.a_cs].to_i64();
                    let y = b[ob + p * plan.b_rs + j * plan.b_cs].to_i64();
                    acc = acc.wrapping_add(x.wrapping_mul(y));
                }
                out.push(T::from_f64(acc as f64));
            }
        }
    }
    out
}

/// A row-major copy of `b`, the transposed weight `w.t()` of an f32 product
/// `[m, k] x [k, n]`, when the `gemm` crate (AVX-512 hosts) runs that product
/// faster from it: the crate takes about 1.1-1.6x as long with a column-major
/// right operand at `[64, 512] x [512, 512]` and `[256, 400] x [400, 120]`,
/// and up to 2.4x at `[9, 784] x [784, 512]` (one-off loops, 2 threads).
/// `None` where the view is as fast or faster: products the dot-product
/// kernels take (they read the transposed weight as it is), fewer than 4
/// rows or 16k multiply-adds (`[2, 400] x [400, 20]` took 5x as long
/// row-major, `[9, 64] x [64, 17]` 1.5x), and AVX2 hosts, whose kernels pack
/// either form at the same cost.
pub(crate) fn prepack_rhs(a: &Shape, b: (&CpuStorage, &Layout), out: &Shape) -> Option<CpuStorage> {
    let (CpuStorage::F32(bv), lb) = b else { return None };
    if a.rank() != 2 || lb.shape().rank() != 2 || super::simd::level() != 4 {
        return None;
    }
    let (m, k, n) = (a.dims()[0], a.dims()[1], out.dims()[1]);
    if lb.strides() != [1, k] || m < 4 || m * n * k < 1 << 14 {
        return None;
    }
    // The left operand is an activation, row-major.
    if super::sgemm::runs_as_dots((k, 1), (1, k), (m, n, k), num_threads()) {
        return None;
    }
    Some(CpuStorage::F32(copy_strided(bv, lb)))
}

pub(crate) fn matmul(a: &CpuStorage, la: &Layout, b: &CpuStorage, lb: &Layout, out: &Shape) -> Result<CpuStorage> {
    let plan = MatmulPlan::new(la, lb, out)?;
    Ok(match (a, b) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(matmul_gemm(a, b, &plan)),
        (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(matmul_gemm(a, b, &plan)),
        (CpuStorage::F16(a), CpuStorage::F16(b)) => CpuStorage::F16(matmul_gemm(a, b, &plan)),
        (CpuStorage::BF16(a), CpuStorage::BF16(b)) => {
            // gemm has no bf16 kernels: compute in f32 on contiguous copies and round once.
            let (fa, fb): (Vec<f32>, Vec<f32>) = (
                copy_strided(a, la).iter().map(|v| v.to_f32()).collect(),
                copy_strided(b, lb).iter().map(|v| v.to_f32()).collect(),
            );
            let l32a = Layout::contiguous(la.shape().clone());
            let l32b = Layout::contiguous(lb.shape().clone());
            let plan = MatmulPlan::new(&l32a, &l32b, out)?;
            CpuStorage::BF16(matmul_gemm(&fa, &fb, &plan).into_iter().map(bf16::from_f32).collect())
        }
        (CpuStorage::I64(a), CpuStorage::I64(b)) => CpuStorage::I64(matmul_naive(a, b, &plan)),
        (CpuStorage::I32(a), CpuStorage::I32(b)) => CpuStorage::I32(matmul_naive(a, b, &plan)),
        (CpuStorage::U8(a), CpuStorage::U8(b)) => CpuStorage::U8(matmul_naive(a, b, &plan)),
        _ => return Err(Error::from(ErrorKind::DTypeMismatch { op: "matmul", expected: a.dtype(), got: b.dtype() })),
    })
}
