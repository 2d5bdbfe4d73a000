//! The CPU fast paths of `max_pool2d`, `avg_pool2d` and `scatter_add` against
//! naive references written here and against the general kernels.
//!
//! Contiguous pooling inputs take the fast paths; the same values as a
//! transposed (non-contiguous) view take the general path, so comparing the
//! two checks one against the other bit for bit. Inputs have many ties (a
//! few distinct levels), signed zeros, infinities and NaNs.

use oar_tensor::op::Op;
use oar_tensor::{AvgPool2dParams, DType, Device, ErrorKind, MaxPool2dParams, Result, Tensor};

fn cpu() -> Device {
    Device::cpu()
}

/// A small deterministic generator (64-bit LCG, high bits).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values with many ties; `special` adds signed zeros, infinities and NaNs.
fn values(rng: &mut Rng, n: usize, special: bool) -> Vec<f64> {
    (0..n)
        .map(|_| match rng.below(if special { 40 } else { 32 }) {
            32 => f64::NAN,
            33 | 34 => -0.0,
            35 | 36 => 0.0,
            37 => f64::NEG_INFINITY,
            38 => f64::INFINITY,
            39 => -f64::NAN,
            _ => (rng.below(7) as f64 - 3.0) * 0.75,
        })
        .collect()
}

/// The same NCHW values as a contiguous tensor and as a non-contiguous view
/// (the transpose of an NCWH tensor), both of `dtype`.
fn pair(v: &[f64], [n, c, h, w]: [usize; 4], dtype: DType) -> Result<(Tensor, Tensor)> {
    let contiguous = Tensor::from_vec(v.to_vec(), [n, c, h, w], &cpu())?.to_dtype(dtype)?;
    let mut t = vec![0.0; v.len()];
    for p in 0..n * c {
        for y in 0..h {
            for x in 0..w {
                t[p * h * w + x * h + y] = v[p * h * w + y * w + x];
            }
        }
    }
    let strided = Tensor::from_vec(t, [n, c, w, h], &cpu())?.to_dtype(dtype)?.transpose(2, 3)?;
    assert!(!strided.is_contiguous() || h == 1 || w == 1);
    Ok((contiguous, strided))
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap()
}

/// Bit-exact equality, any NaN equal to any NaN.
fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits())
}

fn out_dim(input: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Option<usize> {
    let eff = d * (k - 1) + 1;
    if input + 2 * p < eff || 2 * p > k {
        return None;
    }
    let span = input + 2 * p - eff;
    let mut o = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
    if ceil && (o - 1) * s >= input + p {
        o -= 1;
    }
    Some(o)
}

/// PyTorch's max_pool2d with indices: taps in row-major window order, the
/// first NaN wins, otherwise the first of equal maxima.
fn ref_max_pool(x: &[f64], [n, c, h, w]: [usize; 4], p: &MaxPool2dParams) -> Option<(Vec<f64>, Vec<i64>)> {
    let oh = out_dim(h, p.kernel[0], p.stride[0], p.padding[0], p.dilation[0], p.ceil_mode)?;
    let ow = out_dim(w, p.kernel[1], p.stride[1], p.padding[1], p.dilation[1], p.ceil_mode)?;
    let (mut vals, mut idx) = (vec![], vec![]);
    for plane in x.chunks(h * w).take(n * c) {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best: Option<(f64, usize)> = None;
                for ki in 0..p.kernel[0] {
                    for kj in 0..p.kernel[1] {
                        let iy = (oy * p.stride[0] + ki * p.dilation[0]) as isize - p.padding[0] as isize;
                        let ix = (ox * p.stride[1] + kj * p.dilation[1]) as isize - p.padding[1] as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let i = iy as usize * w + ix as usize;
                        let v = plane[i];
                        best = match best {
                            None => Some((v, i)),
                            Some((b, _)) if !b.is_nan() && (v.is_nan() || v > b) => Some((v, i)),
                            keep => keep,
                        };
                    }
                }
                let (v, i) = best.unwrap_or((f64::NEG_INFINITY, 0));
                vals.push(v);
                idx.push(i as i64);
            }
        }
    }
    Some((vals, idx))
}

