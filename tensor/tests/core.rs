//! Views, layouts, creation, randomness, provenance recording and threading:
//! behaviour that golden fixtures do not cover.

use oar_tensor::*;

fn cpu() -> Device {
    Device::cpu()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[test]
fn views_share_storage_and_reshape_copies_only_when_needed() -> Result<()> {
    let a = Tensor::arange(0.0, 24.0, 1.0, DType::F32, &cpu())?.reshape([2, 3, 4])?;
    for v in [
        a.reshape([6, 4])?,
        a.permute([2, 0, 1])?,
        a.transpose(0, 2)?,
        a.narrow(1, 1, 2)?,
        a.slice(2, 0, 4, 2)?,
        a.unsqueeze(0)?.expand([5, 2, 3, 4])?,
        a.unsqueeze(-1)?,
        a.flatten(0, 1)?,
    ] {
        assert!(v.same_storage(&a), "{v:?} should be a view");
    }
    // A permuted tensor can be viewed with dims merged only where strides allow.
    let p = a.permute([1, 0, 2])?; // [3, 2, 4], strides [4, 12, 1]
    let merged_last = p.reshape([3, 8])?; // dims 1 and 2 are not mergeable: copy
    assert!(!merged_last.same_storage(&a));
    assert_eq!(merged_last.narrow(0, 0, 1)?.reshape([8])?.to_vec::<f32>()?, vec![0., 1., 2., 3., 12., 13., 14., 15.]);
    let split_last = p.reshape([3, 2, 2, 2])?; // splitting a dim is always a view
    assert!(split_last.same_storage(&a));
    // contiguous() copies only when needed.
    assert!(a.contiguous()?.same_storage(&a));
    assert!(!p.contiguous()?.same_storage(&a));
    assert!(p.contiguous()?.is_contiguous());
    Ok(())
}

#[test]
fn slice_with_step_and_strided_math() -> Result<()> {
    let a = Tensor::arange(0.0, 20.0, 1.0, DType::F64, &cpu())?.reshape([4, 5])?;
    let s = a.slice(1, 1, 5, 2)?; // columns 1 and 3
    assert_eq!(s.dims(), &[4, 2]);
    assert_eq!(s.layout().strides(), &[5, 2]);
    assert_eq!(s.to_vec::<f64>()?, vec![1., 3., 6., 8., 11., 13., 16., 18.]);
    assert_eq!(s.mul_scalar(2.0)?.sum(0, false)?.to_vec::<f64>()?, vec![68., 84.]);
    // Python-style clamping of the end bound, as x[:, 3:100].
    assert_eq!(a.slice(1, 3, 100, 1)?.dims(), &[4, 2]);
    Ok(())
}

#[test]
fn broadcasting_against_hand_computed_values() -> Result<()> {
    let x = Tensor::from_vec(vec![1f32, 2., 3., 4., 5., 6.], [2, 1, 3], &cpu())?;
    let y = Tensor::from_vec(vec![10f32, 20.], [2, 1], &cpu())?;
    let z = x.add(&y)?; // [2, 2, 3]
    assert_eq!(z.dims(), &[2, 2, 3]);
    assert_eq!(f32s(&z), vec![11., 12., 13., 21., 22., 23., 14., 15., 16., 24., 25., 26.]);
    // Broadcast on a transposed operand.
    let m = Tensor::from_vec(vec![1f32, 2., 3., 4.], [2, 2], &cpu())?.t()?;
    let r = Tensor::from_vec(vec![100f32, 200.], [2], &cpu())?;
    assert_eq!(f32s(&m.sub(&r)?), vec![-99., -197., -98., -196.]);
    Ok(())
}

#[test]
fn creation_ops() -> Result<()> {
    assert_eq!(Tensor::arange(0.0, 1.0, 0.25, DType::F32, &cpu())?.to_vec::<f32>()?, vec![0., 0.25, 0.5, 0.75]);
    assert_eq!(Tensor::arange(5.0, 0.0, -2.0, DType::I64, &cpu())?.to_vec::<i64>()?, vec![5, 3, 1]);
    assert_eq!(Tensor::linspace(0.0, 1.0, 5, DType::F64, &cpu())?.to_vec::<f64>()?, vec![0., 0.25, 0.5, 0.75, 1.]);
    assert_eq!(Tensor::eye(2, DType::I32, &cpu())?.to_vec::<i32>()?, vec![1, 0, 0, 1]);
    assert_eq!(Tensor::full([2], 7.5, DType::F16, &cpu())?.to_vec::<f16>()?, vec![f16::from_f32(7.5); 2]);
    assert_eq!(Tensor::scalar(3u8, &cpu())?.item()?, 3.0);
    assert_eq!(Tensor::zeros([0, 3], DType::F32, &cpu())?.numel(), 0);
    Ok(())
}

#[test]
fn rand_is_reproducible_and_well_distributed() -> Result<()> {
    manual_seed(7);
    let a = Tensor::randn([10_000], DType::F64, &cpu())?;
    manual_seed(7);
    let b = Tensor::randn([10_000], DType::F64, &cpu())?;
    assert_eq!(a.to_vec::<f64>()?, b.to_vec::<f64>()?);
    let mean = a.mean_all()?.item()?;
    let std = a.std(0, 1, false)?.item()?;
    assert!(mean.abs() < 0.05, "mean {mean}");
    assert!((std - 1.0).abs() < 0.05, "std {std}");
    let mut g = Generator::new(1);
    let u = Tensor::rand_with(&mut g, [10_000], DType::F32, &cpu())?;
    assert!(u.min_all()?.item()? >= 0.0 && u.max_all()?.item()? < 1.0);
    assert!((u.mean_all()?.item()? - 0.5).abs() < 0.02);
    // A fixed seed gives a fixed stream (pinned, so a change to the generator
    // shows up here; random.rs checks Philox itself against Random123's vectors).
    let mut g = Generator::new(0);
    let first = g.uniform(2);
    assert_eq!(first, vec![0.3990464708489645, 0.7357127844834425]);
    let mut g2 = Generator::new(0);
    assert_eq!(first, g2.uniform(2));
    assert_ne!(Generator::new(1).uniform(2), first);
    Ok(())
}

#[test]
fn casts_follow_pytorch_rules() -> Result<()> {
    let x = Tensor::from_vec(vec![-1.7f32, -0.5, 0.0, 0.5, 2.9], [5], &cpu())?;
    assert_eq!(x.to_dtype(DType::I64)?.to_vec::<i64>()?, vec![-1, 0, 0, 0, 2]);
    assert_eq!(x.to_dtype(DType::Bool)?.to_vec::<bool>()?, vec![true, true, false, true, true]);
    let big = Tensor::from_vec(vec![(1i64 << 53) + 1], [1], &cpu())?;
    assert_eq!(big.to_dtype(DType::I32)?.to_vec::<i32>()?, vec![1]); // wraps like PyTorch
    let b = Tensor::from_vec(vec![true, false], [2], &cpu())?;
    assert_eq!(b.to_dtype(DType::F32)?.to_vec::<f32>()?, vec![1., 0.]);
    Ok(())
}

#[test]
fn provenance_is_recorded_only_when_needed() -> Result<()> {
    let x = Tensor::ones([2, 2], DType::F32, &cpu())?;
    let w = x.with_requires_grad(true)?;
    assert!(x.add(&x)?.provenance().is_none());
    let y = w.mul(&x)?.sum_all()?;
    assert!(y.requires_grad());
    let node = &y.provenance().expect("recorded").node;
    assert_eq!(node.op.name(), "sum");
    assert_eq!(node.inputs().unwrap()[0].provenance().unwrap().node.op, Op::Binary(BinaryOp::Mul));
    {
        let _g = no_grad();
        assert!(w.mul(&x)?.provenance().is_none());
        assert!(!w.mul(&x)?.requires_grad());
    }
    // Integer results never require grad.
    assert!(!w.argmax(0, false)?.requires_grad());
    // Multi-output ops share one node.
    let img = Tensor::ones([1, 1, 4, 4], DType::F32, &cpu())?.with_requires_grad(true)?;
    let (v, i) = img.max_pool2d_with_indices(&MaxPool2dParams::new(2))?;
    assert!(v.provenance().is_some());
    assert!(i.provenance().is_none());
    assert!(Tensor::ones([2], DType::I64, &cpu())?.with_requires_grad(true).is_err());
    Ok(())
}

#[test]
fn tracing_records_everything_and_rejects_host_reads() -> Result<()> {
    let x = Tensor::ones([3], DType::F32, &cpu())?;
    let _trace = start_trace();
    let y = x.exp()?.add_scalar(1.0)?;
    let p = y.provenance().expect("trace records without requires_grad");
    assert_eq!(p.node.op, Op::BinaryScalar { op: BinaryOp::Add, scalar: 1.0 });
    let err = y.to_vec::<f32>().unwrap_err();
    assert!(err.to_string().contains("to_vec") && err.to_string().contains("trace"), "{err}");
    Ok(())
}

#[test]
fn thread_count_can_be_changed_and_results_do_not_depend_on_it() -> Result<()> {
    manual_seed(3);
    let a = Tensor::randn([300, 200], DType::F32, &cpu())?;
    let b = Tensor::randn([200, 100], DType::F32, &cpu())?;
    let before = num_threads();
    set_num_threads(1);
    assert_eq!(num_threads(), 1);
    let one = (a.matmul(&b)?.to_vec::<f32>()?, a.exp()?.sum_all()?.item()?);
    set_num_threads(2);
    let two = (a.matmul(&b)?.to_vec::<f32>()?, a.exp()?.sum_all()?.item()?);
    set_num_threads(before);
    assert_eq!(one.1, two.1, "reductions use a fixed blocking, independent of threads");
    for (x, y) in one.0.iter().zip(&two.0) {
        assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0));
    }
    Ok(())
}

