//! Golden tests of the optimizers, LR schedules and gradient clipping against PyTorch,
//! and optimizer state-dict round trips.
//!
//! `tests/fixtures/optim.{safetensors,json}` are produced by `scripts/gen_nn_golden.py`
//! (see its docstring for the format) and committed, so this test needs no Python.
//!
//! - Optimizers: fixed initial parameters and a fixed sequence of gradients (a parameter
//!   may have no gradient at some step: it is skipped and its step count does not
//!   advance), parameter groups with their own lr / weight decay; the parameters are
//!   compared after every step. Most cases are f64 (tol 1e-10), one is f32 (tol 1e-5).
//! - Schedules: the learning rate of two groups over 30 epochs (relative 1e-12).
//! - Clipping: the total norm and the clipped gradients (f32, tol 1e-5; f64, tol 1e-10).
//!
//! The state-dict round trip needs no PyTorch: k steps, `state_dict()`, a fresh optimizer
//! over cloned parameters loads it, and both continue; the result must equal the
//! uninterrupted run exactly.

mod common;

use common::{assert_err, Cfg, Checker, Fixture, Res};
use oar_nn::lr_scheduler::{
    CosineAnnealingLR, ExponentialLR, LinearLR, LrScheduler, MultiStepLR, OneCycleLR, Schedule, SequentialLR, StepLR,
};
use oar_nn::optim::{
    clip_grad_norm, clip_grad_value, Adam, AdamConfig, AdamW, Optimizer, ParamGroup, RmsProp, RmsPropConfig, Sgd,
    SgdConfig,
};
use oar_nn::Param;
use oar_tensor::{DType, Device, Tensor};
use serde_json::Value;

/// Case counts in the fixture (a guard against an empty or truncated file).
const OPTIMIZER_CASES: usize = 23;
const SCHEDULE_CASES: usize = 13;
const CLIP_CASES: usize = 8;

fn names(cases: &[(String, Value)]) -> Vec<String> {
    cases.iter().map(|(n, _)| n.clone()).collect()
}

fn sgd_config(c: &Value) -> SgdConfig {
    SgdConfig::new(c.f("lr"))
        .momentum(c.f("momentum"))
        .dampening(c.f("dampening"))
        .weight_decay(c.f("weight_decay"))
        .nesterov(c.b("nesterov"))
        .maximize(c.b("maximize"))
}

fn adam_config(c: &Value) -> AdamConfig {
    let betas = c["betas"].as_array().expect("betas");
    AdamConfig::new(c.f("lr"))
        .betas(betas[0].as_f64().expect("b1"), betas[1].as_f64().expect("b2"))
        .eps(c.f("eps"))
        .weight_decay(c.f("weight_decay"))
        .amsgrad(c.b("amsgrad"))
        .maximize(c.b("maximize"))
}

fn rmsprop_config(c: &Value) -> RmsPropConfig {
    RmsPropConfig::new(c.f("lr"))
        .alpha(c.f("alpha"))
        .eps(c.f("eps"))
        .weight_decay(c.f("weight_decay"))
        .momentum(c.f("momentum"))
        .centered(c.b("centered"))
}

/// The optimizer of a case over `params` (grouped as the case says).
fn make_optimizer(cfg: &Value, params: &[Param]) -> Res<Box<dyn Optimizer>> {
    let groups: Vec<ParamGroup> = match cfg["groups"].as_array() {
        None => vec![ParamGroup::new(params.to_vec())],
        Some(gs) => gs
            .iter()
            .map(|g| {
                let mut pg = ParamGroup::new(g.usizes("params").into_iter().map(|i| params[i].clone()).collect());
                if let Some(lr) = g["lr"].as_f64() {
                    pg = pg.lr(lr);
                }
                if let Some(wd) = g["weight_decay"].as_f64() {
                    pg = pg.weight_decay(wd);
                }
                pg
            })
            .collect(),
    };
    let c = &cfg["config"];
    Ok(match cfg.s("optim") {
        "sgd" => Box::new(Sgd::new(groups, sgd_config(c))?),
        "adam" => Box::new(Adam::new(groups, adam_config(c))?),
        "adamw" => Box::new(AdamW::new(groups, adam_config(c))?),
        "rmsprop" => Box::new(RmsProp::new(groups, rmsprop_config(c))?),
        other => panic!("unknown optimizer {other:?}"),
    })
}

