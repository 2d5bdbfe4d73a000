//! max / avg / adaptive-avg 2-d pooling over NCHW planes.

use super::strided::contiguous;
use super::threads::{install, PAR_MIN_ELEMS};
use super::CpuStorage;
use crate::dtype::{Float, FloatDType};
use crate::op::{AvgPool2dParams, MaxPool2dParams};
use crate::{Error, Layout, Result, Shape};
use rayon::prelude::*;
use std::ops::Range;

/// Runs `f(in_plane, out_plane, idx_plane)` over the N*C planes.
fn planes<T: Sync, U: Send>(
    x: &[T],
    in_sz: usize,
    out: &mut [U],
    out_sz: usize,
    f: impl Fn(&[T], &mut [U]) + Sync + Send,
) {
    if in_sz == 0 || out_sz == 0 {
        return;
    }
    if x.len() >= PAR_MIN_ELEMS {
        install(|| x.par_chunks(in_sz).zip(out.par_chunks_mut(out_sz)).for_each(|(a, b)| f(a, b)));
    } else {
        x.chunks(in_sz).zip(out.chunks_mut(out_sz)).for_each(|(a, b)| f(a, b));
    }
}

/// Sum of `src[rows, cols]` in a row-major plane of width `w`, in the accumulator type.
fn window_sum<T: FloatDType>(src: &[T], w: usize, rows: Range<usize>, cols: Range<usize>) -> T::Acc {
    let mut sum = <T::Acc as Float>::ZERO;
    for iy in rows {
        for v in &src[iy * w + cols.start..iy * w + cols.end] {
            sum += v.to_acc();
        }
    }
    sum
}

fn dims4(s: &Shape) -> [usize; 4] {
    let d = s.dims();
    [d[0], d[1], d[2], d[3]]
}

pub(crate) fn max_pool2d(
    s: &CpuStorage,
    l: &Layout,
    p: &MaxPool2dParams,
    out: &Shape,
) -> Result<(CpuStorage, CpuStorage)> {
    fn go<T: FloatDType>(v: &[T], l: &Layout, p: &MaxPool2dParams, out: &Shape) -> (Vec<T>, Vec<i64>) {
        let x = contiguous(v, l);
        let [_, _, h, w] = dims4(l.shape());
        let [_, _, oh, ow] = dims4(out);
        // Values and indices are computed together: each plane entry is (value, index).
        let mut res = vec![(T::zero(), 0i64); out.numel()];
        planes(&x, h * w, &mut res, oh * ow, |src, dst| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = (oy * p.stride[0]) as isize - p.padding[0] as isize;
                    let x0 = (ox * p.stride[1]) as isize - p.padding[1] as isize;
                    let mut best = <T::Acc as Float>::NEG_INFINITY;
                    let mut bi: i64 = -1;
                    'win: for ki in 0..p.kernel[0] {
                        let iy = y0 + (ki * p.dilation[0]) as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kj in 0..p.kernel[1] {
                            let ix = x0 + (kj * p.dilation[1]) as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let i = iy as usize * w + ix as usize;
                            let val = src[i].to_acc();
                            if val > best || val.is_nan() || bi < 0 {
                                best = val;
                                bi = i as i64;
                                if val.is_nan() {
                                    break 'win;
                                }
                            }
                        }
                    }
                    dst[oy * ow + ox] = (T::from_acc(best), bi.max(0));
                }
            }
        });
        res.into_iter().unzip()
    }
    macro_rules! arm {
        ($var:ident, $v:expr) => {{
            let (vals, idx) = go($v, l, p, out);
            (CpuStorage::$var(vals), CpuStorage::I64(idx))
        }};
    }
    Ok(match s {
        CpuStorage::F32(v) => arm!(F32, v),
        CpuStorage::F64(v) => arm!(F64, v),
        CpuStorage::F16(v) => arm!(F16, v),
        CpuStorage::BF16(v) => arm!(BF16, v),
        other => {
            return Err(Error::UnsupportedDType {
                op: "max_pool2d",
                dtype: other.dtype(),
                msg: "expected a floating-point tensor",
            })
        }
    })
}

