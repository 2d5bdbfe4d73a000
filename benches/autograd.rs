//! Criterion benchmarks of `oar-autograd`: forward + backward per iteration.
//!
//! Run everything:        `cargo bench --bench autograd`
//! Quick smoke run:       `cargo bench --bench autograd -- --quick`
//! A subset (regex):      `cargo bench --bench autograd -- chain10_f32`
//! Thread count:          `OAR_BENCH_THREADS=4 cargo bench --bench autograd` (default 2)
//!
//! Benchmark ids are `<group>/<shape>`; `benches/torch_ops.py` times the same
//! workloads in PyTorch under the same ids and `benches/compare.py` joins the two.
//! Every iteration first clears the gradients of the tensors that require grad
//! (`zero_grad`, PyTorch's `p.grad = None`), so nothing accumulates across
//! iterations, then runs the forward pass, reduces to a scalar loss and calls
//! `backward()`. Inputs are created once, outside the timed loop.
//!
//! | id                         | workload                                                          |
//! |----------------------------|-------------------------------------------------------------------|
//! | `chain10_f32/16`           | 10 element-wise ops on `[16]` tensors, `sum_all`, backward (below) |
//! | `simple_cnn_train_f32/64`  | seed-model SimpleCNN forward + cross-entropy + backward, batch 64 |
//!
//! `chain10_f32/16`: `x`, `w` require grad; `b`, `c` are constants; all `[16]`.
//!
//! | # | op        | value                |
//! |---|-----------|----------------------|
//! | 1 | `mul`     | `y  = x * w`         |
//! | 2 | `add`     | `h1 = y + b`         |
//! | 3 | `tanh`    | `h2 = tanh(h1)`      |
//! | 4 | `mul`     | `h3 = h2 * x`        |
//! | 5 | `sigmoid` | `h4 = sigmoid(h3)`   |
//! | 6 | `sub`     | `h5 = h4 - c`        |
//! | 7 | `exp`     | `h6 = exp(h5)`       |
//! | 8 | `mul`     | `h7 = h6 * y`        |
//! | 9 | `add`     | `h8 = h7 + x`        |
//! |10 | `square`  | `h9 = h8 * h8`       |
//!
//! then `loss = sum_all(h9)` and `loss.backward()` (gradients into `x` and `w`).
//!
//! `simple_cnn_train_f32/64`: input `[64, 3, 32, 32]` (no grad), fixed i64
//! targets `i % 10`; parameters (require grad) conv weight `[10, 3, 3, 3]` and
//! bias `[10]`, linear weight `[10, 2250]` and bias `[10]`:
//! `conv2d(stride 1, no padding) -> relu -> max_pool2d(2) -> flatten(1)`
//! `-> matmul(weight.t()) + bias -> log_softmax(1) -> gather(1, targets.unsqueeze(1))`
//! `-> mean_all -> neg`, then `backward()`.
//!
//! Throughput is reported as elements/s: tensor elements for the chain,
//! samples (batch items) for the CNN.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use oar::prelude::*;

mod common;
use common::randn;

/// The 10-op chain of `chain10_f32`, reduced to a scalar loss.
fn chain10(x: &Tensor, w: &Tensor, b: &Tensor, c: &Tensor) -> Result<Tensor> {
    let y = x.mul(w)?; // 1
    let h = y.add(b)?; // 2
    let h = h.tanh()?; // 3
    let h = h.mul(x)?; // 4
    let h = h.sigmoid()?; // 5
    let h = h.sub(c)?; // 6
    let h = h.exp()?; // 7
    let h = h.mul(&y)?; // 8
    let h = h.add(x)?; // 9
    let h = h.square()?; // 10
    h.sum_all()
}

/// SimpleCNN parameters: conv weight, conv bias, linear weight, linear bias.
struct SimpleCnn {
    conv_w: Tensor,
    conv_b: Tensor,
    fc_w: Tensor,
    fc_b: Tensor,
}

