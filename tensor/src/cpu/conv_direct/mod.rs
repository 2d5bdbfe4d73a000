//! Direct 2-d convolution for few output channels (LeNet, the seed model).
//!
//! im2col + gemm wastes most of its time there: the unfolded buffer is large
//! and gemm's micro-kernels are mostly padding when N is 6 or 16. Two register
//! tilings instead, one image per task:
//! - pixel tiles: one or two 16-pixel row segments (lanes) for up to 12
//!   output channels (6 on AVX2), so every input vector is loaded once and
//!   used for that many FMAs;
//! - channel tiles, when the channel count is a multiple of 16: 16 channels
//!   (lanes) for up to 12 pixels of a row, so 10-pixel rows waste no lanes.
//!   Each input is broadcast once per kernel row and feeds up to `kw` FMAs;
//!   the pixel-major results are transposed into NCHW per image.
//!
//! f32 on AVX-512 (`avx512`) or AVX2 + FMA (`avx2`: the same layouts as
//! pairs of 8-lane halves, with fewer accumulators per tile to fit 16
//! registers); other CPUs and dtypes use im2col + gemm.

mod avx2;
mod avx512;

use super::conv::{copy_row, Geom};
use super::elementwise::Epilogue;
use super::team;
use super::threads::num_threads;
use std::mem::MaybeUninit;

/// Output pixels per register tile.
const SEG: usize = 16;
/// The weights' channel rows are padded to a multiple of this (a tile's
/// channels lie inside one row).
const OB: usize = 8;

/// Which register tiles a convolution runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
}

impl Isa {
    /// The best tiles this CPU runs, if any.
    fn detect() -> Option<Isa> {
        match super::simd::level() {
            4 => Some(Isa::Avx512),
            3 => Some(Isa::Avx2),
            _ => None,
        }
    }

    /// Whether this CPU can run `self`'s tiles.
    pub(crate) fn supported(self) -> bool {
        super::simd::level()
            >= match self {
                Isa::Avx512 => 4,
                Isa::Avx2 => 3,
            }
    }
}

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

/// Folds `acc = f(acc, inputs, weights)` over every tap of the pixel tile at
/// output row `oy`, first pixel `x0`, channels `o0..o0 + n`: `inputs` is the
/// padded input row from the tap's first pixel on, `weights` the tap's `n`
/// channel weights. Each ISA's tile passes its vector loop as `f`; always
/// inlined, so that loop compiles inside the tile's target-feature function.
/// The accumulators travel by value: captured by reference, LLVM stored a
/// 20-register tile back to the stack at every tap.
#[inline(always)]
fn pixel_taps<A>(
    padded: &[f32],
    wt: &[f32],
    op: usize,
    d: Geom,
    (oy, x0, o0, n): (usize, usize, usize, usize),
    mut acc: A,
    mut f: impl FnMut(A, &[f32], &[f32]) -> A,
) -> A {
    let (ph, pw) = (d.padded_h(), d.padded_w());
    for c in 0..d.c {
        for ki in 0..d.kh {
            let row = &padded[(c * ph + oy + ki * d.dil[0]) * pw..][..pw];
            for kj in 0..d.kw {
                let t = (c * d.kh + ki) * d.kw + kj;
                acc = f(acc, &row[x0 + kj * d.dil[1]..], &wt[t * op + o0..][..n]);
            }
        }
    }
    acc
}

/// Whether this CPU runs any of the tiles (AVX-512, or AVX2 + FMA).
pub(crate) fn available() -> bool {
    Isa::detect().is_some()
}

