//! AVX-512 register tiles of the direct convolution (see the parent module).

use super::{pixel_taps, Tile, SEG};
use crate::cpu::conv::Geom;
use std::mem::MaybeUninit;

/// Output channels per pixel tile, at most: 12 channels x 2 segments are 24
/// accumulators, with the two input vectors and a broadcast weight 27 of
/// the 32 zmm registers.
pub(super) const OB512: usize = 12;

/// Output pixels per channel tile: 12 accumulators, the 16 broadcast inputs a
/// 5-wide kernel row needs for them, and one weight vector fill 29 of the 32
/// zmm registers.
pub(super) const P: usize = 12;

/// `channel_tile` for the `out.len()` (1 to `P`) pixels of the tile.
#[target_feature(enable = "avx512f")]
pub(super) fn tile_px<const KW: usize>(at: &Tile, bias: &[f32; SEG], out: &mut [[f32; SEG]]) {
    match out.len() {
        1 => channel_tile::<1, KW>(at, bias, out),
        2 => channel_tile::<2, KW>(at, bias, out),
        3 => channel_tile::<3, KW>(at, bias, out),
        4 => channel_tile::<4, KW>(at, bias, out),
        5 => channel_tile::<5, KW>(at, bias, out),
        6 => channel_tile::<6, KW>(at, bias, out),
        7 => channel_tile::<7, KW>(at, bias, out),
        8 => channel_tile::<8, KW>(at, bias, out),
        9 => channel_tile::<9, KW>(at, bias, out),
        10 => channel_tile::<10, KW>(at, bias, out),
        11 => channel_tile::<11, KW>(at, bias, out),
        _ => channel_tile::<P, KW>(at, bias, out),
    }
}

/// Computes `N` adjacent output pixels x 16 channels into `out[pixel][channel]`
/// (bias included), one FMA per (pixel, tap). `KW` is the kernel width when it
/// is 3 or 5 and undilated: each kernel row then broadcasts its `N + KW - 1`
/// inputs into registers once and reuses them across its `KW` taps. Otherwise
/// (`KW == 0`, any width and dilation) every FMA broadcasts its input from
/// memory, which measured about 25% slower on Zen 5 for LeNet's conv2.
#[target_feature(enable = "avx512f")]
fn channel_tile<const N: usize, const KW: usize>(at: &Tile, bias: &[f32; SEG], out: &mut [[f32; SEG]]) {
    use std::arch::x86_64::*;
    let &Tile { src, ph, pw, off, wt, op, d } = at;
    let load = |ws: &[f32]| {
        let ws: &[f32; SEG] = ws[..SEG].try_into().expect("16 weights");
        // SAFETY: ws is 16 floats; unaligned load.
        unsafe { _mm512_loadu_ps(ws.as_ptr()) }
    };
    let mut acc = [load(bias); N];
    for c in 0..d.c {
        for ki in 0..d.kh {
            let row = &src[(c * ph + ki * d.dil[0]) * pw + off..];
            // Weights of this kernel row's taps, `op` floats apart.
            let taps = &wt[(c * d.kh + ki) * d.kw * op..];
            if KW == 0 {
                for kj in 0..d.kw {
                    let wv = load(&taps[kj * op..]);
                    let xs = &row[kj * d.dil[1]..][..N];
                    for (a, &x) in acc.iter_mut().zip(xs) {
                        *a = _mm512_fmadd_ps(_mm512_set1_ps(x), wv, *a);
                    }
                }
            } else {
                let mut xb = [_mm512_setzero_ps(); P + 4];
                for (b, &x) in xb.iter_mut().zip(&row[..N + KW - 1]) {
                    *b = _mm512_set1_ps(x);
                }
                for kj in 0..KW {
                    let wv = load(&taps[kj * op..]);
                    for (p, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(xb[p + kj], wv, *a);
                    }
                }
            }
        }
    }
    for (dst, a) in out.iter_mut().zip(acc) {
        // SAFETY: dst is a 16-element array.
        unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), a) };
    }
}

/// Writes `scratch` (`[pixel][channel]`, padded to a multiple of 16 pixels)
/// into `dst` (`[channel][pixel]`, 16 channels) by 16x16 register transposes.
#[target_feature(enable = "avx512f")]
pub(super) fn transpose_out(scratch: &[[f32; SEG]], dst: &mut [MaybeUninit<f32>]) {
    use std::arch::x86_64::*;
    let l = dst.len() / SEG;
    for p0 in (0..l).step_by(SEG) {
        let rows = &scratch[p0..][..SEG];
        // SAFETY: each row is a 16-element array.
        let r: [__m512; SEG] = std::array::from_fn(|i| unsafe { _mm512_loadu_ps(rows[i].as_ptr()) });
        let n = SEG.min(l - p0);
        let mask = ((1u32 << n) - 1) as __mmask16;
        for (k, col) in transpose16(r).into_iter().enumerate() {
            let d = &mut dst[k * l + p0..][..n];
            // SAFETY: the mask stores only the first n lanes, all inside d.
            unsafe { _mm512_mask_storeu_ps(d.as_mut_ptr().cast(), mask, col) };
        }
    }
}