#[test]
fn large_parallel_paths_match_sequential_math() -> Result<()> {
    // Exercises the parallel element-wise, strided and split-row reduction paths.
    let n = 1 << 18;
    let a = Tensor::arange(0.0, n as f64, 1.0, DType::F64, &cpu())?;
    let s = a.sum_all()?.item()?;
    assert_eq!(s, (n as f64) * (n as f64 - 1.0) / 2.0);
    let m = a.reshape([512, 512])?.t()?; // strided
    let doubled = m.add(&m)?;
    assert_eq!(
        doubled.sum(1, false)?.narrow(0, 1, 1)?.item()?,
        2.0 * (0..512).map(|r| (r * 512 + 1) as f64).sum::<f64>()
    );
    Ok(())
}

/// One conv case `(n, c, o, h, w, kh, kw, pad, dil)`, stride 1: f32 takes the
/// direct AVX-512 kernels where the CPU has them; f64 always takes im2col +
/// gemm, an independent reference.
fn assert_direct_conv_matches_gemm(g: &mut Generator, case: [usize; 9]) -> Result<()> {
    let [n, c, o, h, w, kh, kw, pad, dil] = case;
    let x = Tensor::randn_with(g, [n, c, h, w], DType::F64, &cpu())?;
    let wt = Tensor::randn_with(g, [o, c, kh, kw], DType::F64, &cpu())?;
    let b = Tensor::randn_with(g, [o], DType::F64, &cpu())?;
    let p = Conv2dParams { padding: [pad, pad], dilation: [dil, dil], ..Default::default() };
    let want = x.conv2d(&wt, Some(&b), &p)?;
    let f = |t: &Tensor| t.to_dtype(DType::F32);
    let got = f(&x)?.conv2d(&f(&wt)?, Some(&f(&b)?), &p)?.to_dtype(DType::F64)?;
    assert_eq!(got.dims(), want.dims());
    let err = got.sub(&want)?.abs()?.max_all()?.item()?;
    assert!(err < 1e-4, "case {case:?}: max error {err}");
    Ok(())
}

