//! 2-d convolution (im2col + gemm) and transposed convolution (gemm + col2im).
//! f16/bf16 compute in f32, as PyTorch's CPU kernels do.

use super::conv_direct;
use super::matmul::{gemm_accumulate, gemm_raw, gemm_strided, GemmElem, MatRef};
use super::strided::contiguous;
use super::threads::{install, num_threads};
use super::CpuStorage;
use crate::op::{Conv2dParams, ConvTranspose2dParams};
use crate::{Error, Layout, Result, Shape, WithDType};
use half::{bf16, f16};
use rayon::prelude::*;

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

/// Unfolds the channels `c0..c0+cg` of one image into `col` `[cg*kh*kw, oh*ow]`.
fn im2col<T: Copy + Default>(x: &[T], g: &Geom, c0: usize, cg: usize, col: &mut [T]) {
    let l = g.oh * g.ow;
    for c in 0..cg {
        let plane = &x[(c0 + c) * g.h * g.w..][..g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = &mut col[((c * g.kh + ki) * g.kw + kj) * l..][..l];
                for oy in 0..g.oh {
                    let iy = (oy * g.stride[0] + ki * g.dil[0]) as isize - g.pad[0] as isize;
                    let dst = &mut row[oy * g.ow..][..g.ow];
                    if iy < 0 || iy >= g.h as isize {
                        dst.fill(T::default());
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..][..g.w];
                    let x0 = (kj * g.dil[1]) as isize - g.pad[1] as isize;
                    if g.stride[1] == 1 && x0 >= 0 && x0 as usize + g.ow <= g.w {
                        dst.copy_from_slice(&src[x0 as usize..x0 as usize + g.ow]);
                        continue;
                    }
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let ix = x0 + (ox * g.stride[1]) as isize;
                        *d = if ix >= 0 && (ix as usize) < g.w { src[ix as usize] } else { T::default() };
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

/// Runs `per_image` on every image, in parallel over images when there are
/// enough of them, otherwise one at a time with gemm using the whole pool.
fn over_images<T: Send>(out: &mut [T], img: usize, per_image: impl Fn(usize, &mut [T], usize) + Sync + Send) {
    let n = out.len() / img.max(1);
    let threads = num_threads();
    install(|| {
        if n >= threads && n > 1 {
            out.par_chunks_mut(img).enumerate().for_each(|(i, dst)| per_image(i, dst, 1));
        } else {
            out.chunks_mut(img).enumerate().for_each(|(i, dst)| per_image(i, dst, threads));
        }
    });
}

fn conv2d_f32(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: Geom, n: usize) -> Vec<f32> {
    if conv_direct::applies(&g) {
        if let Some(out) = conv_direct::conv2d(x, w, bias, g, n) {
            return out;
        }
    }
    conv2d_typed(x, w, bias, g, n)
}

fn conv2d_typed<T: GemmElem + std::ops::Add<Output = T>>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    g: Geom,
    n: usize,
) -> Vec<T> {
    let (cg, og) = (g.c / g.groups, g.o / g.groups);
    let (k, l) = (cg * g.kh * g.kw, g.oh * g.ow);
    let pointwise = g.kh == 1 && g.kw == 1 && g.stride == [1, 1] && g.pad == [0, 0];
    let mut out = vec![T::zero(); n * g.o * l];
    if out.is_empty() {
        return out;
    }
    over_images(&mut out, g.o * l, |i, dst, threads| {
        let xi = &x[i * g.c * g.h * g.w..][..g.c * g.h * g.w];
        let mut col = if pointwise { Vec::new() } else { vec![T::default(); k * l] };
        for grp in 0..g.groups {
            let rhs: &[T] = if pointwise {
                &xi[grp * cg * l..][..cg * l]
            } else {
                im2col(xi, &g, grp * cg, cg, &mut col);
                &col
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
    over_images(&mut out, g.o * l_out, |i, dst, threads| {
        let xi = &x[i * g.c * l_in..][..g.c * l_in];
        let mut col = vec![T::zero(); rows * l_in];
        for grp in 0..g.groups {
            // wg is [cg, og*kh*kw], xg is [cg, h*w]; col = wg^T @ xg reads wg transposed through its strides.
            let wg = &w[grp * cg * rows..][..cg * rows];
            let xg = &xi[grp * cg * l_in..][..cg * l_in];
            let wt = MatRef { ptr: wg.as_ptr(), rs: 1, cs: rows };
            // SAFETY: wt is rows x cg inside wg (row stride 1, column stride rows); xg is cg x l_in; col is rows x l_in.
            unsafe { gemm_raw(&mut col, wt, MatRef::rows(xg, l_in), (rows, l_in, cg), threads) };
            let dst = &mut dst[grp * og * l_out..][..og * l_out];
            for o in 0..og {
                let plane = &mut dst[o * l_out..][..l_out];
                for ki in 0..g.kh {
                    for kj in 0..g.kw {
                        let src = &col[((o * g.kh + ki) * g.kw + kj) * l_in..][..l_in];
                        for y in 0..g.h {
                            let oy = (y * g.stride[0] + ki * g.dil[0]) as isize - g.pad[0] as isize;
                            if oy < 0 || oy >= g.oh as isize {
                                continue;
                            }
                            let orow = &mut plane[oy as usize * g.ow..][..g.ow];
                            for xx in 0..g.w {
                                let ox = (xx * g.stride[1] + kj * g.dil[1]) as isize - g.pad[1] as isize;
                                if ox >= 0 && (ox as usize) < g.ow {
                                    orow[ox as usize] = orow[ox as usize] + src[y * g.w + xx];
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

/// `dw [o, cg, kh, kw] = sum over images of grad_out (og x l) @ im2col(x)^T
/// (l x k)`, per group. Images are split across threads, each accumulating
/// its own `dw` (from a col buffer that stays in cache), then summed: one
/// pass over the data, where the composite rule's convolution with the
/// output gradient as a huge kernel unfolds the whole input at once.
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
    let partial = |p: usize| {
        let mut acc = vec![T::zero(); size];
        let mut col = vec![T::default(); k * l];
        for i in p * per..((p + 1) * per).min(n) {
            let xi = &x[i * g.c * g.h * g.w..][..g.c * g.h * g.w];
            let gi = &gy[i * g.o * l..][..g.o * l];
            for grp in 0..g.groups {
                im2col(xi, &g, grp * cg, cg, &mut col);
                let lhs = MatRef::rows(&gi[grp * og * l..][..og * l], l);
                // col is k x l row-major; read as l x k through its strides.
                let rhs = MatRef { ptr: col.as_ptr(), rs: 1, cs: l };
                let dst = &mut acc[grp * og * k..][..og * k];
                // SAFETY: lhs is og x l inside gi's group slice, rhs is l x k inside col
                // (k * l elements), and dst is og x k row-major; none alias.
                unsafe { gemm_accumulate(dst.as_mut_ptr(), (k, 1), lhs, rhs, (og, k, l)) };
            }
        }
        acc
    };
    let mut parts: Vec<Vec<T>> = install(|| (0..parts).into_par_iter().map(partial).collect());
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
                return Err(Error::DTypeMismatch { op, expected: x.dtype(), got: w.dtype() });
            };
            let b = match bias {
                Some((CpuStorage::$var(bv), lb)) => Some(contiguous(bv, lb)),
                Some((other, _)) => return Err(Error::DTypeMismatch { op, expected: x.dtype(), got: other.dtype() }),
                None => None,
            };
            CpuStorage::$var($k(&contiguous(xv, lx), &contiguous(wv, lw), b.as_deref(), g, n))
        }};
    }
    macro_rules! via_f32 {
        ($var:ident, $t:ty) => {{
            let (CpuStorage::$var(xv), CpuStorage::$var(wv)) = (x, w) else {
                return Err(Error::DTypeMismatch { op, expected: x.dtype(), got: w.dtype() });
            };
            let b = match bias {
                Some((CpuStorage::$var(bv), lb)) => Some(f32s(bv, lb, |v: $t| v.to_f32())),
                Some((other, _)) => return Err(Error::DTypeMismatch { op, expected: x.dtype(), got: other.dtype() }),
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
            return Err(Error::UnsupportedDType { op, dtype: other.dtype(), msg: "expected a floating-point tensor" })
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