/// A convolution's weights as the caller has them.
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    /// `[o, c, kh, kw]`, reordered for the kernels on every call.
    Plain(&'a [f32]),
    /// Already in the kernels' layout ([`pack`]), [`packed_len`] long
    /// (checked: panics otherwise).
    Packed(&'a [f32]),
}

/// `n` images `x` (NCHW) convolved with `w`, plus `bias`, then `epilogue`
/// applied to each image's output while it is in cache (a separate pass over
/// a batch's output ran from memory: 6% of the seed model's batch-64 static
/// run). `None` when this CPU has neither AVX-512 nor AVX2 + FMA (the caller
/// falls back to im2col + gemm).
pub(crate) fn conv2d(
    x: &[f32],
    w: Weights<'_>,
    bias: Option<&[f32]>,
    d: Geom,
    n: usize,
    epilogue: Option<Epilogue<'_>>,
) -> Option<Vec<f32>> {
    Some(conv2d_with(Isa::detect()?, x, w, bias, d, n, epilogue))
}

/// Output channels padded to whole [`OB`] blocks.
fn padded_channels(d: &Geom) -> usize {
    d.o.div_ceil(OB) * OB
}

/// Length of `d`'s weights in the kernels' layout ([`pack`]).
pub(crate) fn packed_len(d: &Geom) -> usize {
    d.c * d.kh * d.kw * padded_channels(d)
}

/// `w` (`[o, c, kh, kw]`) in the layout the kernels read, `[c, kh, kw,
/// o_padded]`: the 8 channels of a tile are adjacent. What an executor keeps
/// for a weight it runs many times ([`Weights::Packed`]).
pub(crate) fn pack(w: &[f32], d: &Geom) -> Vec<f32> {
    let mut wt = vec![0f32; packed_len(d)];
    pack_into(w, d, &mut wt);
    wt
}

/// [`pack`] into `wt`, which is [`packed_len`] long and zero.
fn pack_into(w: &[f32], d: &Geom, wt: &mut [f32]) {
    let (op, taps) = (padded_channels(d), d.c * d.kh * d.kw);
    for oc in 0..d.o {
        for t in 0..taps {
            wt[t * op + oc] = w[oc * taps + t];
        }
    }
}

/// [`conv2d`] with the given tiles, which the CPU must support (checked:
/// panics otherwise, as running them would be undefined behaviour).
pub(crate) fn conv2d_with(
    isa: Isa,
    x: &[f32],
    w: Weights<'_>,
    bias: Option<&[f32]>,
    d: Geom,
    n: usize,
    epilogue: Option<Epilogue<'_>>,
) -> Vec<f32> {
    assert!(isa.supported(), "{isa:?} convolution tiles on a CPU without them");
    let mut reordered = Vec::new();
    let wt = match w {
        Weights::Packed(wt) => wt,
        Weights::Plain(w) => {
            reordered = crate::cpu::arena::filled(packed_len(&d), 0f32);
            pack_into(w, &d, &mut reordered);
            &reordered[..]
        }
    };
    assert_eq!(wt.len(), packed_len(&d), "packed convolution weights of another geometry");
    let (o, l, op) = (d.o, d.oh * d.ow, padded_channels(&d));
    // Left uninitialized: the kernels write every element exactly once, and
    // zeroing first would be a serial pass over the whole output.
    let mut out = crate::cpu::arena::with_capacity(n * o * l);
    if n * o * l == 0 {
        return out;
    }
    let spare = &mut out.spare_capacity_mut()[..n * o * l];
    let par = n > 1 && num_threads() > 1;
    team::chunks_mut(par, spare, o * l, |i, dst| {
        let img = &x[i * d.c * d.h * d.w..][..d.c * d.h * d.w];
        Buffers::with(|buf| image(isa, img, wt, op, bias, d, buf, dst));
        if let Some(epilogue) = epilogue {
            // SAFETY: `image` wrote all of `dst` (see below), and
            // MaybeUninit<f32> has f32's layout.
            epilogue.apply(unsafe { &mut *(dst as *mut [MaybeUninit<f32>] as *mut [f32]) }, i * o * l);
        }
    });
    // SAFETY: `image` wrote all `o * l` outputs of every image: the pixel
    // tiles' segments cover each row and their channel blocks every channel;
    // the channel tiles' pixel runs sum to each row's width and
    // `transpose_out` stores all `l` pixels of every 16-channel block.
    unsafe { out.set_len(n * o * l) };
    crate::cpu::arena::recycle(&mut reordered);
    out
}

/// Working memory of one thread, reused across the images it takes and
/// across calls (one calloc per image was a few percent of LeNet conv2, and
/// one per call was most of what a static graph run still allocated).
#[derive(Default)]
struct Buffers {
    /// The image inside its zero border and row slack. Images only rewrite
    /// the interior, so the border stays zero.
    padded: Vec<f32>,
    /// `(c, h, w, pad)` of the images `padded` holds: another geometry moves
    /// the border, so it is zeroed again.
    padded_for: Option<(usize, usize, usize, [usize; 2])>,
    /// Channel tiles' outputs for one 16-channel block, pixel-major.
    by_pixel: Vec<[f32; SEG]>,
}

/// Buffers above this many bytes are not kept between calls.
const KEEP_BYTES: usize = 4 << 20;

thread_local! {
    static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Buffers::default());
}

impl Buffers {
    /// Runs `f` on this thread's buffers (fresh ones if they are in use or
    /// gone), then drops any grown past [`KEEP_BYTES`].
    fn with<R>(f: impl FnOnce(&mut Buffers) -> R) -> R {
        let mut f = Some(f);
        let kept = BUFFERS.try_with(|b| {
            let mut b = b.try_borrow_mut().ok()?;
            let r = (f.take().expect("called once"))(&mut b);
            if b.padded.capacity() * 4 > KEEP_BYTES || b.by_pixel.capacity() * 4 * SEG > KEEP_BYTES {
                *b = Buffers::default();
            }
            Some(r)
        });
        match kept.ok().flatten() {
            Some(r) => r,
            None => (f.take().expect("not called yet"))(&mut Buffers::default()),
        }
    }
}