/// Runs one max-pool case on both paths and the reference; returns whether
/// the parameters were valid.
fn check_max(rng: &mut Rng, dims: [usize; 4], p: &MaxPool2dParams, dtype: DType) -> bool {
    let v = values(rng, dims.iter().product(), true);
    let (xc, xs) = pair(&v, dims, dtype).unwrap();
    let what = format!("max_pool2d {dims:?} {p:?} {dtype}");
    let exact = host(&xc); // the input rounded to dtype
    let reference = ref_max_pool(&exact, dims, p);
    let (fast, general) = (xc.max_pool2d_with_indices(p), xs.max_pool2d_with_indices(p));
    let (Some((rv, ri)), Ok((fv, fi)), Ok((gv, gi))) = (reference, fast, general) else {
        let (fast, general) = (xc.max_pool2d_with_indices(p), xs.max_pool2d_with_indices(p));
        assert!(fast.is_err() && general.is_err(), "{what}: only some paths failed");
        return false;
    };
    assert_eq!(fv.dims(), gv.dims(), "{what}");
    assert_eq!(fi.dtype(), DType::I64, "{what}");
    let (fi, gi) = (fi.to_vec::<i64>().unwrap(), gi.to_vec::<i64>().unwrap());
    let (fv, gv) = (host(&fv), host(&gv));
    assert_eq!(fi, ri, "{what}: fast-path indices differ from the reference");
    assert_eq!(gi, ri, "{what}: general-path indices differ from the reference");
    assert!(same_bits(&fv, &rv), "{what}: fast-path values differ from the reference");
    assert!(same_bits(&gv, &rv), "{what}: general-path values differ from the reference");
    // The values-only kernels (what `max_pool2d` runs outside autograd).
    for (x, path) in [(&xc, "fast"), (&xs, "general")] {
        let v = Tensor::apply(Op::MaxPool2dValues(*p), &[x]).unwrap();
        assert_eq!(v.len(), 1, "{what}");
        assert!(same_bits(&host(&v[0]), &rv), "{what}: {path}-path values-only pooling differs from the reference");
        assert!(same_bits(&host(&x.max_pool2d(p).unwrap()), &rv), "{what}: {path}-path max_pool2d");
    }
    true
}

#[test]
fn max_pool_fast_path_matches_reference_and_general_path() {
    let mut rng = Rng(7);
    // The shapes the fast paths specialise, with and without padding, odd sizes,
    // and large enough for the parallel path.
    let fixed: &[([usize; 2], [usize; 2], [usize; 2])] = &[
        ([2, 2], [2, 2], [0, 0]),
        ([2, 2], [2, 2], [1, 1]),
        ([3, 3], [2, 2], [0, 0]),
        ([3, 3], [2, 2], [1, 1]),
        ([3, 3], [1, 1], [0, 0]),
        ([3, 3], [1, 1], [1, 1]),
        ([2, 2], [1, 1], [0, 0]),
        ([2, 2], [1, 1], [1, 0]),
    ];
    let sizes =
        [[1, 1, 2, 2], [2, 3, 7, 9], [1, 2, 15, 16], [2, 2, 30, 30], [1, 3, 31, 17], [3, 1, 9, 40], [2, 4, 70, 67]];
    for &(kernel, stride, padding) in fixed {
        for ceil_mode in [false, true] {
            for dims in sizes {
                let p = MaxPool2dParams { kernel, stride, padding, dilation: [1, 1], ceil_mode };
                for dtype in [DType::F32, DType::F64] {
                    check_max(&mut rng, dims, &p, dtype);
                }
            }
        }
    }
    // The batch-64 CNN shape.
    check_max(&mut rng, [64, 10, 30, 30], &MaxPool2dParams::new(2), DType::F32);
    // Random geometry, including rectangular kernels, dilation and stride 3.
    let mut valid = 0;
    for case in 0..400 {
        let kernel = [1 + rng.below(4), 1 + rng.below(4)];
        let p = MaxPool2dParams {
            kernel,
            stride: [1 + rng.below(3), 1 + rng.below(3)],
            padding: [rng.below(kernel[0] / 2 + 1), rng.below(kernel[1] / 2 + 1)],
            dilation: [1 + rng.below(2), 1 + rng.below(2)],
            ceil_mode: rng.below(2) == 1,
        };
        let dims = [1 + rng.below(2), 1 + rng.below(3), 1 + rng.below(20), 1 + rng.below(20)];
        let dtype = [DType::F32, DType::F64, DType::F16, DType::BF16][case % 4];
        valid += check_max(&mut rng, dims, &p, dtype) as usize;
    }
    assert!(valid > 200, "only {valid} random cases were valid");
}

