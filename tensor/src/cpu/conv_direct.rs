//! Direct 2-d convolution for few output channels (LeNet, the seed model).
//!
//! im2col + gemm wastes most of its time there: the unfolded buffer is large
//! and gemm's micro-kernels are mostly padding when N is 6 or 16. Two register
//! tilings instead, one image per task:
//! - pixel tiles: a 16-pixel row segment (lanes) for up to 8 output channels,
//!   so every input vector is loaded once and used for 8 FMAs;
//! - channel tiles, when the channel count is a multiple of 16: 16 channels
//!   (lanes) for up to 12 pixels of a row, so 10-pixel rows waste no lanes.
//!   Each input is broadcast once per kernel row and feeds up to `kw` FMAs;
//!   the pixel-major results are transposed into NCHW per image.
//!
//! f32 on AVX-512 only; other cases use im2col + gemm.

use super::conv::Geom;
use super::threads::{install, num_threads};
use rayon::prelude::*;
use std::mem::MaybeUninit;

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
    // Left uninitialized: the kernels write every element exactly once, and
    // zeroing first would be a serial pass over the whole output.
    let mut out = Vec::with_capacity(n * o * l);
    if n * o * l == 0 {
        return Some(out);
    }
    let per_image = |buf: &mut Buffers, (i, dst): (usize, &mut [MaybeUninit<f32>])| {
        let img = &x[i * d.c * d.h * d.w..][..d.c * d.h * d.w];
        image(img, &wt, op, bias, d, buf, dst)
    };
    let spare = &mut out.spare_capacity_mut()[..n * o * l];
    if n > 1 && num_threads() > 1 {
        install(|| spare.par_chunks_mut(o * l).enumerate().for_each_init(Buffers::default, per_image));
    } else {
        let mut buf = Buffers::default();
        spare.chunks_mut(o * l).enumerate().for_each(|job| per_image(&mut buf, job));
    }
    // SAFETY: `image` wrote all `o * l` outputs of every image: the pixel
    // tiles' segments cover each row and their channel blocks every channel;
    // the channel tiles' pixel runs sum to each row's width and
    // `transpose_out` stores all `l` pixels of every 16-channel block.
    unsafe { out.set_len(n * o * l) };
    Some(out)
}

/// Working memory reused across the images of one rayon job (one calloc per
/// image was a few percent of LeNet conv2).
#[derive(Default)]
struct Buffers {
    /// The image inside its zero border and row slack. Images only rewrite
    /// the interior, so the border stays zero.
    padded: Vec<f32>,
    /// Channel tiles' outputs for one 16-channel block, pixel-major.
    by_pixel: Vec<[f32; SEG]>,
}

fn image(
    img: &[f32],
    wt: &[f32],
    op: usize,
    bias: Option<&[f32]>,
    d: Geom,
    buf: &mut Buffers,
    dst: &mut [MaybeUninit<f32>],
) {
    let channel_tiles = d.o.is_multiple_of(SEG);
    if channel_tiles {
        buf.by_pixel.resize((d.oh * d.ow).next_multiple_of(SEG), [0.0; SEG]);
    }
    if channel_tiles && d.pad == [0, 0] {
        // Channel tiles load inputs one scalar at a time, so they need no slack
        // past the row ends: without padding, they read the image as it is.
        let at = Tile { src: img, ph: d.h, pw: d.w, off: 0, wt, op, d };
        return image_by_channels(at, bias, &mut buf.by_pixel, dst);
    }
    let (ph, pw) = (d.padded_h(), d.padded_w());
    buf.padded.resize(d.c * ph * pw, 0.0);
    for c in 0..d.c {
        for y in 0..d.h {
            let src = &img[(c * d.h + y) * d.w..][..d.w];
            buf.padded[(c * ph + y + d.pad[0]) * pw + d.pad[1]..][..d.w].copy_from_slice(src);
        }
    }
    let padded = &buf.padded[..];
    if channel_tiles {
        let at = Tile { src: padded, ph, pw, off: 0, wt, op, d };
        return image_by_channels(at, bias, &mut buf.by_pixel, dst);
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
                            1 => unsafe { tile_avx512::<1, $s>(padded, wt, op, d, at, &mut acc) },
                            2 => unsafe { tile_avx512::<2, $s>(padded, wt, op, d, at, &mut acc) },
                            3 => unsafe { tile_avx512::<3, $s>(padded, wt, op, d, at, &mut acc) },
                            4 => unsafe { tile_avx512::<4, $s>(padded, wt, op, d, at, &mut acc) },
                            5 => unsafe { tile_avx512::<5, $s>(padded, wt, op, d, at, &mut acc) },
                            6 => unsafe { tile_avx512::<6, $s>(padded, wt, op, d, at, &mut acc) },
                            7 => unsafe { tile_avx512::<7, $s>(padded, wt, op, d, at, &mut acc) },
                            _ => unsafe { tile_avx512::<OB, $s>(padded, wt, op, d, at, &mut acc) },
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
                            v.write(a + b);
                        }
                    }
                }
            }
        }
    }
}

