//! Direct 2-d convolution for few output channels (LeNet, the seed model).
//!
//! im2col + gemm wastes most of its time there: the unfolded buffer is large
//! and gemm's micro-kernels are mostly padding when N is 6 or 16. Here each
//! task computes a 16-pixel row segment for up to 8 output channels held in
//! registers, so every input vector is loaded once and used for 8 FMAs.
//! f32 on AVX-512 only; other cases use im2col + gemm.

use super::conv::Geom;
use super::threads::{install, num_threads};
use rayon::prelude::*;

/// Output pixels per register tile.
const SEG: usize = 16;
/// Output channels per register tile.
const OB: usize = 8;

/// Whether the direct kernels beat im2col + gemm for this shape: stride 1,
/// one group, few output channels, small patches.
pub(super) fn applies(g: &Geom) -> bool {
    g.stride == [1, 1] && g.groups == 1 && g.o <= 32 && g.c * g.kh * g.kw <= 256
}

impl Geom {
    /// Padded row length, with a slack of SEG so the last tile's full-width
    /// loads stay in the buffer.
    fn padded_w(&self) -> usize {
        self.w + 2 * self.pad[1] + SEG
    }

    fn padded_h(&self) -> usize {
        self.h + 2 * self.pad[0]
    }
}

/// `n` images `x` (NCHW) convolved with `w` (`[o, c, kh, kw]`), plus `bias`.
/// `None` when this CPU lacks AVX-512 (the caller falls back to im2col + gemm).
pub(crate) fn conv2d(x: &[f32], w: &[f32], bias: Option<&[f32]>, d: Geom, n: usize) -> Option<Vec<f32>> {
    if !super::simd::has_avx512() {
        return None;
    }
    let (o, l) = (d.o, d.oh * d.ow);
    // Weights as [c, kh, kw, o_padded]: the 8 channels of a tile are adjacent.
    let op = o.div_ceil(OB) * OB;
    let taps = d.c * d.kh * d.kw;
    let mut wt = vec![0f32; taps * op];
    for oc in 0..o {
        for t in 0..taps {
            wt[t * op + oc] = w[oc * taps + t];
        }
    }
    let mut out = vec![0f32; n * o * l];
    if out.is_empty() {
        return Some(out);
    }
    let per_image = |(i, dst): (usize, &mut [f32])| {
        let img = &x[i * d.c * d.h * d.w..][..d.c * d.h * d.w];
        image(img, &wt, op, bias, d, dst)
    };
    if n > 1 && num_threads() > 1 {
        install(|| out.par_chunks_mut(o * l).enumerate().for_each(per_image));
    } else {
        out.chunks_mut(o * l).enumerate().for_each(per_image);
    }
    Some(out)
}

