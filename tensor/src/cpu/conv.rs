//! 2-d convolution (im2col + gemm) and transposed convolution (gemm + col2im).
//! f16/bf16 compute in f32, as PyTorch's CPU kernels do.

#[cfg(target_arch = "x86_64")]
use super::conv_direct;
use super::elementwise::Epilogue;
use super::matmul::{gemm_accumulate, gemm_is_parallel, gemm_raw, gemm_strided, GemmElem, MatRef};
use super::strided::contiguous;
use super::team;
use super::threads::num_threads;
use super::CpuStorage;
use crate::op::{Conv2dParams, ConvTranspose2dParams};
use crate::{Error, ErrorKind, Layout, Result, Shape, WithDType};
use half::{bf16, f16};

/// Output geometry shared by both directions and the direct kernels.
#[derive(Clone, Copy)]
pub(super) struct Geom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub groups: usize,
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dil: [usize; 2],
}

/// The positions `lo..hi` of an axis of `outs` outputs whose tap lands inside
/// an input of size `n`, for stride `s` and tap offset `off` (tap position
/// times dilation, minus the padding): output `o` reads input `o * s + off`.
#[inline]
fn valid_range(outs: usize, n: usize, s: usize, off: isize) -> (usize, usize) {
    // o * s + off >= 0 and o * s + off < n.
    let lo = if off >= 0 { 0 } else { off.unsigned_abs().div_ceil(s) };
    let hi = if off >= n as isize { 0 } else { (n as isize - off).unsigned_abs().div_ceil(s) };
    let hi = hi.min(outs);
    (lo.min(hi), hi)
}

/// Copies `src` into `dst` (equal lengths) with fixed-size block moves the
/// compiler inlines: unfolding small images copies thousands of rows of ~10
/// elements, and a `memcpy` call per row cost more than the data moved.
#[inline(always)]
pub(super) fn copy_row<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len().min(src.len());
    let (mut d, mut s) = (&mut dst[..n], &src[..n]);
    while d.len() >= 16 {
        let (dh, dt) = d.split_at_mut(16);
        dh.copy_from_slice(&s[..16]);
        (d, s) = (dt, &s[16..]);
    }
    for block in [8, 4, 2, 1] {
        if d.len() >= block {
            let (dh, dt) = d.split_at_mut(block);
            dh.copy_from_slice(&s[..block]);
            (d, s) = (dt, &s[block..]);
        }
    }
}

/// Unfolds the channels `c0..c0+cg` of one image into `col` `[cg*kh*kw, oh*ow]`.
/// Each row of taps is split once into its padded ends (zeros) and the part
/// inside the input (a slice copy when the stride is 1).
fn im2col<T: Copy + Default>(x: &[T], g: &Geom, c0: usize, cg: usize, col: &mut [T]) {
    im2col_strided(x, g, c0, cg, col, g.oh * g.ow)
}

/// [`im2col`] with rows `ld` elements apart in `col` (so several images'
/// unfoldings can sit side by side in one matrix).
fn im2col_strided<T: Copy + Default>(x: &[T], g: &Geom, c0: usize, cg: usize, col: &mut [T], ld: usize) {
    let l = g.oh * g.ow;
    for c in 0..cg {
        let plane = &x[(c0 + c) * g.h * g.w..][..g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &mut col[((c * g.kh + ki) * g.kw + kj) * ld..][..l];
                let x0 = (kj * g.dil[1]) as isize - g.pad[1] as isize;
                let (lo, hi) = valid_range(g.ow, g.w, g.stride[1], x0);
                for oy in 0..g.oh {
                    let iy = (oy * g.stride[0] + ki * g.dil[0]) as isize - g.pad[0] as isize;
                    let dst = &mut row[oy * g.ow..][..g.ow];
                    if iy < 0 || iy >= g.h as isize || lo >= hi {
                        dst.fill(T::default());
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..][..g.w];
                    // Guarded: an empty fill is still a memset call, per row.
                    if lo > 0 {
                        dst[..lo].fill(T::default());
                    }
                    if hi < g.ow {
                        dst[hi..].fill(T::default());
                    }
                    // lo..hi keeps ox * stride + x0 inside 0..w.
                    let first = (lo * g.stride[1]) as isize + x0;
                    if g.stride[1] == 1 {
                        copy_row(&mut dst[lo..hi], &src[first as usize..][..hi - lo]);
                    } else {
                        for (j, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = src[first as usize + j * g.stride[1]];
                        }
                    }
                }
            }
        }
    }
}