#[test]
fn direct_conv_kernels_match_the_gemm_path() -> Result<()> {
    let mut g = Generator::new(11);
    let cases = [
        // [n, c, o, h, w, kh, kw, pad, dil]
        [2, 3, 10, 9, 33, 3, 3, 0, 1],  // pixel tiles, one 10-channel block, two segments
        [1, 1, 6, 28, 28, 5, 5, 2, 1],  // LeNet conv1
        [3, 6, 16, 14, 14, 5, 5, 0, 1], // channel tiles (o % 16 == 0), 10-pixel rows
        [2, 2, 32, 7, 21, 3, 3, 1, 2],  // channel tiles, dilation, padding, partial pixel tile
        [1, 4, 1, 5, 5, 1, 1, 0, 1],    // one output channel, 1x1 kernel
        [2, 5, 17, 6, 40, 3, 3, 1, 1],  // 17 channels: 8 + 9
        [2, 3, 23, 6, 12, 3, 3, 0, 1],  // 23 channels: 11 + 12, one segment
    ];
    for case in cases {
        assert_direct_conv_matches_gemm(&mut g, case)?;
    }
    Ok(())
}

#[test]
fn direct_conv_channel_tiles_match_the_gemm_path() -> Result<()> {
    // o % 16 == 0 takes the channel tiles: 3- and 5-wide undilated kernel rows
    // broadcast each input once per row, other widths once per tap; rows wider
    // than 12 pixels split into near-equal tiles.
    let mut g = Generator::new(12);
    let cases = [
        // [n, c, o, h, w, kh, kw, pad, dil]
        [2, 3, 16, 12, 30, 3, 3, 1, 1], // 3-wide, padding, 30 = 10 + 10 + 10 pixels
        [1, 2, 32, 9, 27, 2, 5, 2, 1],  // 5-wide, two channel blocks, 27 = 9 + 9 + 9
        [2, 4, 16, 8, 13, 3, 2, 0, 1],  // 2-wide (broadcast per tap), 12 = 6 + 6
        [1, 3, 16, 5, 7, 1, 1, 0, 1],   // 1x1
        [1, 2, 16, 11, 11, 5, 3, 0, 2], // 3-wide but dilated
        [2, 1, 16, 6, 17, 4, 5, 0, 1],  // 13 = 7 + 6 pixels
    ];
    for case in cases {
        assert_direct_conv_matches_gemm(&mut g, case)?;
    }
    Ok(())
}

#[test]
fn contiguous_strides_for_every_rank_and_empty_shapes() {
    let strides = |dims: &[usize]| Layout::contiguous(Shape::new(dims)).strides().to_vec();
    assert_eq!(strides(&[]), Vec::<usize>::new());
    assert_eq!(strides(&[5]), [1]);
    assert_eq!(strides(&[3, 4]), [4, 1]);
    assert_eq!(strides(&[2, 3, 4]), [12, 4, 1]);
    assert_eq!(strides(&[2, 3, 4, 5]), [60, 20, 5, 1]);
    assert_eq!(strides(&[2, 1, 3, 1, 4, 5]), [60, 60, 20, 20, 5, 1]);
    // An empty tensor whose other dims multiply past usize: no overflow panic.
    let huge = usize::MAX / 2;
    assert_eq!(Layout::contiguous(Shape::new(&[huge, huge, 0])).numel(), 0);
    assert_eq!(strides(&[0, huge, huge])[2], 1);
}

/// Same-shape float element-wise ops take a shorter dispatch path; it must
/// give what the general (broadcasting) path gives, on strided and offset
/// views too, and leave every error to the general path.
#[test]
fn same_shape_elementwise_path_matches_the_broadcasting_path() -> Result<()> {
    let a = Tensor::arange(0.0, 24.0, 1.0, DType::F32, &cpu())?.reshape([4, 6])?;
    let b = Tensor::arange(-12.0, 12.0, 1.0, DType::F32, &cpu())?.reshape([6, 4])?.t()?;
    let a_off = a.narrow(1, 1, 4)?.narrow(0, 0, 4)?; // offset, non-contiguous
    let b_off = b.narrow(1, 2, 4)?;
    for (x, y) in [(&a, &b), (&a_off, &b_off)] {
        let fast = x.mul(y)?;
        // Broadcasting a leading 1-dim forces the general path.
        let general = x.unsqueeze(0)?.mul(y)?.squeeze(0)?;
        assert_eq!(f32s(&fast), f32s(&general));
        assert!(fast.is_contiguous());
        assert_eq!(fast.layout(), &Layout::contiguous(fast.shape().clone()));
        assert_eq!(f32s(&x.tanh()?), f32s(&x.unsqueeze(0)?.tanh()?.squeeze(0)?));
        assert_eq!(f32s(&x.add_scalar(0.5)?), f32s(&x.unsqueeze(0)?.add_scalar(0.5)?.squeeze(0)?));
    }
    // Mismatched dtypes and integer-only cases still get the general path's errors and results.
    let i = Tensor::arange(0.0, 24.0, 1.0, DType::I64, &cpu())?.reshape([4, 6])?;
    assert!(matches!(a.add(&i).map_err(|e| e.into_kind()), Err(ErrorKind::DTypeMismatch { op: "add", .. })));
    assert_eq!(i.add(&i)?.to_vec::<i64>()?, (0..24).map(|v| 2 * v).collect::<Vec<i64>>());
    Ok(())
}