fn run_optimizer_case(fx: &Fixture, c: &mut Checker, name: &str, cfg: &Value) -> Res {
    let n = cfg.u("num_params");
    let params: Vec<Param> =
        (0..n).map(|i| Ok(Param::new(fx.get(&format!("{name}.p{i}.init"))?)?)).collect::<Res<_>>()?;
    let want_dtype = if cfg.s("dtype") == "f64" { DType::F64 } else { DType::F32 };
    assert!(params.iter().all(|p| p.dtype() == want_dtype), "{name}: parameter dtype");
    let mut opt = make_optimizer(cfg, &params)?;
    for k in 0..cfg.u("steps") {
        for (i, p) in params.iter().enumerate() {
            p.set_grad(fx.try_get(&format!("{name}.p{i}.grad{k}")));
        }
        opt.step()?;
        for (i, p) in params.iter().enumerate() {
            let key = format!("{name}.p{i}.step{k}");
            c.check(&key, &p.get(), &fx.get(&key)?);
        }
    }
    Ok(())
}

#[test]
fn golden_optimizers() -> Res {
    let fx = Fixture::open("optim");
    let cases = fx.cases_where(|v| v["kind"] == "optimizer");
    assert_eq!(cases.len(), OPTIMIZER_CASES, "optimizer cases in optim.json");
    let mut c = Checker::new();
    for (name, cfg) in &cases {
        if let Err(e) = run_optimizer_case(&fx, &mut c, name, cfg) {
            c.fail(format!("{name}: error: {e}"));
        }
    }
    fx.assert_used(&names(&cases));
    c.finish("golden_optimizers");
    Ok(())
}

// ----------------------------------------------------------------------------- state dict round trip

/// Runs `total` steps of the fixture's gradients uninterrupted, and `split` steps then a
/// state-dict hand-over to a fresh optimizer over cloned parameters, then the rest; the
/// parameters (and the saved state) must be identical.
fn round_trip(fx: &Fixture, name: &str, cfg: &Value, split: usize) -> Res {
    let n = cfg.u("num_params");
    let steps = cfg.u("steps");
    let fresh =
        || -> Res<Vec<Param>> { (0..n).map(|i| Ok(Param::new(fx.get(&format!("{name}.p{i}.init"))?)?)).collect() };
    let feed = |params: &[Param], k: usize| {
        for (i, p) in params.iter().enumerate() {
            p.set_grad(fx.try_get(&format!("{name}.p{i}.grad{k}")));
        }
    };
    let a = fresh()?;
    let mut opt_a = make_optimizer(cfg, &a)?;
    for k in 0..steps {
        feed(&a, k);
        opt_a.step()?;
    }
    let b = fresh()?;
    let mut opt_b = make_optimizer(cfg, &b)?;
    for k in 0..split {
        feed(&b, k);
        opt_b.step()?;
    }
    let saved = opt_b.state_dict();
    // Cloned parameter values (new handles), and a fresh optimizer; the saved learning
    // rates must win over the constructor's, so change them first.
    let c: Vec<Param> = b.iter().map(|p| Param::new(p.get().detach())).collect::<oar_tensor::Result<_>>()?;
    let mut opt_c = make_optimizer(cfg, &c)?;
    opt_c.set_lr(123.0);
    opt_c.load_state_dict(&saved)?;
    for (gb, gc) in opt_b.groups().iter().zip(opt_c.groups()) {
        assert_eq!((gb.lr, gb.weight_decay), (gc.lr, gc.weight_decay), "{name}: group settings after load");
    }
    for k in split..steps {
        feed(&c, k);
        opt_c.step()?;
    }
    for (i, (pa, pc)) in a.iter().zip(&c).enumerate() {
        let (va, vc) = (common::to_f64s(&pa.get())?, common::to_f64s(&pc.get())?);
        assert_eq!(va, vc, "{name}: parameter {i} differs after a state-dict round trip at step {split}");
    }
    // The state of the resumed optimizer equals the uninterrupted one's.
    let (sa, sc) = (opt_a.state_dict(), opt_c.state_dict());
    assert_eq!(sa.tensors.keys(), sc.tensors.keys(), "{name}: state keys");
    for (k, ta) in sa.tensors.iter() {
        let tc = sc.tensors.get(k).expect("same keys");
        assert_eq!(common::to_f64s(ta)?, common::to_f64s(tc)?, "{name}: state {k}");
    }
    assert_eq!(sa.param_groups, sc.param_groups, "{name}: param_groups");
    Ok(())
}