fn add_bias<T: GemmElem + std::ops::Add<Output = T>>(out: &mut [T], bias: Option<&[T]>, o: usize, l: usize) {
    if let Some(b) = bias {
        for (ch, plane) in out.chunks_mut(l).enumerate() {
            let bv = b[ch % o];
            plane.iter_mut().for_each(|v| *v = *v + bv);
        }
    }
}

/// Runs `per_image` on every image: in parallel over images when there are
/// at least as many as threads, otherwise one at a time with each image's
/// gemm (of size `mnk`) given the whole team. Each participant gets one
/// `scratch`-element buffer for all its images (which overwrite it).
fn over_images<T: Send + Copy + Default>(
    out: &mut [T],
    img: usize,
    (m, n, k): (usize, usize, usize),
    scratch: usize,
    per_image: impl Fn(&mut [T], usize, &mut [T], usize) + Sync + Send,
) {
    let threads = num_threads();
    let init = || Scratch(super::arena::filled(scratch, T::default()));
    if threads > 1 && out.len() / img.max(1) >= threads {
        team::chunks_mut_init(true, out, img, init, |s, i, dst| per_image(&mut s.0, i, dst, 1));
    } else {
        let threads = if gemm_is_parallel(threads, m, n, k) { threads } else { 1 };
        let mut s = init();
        out.chunks_mut(img).enumerate().for_each(|(i, dst)| per_image(&mut s.0, i, dst, threads));
    }
}

/// A convolution's per-thread column buffer: back to the running thread's
/// buffer arena when done, so an executor's next run reuses it.
struct Scratch<T>(Vec<T>);

impl<T> Drop for Scratch<T> {
    fn drop(&mut self) {
        super::arena::recycle(&mut self.0);
    }
}

fn conv2d_f32(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: Geom, n: usize) -> Vec<f32> {
    direct_f32(x, w, bias, g, n, None).unwrap_or_else(|| conv2d_typed(x, w, bias, g, n))
}

/// Whether the direct kernels take this convolution on this CPU.
fn direct_applies(g: &Geom) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        conv_direct::applies(g) && conv_direct::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = g;
        false
    }
}

/// The direct kernels' convolution (then `epilogue` per image), if they take it.
fn direct_f32(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: Geom,
    n: usize,
    epilogue: Option<Epilogue<'_>>,
) -> Option<Vec<f32>> {
    if !direct_applies(&g) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        conv_direct::conv2d(x, conv_direct::Weights::Plain(w), bias, g, n, epilogue)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (x, w, bias, n, epilogue);
        None
    }
}

pub(super) fn conv2d_typed<T: GemmElem + std::ops::Add<Output = T>>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: Geom,
    n: usize,
) -> Vec<T> {
    let (cg, og) = (g.c / g.groups, g.o / g.groups);
    let (k, l) = (cg * g.kh * g.kw, g.oh * g.ow);
    let pointwise = g.kh == 1 && g.kw == 1 && g.stride == [1, 1] && g.pad == [0, 0];
    let mut out = super::arena::filled(n * g.o * l, T::zero());
    if out.is_empty() {
        return out;
    }
    let scratch = if pointwise { 0 } else { k * l };
    over_images(&mut out, g.o * l, (l, og, k), scratch, |col, i, dst, threads| {
        let xi = &x[i * g.c * g.h * g.w..][..g.c * g.h * g.w];
        for grp in 0..g.groups {
            let rhs: &[T] = if pointwise {
                &xi[grp * cg * l..][..cg * l]
            } else {
                // Writes every element, so the buffer needs no clearing between images.
                im2col(xi, &g, grp * cg, cg, col);
                col
            };
            let wg = &w[grp * og * k..][..og * k];
            let dst = &mut dst[grp * og * l..][..og * l];
            // Computed as out^T (l x og) = col^T (l x k) @ wg^T (k x og): with few output
            // channels, pixels as the gemm's rows keep its wide micro-kernel busy. All
            // three transposes are just strides, and out^T is written straight into NCHW.
            let col_t = MatRef { ptr: rhs.as_ptr(), rs: 1, cs: l };
            let w_t = MatRef { ptr: wg.as_ptr(), rs: 1, cs: k };
            // SAFETY: col_t is l x k inside rhs (k x l), w_t is k x og inside wg (og x k),
            // and dst (og x l row-major) viewed as l x og has row stride 1, column stride l.
            unsafe { gemm_strided(dst.as_mut_ptr(), (1, l), col_t, w_t, (l, og, k), threads) };
        }
        add_bias(dst, bias, g.o, l);
    });
    out
}

