//! A traced training step trains as eager code does.

mod common;

use common::randn;
use oar_autograd::Backward;
use oar_jit::{StepRule, TrainStep};
use oar_nn::loss::cross_entropy;
use oar_nn::lr_scheduler::{CosineAnnealingLR, LinearLR, Schedule, SequentialLR, StepLR};
use oar_nn::models::{LeNet5, Mlp};
use oar_nn::optim::{Adam, AdamConfig, AdamW, Optimizer, ParamGroup, Sgd, SgdConfig};
use oar_nn::{BatchNorm2d, Conv2d, Forward, Linear, Module};
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

fn compare_rule<M: Module + Forward>(make: impl Fn() -> M, rule: Rule, dims: &[usize], steps: usize) -> f64 {
    compare_scheduled(make, rule, dims, steps, None)
}

/// Eager losses and traced-graph losses for `steps` steps of `rule` from the
/// same weights, with the learning rate of step `i` from `schedule` when given.
/// Parameters and buffers must agree at the end.
fn compare_scheduled<M: Module + Forward>(
    make: impl Fn() -> M,
    rule: Rule,
    dims: &[usize],
    steps: usize,
    schedule: Option<&dyn Schedule>,
) -> f64 {
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
    let base = opt.lr();
    assert_eq!(step.lr(), base);
    let mut worst = 0f64;
    for (i, (x, y)) in data.iter().enumerate() {
        if let Some(s) = schedule {
            opt.set_lr(s.lr(i, base));
            step.set_lr(s.lr(i, base)).unwrap();
        }
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
    // AdamW with weight decay takes its decay factor 1 - lr * wd as a third scalar.
    let step = TrainStep::adamw(&model, &ce, AdamConfig::new(1e-3).weight_decay(0.1), &x, &y).unwrap();
    assert_eq!(step.graph().inputs.len(), 2 + 3 * n + 3, "batch, parameters, m, v, three scalars");
    assert_eq!(step.graph().outputs.len(), 1 + 3 * n, "loss, parameters, m, v");
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
    assert_eq!(g.inputs.len(), 2 + 2 * n + 1, "batch, parameters, momentum buffers, learning rate");
    assert_eq!(g.outputs.len(), 1 + 2 * n, "loss, parameters, momentum buffers");
    assert!(g.nodes.iter().any(|node| node.op.name() == "matmul"));
    // Wrong batch shapes are errors naming the input.
    let mut step = step;
    let e = step.step(&randn(&[5, 784]), &y).unwrap_err().to_string();
    assert!(e.contains("input 0"), "{e}");
}

#[test]
fn learning_rate_schedules_drive_traced_steps_without_retracing() {
    // Warmup then cosine, changing every step: SGD-momentum and AdamW (whose
    // decoupled decay also depends on the rate) track eager training.
    let warmup = LinearLR { start_factor: 0.1, end_factor: 1.0, total_iters: 5 };
    let cosine = CosineAnnealingLR { t_max: 20, eta_min: 1e-4 };
    let schedule = SequentialLR::new(vec![Box::new(warmup), Box::new(cosine)], vec![5]).unwrap();
    let sgd = SgdConfig { momentum: 0.9, ..SgdConfig::new(0.05) };
    compare_scheduled(|| Mlp::new().unwrap(), Rule::Sgd(sgd), &[8, 784], 25, Some(&schedule));
    let adamw = AdamConfig::new(2e-3).weight_decay(0.05);
    let step_lr = StepLR { step_size: 4, gamma: 0.5 };
    compare_scheduled(|| LeNet5::new().unwrap(), Rule::AdamW(adamw), &[8, 1, 28, 28], 12, Some(&step_lr));
    compare_scheduled(|| Mlp::new().unwrap(), Rule::Adam(AdamConfig::new(1e-3)), &[8, 784], 12, Some(&step_lr));
}

/// LeNet-5's parameters as three groups: conv1 frozen (in no group), the
/// other biases at twice the rate without weight decay, the rest at the
/// rule's settings.
fn lenet_groups(m: &LeNet5) -> Vec<ParamGroup> {
    let (mut weights, mut biases) = (Vec::new(), Vec::new());
    for (name, p) in m.named_parameters() {
        if name.starts_with("conv1.") {
            continue;
        }
        if name.ends_with("bias") { &mut biases } else { &mut weights }.push(p);
    }
    vec![ParamGroup::new(weights), ParamGroup::new(biases).lr(0.02).weight_decay(0.0)]
}

#[test]
fn parameter_groups_train_as_the_eager_optimizers_groups() {
    let rules = [
        StepRule::Sgd(SgdConfig { momentum: 0.9, weight_decay: 1e-3, ..SgdConfig::new(0.01) }),
        StepRule::Adam(AdamConfig::new(1e-3).weight_decay(1e-3)),
        StepRule::AdamW(AdamConfig::new(1e-3).weight_decay(0.05)),
    ];
    let data = batches(20, &[8, 1, 28, 28], 5);
    for rule in rules {
        let (eager, traced) = (LeNet5::new().unwrap(), LeNet5::new().unwrap());
        traced.load_state_dict(&eager.state_dict(), true).unwrap();
        let initial: Vec<(String, Vec<f32>)> =
            eager.named_parameters().into_iter().map(|(n, p)| (n, p.get().to_vec::<f32>().unwrap())).collect();
        let mut opt: Box<dyn Optimizer> = match rule {
            StepRule::Sgd(c) => Box::new(Sgd::new(lenet_groups(&eager), c).unwrap()),
            StepRule::Adam(c) => Box::new(Adam::new(lenet_groups(&eager), c).unwrap()),
            StepRule::AdamW(c) => Box::new(AdamW::new(lenet_groups(&eager), c).unwrap()),
        };
        let (x0, y0) = (&data[0].0, &data[0].1);
        let mut step = TrainStep::grouped(&traced, &ce, rule, lenet_groups(&traced), x0, y0).unwrap();
        assert_eq!(step.group_lrs(), [opt.groups()[0].lr, 0.02]);
        for (i, (x, y)) in data.iter().enumerate() {
            if i == 10 {
                // A schedule of the second group alone.
                opt.groups_mut()[1].lr = 0.005;
                step.set_group_lr(1, 0.005).unwrap();
            }
            opt.zero_grad();
            let l = ce(&eager.forward(x).unwrap(), y).unwrap();
            l.backward().unwrap();
            opt.step().unwrap();
            let (a, b) = (l.item().unwrap(), step.step(x, y).unwrap().item().unwrap());
            assert_eq!(a, b, "{rule:?}, step {i}");
        }
        step.write_back(&traced).unwrap();
        let values = |m: &LeNet5| -> Vec<(String, Vec<f32>)> {
            m.named_parameters().into_iter().map(|(n, p)| (n, p.get().to_vec::<f32>().unwrap())).collect()
        };
        let (trained, eager_trained) = (values(&traced), values(&eager));
        assert_eq!(trained, eager_trained, "{rule:?}");
        // The frozen layer kept its weights; every other parameter moved.
        for ((name, now), (_, then)) in trained.iter().zip(&initial) {
            assert_eq!(name.starts_with("conv1."), now == then, "{rule:?}: {name}");
        }
    }
}

#[test]
fn parameter_groups_are_checked() {
    let (model, other) = (Mlp::new().unwrap(), Mlp::new().unwrap());
    let (x, y) = (randn(&[4, 784]), Tensor::from_vec(vec![1i64, 2, 3, 4], [4], &Device::cpu()).unwrap());
    let rule = StepRule::Sgd(SgdConfig::new(0.1));
    let err = |groups: Vec<ParamGroup>| match TrainStep::grouped(&model, &ce, rule, groups, &x, &y) {
        Ok(_) => panic!("accepted bad groups"),
        Err(e) => e.to_string(),
    };
    let e = err(vec![ParamGroup::new(other.parameters())]);
    assert!(e.contains("TrainStep::grouped") && e.contains("not one of the module's"), "{e}");
    let e = err(vec![ParamGroup::new(model.parameters()), ParamGroup::new(model.parameters()[..1].to_vec())]);
    assert!(e.contains("groups 0 and 1"), "{e}");
    assert!(err(vec![]).contains("at least one"));
    assert!(err(vec![ParamGroup::new(model.parameters()).lr(-1.0)]).contains("learning rate"));
    let mut step = TrainStep::grouped(&model, &ce, rule, vec![ParamGroup::new(model.parameters())], &x, &y).unwrap();
    assert!(step.set_group_lr(1, 0.1).unwrap_err().to_string().contains("group 1 of a step with 1 groups"));
}

#[test]
fn a_rate_of_zero_freezes_the_weights_and_bad_rates_are_refused() {
    let model = Mlp::new().unwrap();
    let (x, y) = (randn(&[4, 784]), Tensor::from_vec(vec![1i64, 2, 3, 4], [4], &Device::cpu()).unwrap());
    let mut step = TrainStep::sgd(&model, &ce, SgdConfig::new(0.1), &x, &y).unwrap();
    step.set_lr(0.0).unwrap();
    let before = step.parameters().to_vec();
    step.step(&x, &y).unwrap();
    for (a, b) in before.iter().zip(step.parameters()) {
        assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    }
    for bad in [-0.1, f64::NAN, f64::INFINITY] {
        let e = step.set_lr(bad).unwrap_err().to_string();
        assert!(e.contains("TrainStep::set_lr"), "{e}");
    }
}

/// Conv - batch norm - ReLU - linear: a forward pass that updates buffers.
#[derive(Module)]
struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
    fc: Linear,
}

