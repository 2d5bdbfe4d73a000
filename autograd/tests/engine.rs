//! The backward engine: accumulation, retain_grad, graph release and reuse
//! errors, no_grad, detach, create_graph, dtype flow, and PyTorch's tie rules,
//! all against hand-derived values.

use oar_autograd::{grad, no_grad, Backward, BackwardOptions};
use oar_tensor::{DType, Device, Error, ErrorKind, Result, Tensor};

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec(), &Device::cpu()).unwrap()
}

fn leaf(v: &[f32], shape: &[usize]) -> Tensor {
    t(v, shape).with_requires_grad(true).unwrap()
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap()
}

fn autograd_msg(e: Error) -> String {
    match e.into_kind() {
        ErrorKind::Autograd { msg } => msg,
        other => panic!("expected an autograd error, got {other}"),
    }
}

#[test]
fn leaf_used_twice_accumulates_within_one_pass() -> Result<()> {
    let x = leaf(&[1.0, -2.0, 3.0], &[3]);
    x.mul(&x)?.add(&x)?.sum_all()?.backward()?; // d/dx (x^2 + x) = 2x + 1
    assert_eq!(vals(&x.grad().unwrap()), vec![3.0, -3.0, 7.0]);
    Ok(())
}

#[test]
fn gradients_accumulate_across_passes_until_zero_grad() -> Result<()> {
    let w = leaf(&[2.0], &[1]);
    for _ in 0..3 {
        w.mul_scalar(5.0)?.sum_all()?.backward()?;
    }
    assert_eq!(vals(&w.grad().unwrap()), vec![15.0]);
    w.zero_grad();
    assert!(w.grad().is_none());
    w.mul_scalar(5.0)?.sum_all()?.backward()?;
    assert_eq!(vals(&w.grad().unwrap()), vec![5.0]);
    Ok(())
}

#[test]
fn backward_twice_through_a_freed_graph_is_an_error() -> Result<()> {
    let x = leaf(&[1.0, 2.0], &[2]);
    let y = x.exp()?.sum_all()?;
    y.backward()?;
    let msg = autograd_msg(y.backward().unwrap_err());
    assert!(msg.contains("already freed") && msg.contains("retain_graph"), "{msg}");
    Ok(())
}

#[test]
fn retain_graph_allows_a_second_pass() -> Result<()> {
    let x = leaf(&[1.0, 2.0], &[2]);
    let y = x.square()?.sum_all()?;
    let keep = BackwardOptions { retain_graph: true, ..Default::default() };
    y.backward_opts(None, keep)?;
    y.backward_opts(None, keep)?;
    assert_eq!(vals(&x.grad().unwrap()), vec![4.0, 8.0]); // 2 * 2x
    Ok(())
}

#[test]
fn backward_releases_the_graph_it_walked() -> Result<()> {
    let x = leaf(&[1.0, 2.0], &[2]);
    let h = x.exp()?;
    let y = h.sum_all()?;
    let node = h.provenance().unwrap().node.clone();
    assert!(!node.is_released());
    y.backward()?;
    assert!(node.is_released(), "the exp node should drop its inputs after backward");
    Ok(())
}

#[test]
fn non_scalar_backward_needs_a_gradient() -> Result<()> {
    let x = leaf(&[1.0, 2.0, 3.0], &[3]);
    let y = x.mul_scalar(2.0)?;
    let msg = autograd_msg(y.backward().unwrap_err());
    assert!(msg.contains("scalar") && msg.contains("[3]") && msg.contains("backward_with"), "{msg}");
    y.backward_with(&t(&[1.0, 0.0, -1.0], &[3]))?;
    assert_eq!(vals(&x.grad().unwrap()), vec![2.0, 0.0, -2.0]);
    Ok(())
}

#[test]
fn backward_with_a_mismatched_gradient_is_an_error() -> Result<()> {
    let x = leaf(&[1.0, 2.0, 3.0], &[3]);
    let y = x.mul_scalar(2.0)?;
    let msg = autograd_msg(y.backward_with(&t(&[1.0, 0.0], &[2])).unwrap_err());
    assert!(msg.contains("[2]") && msg.contains("[3]"), "{msg}");
    Ok(())
}