fn conv_t_typed<T: GemmElem + std::ops::Add<Output = T>>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: Geom,
    n: usize,
) -> Vec<T> {
    // Here g.c = input channels, g.h/g.w = input size, g.o/g.oh/g.ow = output.
    let (cg, og) = (g.c / g.groups, g.o / g.groups);
    let (rows, l_in, l_out) = (og * g.kh * g.kw, g.h * g.w, g.oh * g.ow);
    let mut out = vec![T::zero(); n * g.o * l_out];
    if out.is_empty() {
        return out;
    }
    over_images(&mut out, g.o * l_out, (rows, l_in, cg), rows * l_in, |col, i, dst, threads| {
        let xi = &x[i * g.c * l_in..][..g.c * l_in];
        for grp in 0..g.groups {
            // wg is [cg, og*kh*kw], xg is [cg, h*w]; col = wg^T @ xg reads wg transposed through its strides.
            let wg = &w[grp * cg * rows..][..cg * rows];
            let xg = &xi[grp * cg * l_in..][..cg * l_in];
            let wt = MatRef { ptr: wg.as_ptr(), rs: 1, cs: rows };
            // SAFETY: wt is rows x cg inside wg (row stride 1, column stride rows); xg is cg x l_in; col is rows x l_in.
            unsafe { gemm_raw(col, wt, MatRef::rows(xg, l_in), (rows, l_in, cg), threads) };
            let dst = &mut dst[grp * og * l_out..][..og * l_out];
            for o in 0..og {
                let plane = &mut dst[o * l_out..][..l_out];
                for ki in 0..g.kh {
                    for kj in 0..g.kw {
                        let src = &col[((o * g.kh + ki) * g.kw + kj) * l_in..][..l_in];
                        // Input column xx adds into output column xx * stride + x0;
                        // lo..hi are the columns that land inside the output.
                        let x0 = (kj * g.dil[1]) as isize - g.pad[1] as isize;
                        let (lo, hi) = valid_range(g.w, g.ow, g.stride[1], x0);
                        if lo >= hi {
                            continue;
                        }
                        let first = ((lo * g.stride[1]) as isize + x0) as usize;
                        for y in 0..g.h {
                            let oy = (y * g.stride[0] + ki * g.dil[0]) as isize - g.pad[0] as isize;
                            if oy < 0 || oy >= g.oh as isize {
                                continue;
                            }
                            let orow = &mut plane[oy as usize * g.ow..][..g.ow];
                            let srow = &src[y * g.w + lo..y * g.w + hi];
                            if g.stride[1] == 1 {
                                for (d, &v) in orow[first..first + (hi - lo)].iter_mut().zip(srow) {
                                    *d = *d + v;
                                }
                            } else {
                                for (j, &v) in srow.iter().enumerate() {
                                    let d = &mut orow[first + j * g.stride[1]];
                                    *d = *d + v;
                                }
                            }
                        }
                    }
                }
            }
        }
        add_bias(dst, bias, g.o, l_out);
    });
    out
}

/// Images per gemm in the weight gradient and the transposed convolution:
/// enough that the product's inner (or outer) size is ~`target` pixels, since
/// gemm is inefficient on one small image (LeNet's conv2: 100 pixels).
fn images_per_gemm(pixels: usize, target: usize) -> usize {
    (target / pixels.max(1)).max(1)
}