fn image(img: &[f32], wt: &[f32], op: usize, bias: Option<&[f32]>, d: Geom, dst: &mut [f32]) {
    let (ph, pw) = (d.padded_h(), d.padded_w());
    let mut padded = vec![0f32; d.c * ph * pw];
    for c in 0..d.c {
        for y in 0..d.h {
            let src = &img[(c * d.h + y) * d.w..][..d.w];
            padded[(c * ph + y + d.pad[0]) * pw + d.pad[1]..][..d.w].copy_from_slice(src);
        }
    }
    if d.o.is_multiple_of(SEG) {
        return image_by_channels(&padded, wt, op, bias, d, dst);
    }
    // Two 16-pixel segments per tile where the row has them: a partial channel
    // block (the seed model's 10 = 8 + 2) then still has enough independent FMA
    // chains to hide latency, and each weight broadcast feeds two FMAs.
    let mut acc = [[[0f32; SEG]; OB]; 2];
    for oy in 0..d.oh {
        for x0 in (0..d.ow).step_by(2 * SEG) {
            let segs = if d.ow - x0 > SEG { 2 } else { 1 };
            for o0 in (0..d.o).step_by(OB) {
                let at = (oy, x0, o0);
                macro_rules! tile {
                    ($s:literal) => {
                        // SAFETY (each arm): `conv2d` checked AVX-512 support before any image runs.
                        // A partial last block only does the FMAs of its real channels.
                        match d.o - o0 {
                            1 => unsafe { tile_avx512::<1, $s>(&padded, wt, op, d, at, &mut acc) },
                            2 => unsafe { tile_avx512::<2, $s>(&padded, wt, op, d, at, &mut acc) },
                            3 => unsafe { tile_avx512::<3, $s>(&padded, wt, op, d, at, &mut acc) },
                            4 => unsafe { tile_avx512::<4, $s>(&padded, wt, op, d, at, &mut acc) },
                            5 => unsafe { tile_avx512::<5, $s>(&padded, wt, op, d, at, &mut acc) },
                            6 => unsafe { tile_avx512::<6, $s>(&padded, wt, op, d, at, &mut acc) },
                            7 => unsafe { tile_avx512::<7, $s>(&padded, wt, op, d, at, &mut acc) },
                            _ => unsafe { tile_avx512::<OB, $s>(&padded, wt, op, d, at, &mut acc) },
                        }
                    };
                }
                if segs == 2 {
                    tile!(2)
                } else {
                    tile!(1)
                }
                for (sg, block) in acc.iter().enumerate().take(segs) {
                    let x = x0 + sg * SEG;
                    let len = SEG.min(d.ow - x);
                    for (k, row) in block.iter().enumerate().take(OB.min(d.o - o0)) {
                        let oc = o0 + k;
                        let b = bias.map_or(0.0, |b| b[oc]);
                        let out = &mut dst[(oc * d.oh + oy) * d.ow + x..][..len];
                        for (v, &a) in out.iter_mut().zip(row) {
                            *v = a + b;
                        }
                    }
                }
            }
        }
    }
}

/// The tile transposed, for channel counts that are multiples of 16: lanes
/// run over 16 output channels and each of up to 8 pixels has its own
/// accumulator, so narrow outputs (LeNet's 10-pixel rows) waste no lanes.
fn image_by_channels(padded: &[f32], wt: &[f32], op: usize, bias: Option<&[f32]>, d: Geom, dst: &mut [f32]) {
    // Up to 12 pixel accumulators (+1 weight vector) fit the 32 zmm registers;
    // a whole 10-pixel LeNet row is then one throughput-bound tile.
    const P: usize = 12;
    let mut acc = [[0f32; SEG]; P];
    for oy in 0..d.oh {
        for x0 in (0..d.ow).step_by(P) {
            let px = P.min(d.ow - x0);
            for o0 in (0..d.o).step_by(SEG) {
                let at = (oy, x0, o0);
                // SAFETY (each arm): `conv2d` checked AVX-512 support before any image runs.
                match px {
                    1 => unsafe { tile_by_channels::<1>(padded, wt, op, d, at, &mut acc) },
                    2 => unsafe { tile_by_channels::<2>(padded, wt, op, d, at, &mut acc) },
                    3 => unsafe { tile_by_channels::<3>(padded, wt, op, d, at, &mut acc) },
                    4 => unsafe { tile_by_channels::<4>(padded, wt, op, d, at, &mut acc) },
                    5 => unsafe { tile_by_channels::<5>(padded, wt, op, d, at, &mut acc) },
                    6 => unsafe { tile_by_channels::<6>(padded, wt, op, d, at, &mut acc) },
                    7 => unsafe { tile_by_channels::<7>(padded, wt, op, d, at, &mut acc) },
                    8 => unsafe { tile_by_channels::<8>(padded, wt, op, d, at, &mut acc) },
                    9 => unsafe { tile_by_channels::<9>(padded, wt, op, d, at, &mut acc) },
                    10 => unsafe { tile_by_channels::<10>(padded, wt, op, d, at, &mut acc) },
                    11 => unsafe { tile_by_channels::<11>(padded, wt, op, d, at, &mut acc) },
                    _ => unsafe { tile_by_channels::<P>(padded, wt, op, d, at, &mut acc) },
                }
                for (p, chans) in acc.iter().enumerate().take(px) {
                    for (k, &a) in chans.iter().enumerate() {
                        let oc = o0 + k;
                        dst[(oc * d.oh + oy) * d.ow + x0 + p] = a + bias.map_or(0.0, |b| b[oc]);
                    }
                }
            }
        }
    }
}