#[test]
fn optimizer_state_dict_round_trip() -> Res {
    let fx = Fixture::open("optim");
    let cases = fx.cases_where(|v| v["kind"] == "optimizer");
    assert!(!cases.is_empty());
    for (name, cfg) in &cases {
        for split in [1, 3] {
            round_trip(&fx, name, cfg, split).map_err(|e| format!("{name}: {e}"))?;
        }
    }
    Ok(())
}

#[test]
fn optimizer_state_dict_mismatch_is_an_error() -> Res {
    let dev = Device::cpu();
    let p = Param::new(Tensor::ones([3], DType::F32, &dev)?)?;
    let mut adam = Adam::new(vec![p.clone()], AdamConfig::new(0.1))?;
    p.set_grad(Some(Tensor::ones([3], DType::F32, &dev)?));
    adam.step()?;
    let saved = adam.state_dict();
    // Another optimizer's state, the wrong parameter count, the wrong parameter shape.
    let q = Param::new(Tensor::ones([3], DType::F32, &dev)?)?;
    let mut sgd = Sgd::new(vec![q.clone()], SgdConfig::new(0.1).momentum(0.9))?;
    assert_err(sgd.load_state_dict(&saved), &["SGD", "exp_avg"]);
    let r = Param::new(Tensor::ones([3], DType::F32, &dev)?)?;
    let mut two = Adam::new(vec![q.clone(), r], AdamConfig::new(0.1))?;
    assert_err(two.load_state_dict(&saved), &["Adam", "parameters"]);
    let wide = Param::new(Tensor::ones([4], DType::F32, &dev)?)?;
    let mut other = Adam::new(vec![wide], AdamConfig::new(0.1))?;
    assert_err(other.load_state_dict(&saved), &["Adam", "state.0.exp_avg"]);
    Ok(())
}

#[test]
fn optimizer_config_errors_name_the_optimizer() -> Res {
    let p = || Param::new(Tensor::ones([2], DType::F32, &Device::cpu()).expect("t")).expect("p");
    assert_err(Sgd::new(vec![p()], SgdConfig::new(-0.1)), &["SGD", "lr"]);
    assert_err(Sgd::new(vec![p()], SgdConfig::new(0.1).nesterov(true)), &["SGD", "nesterov"]);
    assert_err(Adam::new(vec![p()], AdamConfig::new(0.1).betas(1.0, 0.9)), &["Adam", "betas"]);
    assert_err(AdamW::new(vec![p()], AdamConfig::new(0.1).eps(f64::NAN)), &["AdamW", "eps"]);
    assert_err(RmsProp::new(vec![p()], RmsPropConfig::new(0.1).momentum(-1.0)), &["RMSprop", "momentum"]);
    let shared = p();
    assert_err(Sgd::new(vec![shared.clone(), shared], SgdConfig::new(0.1)), &["SGD", "more than one group"]);
    let ints = Param::new(Tensor::zeros([2], DType::I64, &Device::cpu())?);
    if let Ok(ints) = ints {
        assert_err(Sgd::new(vec![ints], SgdConfig::new(0.1)), &["SGD", "floating point"]);
    }
    Ok(())
}

