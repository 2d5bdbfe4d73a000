//! The AVX2 + FMA packing routines and 6 × 16 micro-kernel of [`super::sgemm`].

use super::{DstRef, MR, NR};
use std::arch::x86_64::*;

/// Packs `kc` rows × `nc` columns of the right operand (`src[p * rs + j * cs]`)
/// into `NR`-column panels: panel `q` holds element `(p, j)` at
/// `q * NR * kc + p * NR + (j - q * NR)`, zero-padded to whole panels.
///
/// # Safety
/// `dst` must hold `nc.div_ceil(NR) * NR * kc` floats; every addressed source
/// element must be in bounds.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn pack_b(dst: *mut f32, src: *const f32, rs: usize, cs: usize, kc: usize, nc: usize) {
    let full = nc / NR;
    // SAFETY (whole block): panels lie inside dst; sources are in bounds.
    unsafe {
        if cs == 1 {
            // Eight source rows at a time across all panels: eight sequential
            // read streams, and 512 contiguous bytes written per panel (one
            // panel at a time would read rows a page apart).
            for p0 in (0..kc).step_by(8) {
                for q in 0..full {
                    let panel = dst.add(q * NR * kc);
                    for p in p0..kc.min(p0 + 8) {
                        let row = src.add(p * rs + q * NR);
                        _mm256_store_ps(panel.add(p * NR), _mm256_loadu_ps(row));
                        _mm256_store_ps(panel.add(p * NR + 8), _mm256_loadu_ps(row.add(8)));
                    }
                }
            }
        } else if rs == 1 {
            for q in 0..full {
                transpose_panel::<NR>(dst.add(q * NR * kc), src.add(q * NR * cs), cs, kc);
            }
        } else {
            for q in 0..full {
                pack_strided::<NR>(dst.add(q * NR * kc), src.add(q * NR * cs), cs, rs, NR, kc);
            }
        }
        if full * NR < nc {
            pack_strided::<NR>(dst.add(full * NR * kc), src.add(full * NR * cs), cs, rs, nc - full * NR, kc);
        }
    }
}

/// `panel[p * W + j] = src[j * js + p * ps]` for `j < w`, zero for
/// `w <= j < W`: the general (and partial-panel) case of both packings.
///
/// # Safety
/// `panel` must hold `W * kc` floats; the addressed sources must be in bounds.
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_strided<const W: usize>(panel: *mut f32, src: *const f32, js: usize, ps: usize, w: usize, kc: usize) {
    for p in 0..kc {
        for j in 0..W {
            // SAFETY: j < w reads are in bounds by the caller; p * W + j < W * kc.
            unsafe { *panel.add(p * W + j) = if j < w { *src.add(j * js + p * ps) } else { 0.0 } };
        }
    }
}

/// Packs `mc` rows × `kc` columns of the left operand (`src[i * rs + p * cs]`)
/// into `MR`-row panels: panel `q` holds element `(i, p)` at
/// `q * MR * kc + p * MR + (i - q * MR)`, zero-padded to whole panels.
///
/// # Safety
/// `dst` must hold `mc.div_ceil(MR) * MR * kc` floats; every addressed source
/// element must be in bounds.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn pack_a(dst: *mut f32, src: *const f32, rs: usize, cs: usize, mc: usize, kc: usize) {
    for (q, i0) in (0..mc).step_by(MR).enumerate() {
        let h = MR.min(mc - i0);
        // SAFETY: the panel lies inside dst; sources are in bounds.
        unsafe {
            let (panel, s) = (dst.add(q * MR * kc), src.add(i0 * rs));
            if h == MR && cs == 1 {
                transpose_panel::<MR>(panel, s, rs, kc);
            } else if h == MR && rs == 1 {
                // A transposed operand (x^T in a weight gradient): each step's
                // six values are contiguous.
                for p in 0..kc {
                    let (d, v) = (panel.add(p * MR), s.add(p * cs));
                    _mm_storeu_ps(d, _mm_loadu_ps(v));
                    _mm_store_sd(d.add(4).cast(), _mm_load_sd(v.add(4).cast()));
                }
            } else {
                pack_strided::<MR>(panel, s, rs, cs, h, kc);
            }
        }
    }
}

/// `panel[p * W + j] = src[j * stride + p]` for `j < W`, `p < kc`: `W` rows
/// of unit-stride source become `kc` groups of `W` (the layout both packed
/// operands use), eight `p` at a time through 8 × 8 register transposes.
///
/// # Safety
/// `panel` must hold `W * kc` floats; `src[j * stride + p]` must be in bounds.
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose_panel<const W: usize>(panel: *mut f32, src: *const f32, stride: usize, kc: usize) {
    let full = kc / 8 * 8;
    // SAFETY (whole block): indices stay below kc and W, per the caller.
    unsafe {
        for p0 in (0..full).step_by(8) {
            for j0 in (0..W).step_by(8) {
                let rows = (W - j0).min(8);
                let mut r = [_mm256_setzero_ps(); 8];
                for (j, v) in r.iter_mut().enumerate().take(rows) {
                    *v = _mm256_loadu_ps(src.add((j0 + j) * stride + p0));
                }
                for (p, v) in transpose8(r).into_iter().enumerate() {
                    store_first(panel.add((p0 + p) * W + j0), v, rows);
                }
            }
        }
        for p in full..kc {
            for j in 0..W {
                *panel.add(p * W + j) = *src.add(j * stride + p);
            }
        }
    }
}