#[test]
fn backward_on_a_tensor_without_grad_is_an_error() {
    let x = t(&[1.0, 2.0], &[2]);
    let msg = autograd_msg(x.sum_all().unwrap().backward().unwrap_err());
    assert!(msg.contains("does not require grad"), "{msg}");
}

#[test]
fn requires_grad_is_for_floats_only() {
    let i = Tensor::from_vec(vec![1i64, 2], [2], &Device::cpu()).unwrap();
    assert!(i.with_requires_grad(true).is_err());
}

#[test]
fn retain_grad_keeps_an_intermediate_gradient() -> Result<()> {
    let x = leaf(&[1.0, 2.0], &[2]);
    let h = x.mul_scalar(3.0)?;
    h.retain_grad()?;
    let other = x.mul_scalar(4.0)?; // not retained
    h.square()?.add(&other)?.sum_all()?.backward()?;
    assert_eq!(vals(&h.grad().unwrap()), vec![6.0, 12.0]); // 2h
    assert!(other.grad().is_none());
    assert_eq!(vals(&x.grad().unwrap()), vec![22.0, 40.0]); // 3 * 2h + 4
    Ok(())
}

#[test]
fn no_grad_records_nothing() -> Result<()> {
    let x = leaf(&[1.0], &[1]);
    let y = {
        let _g = no_grad();
        x.mul_scalar(2.0)?
    };
    assert!(!y.requires_grad() && y.provenance().is_none());
    let z = x.mul_scalar(2.0)?;
    assert!(z.requires_grad() && z.provenance().is_some());
    Ok(())
}

#[test]
fn detach_stops_gradients() -> Result<()> {
    let x = leaf(&[2.0], &[1]);
    let y = x.square()?.detach().mul(&x)?; // only the second factor sees x
    y.sum_all()?.backward()?;
    assert_eq!(vals(&x.grad().unwrap()), vec![4.0]); // x^2 as a constant
    Ok(())
}

#[test]
fn half_precision_gradients_come_back_in_the_input_dtype() -> Result<()> {
    for dt in [DType::BF16, DType::F16] {
        let x = t(&[1.0, 2.0, -0.5], &[3]).to_dtype(dt)?.with_requires_grad(true)?;
        let y = x.to_dtype(DType::F32)?.square()?.sum_all()?;
        y.backward()?;
        let g = x.grad().unwrap();
        assert_eq!(g.dtype(), dt);
        assert_eq!(vals(&g), vec![2.0, 4.0, -1.0]);
    }
    Ok(())
}

#[test]
fn ties_follow_pytorch() -> Result<()> {
    // maximum/minimum split a tie in half.
    let a = leaf(&[1.0, 2.0, 3.0], &[3]);
    let b = leaf(&[1.0, 5.0, 0.0], &[3]);
    a.maximum(&b)?.sum_all()?.backward()?;
    assert_eq!(vals(&a.grad().unwrap()), vec![0.5, 0.0, 1.0]);
    assert_eq!(vals(&b.grad().unwrap()), vec![0.5, 1.0, 0.0]);
    // max/min reductions share the gradient evenly among equal maxima (amax).
    let x = leaf(&[4.0, 1.0, 4.0, 4.0, 2.0, 0.0], &[2, 3]);
    x.max(1, false)?.sum_all()?.backward()?;
    assert_eq!(vals(&x.grad().unwrap()), vec![0.5, 0.0, 0.5, 1.0, 0.0, 0.0]);
    // relu passes no gradient at exactly 0, as PyTorch.
    let z = leaf(&[0.0, 1.0], &[2]);
    z.relu()?.sum_all()?.backward()?;
    assert_eq!(vals(&z.grad().unwrap()), vec![0.0, 1.0]);
    Ok(())
}