impl SimpleCnn {
    fn new() -> Result<Self> {
        // Scaled normals keep the loss in a sane range; values do not affect timing.
        let param = |shape: &[usize], scale: f64| randn(shape).mul_scalar(scale)?.with_requires_grad(true);
        Ok(SimpleCnn {
            conv_w: param(&[10, 3, 3, 3], 0.1)?,
            conv_b: param(&[10], 0.1)?,
            fc_w: param(&[10, 10 * 15 * 15], 0.02)?,
            fc_b: param(&[10], 0.02)?,
        })
    }

    fn params(&self) -> [&Tensor; 4] {
        [&self.conv_w, &self.conv_b, &self.fc_w, &self.fc_b]
    }

    /// Cross-entropy loss of the forward pass on `x` against i64 `targets`.
    fn loss(&self, x: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let h = x.conv2d(&self.conv_w, Some(&self.conv_b), &Conv2dParams::default())?;
        let h = h.relu()?.max_pool2d(&MaxPool2dParams::new(2))?.flatten(1, -1)?;
        let logits = h.matmul(&self.fc_w.t()?)?.add(&self.fc_b)?;
        logits.log_softmax(1)?.gather(1, &targets.unsqueeze(1)?)?.mean_all()?.neg()
    }
}

fn zero_grads(params: &[&Tensor]) {
    for p in params {
        p.zero_grad();
    }
}

/// One timed iteration's work, run twice outside the timed loop: every
/// parameter gets a gradient of its own shape, and the second pass gives the
/// same gradients as the first (they are cleared, not accumulated).
fn check_step(id: &str, params: &[&Tensor], step: impl Fn() -> Tensor) {
    let grads = || -> Vec<Vec<f32>> {
        zero_grads(params);
        let loss = step();
        assert!(loss.to_vec::<f32>().unwrap()[0].is_finite(), "{id}: non-finite loss");
        params
            .iter()
            .map(|p| {
                let g = p.grad().unwrap_or_else(|| panic!("{id}: a parameter got no gradient"));
                assert_eq!(g.dims(), p.dims(), "{id}: gradient shape");
                g.to_vec::<f32>().unwrap()
            })
            .collect()
    };
    let first = grads();
    assert_eq!(first, grads(), "{id}: gradients differ between iterations");
    zero_grads(params);
}

fn chain(c: &mut Criterion) {
    let mut g = c.benchmark_group("chain10_f32");
    g.sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    let n = 16;
    let x = randn(&[n]).with_requires_grad(true).unwrap();
    let w = randn(&[n]).with_requires_grad(true).unwrap();
    let (b, cst) = (randn(&[n]), randn(&[n]));
    let params = [&x, &w];
    let step = || {
        let loss = chain10(&x, &w, &b, &cst).unwrap();
        loss.backward().unwrap();
        loss
    };
    check_step("chain10_f32", &params, step);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::from_parameter(n), |bch| {
        bch.iter(|| {
            zero_grads(&params);
            black_box(step())
        })
    });
    g.finish();
}

fn simple_cnn(c: &mut Criterion) {
    let mut g = c.benchmark_group("simple_cnn_train_f32");
    // Milliseconds per iteration: few, equally sized samples.
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    g.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let batch = 64;
    let x = randn(&[batch, 3, 32, 32]);
    let targets = Tensor::from_vec((0..batch as i64).map(|i| i % 10).collect::<Vec<_>>(), [batch], &Device::cpu())
        .expect("targets");
    let model = SimpleCnn::new().expect("SimpleCNN parameters");
    let params = model.params();
    let step = || {
        let loss = model.loss(&x, &targets).unwrap();
        loss.backward().unwrap();
        loss
    };
    check_step("simple_cnn_train_f32", &params, step);
    g.throughput(Throughput::Elements(batch as u64));
    g.bench_function(BenchmarkId::from_parameter(batch), |bch| {
        bch.iter(|| {
            zero_grads(&params);
            black_box(step())
        })
    });
    g.finish();
}

fn main() {
    common::init("autograd");
    let mut c = Criterion::default().configure_from_args();
    chain(&mut c);
    simple_cnn(&mut c);
    c.final_summary();
}
