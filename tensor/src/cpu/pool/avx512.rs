//! AVX-512 max pooling of f32 values (no indices) for 2x2 windows with
//! stride 2, the pooling of LeNet-5 and the seed's SimpleCNN.
//!
//! The auto-vectorized generic loop reads stride-2 taps through 4-lane
//! shuffles; here one iteration loads 32 consecutive inputs of each of the
//! window's two rows (masked at the end of a row, so a 15-window row is one
//! iteration), splits them into even and odd columns with two-source
//! permutes, and keeps the running maximum over the four taps in the order
//! and with the NaN and tie rule of the generic kernel (`take_max`).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Lanes `0..n` (n <= 16) of a mask.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// `take_max` on 16 lanes: `v` replaces `best` unless `v <= best` or
/// `best` is NaN (so a NaN `v` replaces a number, and a NaN stays).
#[inline]
#[target_feature(enable = "avx512f")]
fn take(best: __m512, v: __m512) -> __m512 {
    let take = _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(v, best) & _mm512_cmp_ps_mask::<_CMP_ORD_Q>(best, best);
    _mm512_mask_mov_ps(best, take, v)
}

/// The maxima of the `out.len()` 2x2 windows whose top-left taps are
/// `top[2j]` (and `bottom[2j]` below them), stride 2.
///
/// # Panics
/// If `top` or `bottom` is shorter than `2 * out.len()`.
#[target_feature(enable = "avx512f")]
pub(super) fn max_row_2x2s2(top: &[f32], bottom: &[f32], out: &mut [MaybeUninit<f32>]) {
    let n = out.len();
    let (top, bottom) = (&top[..2 * n], &bottom[..2 * n]);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mut j = 0;
    while j < n {
        let m = (n - j).min(16);
        let (lo, hi) = (lanes((2 * m).min(16)), lanes((2 * m).saturating_sub(16)));
        // The 2m inputs of each row from 2j.
        let load = |row: &[f32]| {
            let p = row.as_ptr().wrapping_add(2 * j);
            // SAFETY: lanes 0..2m of the pair (p, p + 16) are row[2j..2j + 2m],
            // inside `row` (2j + 2m <= 2n == row.len()); masked-off lanes are
            // not read and do not fault.
            let (a, b) = unsafe { (_mm512_maskz_loadu_ps(lo, p), _mm512_maskz_loadu_ps(hi, p.wrapping_add(16))) };
            (_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b))
        };
        let ((t0, t1), (b0, b1)) = (load(top), load(bottom));
        let best = take(take(take(t0, t1), b0), b1);
        // SAFETY: lanes 0..m are out[j..j + m], inside `out`; MaybeUninit<f32>
        // has f32's layout.
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(j).cast::<f32>(), lanes(m), best) };
        j += m;
    }
}