impl Forward for ConvBn {
    fn forward(&self, x: &Tensor) -> oar_tensor::Result<Tensor> {
        let h = self.bn.forward(&self.conv.forward(x)?)?.relu()?;
        self.fc.forward(&h.flatten(1, -1)?)
    }
}

fn conv_bn() -> ConvBn {
    ConvBn {
        conv: Conv2d::new(1, 4, 3).unwrap(),
        bn: BatchNorm2d::new(4).unwrap(),
        fc: Linear::new(4 * 6 * 6, 10).unwrap(),
    }
}

#[test]
fn batch_norm_running_statistics_update_as_in_eager_training() {
    let sgd = SgdConfig { momentum: 0.9, ..SgdConfig::new(0.05) };
    compare(conv_bn, sgd, &[8, 1, 8, 8], 20);
    compare_rule(conv_bn, Rule::Adam(AdamConfig::new(1e-2)), &[8, 1, 8, 8], 10);
    // The buffers are graph inputs and outputs: running mean, variance and
    // the batch count, after the momentum buffers.
    let model = conv_bn();
    let (x, y) = (randn(&[8, 1, 8, 8]), Tensor::from_vec((0..8).collect::<Vec<i64>>(), [8], &Device::cpu()).unwrap());
    let mut step = TrainStep::sgd(&model, &ce, sgd, &x, &y).unwrap();
    let n = model.parameters().len();
    assert_eq!(step.graph().inputs.len(), 2 + 2 * n + 3 + 1);
    assert_eq!(step.graph().outputs.len(), 1 + 2 * n + 3);
    for _ in 0..3 {
        step.step(&x, &y).unwrap();
    }
    assert_eq!(step.buffers()[2].to_vec::<i64>().unwrap(), [3], "num_batches_tracked");
    let mean = step.buffers()[0].to_vec::<f32>().unwrap();
    assert!(mean.iter().any(|&m| m != 0.0), "the running mean moved: {mean:?}");
}