/// `dw [o, cg, kh, kw] = sum over images of grad_out (og x l) @ im2col(x)^T
/// (l x k)`, per group. Images are split across threads, each accumulating
/// its own `dw`, then summed. Within a thread, a few images at a time are
/// unfolded side by side (and their output gradients gathered to match), so
/// each gemm has an inner size of ~1K pixels and the buffers stay in cache.
fn conv_weight_grad_typed<T: GemmElem + std::ops::Add<Output = T>>(
    x: &[T],
    gy: &[T],
    _bias: Option<&[T]>,
    g: Geom,
    n: usize,
) -> Vec<T> {
    let (cg, og) = (g.c / g.groups, g.o / g.groups);
    let (k, l) = (cg * g.kh * g.kw, g.oh * g.ow);
    let size = g.o * k;
    if size == 0 || n == 0 || l == 0 {
        return vec![T::zero(); size];
    }
    let parts = num_threads().min(n);
    let per = n.div_ceil(parts);
    let chunk = images_per_gemm(l, 1024).min(per);
    let ld = chunk * l;
    let partial = |p: usize| {
        let mut acc = vec![T::zero(); size];
        let mut col = vec![T::default(); k * ld];
        let mut gbuf = vec![T::default(); og * ld];
        let images = p * per..((p + 1) * per).min(n);
        for first in images.clone().step_by(chunk) {
            let m = chunk.min(images.end - first);
            for grp in 0..g.groups {
                for j in 0..m {
                    let i = first + j;
                    let xi = &x[i * g.c * g.h * g.w..][..g.c * g.h * g.w];
                    im2col_strided(xi, &g, grp * cg, cg, &mut col[j * l..], ld);
                    let gi = &gy[(i * g.o + grp * og) * l..][..og * l];
                    for (o, src) in gi.chunks_exact(l).enumerate() {
                        copy_row(&mut gbuf[o * ld + j * l..][..l], src);
                    }
                }
                // Computed transposed, dw^T (k x og) += col (k x m l) @ gbuf^T (m l x og):
                // with few output channels, the taps as the gemm's rows keep its
                // wide micro-kernel busy (as in the forward convolution).
                let lhs = MatRef { ptr: col.as_ptr(), rs: ld, cs: 1 };
                let rhs = MatRef { ptr: gbuf.as_ptr(), rs: 1, cs: ld };
                let dst = &mut acc[grp * og * k..][..og * k];
                // SAFETY: lhs is k x (m l) inside col (k * ld elements, m l <= ld),
                // rhs is (m l) x og inside gbuf (og * ld elements), and dst (og x k
                // row-major) viewed as k x og has row stride 1, column stride k;
                // none alias.
                unsafe { gemm_accumulate(dst.as_mut_ptr(), (1, k), lhs, rhs, (k, og, m * l)) };
            }
        }
        acc
    };
    let mut parts: Vec<Vec<T>> = if parts == 1 { vec![partial(0)] } else { team::map(true, parts, partial) };
    let mut total = parts.swap_remove(0);
    for part in parts {
        total.iter_mut().zip(part).for_each(|(t, v)| *t = *t + v);
    }
    total
}

pub(crate) fn conv2d_weight_grad(
    x: (&CpuStorage, &Layout),
    gy: (&CpuStorage, &Layout),
    p: &Conv2dParams,
    out: &Shape,
) -> Result<CpuStorage> {
    let (xd, gd, od) = (x.1.dims(), gy.1.dims(), out.dims());
    let g = Geom {
        c: xd[1],
        h: xd[2],
        w: xd[3],
        o: gd[1],
        oh: gd[2],
        ow: gd[3],
        kh: od[2],
        kw: od[3],
        groups: p.groups,
        stride: p.stride,
        pad: p.padding,
        dil: p.dilation,
    };
    let kernels: (Kernel<f32>, Kernel<f64>) = (conv_weight_grad_typed::<f32>, conv_weight_grad_typed::<f64>);
    run("conv2d_weight_grad", [x, gy], None, g, xd[0], kernels.0, kernels.1)
}

type Kernel<T> = fn(&[T], &[T], Option<&[T]>, Geom, usize) -> Vec<T>;