#[test]
fn max_pool_contiguous_view_with_offset_and_unbatched() -> Result<()> {
    let mut rng = Rng(11);
    let v = values(&mut rng, 5 * 3 * 12 * 10, true);
    let x = Tensor::from_vec(v.clone(), [5, 3, 12, 10], &cpu())?;
    // A contiguous view that starts inside the storage.
    let view = x.narrow(0, 2, 2)?;
    assert!(view.is_contiguous());
    let copy = Tensor::from_vec(v[2 * 360..4 * 360].to_vec(), [2, 3, 12, 10], &cpu())?;
    for p in [MaxPool2dParams::new(2), MaxPool2dParams { padding: [1, 1], ..MaxPool2dParams::new(3) }] {
        let (a, ai) = view.max_pool2d_with_indices(&p)?;
        let (b, bi) = copy.max_pool2d_with_indices(&p)?;
        assert!(same_bits(&host(&a), &host(&b)));
        assert_eq!(ai.to_vec::<i64>()?, bi.to_vec::<i64>()?);
        // CHW input.
        let (c, ci) = copy.narrow(0, 1, 1)?.squeeze(0)?.max_pool2d_with_indices(&p)?;
        let n = c.numel();
        assert!(same_bits(&host(&c), &host(&b)[n..]));
        assert_eq!(ci.to_vec::<i64>()?, bi.to_vec::<i64>()?[n..].to_vec());
    }
    Ok(())
}

#[test]
fn max_pool_nan_and_ties_pick_pytorch_indices() -> Result<()> {
    // One 2x2 window per case, k2 s2: values then the expected flat index.
    let nan = f32::NAN;
    let cases: &[([f32; 4], i64)] = &[
        ([1.0, 1.0, 1.0, 1.0], 0),
        ([0.0, 2.0, 2.0, 1.0], 1),
        ([-0.0, 0.0, 0.0, -1.0], 0),
        ([1.0, nan, 3.0, nan], 1),
        ([nan, 5.0, nan, 1.0], 0),
        ([f32::NEG_INFINITY; 4], 0),
        ([-1.0, -2.0, f32::INFINITY, f32::INFINITY], 2),
    ];
    for (v, want) in cases {
        // Lay the window out as a [1, 1, 2, 2] plane: flat index = y * 2 + x.
        let x = Tensor::from_vec(v.to_vec(), [1, 1, 2, 2], &cpu())?;
        let (val, idx) = x.max_pool2d_with_indices(&MaxPool2dParams::new(2))?;
        assert_eq!(idx.to_vec::<i64>()?, vec![*want], "{v:?}");
        let got = val.to_vec::<f32>()?[0];
        let expect = v[*want as usize];
        assert!(got.to_bits() == expect.to_bits() || (got.is_nan() && expect.is_nan()), "{v:?}: {got}");
    }
    Ok(())
}