/// Element functions must give the same bits whatever the layout: strided
/// views and contiguous copies go through different walks (and once through
/// differently compiled code), and a result must not depend on which.
#[test]
fn strided_element_functions_equal_the_contiguous_ones_bit_for_bit() -> Result<()> {
    let mut g = Generator::new(7);
    let x = Tensor::randn_with(&mut g, [300, 70], DType::F32, &cpu())?.mul_scalar(6.0)?;
    let views = [x.t()?, x.narrow(1, 3, 50)?, x.slice(0, 1, 300, 3)?];
    for v in &views {
        assert!(!v.is_contiguous());
        let c = v.contiguous()?;
        for (name, got, want) in [
            ("exp", v.exp()?, c.exp()?),
            ("sigmoid", v.sigmoid()?, c.sigmoid()?),
            ("silu", v.silu()?, c.silu()?),
            ("mul", v.mul(&c)?, c.mul(&c)?),
        ] {
            let (got, want) = (f32s(&got), f32s(&want));
            let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{name} of a {:?} view differs from its contiguous copy", v.dims());
        }
    }
    Ok(())
}

/// Sums and means over leading and trailing dims at once (the bias-gradient
/// shape) reduce the trailing run in place first; the result must equal an
/// f64 reference, for runs above and below the split's threshold, and the
/// other paths (strided input, only trailing dims) must agree with it.
#[test]
fn sums_over_leading_and_trailing_dims_match_a_reference() -> Result<()> {
    for dims in [[4usize, 3, 7, 9], [5, 2, 3, 3], [2, 6, 1, 40]] {
        let n: usize = dims.iter().product();
        let v: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64 / 100.0 - 5.0).collect();
        let x = Tensor::from_vec(v.clone(), dims, &cpu())?;
        let [nb, c, h, w] = dims;
        let mut want = vec![0.0; c];
        for (i, &val) in v.iter().enumerate() {
            want[(i / (h * w)) % c] += val;
        }
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-4)] {
            let xt = x.to_dtype(dtype)?;
            let sum = xt.sum([0, 2, 3], false)?.to_dtype(DType::F64)?.to_vec::<f64>()?;
            let mean = xt.mean([0, 2, 3], true)?;
            assert_eq!(mean.dims(), &[1, c, 1, 1]);
            let mean = mean.to_dtype(DType::F64)?.to_vec::<f64>()?;
            for ch in 0..c {
                let scale = 1.0 + want[ch].abs();
                assert!((sum[ch] - want[ch]).abs() <= tol * scale, "{dims:?} {dtype} sum[{ch}]");
                let m = want[ch] / (nb * h * w) as f64;
                assert!((mean[ch] - m).abs() <= tol * scale, "{dims:?} {dtype} mean[{ch}]");
            }
            // A transposed copy of the same values goes through the general path.
            let strided = xt.transpose(2, 3)?.contiguous()?.transpose(2, 3)?;
            let general = strided.sum([0, 2, 3], false)?.to_dtype(DType::F64)?.to_vec::<f64>()?;
            for ch in 0..c {
                assert!((general[ch] - sum[ch]).abs() <= tol * (1.0 + want[ch].abs()), "{dims:?} {dtype} strided");
            }
        }
    }
    Ok(())
}