/// 16x16 transpose: `r[i]` lane `j` becomes lane `i` of the result's `[j]`.
/// Pairs of rows interleave (unpack), then pairs of pairs (shuffle_ps), then
/// 128-bit lanes move twice (shuffle_f32x4): 64 shuffles in all.
#[target_feature(enable = "avx512f")]
fn transpose16(r: [std::arch::x86_64::__m512; SEG]) -> [std::arch::x86_64::__m512; SEG] {
    use std::arch::x86_64::*;
    let mut t = r;
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4j + m], 128-bit lane q: column 4q + m of rows 4j..4j+4.
    let mut u = t;
    for j in 0..4 {
        u[4 * j] = _mm512_shuffle_ps::<0x44>(t[4 * j], t[4 * j + 2]);
        u[4 * j + 1] = _mm512_shuffle_ps::<0xEE>(t[4 * j], t[4 * j + 2]);
        u[4 * j + 2] = _mm512_shuffle_ps::<0x44>(t[4 * j + 1], t[4 * j + 3]);
        u[4 * j + 3] = _mm512_shuffle_ps::<0xEE>(t[4 * j + 1], t[4 * j + 3]);
    }
    let mut v = u;
    for i in 0..4 {
        v[i] = _mm512_shuffle_f32x4::<0x88>(u[i], u[i + 4]);
        v[i + 4] = _mm512_shuffle_f32x4::<0xDD>(u[i], u[i + 4]);
        v[i + 8] = _mm512_shuffle_f32x4::<0x88>(u[i + 8], u[i + 12]);
        v[i + 12] = _mm512_shuffle_f32x4::<0xDD>(u[i + 8], u[i + 12]);
    }
    let mut w = v;
    for j in 0..8 {
        w[j] = _mm512_shuffle_f32x4::<0x88>(v[j], v[j + 8]);
        w[j + 8] = _mm512_shuffle_f32x4::<0xDD>(v[j], v[j + 8]);
    }
    w
}

/// Computes output row `oy`, pixels `x0..x0+S*SEG` (those inside the row),
/// channels `o0..o0+N` (`S <= 2`) of one image with one 16-lane FMA per
/// (segment, channel, tap), adds the bias and stores into `dst` (the
/// image's `[o, oh, ow]` output) with masked stores. Written with
/// intrinsics: left to itself, LLVM vectorized the tap loop with gathers and
/// scatters. Storing from registers replaced a round trip through a tile
/// array and a scalar copy of each row's 14-pixel tail (28% of the seed
/// model's batch-64 static run in a perf profile).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn tile<const N: usize, const S: usize>(
    padded: &[f32],
    wt: &[f32],
    op: usize,
    d: Geom,
    (oy, x0, o0): (usize, usize, usize),
    (bias, dst): (Option<&[f32]>, &mut [MaybeUninit<f32>]),
) {
    use std::arch::x86_64::*;
    let zero = [[_mm512_setzero_ps(); N]; S];
    let v = pixel_taps(padded, wt, op, d, (oy, x0, o0, N), zero, |mut v, inputs, ws| {
        let xs = &inputs[..S * SEG];
        // SAFETY: xs has S * SEG elements (sliced above); unaligned loads.
        let xv: [__m512; S] = std::array::from_fn(|sg| unsafe { _mm512_loadu_ps(xs.as_ptr().add(sg * SEG)) });
        // Channel-major: one broadcast per weight, live for its S FMAs only
        // (N broadcasts held across the segments spilled at N = 10).
        for (k, &w) in ws[..N].iter().enumerate() {
            let wv = _mm512_set1_ps(w);
            for sg in 0..S {
                v[sg][k] = _mm512_fmadd_ps(wv, xv[sg], v[sg][k]);
            }
        }
        v
    });
    for (sg, vs) in v.iter().enumerate() {
        let x = x0 + sg * SEG;
        let len = SEG.min(d.ow - x);
        let mask: __mmask16 = if len == SEG { !0 } else { (1 << len) - 1 };
        for (k, &a) in vs.iter().enumerate() {
            let oc = o0 + k;
            let a = _mm512_add_ps(a, _mm512_set1_ps(bias.map_or(0.0, |b| b[oc])));
            let out = &mut dst[(oc * d.oh + oy) * d.ow + x..][..len];
            // SAFETY: `out` holds `len` elements (bounds-checked slice) and
            // the mask enables exactly the first `len` lanes; MaybeUninit<f32>
            // has f32's layout, and the store initializes those elements.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().cast(), mask, a) };
        }
    }
}