/// PyTorch's avg_pool2d: the divisor counts padding up to the padded border
/// only, or only the in-bounds taps without `count_include_pad`.
fn ref_avg_pool(x: &[f64], [n, c, h, w]: [usize; 4], p: &AvgPool2dParams) -> Option<Vec<f64>> {
    let oh = out_dim(h, p.kernel[0], p.stride[0], p.padding[0], 1, p.ceil_mode)?;
    let ow = out_dim(w, p.kernel[1], p.stride[1], p.padding[1], 1, p.ceil_mode)?;
    let mut out = vec![];
    for plane in x.chunks(h * w).take(n * c) {
        for oy in 0..oh {
            for ox in 0..ow {
                let ys = (oy * p.stride[0]) as isize - p.padding[0] as isize;
                let xs = (ox * p.stride[1]) as isize - p.padding[1] as isize;
                let ye = (ys + p.kernel[0] as isize).min((h + p.padding[0]) as isize);
                let xe = (xs + p.kernel[1] as isize).min((w + p.padding[1]) as isize);
                let pool = (ye - ys) * (xe - xs);
                let (ys, xs, ye, xe) = (ys.max(0), xs.max(0), ye.min(h as isize), xe.min(w as isize));
                if ys >= ye || xs >= xe {
                    out.push(0.0);
                    continue;
                }
                let mut sum = 0.0;
                for y in ys..ye {
                    for x in xs..xe {
                        sum += plane[y as usize * w + x as usize];
                    }
                }
                let div = if p.count_include_pad { pool } else { (ye - ys) * (xe - xs) };
                out.push(sum / div as f64);
            }
        }
    }
    Some(out)
}

#[test]
fn avg_pool_fast_path_matches_reference_and_general_path() {
    let mut rng = Rng(5);
    let mut valid = 0;
    for case in 0..300 {
        let kernel = [1 + rng.below(4), 1 + rng.below(4)];
        let p = AvgPool2dParams {
            kernel,
            stride: [1 + rng.below(3), 1 + rng.below(3)],
            padding: [rng.below(kernel[0] / 2 + 1), rng.below(kernel[1] / 2 + 1)],
            ceil_mode: rng.below(2) == 1,
            count_include_pad: rng.below(2) == 1,
        };
        let dims = if case % 50 == 0 {
            [2, 4, 70, 67] // the parallel path
        } else {
            [1 + rng.below(2), 1 + rng.below(3), 1 + rng.below(20), 1 + rng.below(20)]
        };
        let dtype = [DType::F32, DType::F64, DType::F16, DType::BF16][case % 4];
        let v = values(&mut rng, dims.iter().product(), false);
        let (xc, xs) = pair(&v, dims, dtype).unwrap();
        let what = format!("avg_pool2d {dims:?} {p:?} {dtype}");
        let reference = ref_avg_pool(&host(&xc), dims, &p);
        let (Some(r), Ok(f), Ok(g)) = (reference, xc.avg_pool2d(&p), xs.avg_pool2d(&p)) else {
            assert!(xc.avg_pool2d(&p).is_err() && xs.avg_pool2d(&p).is_err(), "{what}: only some paths failed");
            continue;
        };
        valid += 1;
        let (f, g) = (host(&f), host(&g));
        assert!(same_bits(&f, &g), "{what}: fast and general paths differ");
        let tol = if matches!(dtype, DType::F16 | DType::BF16) { 1e-2 } else { 1e-6 };
        for (a, b) in f.iter().zip(&r) {
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: {a} vs reference {b}");
        }
    }
    assert!(valid > 150, "only {valid} random cases were valid");
    // The CNN shape.
    let dims = [64, 10, 30, 30];
    let v = values(&mut rng, dims.iter().product(), false);
    let (xc, xs) = pair(&v, dims, DType::F32).unwrap();
    let p = AvgPool2dParams::new(2);
    assert!(same_bits(&host(&xc.avg_pool2d(&p).unwrap()), &host(&xs.avg_pool2d(&p).unwrap())));
}

// ---------------------------------------------------------------- scatter_add

