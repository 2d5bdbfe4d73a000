//! Static graphs compute what eager code computes: every example model, as
//! traced and after every optimization level, and after save -> load.

mod common;

use common::{conv_bn_net, linear_bn_net, randn, rel_diff};
use oar_jit::passes::{optimize, pipeline, OptLevel};
use oar_jit::{to_static, to_static_with, trace, trace_module, Config, Plan, Predictor};
use oar_nn::models::{LeNet5, Mlp, SimpleCnn};
use oar_nn::{Forward, Module};
use oar_tensor::op::{BinaryOp, Op};
use oar_tensor::Tensor;

fn check_model(name: &str, model: &dyn oar_nn::Layer, x: &Tensor) {
    let eager = model.forward(x).unwrap();
    for level in [OptLevel::O0, OptLevel::O1, OptLevel::O2] {
        let s = to_static_with(model, x, level).unwrap();
        let out = s.forward(x).unwrap();
        let d = rel_diff(&eager, &out);
        assert!(d <= 1e-5, "{name} at {level:?}: static differs from eager by {d}");
    }
}

#[test]
fn example_models_match_eager_at_every_level() {
    let mut lenet = LeNet5::new().unwrap();
    lenet.eval();
    check_model("lenet5", &lenet, &randn(&[3, 1, 28, 28]));
    check_model("simple_cnn", &SimpleCnn::new().unwrap(), &randn(&[2, 3, 32, 32]));
    check_model("mlp", &Mlp::new().unwrap(), &randn(&[5, 784]));
    // Batch 32 runs its two wide layers from row-major weight copies on AVX-512.
    check_model("mlp", &Mlp::new().unwrap(), &randn(&[32, 784]));
    check_model("conv_bn", &conv_bn_net().unwrap(), &randn(&[2, 3, 16, 16]));
    check_model("linear_bn", &linear_bn_net().unwrap(), &randn(&[5, 20]));
}

#[test]
fn every_pass_keeps_the_graph_valid_and_the_outputs_equal() {
    let net = conv_bn_net().unwrap();
    let x = randn(&[2, 3, 16, 16]);
    let mut g = trace_module(&net, &x).unwrap();
    let reference = Plan::new(g.clone()).unwrap().run(std::slice::from_ref(&x)).unwrap();
    for (name, pass) in pipeline(OptLevel::O2) {
        pass(&mut g).unwrap();
        g.verify().unwrap_or_else(|e| panic!("{name} broke the graph: {e}"));
        let out = Plan::new(g.clone()).unwrap().run(std::slice::from_ref(&x)).unwrap();
        let d = rel_diff(&reference[0], &out[0]);
        assert!(d <= 1e-5, "{name}: outputs moved by {d}");
    }
}

#[test]
fn batch_norm_folds_into_the_convolutions() {
    let net = conv_bn_net().unwrap();
    let x = randn(&[2, 3, 16, 16]);
    let s = to_static(&net, &x).unwrap();
    let c = s.compiled(&x).unwrap();
    let g = c.plan.graph();
    let names: Vec<&str> = g.weights.iter().map(|w| w.name.as_str()).collect();
    assert!(names.contains(&"8.bias"), "the linear layer's bias keeps its state-dict key: {names:?}");
    let affine = g.nodes.iter().filter(|n| matches!(n.op, Op::Binary(BinaryOp::Mul | BinaryOp::Add))).count();
    // Traced: per batch norm a mul and an add on the activations (plus the
    // statistics' arithmetic); folded: only the linear layer's bias add, which
    // runs as its product's epilogue.
    assert!(c.traced.nodes > g.nodes.len(), "passes removed nothing: {} -> {}", c.traced, g.stats());
    assert_eq!(affine, 0, "left in the graph:\n{g}");
    let linear = |n: &&oar_jit::Node| matches!(&n.op, Op::Fused { head, epilogue } if matches!(**head, Op::Matmul) && epilogue == &[Op::Binary(BinaryOp::Add)]);
    assert_eq!(g.nodes.iter().filter(linear).count(), 1, "\n{g}");
    // The second conv had no bias; folding gave it one.
    // Each conv also carries its ReLU as a fused epilogue.
    let convs: Vec<_> = g
        .nodes
        .iter()
        .filter(
            |n| matches!(&n.op, Op::Fused { head, epilogue } if matches!(**head, Op::Conv2d(_)) && epilogue.len() == 1),
        )
        .collect();
    assert_eq!(convs.len(), 2);
    assert!(convs.iter().all(|n| n.inputs.len() == 3));
}