/// Makes inputs contiguous, converts f16/bf16 to f32, runs `f32k`/`f64k`.
fn run(
    op: &'static str,
    inputs: [(&CpuStorage, &Layout); 2],
    bias: Option<(&CpuStorage, &Layout)>,
    g: Geom,
    n: usize,
    f32k: Kernel<f32>,
    f64k: Kernel<f64>,
) -> Result<CpuStorage> {
    fn f32s<T: WithDType>(v: &[T], l: &Layout, conv: impl Fn(T) -> f32 + Sync) -> Vec<f32> {
        super::strided::map1(v, l, conv)
    }
    let [(x, lx), (w, lw)] = inputs;
    macro_rules! native {
        ($var:ident, $k:expr) => {{
            let (CpuStorage::$var(xv), CpuStorage::$var(wv)) = (x, w) else {
                return Err(Error::from(ErrorKind::DTypeMismatch { op, expected: x.dtype(), got: w.dtype() }));
            };
            let b = match bias {
                Some((CpuStorage::$var(bv), lb)) => Some(contiguous(bv, lb)),
                Some((other, _)) => {
                    return Err(Error::from(ErrorKind::DTypeMismatch { op, expected: x.dtype(), got: other.dtype() }))
                }
                None => None,
            };
            CpuStorage::$var($k(&contiguous(xv, lx), &contiguous(wv, lw), b.as_deref(), g, n))
        }};
    }
    macro_rules! via_f32 {
        ($var:ident, $t:ty) => {{
            let (CpuStorage::$var(xv), CpuStorage::$var(wv)) = (x, w) else {
                return Err(Error::from(ErrorKind::DTypeMismatch { op, expected: x.dtype(), got: w.dtype() }));
            };
            let b = match bias {
                Some((CpuStorage::$var(bv), lb)) => Some(f32s(bv, lb, |v: $t| v.to_f32())),
                Some((other, _)) => {
                    return Err(Error::from(ErrorKind::DTypeMismatch { op, expected: x.dtype(), got: other.dtype() }))
                }
                None => None,
            };
            let y = f32k(&f32s(xv, lx, |v: $t| v.to_f32()), &f32s(wv, lw, |v: $t| v.to_f32()), b.as_deref(), g, n);
            CpuStorage::$var(y.into_iter().map(<$t>::from_f32).collect())
        }};
    }
    Ok(match x {
        CpuStorage::F32(_) => native!(F32, f32k),
        CpuStorage::F64(_) => native!(F64, f64k),
        CpuStorage::F16(_) => via_f32!(F16, f16),
        CpuStorage::BF16(_) => via_f32!(BF16, bf16),
        other => {
            return Err(Error::from(ErrorKind::UnsupportedDType {
                op,
                dtype: other.dtype(),
                msg: "expected a floating-point tensor",
            }))
        }
    })
}

impl Geom {
    /// Geometry from the input, weight and output shapes (NCHW, 4-d weight).
    fn new(
        x: &Layout,
        w: &Layout,
        out: &Shape,
        groups: usize,
        stride: [usize; 2],
        pad: [usize; 2],
        dil: [usize; 2],
    ) -> Self {
        let (xd, wd, od) = (x.dims(), w.dims(), out.dims());
        Geom {
            c: xd[1],
            h: xd[2],
            w: xd[3],
            o: od[1],
            oh: od[2],
            ow: od[3],
            kh: wd[2],
            kw: wd[3],
            groups,
            stride,
            pad,
            dil,
        }
    }
}

pub(crate) fn conv2d(
    x: (&CpuStorage, &Layout),
    w: (&CpuStorage, &Layout),
    bias: Option<(&CpuStorage, &Layout)>,
    p: &Conv2dParams,
    out: &Shape,
) -> Result<CpuStorage> {
    let g = Geom::new(x.1, w.1, out, p.groups, p.stride, p.padding, p.dilation);
    run("conv2d", [x, w], bias, g, x.1.dims()[0], conv2d_f32, conv2d_typed::<f64>)
}