/// Softmax rows long enough for the 64-lane passes plus a remainder, with the
/// specials PyTorch defines (checked against torch 2.15): a NaN or +inf
/// anywhere makes the whole row NaN, an all -inf row is NaN, -inf entries
/// give 0 (log: -inf). Compared with an f64 reference computed here, over the
/// last dim and over dim 0 (the strided path), in f32, f64 and bf16, on the
/// sequential and the parallel (>= 32K elements) paths.
#[test]
fn softmax_rows_match_a_reference_including_specials() -> Result<()> {
    let (inf, nan) = (f64::INFINITY, f64::NAN);
    for (rows, len) in [(6usize, 131usize), (300, 130)] {
        let mut v: Vec<f64> = (0..rows * len).map(|i| ((i * 7919) % 1000) as f64 / 80.0 - 6.0).collect();
        v[len + 70] = nan; // row 1
        v[2 * len + 129] = inf; // row 2, in the remainder
        v[3 * len..4 * len].iter_mut().for_each(|x| *x = -inf); // row 3
        v[4 * len + 3] = -inf; // row 4: one zero
        let reference = |row: &[f64], log: bool| -> Vec<f64> {
            if row.iter().any(|x| x.is_nan() || *x == inf) || row.iter().all(|x| *x == -inf) {
                return vec![nan; row.len()];
            }
            let m = row.iter().cloned().fold(-inf, f64::max);
            let sum: f64 = row.iter().map(|x| (x - m).exp()).sum();
            row.iter().map(|x| if log { x - m - sum.ln() } else { (x - m).exp() / sum }).collect()
        };
        let x = Tensor::from_vec(v.clone(), [rows, len], &cpu())?;
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 2e-6), (DType::BF16, 1e-2)] {
            let xt = x.to_dtype(dtype)?;
            // dim 0 of the transpose reads the same rows with stride `len`.
            for (strided, log) in [(false, false), (false, true), (true, false), (true, true)] {
                let out = match (strided, log) {
                    (false, false) => xt.softmax(1)?,
                    (false, true) => xt.log_softmax(1)?,
                    (true, false) => xt.t()?.contiguous()?.softmax(0)?.t()?,
                    (true, true) => xt.t()?.contiguous()?.log_softmax(0)?.t()?,
                };
                let got = out.contiguous()?.to_dtype(DType::F64)?.to_vec::<f64>()?;
                // bf16 rounds the input too: the reference sees what Oar saw.
                let seen = xt.to_dtype(DType::F64)?.to_vec::<f64>()?;
                for r in 0..rows {
                    let want = reference(&seen[r * len..(r + 1) * len], log);
                    for (c, (g, w)) in got[r * len..(r + 1) * len].iter().zip(&want).enumerate() {
                        let ok = if w.is_nan() {
                            g.is_nan()
                        } else if w.is_infinite() {
                            g == w
                        } else {
                            (g - w).abs() <= tol * (1.0 + w.abs())
                        };
                        assert!(ok, "{dtype} rows {rows} strided {strided} log {log} [{r}, {c}]: {g} vs {w}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// Max, min and logsumexp over rows with the same specials as the softmax
/// test: NaN anywhere in a row gives NaN (also next to an infinity, which the
/// vectorized kernel's NaN screen also flags), infinities win, and a NaN in
/// the 64-element body or in the tail is found.
#[test]
fn max_min_logsumexp_rows_match_a_reference_including_specials() -> Result<()> {
    let (inf, nan) = (f64::INFINITY, f64::NAN);
    let (rows, len) = (7usize, 150usize); // two 64-lane chunks and a 22-element tail
    let mut v: Vec<f64> = (0..rows * len).map(|i| ((i * 7919) % 1000) as f64 / 80.0 - 6.0).collect();
    v[len + 70] = nan; // row 1, body
    v[2 * len + 140] = nan; // row 2, tail
    v[3 * len + 5] = inf; // row 3: +inf only
    v[4 * len + 9] = -inf; // row 4: -inf only
    v[5 * len + 1] = inf; // row 5: inf and NaN
    v[5 * len + 100] = nan;
    let x = Tensor::from_vec(v.clone(), [rows, len], &cpu())?;
    for dtype in [DType::F64, DType::F32, DType::F16] {
        let xt = x.to_dtype(dtype)?;
        let seen = xt.to_dtype(DType::F64)?.to_vec::<f64>()?;
        let get = |t: Tensor| t.to_dtype(DType::F64).and_then(|t| t.to_vec::<f64>());
        let (mx, mn, lse) = (get(xt.max(1, false)?)?, get(xt.min(1, false)?)?, get(xt.logsumexp(1, false)?)?);
        for r in 0..rows {
            let row = &seen[r * len..(r + 1) * len];
            let has_nan = row.iter().any(|x| x.is_nan());
            let want_max = if has_nan { nan } else { row.iter().cloned().fold(-inf, f64::max) };
            let want_min = if has_nan { nan } else { row.iter().cloned().fold(inf, f64::min) };
            let want_lse = if has_nan || want_max.is_infinite() {
                want_max
            } else {
                want_max + row.iter().map(|x| (x - want_max).exp()).sum::<f64>().ln()
            };
            let same = |g: f64, w: f64, tol: f64| {
                if w.is_nan() {
                    g.is_nan()
                } else {
                    g == w || (g - w).abs() <= tol * (1.0 + w.abs())
                }
            };
            assert!(same(mx[r], want_max, 0.0), "{dtype} max row {r}: {} vs {want_max}", mx[r]);
            assert!(same(mn[r], want_min, 0.0), "{dtype} min row {r}: {} vs {want_min}", mn[r]);
            let tol = if dtype == DType::F16 { 2e-3 } else { 1e-6 };
            assert!(same(lse[r], want_lse, tol), "{dtype} logsumexp row {r}: {} vs {want_lse}", lse[r]);
        }
    }
    Ok(())
}

/// ReLU's backward is 0 wherever the input is <= 0, whatever the incoming
/// gradient (PyTorch's threshold_backward): a NaN or infinite gradient there
/// does not leak through.
#[test]
fn relu_backward_is_zero_where_the_input_is_not_positive() -> Result<()> {
    let x = Tensor::from_vec(vec![-1.0f32, 0.0, 2.0, -0.0, 3.0], [5], &cpu())?;
    let g = Tensor::from_vec(vec![f32::NAN, f32::INFINITY, 5.0, f32::NAN, f32::NAN], [5], &cpu())?;
    let d = g.unary_backward(oar_tensor::UnaryOp::Relu, &x)?.to_vec::<f32>()?;
    assert_eq!(&d[..3], &[0.0, 0.0, 5.0]);
    assert_eq!(d[3], 0.0);
    assert!(d[4].is_nan());
    Ok(())
}

#[test]
fn fused_epilogues_equal_the_ops_one_by_one() -> Result<()> {
    use oar_tensor::op::{BinaryOp, Op, UnaryOp};
    let epilogue = vec![
        Op::Unary(UnaryOp::Relu),
        Op::BinaryScalar { op: BinaryOp::Mul, scalar: 1.5 },
        Op::Unary(UnaryOp::Tanh),
        Op::Clamp { min: Some(-0.2), max: Some(0.7) },
    ];
    // Large enough (3 x 20000) to take the threaded chunked path, and small.
    for n in [7usize, 20_000] {
        let a = Tensor::randn([3, n], DType::F32, &cpu())?;
        let b = Tensor::randn([3, n], DType::F32, &cpu())?;
        let fused = Tensor::apply(
            Op::Fused { head: Box::new(Op::Binary(BinaryOp::Add)), epilogue: epilogue.clone() },
            &[&a, &b],
        )?;
        let step = a.add(&b)?.relu()?.mul_scalar(1.5)?.tanh()?.clamp(Some(-0.2), Some(0.7))?;
        assert_eq!(f32s(&fused[0]), f32s(&step));
    }
    // Convolution heads: the direct f32 kernels apply the epilogue per image
    // (pixel tiles, channel tiles), the others after the whole batch (stride
    // 2 and f64 take im2col + gemm); all equal conv2d and then the ops.
    let cases: [([usize; 4], [usize; 4], usize, DType); 4] = [
        ([3, 3, 12, 12], [10, 3, 3, 3], 1, DType::F32),
        ([2, 6, 14, 14], [16, 6, 5, 5], 1, DType::F32),
        ([2, 3, 12, 12], [10, 3, 3, 3], 2, DType::F32),
        ([2, 3, 12, 12], [10, 3, 3, 3], 1, DType::F64),
    ];
    for (xs, ws, stride, dt) in cases {
        let x = Tensor::randn(xs, dt, &cpu())?;
        let (w, b) = (Tensor::randn(ws, dt, &cpu())?, Tensor::randn([ws[0]], dt, &cpu())?);
        let p = Conv2dParams { stride: [stride, stride], ..Default::default() };
        let fused =
            Tensor::apply(Op::Fused { head: Box::new(Op::Conv2d(p)), epilogue: epilogue.clone() }, &[&x, &w, &b])?;
        let step = x.conv2d(&w, Some(&b), &p)?.relu()?.mul_scalar(1.5)?.tanh()?.clamp(Some(-0.2), Some(0.7))?;
        let f64s = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap();
        assert_eq!(f64s(&fused[0]), f64s(&step), "conv {xs:?} * {ws:?}, stride {stride}, {dt}");
    }
    // f16 computes in f32 as the unfused ops do.
    let h = Tensor::randn([64], DType::F32, &cpu())?.to_dtype(DType::F16)?;
    let fused =
        Tensor::apply(Op::Fused { head: Box::new(Op::Unary(UnaryOp::Exp)), epilogue: epilogue.clone() }, &[&h])?;
    let step = h.exp()?.relu()?.mul_scalar(1.5)?.tanh()?.clamp(Some(-0.2), Some(0.7))?;
    assert_eq!(f32s(&fused[0].to_dtype(DType::F32)?), f32s(&step.to_dtype(DType::F32)?));
    // What cannot be fused is refused by name.
    let x = Tensor::randn([4], DType::F32, &cpu())?;
    let bad = |head: Op, epilogue: Vec<Op>| {
        Tensor::apply(Op::Fused { head: Box::new(head), epilogue }, &[&x]).unwrap_err().to_string()
    };
    assert!(bad(Op::Unary(UnaryOp::Exp), vec![Op::Softmax { dim: 0 }]).contains("`softmax` cannot run as an epilogue"));
    assert!(bad(Op::Reshape { shape: vec![2, 2] }, vec![]).contains("`reshape` cannot head"));
    let i = Tensor::from_vec(vec![1i64, 2], [2], &cpu())?;
    let e = Tensor::apply(
        Op::Fused { head: Box::new(Op::Unary(UnaryOp::Neg)), epilogue: vec![Op::Unary(UnaryOp::Abs)] },
        &[&i],
    );
    assert!(e.unwrap_err().to_string().contains("floating-point"));
    Ok(())
}

#[test]
fn binary_epilogues_read_their_operands_like_the_ops_one_by_one() -> Result<()> {
    use oar_tensor::op::{BinaryOp, Op, UnaryOp};
    let fused = |head: Op, epilogue: Vec<Op>, inputs: &[&Tensor]| -> Result<Tensor> {
        Ok(Tensor::apply(Op::Fused { head: Box::new(head), epilogue }, inputs)?.remove(0))
    };
    let (add, mul, sub) = (Op::Binary(BinaryOp::Add), Op::Binary(BinaryOp::Mul), Op::Binary(BinaryOp::Sub));
    let relu = Op::Unary(UnaryOp::Relu);
    // A linear layer: product, bias row, ReLU. 300 x 77 outputs cross the
    // 4096-element chunks mid-row and split across threads.
    for (m, k, n) in [(1, 16, 10), (5, 32, 64), (300, 40, 77)] {
        let x = Tensor::randn([m, k], DType::F32, &cpu())?;
        let w = Tensor::randn([n, k], DType::F32, &cpu())?;
        let b = Tensor::randn([n], DType::F32, &cpu())?;
        let got = fused(Op::Matmul, vec![add.clone(), relu.clone()], &[&x, &w.t()?, &b])?;
        assert_eq!(f32s(&got), f32s(&x.matmul(&w.t()?)?.add(&b)?.relu()?), "[{m}, {k}] x [{k}, {n}]");
    }
    // A residual add and a per-channel scale after a convolution, whose direct
    // kernels run the epilogue per image: operand offsets follow the image.
    let x = Tensor::randn([3, 4, 9, 9], DType::F32, &cpu())?;
    let w = Tensor::randn([4, 4, 3, 3], DType::F32, &cpu())?;
    let scale = Tensor::randn([4, 1, 1], DType::F32, &cpu())?;
    let p = Conv2dParams { padding: [1, 1], ..Default::default() };
    let got = fused(Op::Conv2d(p), vec![add.clone(), mul.clone(), relu.clone()], &[&x, &w, &x, &scale])?;
    let want = x.conv2d(&w, None, &p)?.add(&x)?.mul(&scale)?.relu()?;
    assert_eq!(f32s(&got), f32s(&want));
    // Operands read through strided views (a transpose, an expanded row) and
    // a 0-d one; the operand stays on the right of a subtraction.
    let a = Tensor::randn([6, 5], DType::F32, &cpu())?;
    let t = Tensor::randn([5, 6], DType::F32, &cpu())?.t()?;
    let r = Tensor::randn([1, 5], DType::F32, &cpu())?.expand([6, 5])?;
    let s0 = Tensor::from_vec(vec![0.25f32], [], &cpu())?;
    let got = fused(Op::Unary(UnaryOp::Tanh), vec![sub.clone(), mul.clone(), add.clone()], &[&a, &t, &r, &s0])?;
    assert_eq!(f32s(&got), f32s(&a.tanh()?.sub(&t)?.mul(&r)?.add(&s0)?));
    // f16 computes in f32 and rounds after each op, as the unfused ops do.
    let h = Tensor::randn([8, 33], DType::F32, &cpu())?.to_dtype(DType::F16)?;
    let hb = Tensor::randn([33], DType::F32, &cpu())?.to_dtype(DType::F16)?;
    let got = fused(Op::Unary(UnaryOp::Exp), vec![add.clone(), Op::Binary(BinaryOp::Div)], &[&h, &hb, &h])?;
    let want = h.exp()?.add(&hb)?.div(&h)?;
    assert_eq!(f32s(&got.to_dtype(DType::F32)?), f32s(&want.to_dtype(DType::F32)?));
    Ok(())
}

#[test]
fn apply_in_place_writes_into_a_buffer_only_it_holds() -> Result<()> {
    use oar_tensor::op::{BinaryOp, Op, UnaryOp};
    let ops = [Op::Unary(UnaryOp::Exp), Op::Binary(BinaryOp::Sub), Op::BinaryScalar { op: BinaryOp::Mul, scalar: 0.5 }];
    let x = Tensor::randn([70, 90], DType::F32, &cpu())?;
    let row = Tensor::randn([90], DType::F32, &cpu())?;
    let want = f32s(&x.exp()?.sub(&row)?.mul_scalar(0.5)?);
    // The only handle on a fresh buffer: the same tensor comes back, overwritten.
    let y = x.mul_scalar(1.0)?;
    let id = y.id();
    let y = y.apply_in_place(&ops, &[&row])?;
    assert_eq!(y.id(), id, "not written in place");
    assert!(f32s(&y) == want, "in-place values differ");
    // Another handle sees the buffer: fresh buffers, the source intact.
    let (shared, before) = (x.clone(), f32s(&x));
    let y = x.clone().apply_in_place(&ops, &[&row])?;
    assert!(y.id() != shared.id());
    assert!(f32s(&y) == want && f32s(&shared) == before, "a shared buffer was overwritten");
    // A strided view (of a buffer nothing else holds) is computed op by op.
    let t = x.mul_scalar(1.0)?.t()?;
    let col = Tensor::randn([70], DType::F32, &cpu())?;
    let want_t = f32s(&t.exp()?.sub(&col)?.mul_scalar(0.5)?);
    assert!(f32s(&t.apply_in_place(&ops, &[&col])?) == want_t, "strided view values differ");
    // Recorded for autograd: the ops run as ops.
    let p = Tensor::randn([3], DType::F32, &cpu())?.with_requires_grad(true)?;
    let y = p.clone().apply_in_place(&[Op::Unary(UnaryOp::Square)], &[])?;
    assert!(y.requires_grad() && y.id() != p.id());
    // Bad chains are refused by name.
    let e = |ops: &[Op], operands: &[&Tensor]| x.clone().apply_in_place(ops, operands).unwrap_err().to_string();
    assert!(e(&[Op::Binary(BinaryOp::Add)], &[]).contains("1 binary ops take as many operands, got 0"));
    assert!(e(&[Op::Softmax { dim: 0 }], &[]).contains("`softmax` is not an element-wise op"));
    let wide = Tensor::randn([2, 70, 90], DType::F32, &cpu())?;
    assert!(e(&[Op::Binary(BinaryOp::Add)], &[&wide]).contains("would change the tensor's shape or dtype"));
    Ok(())
}

/// A weight packed once ([`Tensor::prepack`]) gives the same bits as the
/// convolution that reorders it on every call: alone and heading a fused op,
/// with and without bias, for pixel tiles (any channel count) and channel
/// tiles (multiples of 16), padding and dilation. What the direct kernels do
/// not take (stride 2, f64, groups) and ops with nothing to pack get `None`.
#[test]
fn prepacked_convolutions_equal_the_unpacked_ones_bit_for_bit() -> Result<()> {
    use oar_tensor::op::{Op, UnaryOp};
    let mut g = Generator::new(31);
    let direct = cfg!(target_arch = "x86_64") && std::arch::is_x86_feature_detected!("fma");
    let cases = [
        // [n, c, o, h, w, kh, kw, pad, dil]
        [1, 3, 10, 32, 32, 3, 3, 0, 1], // SimpleCNN
        [2, 6, 16, 14, 14, 5, 5, 0, 1], // LeNet conv2, channel tiles
        [3, 2, 32, 9, 20, 3, 3, 1, 2],  // two channel blocks, padding, dilation
        [2, 5, 17, 6, 40, 3, 3, 1, 1],  // 17 channels: a partial block
    ];
    let mut packed_any = false;
    for [n, c, o, h, w, kh, kw, pad, dil] in cases {
        let x = Tensor::randn_with(&mut g, [n, c, h, w], DType::F32, &cpu())?;
        let wt = Tensor::randn_with(&mut g, [o, c, kh, kw], DType::F32, &cpu())?;
        let b = Tensor::randn_with(&mut g, [o], DType::F32, &cpu())?;
        let p = Conv2dParams { padding: [pad, pad], dilation: [dil, dil], ..Default::default() };
        let fused = Op::Fused { head: Box::new(Op::Conv2d(p)), epilogue: vec![Op::Unary(UnaryOp::Relu)] };
        for (op, with_bias) in [(Op::Conv2d(p), true), (Op::Conv2d(p), false), (fused, true)] {
            let inputs: Vec<&Tensor> = if with_bias { vec![&x, &wt, &b] } else { vec![&x, &wt] };
            let metas: Vec<_> = inputs.iter().map(|t| t.meta()).collect();
            let want = f32s(&Tensor::apply(op.clone(), &inputs)?[0]);
            let Some((packed_op, packed)) = wt.prepack(&op, 1, &metas)? else {
                assert!(!direct, "{op:?} on {:?} was not packed", x.dims());
                continue;
            };
            packed_any = true;
            assert_eq!(packed.dims(), [c * kh * kw * o.div_ceil(8) * 8]);
            assert!(packed.unpacked(&packed_op).is_none(), "the channel-blocked order is no strided layout");
            let mut packed_inputs = inputs.clone();
            packed_inputs[1] = &packed;
            assert_eq!(f32s(&Tensor::apply(packed_op, &packed_inputs)?[0]), want, "{op:?}, x {:?}", x.dims());
        }
    }
    assert_eq!(packed_any, direct);
    // Nothing to pack: another input, shapes the direct kernels leave to
    // im2col + gemm, other dtypes and other ops.
    let x = Tensor::randn([2, 4, 12, 12], DType::F32, &cpu())?;
    let w = Tensor::randn([8, 4, 3, 3], DType::F32, &cpu())?;
    let conv = |p: Conv2dParams| Op::Conv2d(p);
    assert!(x.prepack(&conv(Default::default()), 0, &[x.meta(), w.meta()])?.is_none());
    let strided = Conv2dParams { stride: [2, 2], ..Default::default() };
    assert!(w.prepack(&conv(strided), 1, &[x.meta(), w.meta()])?.is_none());
    let grouped = Conv2dParams { groups: 2, ..Default::default() };
    let wg = Tensor::randn([8, 2, 3, 3], DType::F32, &cpu())?;
    assert!(wg.prepack(&conv(grouped), 1, &[x.meta(), wg.meta()])?.is_none());
    let (x64, w64) = (x.to_dtype(DType::F64)?, w.to_dtype(DType::F64)?);
    assert!(w64.prepack(&conv(Default::default()), 1, &[x64.meta(), w64.meta()])?.is_none());
    let m = Tensor::randn([3, 4], DType::F32, &cpu())?;
    assert!(m.prepack(&Op::Matmul, 1, &[m.t()?.meta(), m.meta()])?.is_none());
    Ok(())
}

/// A transposed linear weight is packed as a row-major copy only where the
/// AVX-512 `gemm` crate runs the product faster from one; the packed product
/// matches the f64 one.
#[test]
fn prepacked_linear_weights_are_row_major_copies_where_they_pay() -> Result<()> {
    use oar_tensor::op::Op;
    let mut g = Generator::new(32);
    let avx512 = cfg!(target_arch = "x86_64")
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("fma");
    // (m, k, n, packed on AVX-512)
    let cases = [
        (64, 512, 512, true),
        (9, 784, 512, true),
        (4, 400, 32, true),
        (256, 84, 10, false), // 10 columns: dot products read the view
        (6, 784, 512, false), // few rows, many columns: dot products
        (2, 400, 20, false),  // too few rows
        (9, 64, 17, false),   // too little work
    ];
    for (m, k, n, packs) in cases {
        let x = Tensor::randn_with(&mut g, [m, k], DType::F32, &cpu())?;
        let w = Tensor::randn_with(&mut g, [n, k], DType::F32, &cpu())?;
        let wt = w.t()?;
        let packed = wt.prepack(&Op::Matmul, 1, &[x.meta(), wt.meta()])?;
        assert_eq!(packed.is_some(), packs && avx512, "[{m}, {k}] x [{k}, {n}]");
        let Some((op, packed)) = packed else { continue };
        assert_eq!(f32s(&packed), f32s(&wt.contiguous()?));
        // The copy holds the weight's values in a plain layout: viewable as it.
        let view = packed.unpacked(&op).expect("a row-major copy");
        assert_eq!((view.dims(), f32s(&view)), (wt.dims(), f32s(&wt)));
        assert!(packed.unpacked(&Op::Matmul).is_none(), "not a prepacked op");
        let got = Tensor::apply(op, &[&x, &packed])?.swap_remove(0).to_dtype(DType::F64)?;
        let want = x.to_dtype(DType::F64)?.matmul(&wt.to_dtype(DType::F64)?)?;
        let err = got.sub(&want)?.abs()?.max_all()?.item()? / want.abs()?.max_all()?.item()?;
        assert!(err < 1e-5, "[{m}, {k}] x [{k}, {n}]: relative error {err}");
    }
    // A row-major weight is already in the layout the crate prefers.
    let (x, w) = (Tensor::randn([64, 512], DType::F32, &cpu())?, Tensor::randn([512, 512], DType::F32, &cpu())?);
    assert!(w.prepack(&Op::Matmul, 1, &[x.meta(), w.meta()])?.is_none());
    Ok(())
}

/// f32 products with few columns and a transposed right operand (a linear
/// layer's `x @ w.t()`) take dot-product kernels on AVX-512 CPUs (gemm
/// elsewhere): against the f64 product, for every column count up to 16
/// (one or two column blocks), odd row counts, depths with a partial last
/// vector, and batched operands; a contiguous right operand takes gemm.
#[test]
fn skinny_and_few_row_products_with_transposed_weights_match_f64() -> Result<()> {
    let mut g = Generator::new(21);
    let mut check = |batch: &[usize], m: usize, k: usize, n: usize, transposed: bool| -> Result<()> {
        let xs: Vec<usize> = batch.iter().copied().chain([m, k]).collect();
        let x = Tensor::randn_with(&mut g, xs.as_slice(), DType::F64, &cpu())?;
        let w = Tensor::randn_with(&mut g, [n, k], DType::F64, &cpu())?.t()?;
        let w = if transposed { w } else { w.contiguous()? };
        let want = x.matmul(&w)?;
        let f = |t: &Tensor| t.to_dtype(DType::F32);
        let got = f(&x)?.matmul(&f(&w)?)?.to_dtype(DType::F64)?;
        assert_eq!(got.dims(), want.dims());
        let err = got.sub(&want)?.abs()?.max_all()?.item()?;
        let scale = want.abs()?.max_all()?.item()?.max(1.0);
        assert!(err / scale < 1e-5, "{batch:?} x [{m}, {k}] @ [{k}, {n}]: relative error {}", err / scale);
        Ok(())
    };
    for n in 1..=16 {
        check(&[], 7, 100, n, true)?;
    }
    for (m, k) in [(1, 64), (2, 65), (64, 2250), (33, 784), (5, 1000)] {
        check(&[], m, k, 10, true)?;
        check(&[], m, k, 10, false)?;
    }
    check(&[3], 4, 96, 12, true)?;
    // Few rows, many columns (a linear layer at batch 1 to 8): the threads
    // split the columns; odd widths leave partial blocks and partial tasks.
    for m in 1..=9 {
        check(&[], m, 784, 512, true)?;
    }
    for (m, k, n) in [(1, 64, 17), (2, 100, 37), (3, 513, 300), (1, 120, 84), (8, 400, 120), (6, 5000, 48)] {
        check(&[], m, k, n, true)?;
        check(&[], m, k, n, false)?;
    }
    check(&[2], 1, 200, 70, true)?;
    Ok(())
}
