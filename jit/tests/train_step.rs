//! A traced training step trains as eager code does.

mod common;

use common::randn;
use oar_autograd::Backward;
use oar_jit::TrainStep;
use oar_nn::loss::cross_entropy;
use oar_nn::models::{LeNet5, Mlp};
use oar_nn::optim::{Optimizer, Sgd, SgdConfig};
use oar_nn::{Forward, Module};
use oar_tensor::{DType, Device, Generator, Tensor};

fn batches(n: usize, dims: &[usize], seed: u64) -> Vec<(Tensor, Tensor)> {
    let mut gen = Generator::new(seed);
    (0..n)
        .map(|_| {
            let x = Tensor::randn_with(&mut gen, dims.to_vec(), DType::F32, &Device::cpu()).unwrap();
            let labels: Vec<i64> = gen.uniform(dims[0]).iter().map(|u| (u * 10.0) as i64 % 10).collect();
            (x, Tensor::from_vec(labels, [dims[0]], &Device::cpu()).unwrap())
        })
        .collect()
}

fn ce(out: &Tensor, y: &Tensor) -> oar_tensor::Result<Tensor> {
    cross_entropy(out, y, &Default::default())
}

/// Eager losses and traced-graph losses for `steps` SGD steps from the same weights.
fn compare<M: Module + Forward>(make: impl Fn() -> M, cfg: SgdConfig, dims: &[usize], steps: usize) -> f64 {
    let (eager, traced) = (make(), make());
    traced.load_state_dict(&eager.state_dict(), true).unwrap();
    let data = batches(steps, dims, 3);
    let mut opt = Sgd::new(eager.parameters(), cfg).unwrap();
    let mut step = TrainStep::sgd(&traced, &ce, cfg, &data[0].0, &data[0].1).unwrap();
    let mut worst = 0f64;
    for (i, (x, y)) in data.iter().enumerate() {
        opt.zero_grad();
        let l = ce(&eager.forward(x).unwrap(), y).unwrap();
        l.backward().unwrap();
        opt.step().unwrap();
        let (a, b) = (l.item().unwrap(), step.step(x, y).unwrap().item().unwrap());
        let rel = (a - b).abs() / a.abs().max(1e-12);
        assert!(rel <= 1e-4, "step {i}: eager loss {a}, traced {b} (rel {rel:.2e})");
        worst = worst.max(rel);
    }
    step.write_back(&traced).unwrap();
    // The trained weights agree too, and the module got them.
    for ((name, a), (_, b)) in eager.state_dict().iter().zip(traced.state_dict().iter()) {
        let d = a.sub(b).unwrap().abs().unwrap().max_all().unwrap().item().unwrap();
        let scale = a.abs().unwrap().max_all().unwrap().item().unwrap();
        assert!(d <= 1e-4 * scale.max(1e-6), "{name}: differs by {d}");
    }
    worst
}

#[test]
fn fifty_lenet5_steps_match_eager_losses() {
    let cfg = SgdConfig { momentum: 0.9, ..SgdConfig::new(0.01) };
    let worst = compare(|| LeNet5::new().unwrap(), cfg, &[16, 1, 28, 28], 50);
    println!("LeNet-5, 50 traced SGD-momentum steps: worst loss difference {worst:.2e} relative");
}

#[test]
fn nesterov_weight_decay_and_plain_sgd_match_too() {
    let nesterov = SgdConfig { momentum: 0.9, nesterov: true, weight_decay: 1e-3, ..SgdConfig::new(0.02) };
    compare(|| Mlp::new().unwrap(), nesterov, &[8, 784], 10);
    compare(|| Mlp::new().unwrap(), SgdConfig::new(0.05), &[8, 784], 10);
    let damp = SgdConfig { momentum: 0.5, dampening: 0.3, ..SgdConfig::new(0.05) };
    compare(|| Mlp::new().unwrap(), damp, &[8, 784], 5);
}

#[test]
fn the_step_graph_has_the_batch_and_parameters_as_inputs() {
    let model = Mlp::new().unwrap();
    let (x, y) = (randn(&[4, 784]), Tensor::from_vec(vec![1i64, 2, 3, 4], [4], &Device::cpu()).unwrap());
    let step = TrainStep::sgd(&model, &ce, SgdConfig { momentum: 0.9, ..SgdConfig::new(0.1) }, &x, &y).unwrap();
    let g = step.graph();
    let n = model.parameters().len();
    assert_eq!(g.inputs.len(), 2 + 2 * n, "batch, parameters, momentum buffers");
    assert_eq!(g.outputs.len(), 1 + 2 * n, "loss, parameters, momentum buffers");
    assert!(g.nodes.iter().any(|node| node.op.name() == "matmul"));
    // Wrong batch shapes are errors naming the input.
    let mut step = step;
    let e = step.step(&randn(&[5, 784]), &y).unwrap_err().to_string();
    assert!(e.contains("input 0"), "{e}");
}