#[test]
fn grad_returns_gradients_without_touching_leaves() -> Result<()> {
    let x = leaf(&[1.0, 2.0], &[2]);
    let w = leaf(&[3.0], &[1]);
    let h = x.mul(&w)?;
    let y = h.square()?.sum_all()?;
    let unused = leaf(&[0.0], &[1]);
    let gs = grad(&[&y], &[&x, &h, &unused], None, BackwardOptions::default())?;
    assert_eq!(vals(gs[0].as_ref().unwrap()), vec![18.0, 36.0]); // 2 w^2 x
    assert_eq!(vals(gs[1].as_ref().unwrap()), vec![6.0, 12.0]); // 2h
    assert!(gs[2].is_none());
    assert!(x.grad().is_none() && w.grad().is_none());
    Ok(())
}

#[test]
fn create_graph_gives_second_derivatives() -> Result<()> {
    // y = x^3: dy/dx = 3x^2, d2y/dx2 = 6x.
    let x = leaf(&[1.0, -2.0], &[2]);
    let y = x.pow_scalar(3.0)?.sum_all()?;
    let opts = BackwardOptions { create_graph: true, retain_graph: true };
    let dx = grad(&[&y], &[&x], None, opts)?.remove(0).unwrap();
    assert_eq!(vals(&dx), vec![3.0, 12.0]);
    assert!(dx.requires_grad());
    dx.sum_all()?.backward()?;
    assert_eq!(vals(&x.grad().unwrap()), vec![6.0, -12.0]);
    Ok(())
}

#[test]
fn gradient_penalty() -> Result<()> {
    // f(x) = sum(tanh(w x)); penalty = sum((df/dx)^2); d penalty / dw by hand:
    // df/dx_i = w s_i with s = 1 - tanh^2(w x); penalty = w^2 sum s_i^2;
    // d/dw = 2w sum s^2 + w^2 sum 2 s (ds/dw), ds/dw = -2 tanh(wx) s x.
    let xs = [0.3f32, -0.7];
    let x = leaf(&xs, &[2]);
    let w = leaf(&[1.5], &[1]);
    let f = w.mul(&x)?.tanh()?.sum_all()?;
    let opts = BackwardOptions { create_graph: true, retain_graph: true };
    let gx = grad(&[&f], &[&x], None, opts)?.remove(0).unwrap();
    gx.square()?.sum_all()?.backward()?;
    let wv = 1.5f64;
    let mut expected = 0.0;
    for &xi in &xs {
        let xi = xi as f64;
        let th = (wv * xi).tanh();
        let s = 1.0 - th * th;
        expected += 2.0 * wv * s * s + wv * wv * 2.0 * s * (-2.0 * th * s * xi);
    }
    let got = vals(&w.grad().unwrap())[0] as f64;
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    Ok(())
}

#[test]
fn backward_from_a_leaf() -> Result<()> {
    let x = leaf(&[7.0], &[1]);
    x.backward()?;
    assert_eq!(vals(&x.grad().unwrap()), vec![1.0]);
    Ok(())
}

#[test]
fn multi_output_op_with_unused_indices() -> Result<()> {
    // max_pool2d's indices are dropped by the caller: the node keeps them.
    let x = leaf(&[1.0, 5.0, 2.0, 3.0], &[1, 1, 2, 2]);
    let y = x.max_pool2d(&oar_tensor::MaxPool2dParams::new(2))?;
    assert!(y.provenance().unwrap().node.kept_output(1).is_some());
    y.sum_all()?.backward()?;
    assert_eq!(vals(&x.grad().unwrap()), vec![0.0, 1.0, 0.0, 0.0]);
    Ok(())
}