// ----------------------------------------------------------------------------- LR schedules

fn schedule(cfg: &Value) -> Box<dyn Schedule> {
    match cfg.s("kind") {
        "step" => Box::new(StepLR { step_size: cfg.u("step_size"), gamma: cfg.f("gamma") }),
        "multistep" => Box::new(MultiStepLR { milestones: cfg.usizes("milestones"), gamma: cfg.f("gamma") }),
        "exponential" => Box::new(ExponentialLR { gamma: cfg.f("gamma") }),
        "cosine" => Box::new(CosineAnnealingLR { t_max: cfg.u("t_max"), eta_min: cfg.f("eta_min") }),
        "linear" => Box::new(LinearLR {
            start_factor: cfg.f("start_factor"),
            end_factor: cfg.f("end_factor"),
            total_iters: cfg.u("total_iters"),
        }),
        "onecycle" => Box::new(OneCycleLR {
            max_lr: cfg.f("max_lr"),
            total_steps: cfg.u("total_steps"),
            pct_start: cfg.f("pct_start"),
            div_factor: cfg.f("div_factor"),
            final_div_factor: cfg.f("final_div_factor"),
        }),
        "sequential" => Box::new(
            SequentialLR::new(
                cfg["schedules"].as_array().expect("schedules").iter().map(schedule).collect(),
                cfg.usizes("milestones"),
            )
            .expect("SequentialLR"),
        ),
        other => panic!("unknown schedule {other:?}"),
    }
}

/// A `Box<dyn Schedule>` as an `impl Schedule` for `LrScheduler::new`.
struct Boxed(Box<dyn Schedule>);
impl Schedule for Boxed {
    fn lr(&self, epoch: usize, base_lr: f64) -> f64 {
        self.0.lr(epoch, base_lr)
    }
}

fn lr_close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-12 * want.abs().max(1e-300) || got == want
}

#[test]
fn golden_lr_schedules() -> Res {
    let fx = Fixture::open("optim");
    let cases = fx.cases_where(|v| v["kind"] == "schedule");
    assert_eq!(cases.len(), SCHEDULE_CASES, "schedule cases in optim.json");
    let mut failures = Vec::new();
    for (name, cfg) in &cases {
        let base: Vec<f64> =
            cfg["base_lrs"].as_array().expect("base_lrs").iter().map(|v| v.as_f64().unwrap()).collect();
        let want: Vec<Vec<f64>> = cfg["lrs"]
            .as_array()
            .expect("lrs")
            .iter()
            .map(|e| e.as_array().expect("epoch").iter().map(|v| v.as_f64().unwrap()).collect())
            .collect();
        let groups: Vec<ParamGroup> = base
            .iter()
            .map(|&lr| Ok(ParamGroup::new(vec![Param::new(Tensor::zeros([1], DType::F32, &Device::cpu())?)?]).lr(lr)))
            .collect::<Res<_>>()?;
        let mut opt = Sgd::new(groups, SgdConfig::new(base[0]))?;
        let mut sched = LrScheduler::new(Boxed(schedule(&cfg["schedule"])), &mut opt);
        for (epoch, w) in want.iter().enumerate() {
            if epoch > 0 {
                sched.step(&mut opt);
            }
            let got: Vec<f64> = opt.groups().iter().map(|g| g.lr).collect();
            let last = sched.last_lr();
            if got.len() != w.len() || !got.iter().zip(w).all(|(&g, &w)| lr_close(g, w)) || got != last {
                failures.push(format!("{name}: epoch {epoch}: lr {got:?} (last_lr {last:?}), PyTorch {w:?}"));
            }
        }
        // Resuming at any epoch gives that epoch's rates (closed forms).
        for epoch in [0, 4, 17, want.len() - 1].into_iter().filter(|&e| e < want.len()) {
            sched.set_epoch(epoch, &mut opt);
            let got: Vec<f64> = opt.groups().iter().map(|g| g.lr).collect();
            if !got.iter().zip(&want[epoch]).all(|(&g, &w)| lr_close(g, w)) {
                failures.push(format!("{name}: set_epoch({epoch}): lr {got:?}, PyTorch {:?}", want[epoch]));
            }
        }
    }
    assert!(failures.is_empty(), "{} schedule mismatches:\n{}", failures.len(), failures.join("\n"));
    Ok(())
}