/// The tile transposed, for channel counts that are multiples of 16: lanes
/// run over 16 output channels and each of up to `P` pixels of an output row
/// has its own accumulator, so narrow outputs (LeNet's 10-pixel rows) waste
/// no lanes. `img` is the whole image and all weights (`off` 0); `scratch`
/// holds one block's outputs, pixel-major, padded to whole 16x16 transposes.
fn image_by_channels(img: Tile, bias: Option<&[f32]>, scratch: &mut [[f32; SEG]], dst: &mut [MaybeUninit<f32>]) {
    let (d, pw) = (img.d, img.pw);
    let l = d.oh * d.ow;
    // Rows split into near-equal tiles: 28 = 10 + 9 + 9 keeps every tile at 8+
    // accumulators, where 12 + 12 + 4 would leave the last one latency-bound.
    let tiles = d.ow.div_ceil(P);
    for o0 in (0..d.o).step_by(SEG) {
        let b = bias.map_or([0.0; SEG], |b| b[o0..o0 + SEG].try_into().expect("16 biases"));
        for oy in 0..d.oh {
            let mut x0 = 0;
            for t in 0..tiles {
                let px = (d.ow - x0) / (tiles - t);
                let out = &mut scratch[oy * d.ow + x0..][..px];
                let at = Tile { off: oy * pw + x0, wt: &img.wt[o0..], ..img };
                // SAFETY (each arm): `conv2d` checked AVX-512 support before any image runs.
                unsafe {
                    match (d.kw, d.dil[1]) {
                        (5, 1) => tile_px::<5>(&at, &b, out),
                        (3, 1) => tile_px::<3>(&at, &b, out),
                        _ => tile_px::<0>(&at, &b, out),
                    }
                }
                x0 += px;
            }
        }
        // SAFETY: as above.
        unsafe { transpose_out(scratch, &mut dst[o0 * l..][..SEG * l]) };
    }
}

/// Output pixels per channel tile: 12 accumulators, the 16 broadcast inputs a
/// 5-wide kernel row needs for them, and one weight vector fill 29 of the 32
/// zmm registers.
const P: usize = 12;

/// Where a channel tile reads: `src` is the image (padded if the conv is),
/// `c` planes of `ph` rows of `pw` floats; `off` the index of the tile's first
/// input pixel in channel 0; `wt` the packed weights (`[c, kh, kw, op]`) from
/// the block's first output channel on.
#[derive(Clone, Copy)]
struct Tile<'a> {
    src: &'a [f32],
    ph: usize,
    pw: usize,
    off: usize,
    wt: &'a [f32],
    op: usize,
    d: Geom,
}

/// `channel_tile` for the `out.len()` (1 to `P`) pixels of the tile.
#[target_feature(enable = "avx512f")]
fn tile_px<const KW: usize>(at: &Tile, bias: &[f32; SEG], out: &mut [[f32; SEG]]) {
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
fn transpose_out(scratch: &[[f32; SEG]], dst: &mut [MaybeUninit<f32>]) {
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
