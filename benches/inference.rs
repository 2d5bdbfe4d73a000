//! Inference latency: eager forward (no grad) against the same model through
//! `to_static` (traced, optimized, run by the executor).
//!
//! - `infer_f32/simple_cnn_bs1_{eager,static}`: the seed's SimpleCNN on `[1, 3, 32, 32]`
//! - `infer_f32/simple_cnn_bs64_{eager,static}`: the same on `[64, 3, 32, 32]`
//! - `infer_f32/lenet5_bs64_{eager,static}`: LeNet-5 on `[64, 1, 28, 28]`
//! - `infer_f32/lenet5_bs256_{eager,static}`: LeNet-5 on `[256, 1, 28, 28]`
//!   (issue 5 quotes its throughput in images per second: 256 / time)
//! - `infer_f32/mlp_bs{1,4,64}_{eager,static}`: the 784-512-512-10 MLP on
//!   `[1, 784]` and `[4, 784]` (a served model's small batches) and
//!   `[64, 784]` (wide layers the `gemm` crate runs)
//!
//! `benches/torch_ops.py` times PyTorch's eager forward under the `_eager`
//! names, `torch.jit.trace` under `_jit_trace`, and trace + freeze +
//! `optimize_for_inference` under `_static`.
//! cargo bench --bench inference

mod common;

use common::randn;
use criterion::{BenchmarkId, Criterion, SamplingMode};
use oar::jit::to_static;
use oar::nn::models::{LeNet5, Mlp, SimpleCnn};
use oar::nn::Layer;
use std::time::Duration;

fn infer_bench(c: &mut Criterion, id: &str, model: &mut dyn Layer, input: &[usize]) {
    model.eval();
    let x = randn(input);
    let _no_grad = oar::no_grad();
    let fast = to_static(&*model, &x).expect("to_static");
    let (eager, graph) = (model.forward(&x).expect("eager"), fast.forward(&x).expect("static"));
    let diff = eager.sub(&graph).unwrap().abs().unwrap().max_all().unwrap().item().unwrap();
    assert!(diff < 1e-4, "{id}: static output differs by {diff}");
    let mut g = c.benchmark_group("infer_f32");
    g.sampling_mode(SamplingMode::Flat).sample_size(30);
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.bench_function(BenchmarkId::from_parameter(format!("{id}_eager")), |b| {
        b.iter(|| std::hint::black_box(model.forward(&x).unwrap()))
    });
    g.bench_function(BenchmarkId::from_parameter(format!("{id}_static")), |b| {
        b.iter(|| std::hint::black_box(fast.forward(&x).unwrap()))
    });
    g.finish();
}

fn main() {
    common::init("inference");
    let mut c = Criterion::default().configure_from_args();
    infer_bench(&mut c, "simple_cnn_bs1", &mut SimpleCnn::new().expect("model"), &[1, 3, 32, 32]);
    infer_bench(&mut c, "simple_cnn_bs64", &mut SimpleCnn::new().expect("model"), &[64, 3, 32, 32]);
    infer_bench(&mut c, "lenet5_bs64", &mut LeNet5::new().expect("model"), &[64, 1, 28, 28]);
    infer_bench(&mut c, "lenet5_bs256", &mut LeNet5::new().expect("model"), &[256, 1, 28, 28]);
    infer_bench(&mut c, "mlp_bs1", &mut Mlp::new().expect("model"), &[1, 784]);
    infer_bench(&mut c, "mlp_bs4", &mut Mlp::new().expect("model"), &[4, 784]);
    infer_bench(&mut c, "mlp_bs64", &mut Mlp::new().expect("model"), &[64, 784]);
    c.final_summary();
}