#[test]
fn max_pool_indices_are_recomputed_during_a_trace() -> Result<()> {
    // A trace keeps nothing in nodes (no cycles through traced outputs), so
    // the rule recomputes the indices.
    let x = leaf(&[1.0, 5.0, 2.0, 3.0, 0.0, -1.0, 9.0, 4.0], &[1, 2, 2, 2]);
    {
        let _trace = oar_tensor::start_trace();
        let y = x.max_pool2d(&oar_tensor::MaxPool2dParams::new(2))?;
        assert!(y.provenance().unwrap().node.kept_output(1).is_none());
        y.sum_all()?.backward()?;
    }
    assert_eq!(vals(&x.grad().unwrap()), vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    Ok(())
}

#[test]
fn values_only_max_pool_recomputes_its_indices() -> Result<()> {
    // `max_pool2d` only picks the values-only op when nothing records it, but
    // applied directly it still differentiates (ties as PyTorch: the first).
    let x = leaf(&[1.0, 5.0, 5.0, 3.0, 0.0, -1.0, 9.0, 9.0], &[1, 2, 2, 2]);
    let op = oar_tensor::op::Op::MaxPool2dValues(oar_tensor::MaxPool2dParams::new(2));
    let y = Tensor::apply(op, &[&x])?;
    assert_eq!(y.len(), 1);
    assert_eq!(vals(&y[0]), vec![5.0, 9.0]);
    y[0].mul_scalar(2.0)?.sum_all()?.backward()?;
    assert_eq!(vals(&x.grad().unwrap()), vec![0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0]);
    Ok(())
}

/// Without create_graph, unary ops backpropagate through one fused kernel
/// (`Op::UnaryBackward`); with it, through the composite rule of ordinary
/// ops. Both must give the same gradients, for every unary op, in f32 and f64.
type UnaryFn = fn(&Tensor) -> Result<Tensor>;

#[test]
fn fused_unary_backward_matches_the_composite_rule() -> Result<()> {
    let ops: [(&str, UnaryFn); 18] = [
        ("neg", Tensor::neg),
        ("abs", Tensor::abs),
        ("exp", Tensor::exp),
        ("log", Tensor::log),
        ("sqrt", Tensor::sqrt),
        ("rsqrt", Tensor::rsqrt),
        ("sin", Tensor::sin),
        ("cos", Tensor::cos),
        ("tanh", Tensor::tanh),
        ("sigmoid", Tensor::sigmoid),
        ("relu", Tensor::relu),
        ("erf", Tensor::erf),
        ("gelu", Tensor::gelu),
        ("gelu_tanh", Tensor::gelu_tanh),
        ("silu", Tensor::silu),
        ("softplus", Tensor::softplus),
        ("recip", Tensor::recip),
        ("square", Tensor::square),
    ];
    // Positive values for log/sqrt/rsqrt/recip; a spread around 0 (and past
    // softplus's threshold of 20) for the rest.
    let pos: Vec<f32> = (1..=12).map(|i| i as f32 * 0.37).collect();
    let spread: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.8).chain([21.0, -0.0]).collect();
    for dtype in [DType::F32, DType::F64] {
        for (name, f) in ops {
            let v = if matches!(name, "log" | "sqrt" | "rsqrt" | "recip") { &pos } else { &spread };
            let x = t(v, &[v.len()]).to_dtype(dtype)?.with_requires_grad(true)?;
            let weights = Tensor::arange(1.0, 1.0 + v.len() as f64, 1.0, dtype, &Device::cpu())?;
            let loss = || f(&x)?.mul(&weights)?.sum_all();
            let fused = grad(&[&loss()?], &[&x], None, BackwardOptions::default())?;
            let composite =
                grad(&[&loss()?], &[&x], None, BackwardOptions { create_graph: true, ..Default::default() })?;
            let (a, b) = (vals(fused[0].as_ref().unwrap()), vals(composite[0].as_ref().unwrap()));
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                let tol = 1e-6 * (1.0 + q.abs());
                assert!((p - q).abs() <= tol, "{name} {dtype}: element {i}: fused {p} vs composite {q}");
            }
        }
    }
    Ok(())
}

#[test]
fn a_fused_backward_op_has_no_derivative() -> Result<()> {
    let x = leaf(&[0.5, -1.0], &[2]);
    let g = leaf(&[1.0, 1.0], &[2]);
    let dx = g.unary_backward(oar_tensor::UnaryOp::Tanh, &x.tanh()?)?;
    let msg = autograd_msg(dx.sum_all()?.backward().unwrap_err());
    assert!(msg.contains("tanh_backward") && msg.contains("no derivative"), "{msg}");
    // Shapes must match exactly: no broadcasting of the saved tensor.
    assert!(matches!(
        g.unary_backward(oar_tensor::UnaryOp::Tanh, &leaf(&[1.0], &[1])).map_err(|e| e.into_kind()),
        Err(ErrorKind::ShapeMismatch { .. })
    ));
    Ok(())
}