/// `out = x; out[..., index[p], ...] += src[p]` over index positions in
/// row-major order (the accumulation order of the kernels), in `T`.
fn ref_scatter_add<T: Copy + std::ops::Add<Output = T>>(
    x: &[T],
    xd: &[usize],
    idx: &[i64],
    id: &[usize],
    src: &[T],
    sd: &[usize],
    dim: usize,
) -> Vec<T> {
    let strides = |d: &[usize]| -> Vec<usize> { (0..d.len()).map(|i| d[i + 1..].iter().product()).collect() };
    let (xs, is, ss) = (strides(xd), strides(id), strides(sd));
    let mut out = x.to_vec();
    for (p, &i) in idx.iter().enumerate() {
        let (mut xo, mut so) = (0, 0);
        for d in 0..id.len() {
            let c = p / is[d] % id[d];
            xo += if d == dim { i as usize } else { c } * xs[d];
            so += c * ss[d];
        }
        out[xo] = out[xo] + src[so];
    }
    out
}

fn shape_case(rng: &mut Rng) -> (Vec<usize>, usize, usize) {
    let rank = 1 + rng.below(4);
    let dims: Vec<usize> = (0..rank).map(|_| 1 + rng.below(5)).collect();
    let dim = rng.below(rank);
    (dims, dim, 1 + rng.below(6))
}

#[test]
fn scatter_add_matches_reference() -> Result<()> {
    let mut rng = Rng(3);
    for case in 0..300 {
        let (xd, dim, k) = shape_case(&mut rng);
        let mut id = xd.clone();
        id[dim] = k;
        // Every third case: src larger than index (the general path).
        let mut sd = id.clone();
        if case % 3 == 0 {
            let d = rng.below(sd.len());
            sd[d] += 1 + rng.below(2);
        }
        let size = xd[dim];
        let idx: Vec<i64> = (0..id.iter().product()).map(|_| rng.below(size) as i64).collect();
        let xv = values(&mut rng, xd.iter().product(), false);
        let sv = values(&mut rng, sd.iter().product(), false);
        let what = format!("scatter_add x {xd:?} index {id:?} src {sd:?} dim {dim}");
        for dtype in [DType::F32, DType::F64] {
            let x = Tensor::from_vec(xv.clone(), xd.as_slice(), &cpu())?.to_dtype(dtype)?;
            let s = Tensor::from_vec(sv.clone(), sd.as_slice(), &cpu())?.to_dtype(dtype)?;
            let i64_idx = Tensor::from_vec(idx.clone(), id.as_slice(), &cpu())?;
            let i32_idx = Tensor::from_vec(idx.iter().map(|&i| i as i32).collect::<Vec<_>>(), id.as_slice(), &cpu())?;
            for index in [&i64_idx, &i32_idx] {
                let got = x.scatter_add(dim, index, &s)?;
                let ok = match dtype {
                    DType::F32 => {
                        let r = ref_scatter_add(&x.to_vec::<f32>()?, &xd, &idx, &id, &s.to_vec::<f32>()?, &sd, dim);
                        got.to_vec::<f32>()?.iter().zip(&r).all(|(a, b)| a.to_bits() == b.to_bits())
                    }
                    _ => {
                        let r = ref_scatter_add(&xv, &xd, &idx, &id, &sv, &sd, dim);
                        got.to_vec::<f64>()?.iter().zip(&r).all(|(a, b)| a.to_bits() == b.to_bits())
                    }
                };
                assert!(ok, "{what} {dtype}");
            }
        }
        // Integers add with wrap-around; non-contiguous operands.
        if xd.len() >= 2 {
            let xi: Vec<i64> = (0..xd.iter().product()).map(|_| rng.below(100) as i64 - 50).collect();
            let si: Vec<i64> = (0..sd.iter().product()).map(|_| rng.below(100) as i64 - 50).collect();
            let x = Tensor::from_vec(xi.clone(), xd.as_slice(), &cpu())?;
            let s = Tensor::from_vec(si.clone(), sd.as_slice(), &cpu())?;
            let got = x.scatter_add(dim, &Tensor::from_vec(idx.clone(), id.as_slice(), &cpu())?, &s)?;
            assert_eq!(got.to_vec::<i64>()?, ref_scatter_add(&xi, &xd, &idx, &id, &si, &sd, dim), "{what} i64");
            // The same operands as transposes of transposed copies.
            let tr = |t: &Tensor| -> Result<Tensor> {
                let r = t.rank();
                t.transpose(r - 2, r - 1)?.contiguous()?.transpose(r - 2, r - 1)
            };
            let got =
                tr(&x)?.scatter_add(dim, &tr(&Tensor::from_vec(idx.clone(), id.as_slice(), &cpu())?)?, &tr(&s)?)?;
            assert_eq!(got.to_vec::<i64>()?, ref_scatter_add(&xi, &xd, &idx, &id, &si, &sd, dim), "{what} strided");
        }
    }
    Ok(())
}