pub(crate) fn avg_pool2d(s: &CpuStorage, l: &Layout, p: &AvgPool2dParams, out: &Shape) -> Result<CpuStorage> {
    fn go<T: FloatDType>(v: &[T], l: &Layout, p: &AvgPool2dParams, out: &Shape) -> Vec<T> {
        let x = contiguous(v, l);
        let [_, _, h, w] = dims4(l.shape());
        let [_, _, oh, ow] = dims4(out);
        let mut res = vec![T::zero(); out.numel()];
        planes(&x, h * w, &mut res, oh * ow, |src, dst| {
            for oy in 0..oh {
                for ox in 0..ow {
                    // PyTorch: the divisor counts padding up to the padded border only.
                    let ys = (oy * p.stride[0]) as isize - p.padding[0] as isize;
                    let xs = (ox * p.stride[1]) as isize - p.padding[1] as isize;
                    let ye = (ys + p.kernel[0] as isize).min((h + p.padding[0]) as isize);
                    let xe = (xs + p.kernel[1] as isize).min((w + p.padding[1]) as isize);
                    let pool = ((ye - ys) * (xe - xs)) as usize;
                    let (ys, xs) = (ys.max(0) as usize, xs.max(0) as usize);
                    let (ye, xe) = ((ye as usize).min(h), (xe as usize).min(w));
                    if ys >= ye || xs >= xe {
                        dst[oy * ow + ox] = T::zero();
                        continue;
                    }
                    let sum = window_sum(src, w, ys..ye, xs..xe);
                    let div = if p.count_include_pad { pool } else { (ye - ys) * (xe - xs) };
                    dst[oy * ow + ox] = T::from_acc(sum / <T::Acc as Float>::from_usize(div));
                }
            }
        });
        res
    }
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(go(v, l, p, out)),
        CpuStorage::F64(v) => CpuStorage::F64(go(v, l, p, out)),
        CpuStorage::F16(v) => CpuStorage::F16(go(v, l, p, out)),
        CpuStorage::BF16(v) => CpuStorage::BF16(go(v, l, p, out)),
        other => {
            return Err(Error::UnsupportedDType {
                op: "avg_pool2d",
                dtype: other.dtype(),
                msg: "expected a floating-point tensor",
            })
        }
    })
}

pub(crate) fn adaptive_avg_pool2d(s: &CpuStorage, l: &Layout, out: &Shape) -> Result<CpuStorage> {
    fn go<T: FloatDType>(v: &[T], l: &Layout, out: &Shape) -> Vec<T> {
        let x = contiguous(v, l);
        let [_, _, h, w] = dims4(l.shape());
        let [_, _, oh, ow] = dims4(out);
        let mut res = vec![T::zero(); out.numel()];
        planes(&x, h * w, &mut res, oh * ow, |src, dst| {
            for oy in 0..oh {
                let (ys, ye) = (oy * h / oh, ((oy + 1) * h).div_ceil(oh));
                for ox in 0..ow {
                    let (xs, xe) = (ox * w / ow, ((ox + 1) * w).div_ceil(ow));
                    let sum = window_sum(src, w, ys..ye, xs..xe);
                    dst[oy * ow + ox] = T::from_acc(sum / <T::Acc as Float>::from_usize((ye - ys) * (xe - xs)));
                }
            }
        });
        res
    }
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(go(v, l, out)),
        CpuStorage::F64(v) => CpuStorage::F64(go(v, l, out)),
        CpuStorage::F16(v) => CpuStorage::F16(go(v, l, out)),
        CpuStorage::BF16(v) => CpuStorage::BF16(go(v, l, out)),
        other => {
            return Err(Error::UnsupportedDType {
                op: "adaptive_avg_pool2d",
                dtype: other.dtype(),
                msg: "expected a floating-point tensor",
            })
        }
    })
}
