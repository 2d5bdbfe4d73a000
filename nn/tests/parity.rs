//! Training parity with PyTorch: LeNet-5 from identical initial weights, on
//! identical MNIST batches, gives the same losses as PyTorch for 20 steps of
//! SGD with momentum, Adam and AdamW (fixture: `scripts/gen_parity.py`).
//!
//! In f32, AdamW's run reaches an exact tie at step 4: two max-pool
//! candidates over identical background patches, which Oar computes equal
//! (first maximum wins, PyTorch's rule) and oneDNN rounds 2 ulps apart (so
//! PyTorch takes the other). From there the two f32 runs are different valid
//! trajectories; see the generator's docstring. That run is checked in f32
//! up to the tie, and every run in f64 (both sides) for all 20 steps. A
//! second AdamW run, from the weights of seed 1, meets no tie and is checked
//! in f32 for all 20 steps.

use oar_autograd::Backward;
use oar_nn::checkpoint::load_safetensors;
use oar_nn::data::{Dataset, Mnist};
use oar_nn::loss::{cross_entropy, CrossEntropyOptions};
use oar_nn::models::LeNet5;
use oar_nn::optim::{Adam, AdamConfig, AdamW, Optimizer, Sgd, SgdConfig};
use oar_nn::{Forward, Module, StateDict};
use oar_tensor::{DType, Result};
use std::path::Path;

const STEPS: usize = 20;
const BATCH: usize = 64;
/// Loss tolerance (relative), as the issue asks; f64 runs are held to 1e-9.
const LOSS_RTOL: f64 = 1e-4;
const LOSS_RTOL_F64: f64 = 1e-9;

fn fixture() -> Result<StateDict> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity_lenet5.safetensors");
    Ok(load_safetensors(path)?.0)
}

type MakeOpt = fn(&LeNet5) -> Result<Box<dyn Optimizer>>;

/// Runs `steps` steps in `dtype` from the fixture's initial weights and
/// compares every loss with the fixture's.
fn run(name: &str, make: MakeOpt, dtype: DType, steps: usize) -> Result<LeNet5> {
    run_from("init", name, make, dtype, steps)
}

/// [`run`] from the initial weights under `init`.
fn run_from(init: &str, name: &str, make: MakeOpt, dtype: DType, steps: usize) -> Result<LeNet5> {
    let fx = fixture()?;
    let model = LeNet5::new()?;
    assert!(model.load_state_dict(&fx.strip_prefix(init), true)?.is_clean());
    model.to_dtype(dtype)?;
    let data = Mnist::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist"), "t10k")?.to_dataset()?;
    let order: Vec<usize> = fx.get("order").unwrap().to_vec::<i64>()?.into_iter().map(|i| i as usize).collect();
    let (key, rtol) = match dtype {
        DType::F64 => (format!("{name}.f64.losses"), LOSS_RTOL_F64),
        _ => (format!("{name}.losses"), LOSS_RTOL),
    };
    let want = fx.get(&key).unwrap().to_vec::<f64>()?;
    let mut opt = make(&model)?;
    let ce = CrossEntropyOptions::default();
    for (step, &w) in want.iter().enumerate().take(steps) {
        let batch = data.get_batch(&order[step * BATCH..(step + 1) * BATCH])?;
        let loss = cross_entropy(&model.forward(&batch.inputs.to_dtype(dtype)?)?, &batch.targets, &ce)?;
        opt.zero_grad();
        loss.backward()?;
        opt.step()?;
        let got = loss.item()?;
        let rel = (got - w).abs() / w.abs();
        assert!(rel <= rtol, "{name} ({dtype}) step {step}: loss {got} vs PyTorch {w} (rel {rel:.2e})");
    }
    Ok(model)
}

/// The f32 parameters after all 20 steps agree with PyTorch's (round-off
/// grows over the steps, so the bound is looser than for one op).
fn check_final(name: &str, model: &LeNet5) -> Result<()> {
    let finals = fixture()?.strip_prefix(&format!("{name}.final"));
    for (key, p) in model.named_parameters() {
        let want = finals.get(&key).unwrap().to_vec::<f32>()?;
        let got = p.get().to_vec::<f32>()?;
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-4 * scale, "{name}: {key} differs from PyTorch by {worst} (max |w| {scale})");
    }
    Ok(())
}

const SGD: MakeOpt = |m| Ok(Box::new(Sgd::new(m.parameters(), SgdConfig::new(0.05).momentum(0.9))?));
const ADAM: MakeOpt = |m| Ok(Box::new(Adam::new(m.parameters(), AdamConfig::new(2e-3))?));
const ADAMW: MakeOpt = |m| Ok(Box::new(AdamW::new(m.parameters(), AdamConfig::new(2e-3).weight_decay(0.01))?));

#[test]
fn lenet5_sgd_momentum_matches_pytorch() -> Result<()> {
    check_final("sgd_momentum", &run("sgd_momentum", SGD, DType::F32, STEPS)?)?;
    run("sgd_momentum", SGD, DType::F64, STEPS).map(drop)
}

#[test]
fn lenet5_adam_matches_pytorch() -> Result<()> {
    check_final("adam", &run("adam", ADAM, DType::F32, STEPS)?)?;
    run("adam", ADAM, DType::F64, STEPS).map(drop)
}

#[test]
fn lenet5_adamw_matches_pytorch() -> Result<()> {
    // f32 up to the tie at step 4 (see the module docs), f64 throughout.
    run("adamw", ADAMW, DType::F32, 4)?;
    run("adamw", ADAMW, DType::F64, STEPS).map(drop)
}

#[test]
fn lenet5_adamw_from_a_tie_free_start_matches_pytorch_for_20_f32_steps() -> Result<()> {
    let model = run_from("adamw_seed1.init", "adamw_seed1", ADAMW, DType::F32, STEPS)?;
    check_final("adamw_seed1", &model)
}