#[test]
fn scatter_add_max_pool_backward_shape() -> Result<()> {
    let mut rng = Rng(9);
    let x = Tensor::from_vec(values(&mut rng, 64 * 10 * 900, false), [64, 10, 30, 30], &cpu())?.to_dtype(DType::F32)?;
    let (_, idx) = x.max_pool2d_with_indices(&MaxPool2dParams::new(2))?;
    let idx = idx.reshape([64, 10, 225])?;
    let g: Vec<f32> = values(&mut rng, 64 * 10 * 225, false).iter().map(|&v| v as f32).collect();
    let g = Tensor::from_vec(g, [64, 10, 225], &cpu())?;
    let z = Tensor::zeros([64, 10, 900], DType::F32, &cpu())?;
    let got = z.scatter_add(2, &idx, &g)?.to_vec::<f32>()?;
    let want = ref_scatter_add(
        &vec![0f32; 64 * 10 * 900],
        &[64, 10, 900],
        &idx.to_vec::<i64>()?,
        &[64, 10, 225],
        &g.to_vec::<f32>()?,
        &[64, 10, 225],
        2,
    );
    assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
    Ok(())
}

fn expect_index_error(r: Result<Tensor>, index: i64, dim: usize, size: usize) {
    match r.map_err(|e| e.into_kind()) {
        Err(ErrorKind::IndexOutOfRange { op: "scatter_add", index: i, dim: d, size: s }) => {
            assert_eq!((i, d, s), (index, dim, size))
        }
        other => panic!("expected index {index} out of range for dim {dim} of size {size}, got {other:?}"),
    }
}

#[test]
fn scatter_add_out_of_range_index_is_an_error() -> Result<()> {
    // Small (sequential) and large (parallel) fast-path shapes, and a general-path shape
    // (src larger than index); bad values at several positions: the first in
    // row-major order is reported.
    for (xd, id, sd, dim) in [
        (vec![3, 4], vec![3, 2], vec![3, 2], 1),
        (vec![4, 3], vec![2, 3], vec![2, 3], 0),
        (vec![64, 10, 900], vec![64, 10, 225], vec![64, 10, 225], 2),
        (vec![64, 10, 900], vec![64, 10, 225], vec![64, 11, 230], 2),
        (vec![5, 6, 7], vec![5, 3, 7], vec![5, 3, 7], 1),
    ] {
        let size = xd[dim];
        let n: usize = id.iter().product();
        let x = Tensor::zeros(xd.as_slice(), DType::F32, &cpu())?;
        let s = Tensor::ones(sd.as_slice(), DType::F32, &cpu())?;
        for (first, second) in [(size as i64, -1), (-1, size as i64 + 7), (i64::MAX, i64::MIN)] {
            let mut idx = vec![0i64; n];
            idx[n / 2] = first;
            idx[n - 1] = second;
            let index = Tensor::from_vec(idx.clone(), id.as_slice(), &cpu())?;
            expect_index_error(x.scatter_add(dim, &index, &s), first, dim, size);
            if first.unsigned_abs() < i32::MAX as u64 && second.unsigned_abs() < i32::MAX as u64 {
                let i32_idx = idx.iter().map(|&i| i as i32).collect::<Vec<_>>();
                let index = Tensor::from_vec(i32_idx, id.as_slice(), &cpu())?;
                expect_index_error(x.scatter_add(dim, &index, &s), first, dim, size);
            }
        }
    }
    Ok(())
}