#[test]
fn batch_norm_folds_into_the_linear_layers() {
    let net = linear_bn_net().unwrap();
    let x = randn(&[5, 20]);
    let mut g = trace_module(&net, &x).unwrap();
    let reference = Plan::new(g.clone()).unwrap().run(std::slice::from_ref(&x)).unwrap();
    for (name, pass) in pipeline(OptLevel::O2) {
        pass(&mut g).unwrap();
        g.verify().unwrap_or_else(|e| panic!("{name} broke the graph: {e}"));
        let d = rel_diff(&reference[0], &Plan::new(g.clone()).unwrap().run(std::slice::from_ref(&x)).unwrap()[0]);
        assert!(d <= 1e-5, "{name}: outputs moved by {d}");
    }
    // Three linear layers, each one product with its bias add (the batch
    // norms' shifts, for the bias-free one) and activation as its epilogue;
    // nothing else but the weights' transposes.
    let names: Vec<_> = g.nodes.iter().map(|n| n.op.name()).collect();
    assert_eq!(names.iter().filter(|&&n| n == "fused").count(), 3, "\n{g}");
    assert!(names.iter().all(|&n| n == "fused" || n == "permute"), "\n{g}");
    let epilogues: Vec<Vec<&str>> = g
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Fused { head, epilogue } if matches!(**head, Op::Matmul) => {
                Some(epilogue.iter().map(|o| o.name()).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(epilogues, [vec!["add", "relu"], vec!["add"], vec!["add"]], "\n{g}");
}

/// Whether this CPU runs the direct convolution kernels, whose weights the
/// executor packs.
fn direct_conv_kernels() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn convolution_weights_are_packed_once_and_give_eager_bits() {
    let mut lenet = LeNet5::new().unwrap();
    lenet.eval();
    let x = randn(&[3, 1, 28, 28]);
    let s = to_static(&lenet, &x).unwrap();
    // At batch 3 the linear layers keep their transposed weights (too few rows).
    let packed = s.compiled(&x).unwrap().plan.prepacked_weights();
    assert_eq!(packed, if direct_conv_kernels() { 2 } else { 0 });
    // Both convolutions with their fused ReLUs, as a graph of its own: the
    // packed-weight kernels give the bits of eager's reorder-per-call ones.
    let body = |x: &Tensor| -> oar_tensor::Result<Tensor> {
        let pool = oar_tensor::op::MaxPool2dParams::new(2);
        let y = lenet.conv1.forward(x)?.relu()?.max_pool2d(&pool)?;
        lenet.conv2.forward(&y)?.relu()
    };
    let named: Vec<(String, Tensor)> = lenet.named_parameters().into_iter().map(|(k, p)| (k, p.get())).collect();
    let mut g = trace(std::slice::from_ref(&x), &named, |xs| Ok(vec![body(&xs[0])?])).unwrap();
    optimize(&mut g, OptLevel::O2).unwrap();
    let plan = Plan::new(g).unwrap();
    assert_eq!(plan.prepacked_weights(), packed);
    let bits = |t: &Tensor| t.to_vec::<f32>().unwrap().into_iter().map(f32::to_bits).collect::<Vec<_>>();
    for _ in 0..2 {
        assert_eq!(bits(&plan.run(std::slice::from_ref(&x)).unwrap()[0]), bits(&body(&x).unwrap()));
    }
}

/// Whether this CPU's f32 products go to the `gemm` crate's AVX-512 kernels,
/// which run wide linear layers faster from row-major weight copies.
fn avx512_products() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") && has!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn wide_linear_weights_are_copied_row_major_where_that_is_faster() {
    let mlp = Mlp::new().unwrap();
    // [32, 784] x [784, 512] and [32, 512] x [512, 512] take the copies; the
    // 10-column head keeps the transposed view its dot-product kernel reads;
    // batch 4 runs every layer as dot products.
    for (batch, want) in [(32, 2), (4, 0)] {
        let x = randn(&[batch, 784]);
        let s = to_static(&mlp, &x).unwrap();
        let plan = &s.compiled(&x).unwrap().plan;
        assert_eq!(plan.prepacked_weights(), if avx512_products() { want } else { 0 }, "batch {batch}");
        let eager = mlp.forward(&x).unwrap();
        for _ in 0..2 {
            let d = rel_diff(&eager, &plan.run(std::slice::from_ref(&x)).unwrap()[0]);
            assert!(d <= 1e-5, "batch {batch}: static differs from eager by {d}");
        }
        // A copied weight stays in the plan's graph as a view of its copy
        // (one buffer, not two), with the module's values: saving the graph
        // writes them, and the loaded model computes the same bits.
        let module_weights = mlp.state_dict();
        let mut views = 0;
        for w in &plan.graph().weights {
            let strided = !w.tensor.is_contiguous();
            views += usize::from(strided);
            let original = module_weights.iter().find(|(n, _)| *n == w.name).map(|(_, t)| t.clone()).unwrap();
            assert_eq!(w.tensor.to_vec::<f32>().unwrap(), original.to_vec::<f32>().unwrap(), "{}", w.name);
        }
        assert_eq!(views, plan.prepacked_weights(), "batch {batch}");
        let dir = std::env::temp_dir().join(format!("oar_jit_packed_{batch}_{}", std::process::id()));
        oar_jit::save(plan.graph(), &dir).unwrap();
        let loaded = Plan::new(oar_jit::load(&dir).unwrap()).unwrap();
        assert_eq!(loaded.prepacked_weights(), plan.prepacked_weights());
        let (a, b) =
            (&plan.run(std::slice::from_ref(&x)).unwrap()[0], &loaded.run(std::slice::from_ref(&x)).unwrap()[0]);
        assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn save_load_run_is_bit_identical() {
    let dir = std::env::temp_dir().join(format!("oar_jit_roundtrip_{}", std::process::id()));
    let mut lenet = LeNet5::new().unwrap();
    lenet.eval();
    let x = randn(&[4, 1, 28, 28]);
    let s = to_static(&lenet, &x).unwrap();
    let before = s.forward(&x).unwrap().to_vec::<f32>().unwrap();
    s.save(&x, &dir).unwrap();
    let mut p = Predictor::new(&Config::new(&dir)).unwrap();
    p.input("input0").unwrap().copy_from_cpu(&x.to_vec::<f32>().unwrap()).unwrap();
    p.run().unwrap();
    let out = p.output(0).unwrap();
    assert_eq!(out.shape(), &[4, 10]);
    let after = out.copy_to_cpu::<f32>().unwrap();
    assert_eq!(
        before.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        after.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // A clone shares the plan and serves another thread with the same result.
    let mut q = p.clone();
    let xs = x.to_vec::<f32>().unwrap();
    let from_thread = std::thread::spawn(move || {
        q.input("input0").unwrap().copy_from_cpu(&xs).unwrap();
        q.run().unwrap();
        q.output(0).unwrap().copy_to_cpu::<f32>().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(from_thread, after);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shapes_are_cached_and_weight_updates_retrace() {
    let model = Mlp::new().unwrap();
    let (a, b) = (randn(&[2, 784]), randn(&[3, 784]));
    let s = to_static(&model, &a).unwrap();
    assert_eq!(s.forward(&b).unwrap().dims(), &[3, 10]);
    let first = s.compiled(&a).unwrap().plan;
    assert!(std::sync::Arc::ptr_eq(&first, &s.compiled(&a).unwrap().plan), "same shape reuses the plan");
    // An optimizer-style update replaces a parameter's value.
    let (_, p) = &model.named_parameters()[0];
    p.set(&p.get().mul_scalar(0.5).unwrap()).unwrap();
    let d = rel_diff(&model.forward(&a).unwrap(), &s.forward(&a).unwrap());
    assert!(d <= 1e-5, "stale weights after an update: {d}");
    assert!(!std::sync::Arc::ptr_eq(&first, &s.compiled(&a).unwrap().plan));
}

#[test]
fn host_reads_during_a_trace_are_errors_naming_the_read() {
    let x = randn(&[3]);
    let err = trace(&[x], &[], |x| {
        let m = x[0].max_all()?.item()?;
        Ok(vec![x[0].mul_scalar(m)?])
    })
    .unwrap_err();
    assert!(err.to_string().contains("item"), "{err}");
}

#[test]
fn optimize_reports_each_pass() {
    let net = conv_bn_net().unwrap();
    let mut g = trace_module(&net, &randn(&[1, 3, 16, 16])).unwrap();
    let log = optimize(&mut g, OptLevel::O2).unwrap();
    assert!(log.iter().any(|r| r.pass == "fold_affine_into_conv" && r.rewrites == 4), "{log:?}");
}

#[test]
fn saved_models_serve_any_batch_size() {
    let dir = std::env::temp_dir().join(format!("oar_jit_dynamic_{}", std::process::id()));
    let net = conv_bn_net().unwrap();
    let s = to_static(&net, &randn(&[4, 3, 16, 16])).unwrap();
    s.save(&randn(&[4, 3, 16, 16]), &dir).unwrap();
    let mut p = Predictor::new(&Config::new(&dir)).unwrap();
    assert!(p.dynamic_batch());
    for n in [3, 1, 7, 4, 3] {
        let x = randn(&[n, 3, 16, 16]);
        p.input("input0")
            .unwrap()
            .reshape(&[n, 3, 16, 16])
            .unwrap()
            .copy_from_cpu(&x.to_vec::<f32>().unwrap())
            .unwrap();
        p.run().unwrap();
        let out = p.output(0).unwrap().tensor().clone();
        assert_eq!(out.dims(), &[n, 5]);
        let d = rel_diff(&net.forward(&x).unwrap(), &out);
        assert!(d <= 1e-5, "batch {n}: {d}");
    }
    // Only the batch dim may change.
    let e = p.input("input0").unwrap().reshape(&[2, 3, 16, 17]).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("only the batch size may change"), "{e}");
    // A fixed-shape save keeps the old contract.
    s.save_static(&randn(&[4, 3, 16, 16]), &dir).unwrap();
    let mut p = Predictor::new(&Config::new(&dir)).unwrap();
    assert!(!p.dynamic_batch());
    assert!(p.input("input0").unwrap().reshape(&[3, 3, 16, 16]).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn graphs_that_depend_on_the_batch_otherwise_are_not_dynamic() {
    // A reshape to [2 * batch, ...]: not the batch size itself.
    let f = |x: &[Tensor]| -> oar_tensor::Result<Vec<Tensor>> {
        let n = x[0].dims()[0];
        Ok(vec![x[0].reshape([2 * n, 2])?.exp()?])
    };
    let (a, b) = (trace(&[randn(&[3, 4])], &[], f).unwrap(), trace(&[randn(&[4, 4])], &[], f).unwrap());
    let e = oar_jit::batch::batch_spec(&a, &b, 3).unwrap_err().to_string();
    assert!(e.contains("dim 6 vs 8"), "{e}");
}

#[test]
fn detached_values_stay_computed_rather_than_baked_in() {
    // `detach` stops gradients, not the data flow: the graph must recompute
    // the detached value from its input on every run.
    let f = |x: &Tensor| x.exp()?.detach().mul(x);
    let (a, b) = (randn(&[5]), randn(&[5]));
    let g = trace(std::slice::from_ref(&a), &[], |x| Ok(vec![f(&x[0])?])).unwrap();
    let plan = Plan::new(g).unwrap();
    let got = plan.run(std::slice::from_ref(&b)).unwrap().remove(0);
    assert!(rel_diff(&f(&b).unwrap(), &got) <= 1e-6, "the trace baked in the detached value of its example input");
    // Gradients still stop there during a trace: d/dx (stop(e^x) * x) = e^x.
    let x = a.with_requires_grad(true).unwrap();
    let g = trace(std::slice::from_ref(&x), &[], |x| {
        let _grad = oar_tensor::set_grad_enabled(true);
        let y = f(&x[0])?.sum_all()?;
        let opts = oar_autograd::BackwardOptions { retain_graph: true, create_graph: false };
        Ok(vec![oar_autograd::grad(&[&y], &[&x[0]], None, opts)?.remove(0).expect("a gradient")])
    })
    .unwrap();
    let got = Plan::new(g).unwrap().run(std::slice::from_ref(&b)).unwrap().remove(0);
    assert!(rel_diff(&b.exp().unwrap(), &got) <= 1e-6);
}

#[test]
fn an_embedding_with_a_padding_index_serves_any_indices() {
    // Its rows at the padding index come from a detached copy.
    let emb = oar_nn::Embedding::with_padding(10, 4, Some(0)).unwrap();
    let cpu = oar_tensor::Device::cpu();
    let a = Tensor::from_vec(vec![0i64, 3, 5, 7], [4], &cpu).unwrap();
    let b = Tensor::from_vec(vec![9i64, 0, 2, 2], [4], &cpu).unwrap();
    let s = to_static(&emb, &a).unwrap();
    assert_eq!(emb.forward(&b).unwrap().to_vec::<f32>().unwrap(), s.forward(&b).unwrap().to_vec::<f32>().unwrap());
}
