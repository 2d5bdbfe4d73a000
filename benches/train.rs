//! Training-step benchmarks with `oar-nn`, as `shared/reference/pytorch_bench.py`
//! measures PyTorch: one step = zero_grad, forward, cross-entropy, backward,
//! SGD update (lr 0.01), on a fixed random batch.
//!
//! - `train_step_f32/lenet5_bs64`: LeNet-5 on `[64, 1, 28, 28]`
//! - `train_step_f32/simple_cnn_bs64`: the seed's SimpleCNN on `[64, 3, 32, 32]`
//! - `train_step_f32/mlp_bs128`: 784-512-512-10 MLP on `[128, 784]`
//!
//! `benches/torch_ops.py` times the same steps under the same names.
//! cargo bench --bench train

mod common;

use common::randn;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use oar::nn::loss::{cross_entropy, CrossEntropyOptions};
use oar::nn::models::{LeNet5, Mlp, SimpleCnn};
use oar::nn::optim::{Sgd, SgdConfig};
use oar::nn::Layer;
use oar::prelude::*;
use std::time::Duration;

fn step_bench(c: &mut Criterion, id: &str, model: &dyn Layer, input: &[usize]) {
    let batch = input[0];
    let x = randn(input);
    let targets = Tensor::from_vec((0..batch as i64).map(|i| i % 10).collect::<Vec<_>>(), [batch], &Device::cpu())
        .expect("targets");
    let mut opt = Sgd::new(model.parameters(), SgdConfig::new(0.01)).expect("optimizer");
    let ce = CrossEntropyOptions::default();
    let mut step = || {
        opt.zero_grad();
        let loss = cross_entropy(&model.forward(&x).unwrap(), &targets, &ce).unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
        loss
    };
    // The step trains: the loss on the fixed batch goes down.
    let first = step().item().unwrap();
    for _ in 0..5 {
        step();
    }
    let later = step().item().unwrap();
    assert!(later < first, "{id}: loss {first} -> {later} did not decrease");
    let mut g = c.benchmark_group("train_step_f32");
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(batch as u64));
    g.bench_function(BenchmarkId::from_parameter(id), |b| b.iter(|| std::hint::black_box(step())));
    g.finish();
}

fn main() {
    common::init("train");
    let mut c = Criterion::default().configure_from_args();
    step_bench(&mut c, "lenet5_bs64", &LeNet5::new().expect("model"), &[64, 1, 28, 28]);
    step_bench(&mut c, "simple_cnn_bs64", &SimpleCnn::new().expect("model"), &[64, 3, 32, 32]);
    step_bench(&mut c, "mlp_bs128", &Mlp::new().expect("model"), &[128, 784]);
    c.final_summary();
}