/// The conv weight gradient: one kernel (`conv2d_weight_grad`) without
/// create_graph, the composite convolution with it; the two must agree,
/// for conv2d and conv_transpose2d, across batch splits between threads.
#[test]
fn fused_conv_weight_grad_matches_the_composite_rule() -> Result<()> {
    use oar_tensor::{Conv2dParams, ConvTranspose2dParams, Generator};
    let mut rng = Generator::new(5);
    let cpu = Device::cpu();
    let cases = [
        ([5, 4, 9, 8], [6, 2, 3, 3], Conv2dParams { stride: [2, 1], padding: [1, 2], dilation: [1, 2], groups: 2 }),
        ([8, 3, 12, 12], [10, 3, 3, 3], Conv2dParams::default()),
        ([3, 1, 10, 10], [6, 1, 5, 5], Conv2dParams { padding: [2, 2], ..Default::default() }),
    ];
    for (xs, ws, p) in cases {
        let x = Tensor::randn_with(&mut rng, xs, DType::F32, &cpu)?;
        let w = Tensor::randn_with(&mut rng, ws, DType::F32, &cpu)?.with_requires_grad(true)?;
        let loss = || x.conv2d(&w, None, &p)?.square()?.sum_all();
        let fused = grad(&[&loss()?], &[&w], None, BackwardOptions::default())?;
        let composite = grad(&[&loss()?], &[&w], None, BackwardOptions { create_graph: true, ..Default::default() })?;
        let (a, b) = (vals(fused[0].as_ref().unwrap()), vals(composite[0].as_ref().unwrap()));
        assert_eq!(a.len(), b.len());
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-3 * (1.0 + q.abs()), "conv {xs:?} {ws:?}: fused {p} vs composite {q}");
        }
    }
    let tp =
        ConvTranspose2dParams { stride: [2, 2], padding: [1, 0], output_padding: [1, 1], dilation: [1, 1], groups: 1 };
    let x = Tensor::randn_with(&mut rng, [4, 3, 5, 6], DType::F32, &cpu)?;
    let w = Tensor::randn_with(&mut rng, [3, 2, 3, 2], DType::F32, &cpu)?.with_requires_grad(true)?;
    let loss = || x.conv_transpose2d(&w, None, &tp)?.square()?.sum_all();
    let fused = grad(&[&loss()?], &[&w], None, BackwardOptions::default())?;
    let composite = grad(&[&loss()?], &[&w], None, BackwardOptions { create_graph: true, ..Default::default() })?;
    for (p, q) in vals(fused[0].as_ref().unwrap()).iter().zip(&vals(composite[0].as_ref().unwrap())) {
        assert!((p - q).abs() <= 1e-3 * (1.0 + q.abs()), "conv_transpose2d: fused {p} vs composite {q}");
    }
    // Inconsistent shapes are an error, not a panic.
    let g = Tensor::randn_with(&mut rng, [4, 2, 7, 7], DType::F32, &cpu)?;
    let bad = x.conv2d_weight_grad(&g, [3, 3], &Conv2dParams::default());
    assert!(
        matches!(bad.as_ref().map_err(|e| e.kind()), Err(ErrorKind::ShapeMismatch { op: "conv2d_weight_grad", .. })),
        "{bad:?}"
    );
    Ok(())
}

/// A matrix used transposed (Linear's `x @ w.t()`) gets a contiguous
/// gradient of its own shape, equal to the general rule's.
#[test]
fn transposed_operand_gets_a_contiguous_gradient() -> Result<()> {
    let dev = Device::cpu();
    let x = Tensor::randn([5, 4], DType::F64, &dev)?;
    let w = Tensor::randn([3, 4], DType::F64, &dev)?.with_requires_grad(true)?;
    let g = Tensor::randn([5, 3], DType::F64, &dev)?;
    x.matmul(&w.t()?)?.backward_with(&g)?;
    let gw = w.grad().unwrap();
    assert!(gw.is_contiguous());
    assert_eq!(gw.dims(), &[3, 4]);
    // dW = g^T x.
    let want = g.t()?.matmul(&x)?.to_vec::<f64>()?;
    for (a, b) in gw.to_vec::<f64>()?.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12);
    }
    Ok(())
}