/// [`conv2d`] followed by `epilogue`, if the direct f32 kernels take this
/// convolution: they apply the epilogue per image while its output is in
/// cache. `None` otherwise (the caller runs the two one after the other).
pub(crate) fn conv2d_fused(
    x: (&CpuStorage, &Layout),
    w: (&CpuStorage, &Layout),
    bias: Option<(&CpuStorage, &Layout)>,
    p: &Conv2dParams,
    out: &Shape,
    epilogue: Epilogue<'_>,
) -> Option<CpuStorage> {
    let g = Geom::new(x.1, w.1, out, p.groups, p.stride, p.padding, p.dilation);
    let (CpuStorage::F32(xv), CpuStorage::F32(wv)) = (x.0, w.0) else { return None };
    // Decided before any copy, so a fallback costs nothing here.
    if !direct_applies(&g) {
        return None;
    }
    let b = match bias {
        Some((CpuStorage::F32(bv), lb)) => Some(contiguous(bv, lb)),
        Some(_) => return None,
        None => None,
    };
    let (xv, wv) = (contiguous(xv, x.1), contiguous(wv, w.1));
    direct_f32(&xv, &wv, b.as_deref(), g, x.1.dims()[0], Some(epilogue)).map(CpuStorage::F32)
}

/// `w` (the weight of convolution `p` from inputs of shape `x` to `out`)
/// in the direct kernels' layout, if they take this convolution on this CPU:
/// what [`conv2d_prepacked`] reads, so an executor reorders it once instead
/// of once per run. `None` otherwise (im2col + gemm packs inside the gemm
/// crate, which takes no packed operands).
pub(crate) fn prepack_conv2d(
    x: &Shape,
    w: (&CpuStorage, &Layout),
    p: &Conv2dParams,
    out: &Shape,
) -> Option<CpuStorage> {
    let CpuStorage::F32(wv) = w.0 else { return None };
    let g = Geom::new(&Layout::contiguous(x.clone()), w.1, out, p.groups, p.stride, p.padding, p.dilation);
    if !direct_applies(&g) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        Some(CpuStorage::F32(conv_direct::pack(&contiguous(wv, w.1), &g)))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = wv;
        None
    }
}

/// [`conv2d`] (then `epilogue`) from a weight [`prepack_conv2d`] packed;
/// `w_shape` is the weight's own shape.
pub(crate) fn conv2d_prepacked(
    x: (&CpuStorage, &Layout),
    packed: &CpuStorage,
    w_shape: &Shape,
    bias: Option<(&CpuStorage, &Layout)>,
    p: &Conv2dParams,
    out: &Shape,
    epilogue: Option<Epilogue<'_>>,
) -> Result<CpuStorage> {
    let op = "conv2d (prepacked)";
    let g = Geom::new(x.1, &Layout::contiguous(w_shape.clone()), out, p.groups, p.stride, p.padding, p.dilation);
    let (CpuStorage::F32(xv), CpuStorage::F32(wt)) = (x.0, packed) else {
        let got = if matches!(x.0, CpuStorage::F32(_)) { packed.dtype() } else { x.0.dtype() };
        return Err(Error::from(ErrorKind::DTypeMismatch { op, expected: crate::DType::F32, got }));
    };
    #[cfg(target_arch = "x86_64")]
    if direct_applies(&g) && wt.len() == conv_direct::packed_len(&g) {
        let b = match bias {
            Some((CpuStorage::F32(bv), lb)) => Some(contiguous(bv, lb)),
            Some((other, _)) => {
                return Err(Error::from(ErrorKind::DTypeMismatch {
                    op,
                    expected: crate::DType::F32,
                    got: other.dtype(),
                }))
            }
            None => None,
        };
        let wt = conv_direct::Weights::Packed(wt);
        let y = conv_direct::conv2d(&contiguous(xv, x.1), wt, b.as_deref(), g, x.1.dims()[0], epilogue);
        if let Some(y) = y {
            return Ok(CpuStorage::F32(y));
        }
    }
    let _ = (xv, wt, bias, epilogue);
    Err(Error::invalid(
        op,
        format!("the packed weights ({} floats) are not this CPU's layout for weight {:?}", wt.len(), w_shape.dims()),
    ))
}

pub(crate) fn conv_transpose2d(
    x: (&CpuStorage, &Layout),
    w: (&CpuStorage, &Layout),
    bias: Option<(&CpuStorage, &Layout)>,
    p: &ConvTranspose2dParams,
    out: &Shape,
) -> Result<CpuStorage> {
    let g = Geom::new(x.1, w.1, out, p.groups, p.stride, p.padding, p.dilation);
    run("conv_transpose2d", [x, w], bias, g, x.1.dims()[0], conv_t_typed::<f32>, conv_t_typed::<f64>)
}