// The image's inputs, its tiles' shared state and its output, all needed.
#[allow(clippy::too_many_arguments)]
fn image(
    isa: Isa,
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
        return image_by_channels(isa, at, bias, &mut buf.by_pixel, dst);
    }
    let (ph, pw) = (d.padded_h(), d.padded_w());
    let geometry = Some((d.c, d.h, d.w, d.pad));
    if buf.padded_for != geometry {
        buf.padded.clear();
        buf.padded_for = geometry;
    }
    buf.padded.resize(d.c * ph * pw, 0.0);
    for c in 0..d.c {
        for y in 0..d.h {
            let src = &img[(c * d.h + y) * d.w..][..d.w];
            // Inlined block moves: a memcpy call per short row costs more than
            // the data moved (see `copy_row`).
            copy_row(&mut buf.padded[(c * ph + y + d.pad[0]) * pw + d.pad[1]..][..d.w], src);
        }
    }
    let padded = &buf.padded[..];
    if channel_tiles {
        let at = Tile { src: padded, ph, pw, off: 0, wt, op, d };
        return image_by_channels(isa, at, bias, &mut buf.by_pixel, dst);
    }
    // AVX-512: two 16-pixel segments per tile where the row has them, so
    // each weight broadcast feeds two FMAs, and the channels split into
    // near-equal blocks of at most `OB512`: the seed model's 10 channels are
    // one block of 20 accumulators, where blocks of 8 + 2 left the second
    // latency-bound and loaded every input twice. AVX2: one segment (two
    // halves) of at most 6 channels.
    let (block, max_segs) = match isa {
        Isa::Avx512 => (avx512::OB512, 2),
        Isa::Avx2 => (avx2::OB2, 1),
    };
    let blocks = d.o.div_ceil(block);
    for oy in 0..d.oh {
        for x0 in (0..d.ow).step_by(max_segs * SEG) {
            let segs = if max_segs == 2 && d.ow - x0 > SEG { 2 } else { 1 };
            let mut o0 = 0;
            for b in 0..blocks {
                let at = (oy, x0, o0);
                let left = (d.o - o0) / (blocks - b);
                o0 += left;
                // SAFETY (each arm): `conv2d_with` checked that the CPU has the
                // tiles' features before any image runs. A partial last block
                // only does the FMAs of its real channels.
                let io = (bias, &mut *dst);
                macro_rules! tile512 {
                    ($s:literal) => {
                        match left {
                            1 => unsafe { avx512::tile::<1, $s>(padded, wt, op, d, at, io) },
                            2 => unsafe { avx512::tile::<2, $s>(padded, wt, op, d, at, io) },
                            3 => unsafe { avx512::tile::<3, $s>(padded, wt, op, d, at, io) },
                            4 => unsafe { avx512::tile::<4, $s>(padded, wt, op, d, at, io) },
                            5 => unsafe { avx512::tile::<5, $s>(padded, wt, op, d, at, io) },
                            6 => unsafe { avx512::tile::<6, $s>(padded, wt, op, d, at, io) },
                            7 => unsafe { avx512::tile::<7, $s>(padded, wt, op, d, at, io) },
                            8 => unsafe { avx512::tile::<8, $s>(padded, wt, op, d, at, io) },
                            9 => unsafe { avx512::tile::<9, $s>(padded, wt, op, d, at, io) },
                            10 => unsafe { avx512::tile::<10, $s>(padded, wt, op, d, at, io) },
                            11 => unsafe { avx512::tile::<11, $s>(padded, wt, op, d, at, io) },
                            _ => unsafe { avx512::tile::<{ avx512::OB512 }, $s>(padded, wt, op, d, at, io) },
                        }
                    };
                }
                // The tiles add the bias and store their outputs themselves.
                match (isa, segs) {
                    (Isa::Avx512, 2) => tile512!(2),
                    (Isa::Avx512, _) => tile512!(1),
                    (Isa::Avx2, _) => match left {
                        1 => unsafe { avx2::tile::<1>(padded, wt, op, d, at, io) },
                        2 => unsafe { avx2::tile::<2>(padded, wt, op, d, at, io) },
                        3 => unsafe { avx2::tile::<3>(padded, wt, op, d, at, io) },
                        4 => unsafe { avx2::tile::<4>(padded, wt, op, d, at, io) },
                        5 => unsafe { avx2::tile::<5>(padded, wt, op, d, at, io) },
                        _ => unsafe { avx2::tile::<{ avx2::OB2 }>(padded, wt, op, d, at, io) },
                    },
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
fn image_by_channels(
    isa: Isa,
    img: Tile,
    bias: Option<&[f32]>,
    scratch: &mut [[f32; SEG]],
    dst: &mut [MaybeUninit<f32>],
) {
    let (d, pw) = (img.d, img.pw);
    let l = d.oh * d.ow;
    // Rows split into near-equal tiles: 28 = 10 + 9 + 9 keeps every tile at 8+
    // accumulators, where 12 + 12 + 4 would leave the last one latency-bound.
    let tiles = d.ow.div_ceil(match isa {
        Isa::Avx512 => avx512::P,
        Isa::Avx2 => avx2::P2,
    });
    for o0 in (0..d.o).step_by(SEG) {
        let b = bias.map_or([0.0; SEG], |b| b[o0..o0 + SEG].try_into().expect("16 biases"));
        for oy in 0..d.oh {
            let mut x0 = 0;
            for t in 0..tiles {
                let px = (d.ow - x0) / (tiles - t);
                let out = &mut scratch[oy * d.ow + x0..][..px];
                let at = Tile { off: oy * pw + x0, wt: &img.wt[o0..], ..img };
                // SAFETY (each arm): `conv2d_with` checked that the CPU has the
                // tiles' features before any image runs.
                unsafe {
                    match (isa, d.kw, d.dil[1]) {
                        (Isa::Avx512, 5, 1) => avx512::tile_px::<5>(&at, &b, out),
                        (Isa::Avx512, 3, 1) => avx512::tile_px::<3>(&at, &b, out),
                        (Isa::Avx512, _, _) => avx512::tile_px::<0>(&at, &b, out),
                        (Isa::Avx2, _, _) => avx2::tile_px(&at, &b, out),
                    }
                }
                x0 += px;
            }
        }
        let block = &mut dst[o0 * l..][..SEG * l];
        // SAFETY: as above.
        unsafe {
            match isa {
                Isa::Avx512 => avx512::transpose_out(scratch, block),
                Isa::Avx2 => avx2::transpose_out(scratch, block),
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::{conv2d_with, Isa, Weights};
    use crate::cpu::conv::{conv2d_typed, Geom};

    /// Every tile set this CPU runs (not only the best one, so an AVX-512
    /// machine checks the AVX2 tiles too) against im2col + gemm in f64.
    #[test]
    fn every_supported_tile_set_matches_im2col_in_f64() {
        let cases = [
            // [n, c, o, h, w, kh, kw, pad, dil]
            [2, 3, 10, 9, 33, 3, 3, 0, 1], // pixel tiles: 10 / 6 + 4 channels, 33 = 16 + 16 + 1
            [1, 1, 6, 28, 28, 5, 5, 2, 1], // LeNet conv1
            [2, 5, 17, 6, 40, 3, 3, 1, 1], // 17 channels: 8 + 9 / 5 + 6 + 6
            [1, 2, 12, 5, 20, 3, 3, 1, 1], // 12 channels, the largest AVX-512 block
            [2, 3, 23, 6, 12, 3, 3, 0, 1], // 23 = 11 + 12, one segment of 10 pixels
            [1, 2, 9, 4, 50, 2, 2, 0, 1],  // 9 channels, 49 = 32 + 17 pixels
            [1, 4, 1, 5, 5, 1, 1, 0, 1],   // one channel, 1x1
            [3, 6, 16, 14, 14, 5, 5, 0, 1], // channel tiles: LeNet conv2, 10-pixel rows
            [2, 2, 32, 7, 21, 3, 3, 1, 2], // channel tiles, dilation and padding
            [2, 4, 16, 8, 13, 3, 2, 0, 1], // channel tiles, 2-wide kernel
            [2, 1, 16, 6, 17, 4, 5, 0, 1], // channel tiles, 13 = 7 + 6 / 5 + 4 + 4 pixels
        ];
        let mut state = 0x2545_f491_u64;
        let mut rand = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        };
        for isa in [Isa::Avx512, Isa::Avx2] {
            if !isa.supported() {
                println!("skipping the {isa:?} tiles: this CPU lacks them");
                continue;
            }
            for [n, c, o, h, w, kh, kw, pad, dil] in cases {
                let (oh, ow) = (h + 2 * pad - dil * (kh - 1), w + 2 * pad - dil * (kw - 1));
                let g =
                    Geom { c, h, w, o, oh, ow, kh, kw, groups: 1, stride: [1, 1], pad: [pad, pad], dil: [dil, dil] };
                let (x, wt, b) = (rand(n * c * h * w), rand(o * c * kh * kw), rand(o));
                let got = conv2d_with(isa, &x, Weights::Plain(&wt), Some(&b), g, n, None);
                let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
                let want = conv2d_typed(&f64s(&x), &f64s(&wt), Some(&f64s(&b)), g, n);
                assert_eq!(got.len(), want.len());
                let err = got.iter().zip(&want).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
                assert!(err < 1e-4, "{isa:?} tiles, case {:?}: max error {err}", [n, c, o, h, w, kh, kw, pad, dil]);
            }
        }
    }
}