/// Stores the first `n` lanes of `v` (the 6-row panels store 4 + 2 lanes,
/// where a copy through memory became a `memcpy` call).
///
/// # Safety
/// `d` must address `n` writable floats.
#[inline(always)]
unsafe fn store_first(d: *mut f32, v: __m256, n: usize) {
    // SAFETY: only the first n floats of d are written; AVX is enabled by the caller.
    unsafe {
        match n {
            8 => _mm256_storeu_ps(d, v),
            6 => {
                _mm_storeu_ps(d, _mm256_castps256_ps128(v));
                _mm_store_sd(d.add(4).cast(), _mm_castps_pd(_mm256_extractf128_ps::<1>(v)));
            }
            _ => {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), v);
                for (i, &x) in lanes.iter().enumerate().take(n) {
                    *d.add(i) = x;
                }
            }
        }
    }
}

/// Transposes an 8 × 8 block held as eight row vectors.
#[inline(always)]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    // SAFETY: register-only shuffles; the caller runs with AVX enabled.
    unsafe {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }
}

/// Multiplies packed `mc x kc` and `kc x nc` blocks into `c` (storing, or
/// adding with `add`), one register block at a time. Full blocks of a
/// unit-column-stride `c` are stored from registers; the others go through a
/// tile.
///
/// # Safety
/// `a` and `b` must hold the packed blocks; `c` must address `mc x nc`
/// in-bounds elements (initialized when `add`).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn macro_kernel(a: *const f32, b: *const f32, c: DstRef, mc: usize, nc: usize, kc: usize, add: bool) {
    let mut tile = [0f32; MR * NR];
    for j0 in (0..nc).step_by(NR) {
        let w = NR.min(nc - j0);
        // SAFETY (whole block): panel offsets stay inside the packed blocks,
        // c offsets inside the caller's mc x nc block.
        unsafe {
            let bp = b.add(j0 * kc);
            for i0 in (0..mc).step_by(MR) {
                let h = MR.min(mc - i0);
                let ap = a.add(i0 * kc);
                let cp = c.ptr.add(i0 * c.rs + j0 * c.cs);
                if h == MR && w == NR && c.cs == 1 {
                    kernel(kc, ap, bp, cp, c.rs, add);
                } else {
                    kernel(kc, ap, bp, tile.as_mut_ptr(), NR, false);
                    for i in 0..h {
                        for j in 0..w {
                            let d = cp.add(i * c.rs + j * c.cs);
                            let v = tile[i * NR + j];
                            *d = if add { *d + v } else { v };
                        }
                    }
                }
            }
        }
    }
}

/// `c[0..6][0..16] (=|+=) a_panel @ b_panel` over `kc`: twelve accumulators,
/// per step two loads of `b` and six broadcasts of `a`.
///
/// # Safety
/// `a` must hold `MR * kc` floats, `b` `NR * kc` 32-byte-aligned floats; `c`
/// must address six rows of 16 floats `rs` apart (initialized when `add`).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rs: usize, add: bool) {
    // SAFETY (whole block): every pointer offset stays inside the caller's buffers.
    unsafe {
        for i in 0..MR {
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * rs).cast());
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * rs + NR - 1).cast());
        }
        let z = _mm256_setzero_ps();
        let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
        let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
        let (mut a, mut b) = (a, b);
        // One row of the block: broadcast a[i], multiply-add into its two halves.
        macro_rules! row {
            ($lo:ident, $hi:ident, $i:expr, $b0:ident, $b1:ident) => {{
                let x = _mm256_broadcast_ss(&*a.add($i));
                $lo = _mm256_fmadd_ps(x, $b0, $lo);
                $hi = _mm256_fmadd_ps(x, $b1, $hi);
            }};
        }
        macro_rules! step {
            () => {{
                let b0 = _mm256_load_ps(b);
                let b1 = _mm256_load_ps(b.add(8));
                row!(c00, c01, 0, b0, b1);
                row!(c10, c11, 1, b0, b1);
                row!(c20, c21, 2, b0, b1);
                row!(c30, c31, 3, b0, b1);
                row!(c40, c41, 4, b0, b1);
                row!(c50, c51, 5, b0, b1);
                a = a.add(MR);
                b = b.add(NR);
            }};
        }
        // Four steps per iteration: the loop's counter and branch are spread
        // over 48 multiply-adds instead of 12.
        for _ in 0..kc / 4 {
            step!();
            step!();
            step!();
            step!();
        }
        for _ in 0..kc % 4 {
            step!();
        }
        let rows = [(c00, c01), (c10, c11), (c20, c21), (c30, c31), (c40, c41), (c50, c51)];
        for (i, (lo, hi)) in rows.into_iter().enumerate() {
            let d = c.add(i * rs);
            let (lo, hi) = if add {
                (_mm256_add_ps(lo, _mm256_loadu_ps(d)), _mm256_add_ps(hi, _mm256_loadu_ps(d.add(8))))
            } else {
                (lo, hi)
            };
            _mm256_storeu_ps(d, lo);
            _mm256_storeu_ps(d.add(8), hi);
        }
    }
}