#[test]
fn eval_mode_batch_norm_passes_its_buffers_through() {
    let mut model = conv_bn();
    model.eval();
    let (x, y) = (randn(&[8, 1, 8, 8]), Tensor::from_vec((0..8).collect::<Vec<i64>>(), [8], &Device::cpu()).unwrap());
    let mut step = TrainStep::sgd(&model, &ce, SgdConfig::new(0.05), &x, &y).unwrap();
    let before: Vec<Vec<f32>> = step.buffers()[..2].iter().map(|b| b.to_vec().unwrap()).collect();
    step.step(&x, &y).unwrap();
    let after: Vec<Vec<f32>> = step.buffers()[..2].iter().map(|b| b.to_vec().unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(step.buffers()[2].to_vec::<i64>().unwrap(), [0]);
}

#[test]
fn a_cumulative_average_batch_norm_is_refused_with_the_host_read_named() {
    let model = ConvBn { bn: BatchNorm2d::new(4).unwrap().momentum(None), ..conv_bn() };
    let (x, y) = (randn(&[8, 1, 8, 8]), Tensor::from_vec((0..8).collect::<Vec<i64>>(), [8], &Device::cpu()).unwrap());
    let e = TrainStep::sgd(&model, &ce, SgdConfig::new(0.05), &x, &y).err().expect("refused").to_string();
    assert!(e.contains("item"), "{e}");
}