#[test]
fn sequential_lr_rejects_bad_milestones() {
    let mk = || -> Vec<Box<dyn Schedule>> {
        vec![Box::new(LinearLR::warmup(0.1, 5)), Box::new(CosineAnnealingLR { t_max: 10, eta_min: 0.0 })]
    };
    assert_err(SequentialLR::new(mk(), vec![]).map(|_| ()), &["SequentialLR"]);
    assert_err(SequentialLR::new(mk(), vec![5, 3]).map(|_| ()), &["SequentialLR"]);
}

// ----------------------------------------------------------------------------- gradient clipping

fn run_clip_case(fx: &Fixture, c: &mut Checker, name: &str, cfg: &Value) -> Res {
    let params: Vec<Param> = (0..cfg.u("num_params"))
        .map(|i| {
            let key = format!("{name}.p{i}.grad");
            let g = fx.try_get(&key);
            let (dims, dtype) = g.as_ref().map_or((vec![1], DType::F32), |g| (g.dims().to_vec(), g.dtype()));
            let p = Param::new(Tensor::zeros(dims, dtype, &Device::cpu())?)?;
            p.set_grad(g);
            Ok(p)
        })
        .collect::<Res<_>>()?;
    match cfg.s("kind") {
        "clip_grad_norm" => {
            let norm_type = match &cfg["norm_type"] {
                Value::String(s) if s == "inf" => f64::INFINITY,
                v => v.as_f64().expect("norm_type"),
            };
            let total = clip_grad_norm(&params, cfg.f("max_norm"), norm_type)?;
            let key = format!("{name}.total_norm");
            c.check(&key, &total, &fx.get(&key)?);
        }
        "clip_grad_value" => clip_grad_value(&params, cfg.f("clip_value"))?,
        other => panic!("unknown clipping {other:?}"),
    }
    for (i, p) in params.iter().enumerate() {
        let key = format!("{name}.p{i}.clipped");
        match fx.try_get(&key) {
            Some(want) => c.check_grad(&key, p.grad(), &want),
            None if p.grad().is_some() => c.fail(format!("{key}: a parameter without a gradient got one")),
            None => {}
        }
    }
    Ok(())
}

#[test]
fn golden_grad_clipping() -> Res {
    let fx = Fixture::open("optim");
    let cases = fx.cases_where(|v| v["kind"].as_str().is_some_and(|k| k.starts_with("clip_")));
    assert_eq!(cases.len(), CLIP_CASES, "clipping cases in optim.json");
    let mut c = Checker::new();
    for (name, cfg) in &cases {
        if let Err(e) = run_clip_case(&fx, &mut c, name, cfg) {
            c.fail(format!("{name}: error: {e}"));
        }
    }
    fx.assert_used(&names(&cases));
    c.finish("golden_grad_clipping");
    Ok(())
}

#[test]
fn clipping_errors_and_no_grads() -> Res {
    let p = Param::new(Tensor::ones([2], DType::F32, &Device::cpu())?)?;
    assert_err(clip_grad_norm(std::slice::from_ref(&p), -1.0, 2.0), &["clip_grad_norm", "max_norm"]);
    assert_err(clip_grad_norm(std::slice::from_ref(&p), 1.0, 0.0), &["clip_grad_norm", "norm_type"]);
    assert_err(clip_grad_value(std::slice::from_ref(&p), f64::NAN), &["clip_grad_value"]);
    // No gradients at all: the total norm is 0 and nothing changes.
    assert_eq!(clip_grad_norm(std::slice::from_ref(&p), 1.0, 2.0)?.item()?, 0.0);
    assert!(p.grad().is_none());
    Ok(())
}
