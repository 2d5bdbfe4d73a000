//! AVX2 + FMA register tiles of the direct convolution: the AVX-512 tiles'
//! layouts (16-pixel segments, 16-channel blocks) computed as pairs of
//! 8-lane halves, with fewer accumulators so that everything fits the 16 ymm
//! registers (see the parent module).

use super::{pixel_taps, Tile, SEG};
use crate::cpu::conv::{copy_row, Geom};
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Output channels per pixel tile: 6 channels x 2 halves of a 16-pixel
/// segment are 12 accumulators; with the two input halves and one weight
/// broadcast that is 15 of the 16 registers.
pub(super) const OB2: usize = 6;

/// Output pixels per channel tile: 6 pixels x 2 halves of 16 channels, plus
/// two weight halves and one input broadcast (15 registers).
pub(super) const P2: usize = 6;

/// Two unaligned 8-lane loads of the 16 floats at the start of `v`.
#[inline(always)]
fn load16(v: &[f32]) -> [__m256; 2] {
    let v: &[f32; SEG] = v[..SEG].try_into().expect("16 floats");
    // SAFETY: `v` is 16 floats, so both 8-float loads are in bounds; AVX is
    // enabled in every caller (they are `avx2` target-feature functions).
    unsafe { [_mm256_loadu_ps(v.as_ptr()), _mm256_loadu_ps(v.as_ptr().add(8))] }
}

#[inline(always)]
fn store16(dst: &mut [f32; SEG], [lo, hi]: [__m256; 2]) {
    // SAFETY: `dst` is 16 floats; callers have AVX enabled (as `load16`).
    unsafe {
        _mm256_storeu_ps(dst.as_mut_ptr(), lo);
        _mm256_storeu_ps(dst.as_mut_ptr().add(8), hi);
    }
}

/// Output row `oy`, pixels `x0..x0+SEG` (fewer at the row's end), channels
/// `o0..o0+N` (`N <= OB2`), plus bias, stored straight into `dst` (one
/// image, NCHW): per tap, one weight broadcast feeds the FMAs of both halves
/// of the segment. Storing from registers matters when the patch is small
/// (the seed model's 27 taps): a round trip through a tile buffer and a
/// separate bias loop took a third of the time there (perf profile).
#[target_feature(enable = "avx2,fma")]
pub(super) fn tile<const N: usize>(
    padded: &[f32],
    wt: &[f32],
    op: usize,
    d: Geom,
    (oy, x0, o0): (usize, usize, usize),
    (bias, dst): (Option<&[f32]>, &mut [MaybeUninit<f32>]),
) {
    let v = [[_mm256_setzero_ps(); 2]; N];
    let v = pixel_taps(padded, wt, op, d, (oy, x0, o0, N), v, |mut v, inputs, ws| {
        let [lo, hi] = load16(inputs);
        for (a, &w) in v.iter_mut().zip(ws) {
            let wv = _mm256_set1_ps(w);
            a[0] = _mm256_fmadd_ps(wv, lo, a[0]);
            a[1] = _mm256_fmadd_ps(wv, hi, a[1]);
        }
        v
    });
    let len = SEG.min(d.ow - x0);
    for (k, a) in v.into_iter().enumerate() {
        let oc = o0 + k;
        let b = _mm256_set1_ps(bias.map_or(0.0, |b| b[oc]));
        let a = [_mm256_add_ps(a[0], b), _mm256_add_ps(a[1], b)];
        let out = &mut dst[(oc * d.oh + oy) * d.ow + x0..][..len];
        if len == SEG {
            // SAFETY: MaybeUninit<f32> has f32's layout, `out` is 16 of
            // them, and the stores initialize all 16.
            store16(unsafe { &mut *out.as_mut_ptr().cast::<[f32; SEG]>() }, a);
        } else {
            // Fixed-size block moves: a copy loop here became a memcpy call
            // (9% of the seed model's conv in a perf profile; its rows end in
            // 14 pixels). Masked stores were no faster in a one-off loop.
            let mut part = [0f32; SEG];
            store16(&mut part, a);
            // SAFETY: MaybeUninit<f32> has f32's layout.
            let part: &[MaybeUninit<f32>; SEG] = unsafe { &*part.as_ptr().cast() };
            copy_row(out, part);
        }
    }
}

/// `channel_tile` for the `out.len()` (1 to `P2`) pixels of the tile.
#[target_feature(enable = "avx2,fma")]
pub(super) fn tile_px(at: &Tile, bias: &[f32; SEG], out: &mut [[f32; SEG]]) {
    match out.len() {
        1 => channel_tile::<1>(at, bias, out),
        2 => channel_tile::<2>(at, bias, out),
        3 => channel_tile::<3>(at, bias, out),
        4 => channel_tile::<4>(at, bias, out),
        5 => channel_tile::<5>(at, bias, out),
        _ => channel_tile::<P2>(at, bias, out),
    }
}

/// `N` adjacent output pixels x 16 channels into `out[pixel][channel]`
/// (bias included): per tap, the two weight halves are loaded once and each
/// pixel's input is broadcast once for both.
#[target_feature(enable = "avx2,fma")]
fn channel_tile<const N: usize>(at: &Tile, bias: &[f32; SEG], out: &mut [[f32; SEG]]) {
    let &Tile { src, ph, pw, off, wt, op, d } = at;
    let mut acc = [load16(bias); N];
    for c in 0..d.c {
        for ki in 0..d.kh {
            let row = &src[(c * ph + ki * d.dil[0]) * pw + off..];
            let taps = &wt[(c * d.kh + ki) * d.kw * op..];
            for kj in 0..d.kw {
                let [wlo, whi] = load16(&taps[kj * op..]);
                let xs = &row[kj * d.dil[1]..][..N];
                for (a, &x) in acc.iter_mut().zip(xs) {
                    let xb = _mm256_set1_ps(x);
                    a[0] = _mm256_fmadd_ps(xb, wlo, a[0]);
                    a[1] = _mm256_fmadd_ps(xb, whi, a[1]);
                }
            }
        }
    }
    for (dst, a) in out.iter_mut().zip(acc) {
        store16(dst, a);
    }
}

/// Writes `scratch` (`[pixel][channel]`) into `dst` (`[channel][pixel]`, 16
/// channels). A plain loop: it moves each output once, against the tile
/// work's `c * kh * kw` FMAs per output.
#[target_feature(enable = "avx2,fma")]
pub(super) fn transpose_out(scratch: &[[f32; SEG]], dst: &mut [MaybeUninit<f32>]) {
    let l = dst.len() / SEG;
    for (k, plane) in dst.chunks_exact_mut(l).enumerate() {
        for (d, px) in plane.iter_mut().zip(scratch) {
            d.write(px[k]);
        }
    }
}
