//! A traced training step trains as eager code does.

mod common;

use common::randn;
use oar_autograd::Backward;
use oar_jit::TrainStep;
use oar_nn::loss::cross_entropy;
use oar_nn::models::{LeNet5, Mlp};
use oar_nn::optim::{Adam, AdamConfig, AdamW, Optimizer, Sgd, SgdConfig};
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

/// The eager optimizer and the traced step of one update rule.
#[derive(Clone, Copy)]
enum Rule {
    Sgd(SgdConfig),
    Adam(AdamConfig),
    AdamW(AdamConfig),
}

/// Eager SGD losses and traced-graph losses for `steps` steps from the same weights.
fn compare<M: Module + Forward>(make: impl Fn() -> M, cfg: SgdConfig, dims: &[usize], steps: usize) -> f64 {
    compare_rule(make, Rule::Sgd(cfg), dims, steps)
}

/// Eager losses and traced-graph losses for `steps` steps of `rule` from the same weights.
fn compare_rule<M: Module + Forward>(make: impl Fn() -> M, rule: Rule, dims: &[usize], steps: usize) -> f64 {
    let (eager, traced) = (make(), make());
    traced.load_state_dict(&eager.state_dict(), true).unwrap();
    let data = batches(steps, dims, 3);
    let (x0, y0) = (&data[0].0, &data[0].1);
    let (mut opt, mut step): (Box<dyn Optimizer>, TrainStep) = match rule {
        Rule::Sgd(c) => {
            (Box::new(Sgd::new(eager.parameters(), c).unwrap()), TrainStep::sgd(&traced, &ce, c, x0, y0).unwrap())
        }
        Rule::Adam(c) => {
            (Box::new(Adam::new(eager.parameters(), c).unwrap()), TrainStep::adam(&traced, &ce, c, x0, y0).unwrap())
        }
        Rule::AdamW(c) => {
            (Box::new(AdamW::new(eager.parameters(), c).unwrap()), TrainStep::adamw(&traced, &ce, c, x0, y0).unwrap())
        }
    };
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
fn fifty_lenet5_adam_and_adamw_steps_match_eager_losses() {
    let adam = compare_rule(|| LeNet5::new().unwrap(), Rule::Adam(AdamConfig::new(2e-3)), &[16, 1, 28, 28], 50);
    let adamw = AdamConfig::new(2e-3).weight_decay(0.01);
    let adamw = compare_rule(|| LeNet5::new().unwrap(), Rule::AdamW(adamw), &[16, 1, 28, 28], 50);
    println!("LeNet-5, 50 traced steps: worst loss difference Adam {adam:.2e}, AdamW {adamw:.2e} relative");
}

#[test]
fn adam_with_amsgrad_weight_decay_and_maximize_matches_too() {
    let amsgrad = AdamConfig::new(1e-3).amsgrad(true).weight_decay(1e-3).betas(0.8, 0.99);
    compare_rule(|| Mlp::new().unwrap(), Rule::Adam(amsgrad), &[8, 784], 10);
    // Maximizing the loss: both runs climb alike (losses grow, still equal).
    compare_rule(|| Mlp::new().unwrap(), Rule::AdamW(AdamConfig::new(1e-3).maximize(true)), &[8, 784], 5);
}

#[test]
fn adam_step_graphs_take_moments_and_two_bias_correction_scalars() {
    let model = Mlp::new().unwrap();
    let (x, y) = (randn(&[4, 784]), Tensor::from_vec(vec![1i64, 2, 3, 4], [4], &Device::cpu()).unwrap());
    let step = TrainStep::adam(&model, &ce, AdamConfig::new(1e-3).amsgrad(true), &x, &y).unwrap();
    let n = model.parameters().len();
    assert_eq!(step.graph().inputs.len(), 2 + 4 * n + 2, "batch, parameters, m, v, max v, two scalars");
    assert_eq!(step.graph().outputs.len(), 1 + 4 * n, "loss, parameters, m, v, max v");
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