/// Accumulates output row `oy`, pixels `x0..x0+N`, channels `o0..o0+16` into
/// `acc[pixel][channel]`: one weight-vector load and N FMAs per tap.
#[target_feature(enable = "avx512f")]
unsafe fn tile_by_channels<const N: usize>(
    padded: &[f32],
    wt: &[f32],
    op: usize,
    d: Geom,
    (oy, x0, o0): (usize, usize, usize),
    acc: &mut [[f32; SEG]; 12],
) {
    use std::arch::x86_64::*;
    let (ph, pw) = (d.padded_h(), d.padded_w());
    let mut v = [_mm512_setzero_ps(); N];
    for c in 0..d.c {
        for ki in 0..d.kh {
            let row = &padded[(c * ph + oy + ki * d.dil[0]) * pw..][..pw];
            for kj in 0..d.kw {
                let xs = &row[x0 + kj * d.dil[1]..][..N];
                let t = (c * d.kh + ki) * d.kw + kj;
                let ws = &wt[t * op + o0..][..SEG];
                // SAFETY: ws has SEG = 16 elements (sliced above); unaligned load.
                let wv = unsafe { _mm512_loadu_ps(ws.as_ptr()) };
                for (a, &x) in v.iter_mut().zip(xs) {
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(x), wv, *a);
                }
            }
        }
    }
    for (dst, a) in acc.iter_mut().zip(v) {
        // SAFETY: dst is a 16-element array.
        unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), a) };
    }
}

/// Accumulates output row `oy`, pixels `x0..x0+S*SEG`, channels `o0..o0+N`
/// (`N <= OB`, `S <= 2`) into `acc[segment][channel]` with one 16-lane FMA
/// per (segment, channel, tap). Written with intrinsics: left to itself, LLVM
/// vectorized the tap loop with gathers and scatters.
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const N: usize, const S: usize>(
    padded: &[f32],
    wt: &[f32],
    op: usize,
    d: Geom,
    (oy, x0, o0): (usize, usize, usize),
    acc: &mut [[[f32; SEG]; OB]; 2],
) {
    use std::arch::x86_64::*;
    let (ph, pw) = (d.padded_h(), d.padded_w());
    let mut v = [[_mm512_setzero_ps(); N]; S];
    for c in 0..d.c {
        for ki in 0..d.kh {
            let row = &padded[(c * ph + oy + ki * d.dil[0]) * pw..][..pw];
            for kj in 0..d.kw {
                let t = (c * d.kh + ki) * d.kw + kj;
                let ws = &wt[t * op + o0..][..N];
                for (sg, vs) in v.iter_mut().enumerate() {
                    let xs = &row[x0 + sg * SEG + kj * d.dil[1]..][..SEG];
                    // SAFETY: xs has SEG = 16 elements (sliced above); unaligned load.
                    let xv = unsafe { _mm512_loadu_ps(xs.as_ptr()) };
                    for (a, &w) in vs.iter_mut().zip(ws) {
                        *a = _mm512_fmadd_ps(_mm512_set1_ps(w), xv, *a);
                    }
                }
            }
        }
    }
    for (block, vs) in acc.iter_mut().zip(v) {
        for (dst, a) in block.iter_mut().zip(vs) {
            // SAFETY: dst is a 16-element array.
            unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), a) };
        }
    }
}
