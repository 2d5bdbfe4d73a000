//! Golden tests of the losses against PyTorch.
//!
//! `tests/fixtures/losses.{safetensors,json}` are produced by `scripts/gen_nn_golden.py`
//! (see its docstring for the format) and committed, so this test needs no Python. Each
//! case runs one functional loss with the options of its JSON config and compares the
//! loss and the gradient of the input (of `sum(loss * r)` for reduction "none", of the
//! loss itself otherwise); the module form (`CrossEntropyLoss`, ...) must give the same
//! loss. Tolerances: see `common/mod.rs` (f32: 1e-5 relative to `|want| + max|want|`).
//!
//! One deliberate difference from PyTorch: `CrossEntropyOptions::ignore_index` is off
//! unless set (PyTorch's default is -100), so the fixture's ignore cases set it.
//!
//! The error-path tests at the end check that bad targets are an `Err` naming the loss.

mod common;

use common::{assert_err, Cfg, Checker, Fixture, Res};
use oar_autograd::Backward;
use oar_nn::loss::{
    binary_cross_entropy_with_logits, cross_entropy, l1_loss, mse_loss, nll_loss, BCEWithLogitsLoss, CrossEntropyLoss,
    CrossEntropyOptions, L1Loss, MSELoss, NLLLoss, Reduction,
};
use oar_tensor::{DType, Device, Tensor};
use serde_json::Value;

/// The number of loss cases in the fixture (a guard against an empty or truncated file).
const LOSS_CASES: usize = 48;

fn reduction(cfg: &Value) -> Reduction {
    match cfg.s("reduction") {
        "none" => Reduction::None,
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        other => panic!("bad reduction {other:?}"),
    }
}

/// Runs the case's loss: (functional loss, module-form loss).
fn losses(
    cfg: &Value,
    input: &Tensor,
    target: &Tensor,
    weight: Option<Tensor>,
    pos_weight: Option<Tensor>,
) -> Res<(Tensor, Tensor)> {
    let red = reduction(cfg);
    Ok(match cfg.s("fn") {
        f @ ("cross_entropy" | "nll_loss") => {
            let opts = CrossEntropyOptions {
                weight: weight.clone(),
                reduction: red,
                label_smoothing: cfg.f("label_smoothing"),
                ignore_index: cfg["ignore_index"].as_i64(),
            };
            if f == "cross_entropy" {
                let mut m = CrossEntropyLoss::new().reduction(red).label_smoothing(opts.label_smoothing);
                if let Some(w) = weight {
                    m = m.weight(w);
                }
                if let Some(i) = opts.ignore_index {
                    m = m.ignore_index(i);
                }
                (cross_entropy(input, target, &opts)?, m.forward(input, target)?)
            } else {
                assert_eq!(opts.label_smoothing, 0.0);
                let mut m = NLLLoss::new().reduction(red);
                if let Some(w) = weight {
                    m = m.weight(w);
                }
                if let Some(i) = opts.ignore_index {
                    m = m.ignore_index(i);
                }
                (nll_loss(input, target, &opts)?, m.forward(input, target)?)
            }
        }
        "mse_loss" => (mse_loss(input, target, red)?, MSELoss(red).forward(input, target)?),
        "l1_loss" => (l1_loss(input, target, red)?, L1Loss(red).forward(input, target)?),
        "binary_cross_entropy_with_logits" => {
            let f = binary_cross_entropy_with_logits(input, target, weight.as_ref(), pos_weight.as_ref(), red)?;
            let m = BCEWithLogitsLoss { weight, pos_weight, reduction: red };
            (f, m.forward(input, target)?)
        }
        other => panic!("unknown loss {other:?}"),
    })
}

fn run_case(fx: &Fixture, c: &mut Checker, name: &str, cfg: &Value) -> Res {
    let at = |key: &str| format!("{name}.{key}");
    let input = fx.get(&at("input"))?.with_requires_grad(true)?;
    let target = fx.get(&at("target"))?;
    let uses = |k: &str| cfg.get(k).and_then(Value::as_bool).unwrap_or(false);
    let weight = if uses("weight") { Some(fx.get(&at("weight"))?) } else { None };
    let pos_weight = if uses("pos_weight") { Some(fx.get(&at("pos_weight"))?) } else { None };
    let (loss, module_loss) = losses(cfg, &input, &target, weight, pos_weight)?;
    let total = match fx.try_get(&at("r")) {
        Some(r) => loss.mul(&r)?.sum_all()?,
        None => loss.clone(),
    };
    total.backward()?;
    c.check(&at("loss"), &loss, &fx.get(&at("loss"))?);
    c.check_grad(&at("grad.input"), input.grad(), &fx.get(&at("grad.input"))?);
    // The module form is the functional form with stored options: the same values.
    c.check_tol(&format!("{name} (module form)"), &module_loss, &loss, 0.0);
    Ok(())
}

#[test]
fn golden_losses() -> Res {
    let fx = Fixture::open("losses");
    let cases = fx.cases_where(|_| true);
    assert_eq!(cases.len(), LOSS_CASES, "loss cases in losses.json");
    let mut c = Checker::new();
    for (name, cfg) in &cases {
        if let Err(e) = run_case(&fx, &mut c, name, cfg) {
            c.fail(format!("{name}: error: {e}"));
        }
    }
    fx.assert_used(&cases.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
    c.finish("golden_losses");
    Ok(())
}

// ----------------------------------------------------------------------------- error paths

fn logits() -> Tensor {
    Tensor::from_vec((0..12).map(|v| v as f32 * 0.1).collect(), [4, 3], &Device::cpu()).expect("logits")
}

fn targets(v: Vec<i64>) -> Tensor {
    let n = v.len();
    Tensor::from_vec(v, [n], &Device::cpu()).expect("targets")
}

#[test]
fn cross_entropy_target_out_of_range() {
    let opts = CrossEntropyOptions::default();
    assert_err(
        cross_entropy(&logits(), &targets(vec![0, 3, 1, 2]), &opts),
        &["cross_entropy", "target 3", "3 classes"],
    );
    // A negative target is out of range too (ignore_index is off unless set).
    assert_err(cross_entropy(&logits(), &targets(vec![0, -100, 1, 2]), &opts), &["cross_entropy", "-100"]);
    assert_err(nll_loss(&logits(), &targets(vec![7, 0, 1, 2]), &opts), &["nll_loss", "target 7"]);
    // Out of range with class weights and with an ignored index set.
    let w = Tensor::ones([3], DType::F32, &Device::cpu()).expect("w");
    let weighted = CrossEntropyOptions { weight: Some(w), ignore_index: Some(-1), ..Default::default() };
    assert_err(cross_entropy(&logits(), &targets(vec![-1, 0, 5, 2]), &weighted), &["cross_entropy", "5"]);
}

#[test]
fn cross_entropy_ignored_targets_are_not_range_checked() -> Res {
    let opts = CrossEntropyOptions { ignore_index: Some(-100), ..Default::default() };
    let loss = cross_entropy(&logits(), &targets(vec![0, -100, 1, -100]), &opts)?;
    let kept = cross_entropy(&logits().narrow(0, 0, 1)?, &targets(vec![0]), &CrossEntropyOptions::default())?
        .add(&cross_entropy(&logits().narrow(0, 2, 1)?, &targets(vec![1]), &CrossEntropyOptions::default())?)?
        .div_scalar(2.0)?;
    assert!((loss.item()? - kept.item()?).abs() < 1e-6);
    Ok(())
}

#[test]
fn cross_entropy_bad_target_dtype_and_shape() {
    let opts = CrossEntropyOptions::default();
    // Float targets are probabilities: they must have the logits' shape and dtype.
    let probs = Tensor::zeros([4], DType::F32, &Device::cpu()).expect("probs");
    assert_err(cross_entropy(&logits(), &probs, &opts), &["cross_entropy", "probability targets"]);
    let probs64 = Tensor::zeros([4, 3], DType::F64, &Device::cpu()).expect("probs");
    assert_err(cross_entropy(&logits(), &probs64, &opts), &["cross_entropy"]);
    // Class indices of the wrong shape or dtype.
    assert_err(cross_entropy(&logits(), &targets(vec![0, 1, 2]), &opts), &["cross_entropy", "target"]);
    let t2 = Tensor::zeros([4, 1], DType::I64, &Device::cpu()).expect("t");
    assert_err(cross_entropy(&logits(), &t2, &opts), &["cross_entropy", "shape"]);
    let tb = Tensor::zeros([4], DType::Bool, &Device::cpu()).expect("t");
    assert_err(cross_entropy(&logits(), &tb, &opts), &["cross_entropy", "i64"]);
    let tu = Tensor::zeros([4], DType::U8, &Device::cpu()).expect("t");
    assert_err(nll_loss(&logits(), &tu, &opts), &["nll_loss", "i64"]);
    // A 0-d input, a weight of the wrong length, and label smoothing out of [0, 1].
    let scalar = Tensor::scalar(1.0f32, &Device::cpu()).expect("s");
    assert_err(cross_entropy(&scalar, &targets(vec![0]), &opts), &["cross_entropy"]);
    let w = Tensor::ones([4], DType::F32, &Device::cpu()).expect("w");
    let bad_w = CrossEntropyOptions { weight: Some(w), ..Default::default() };
    assert_err(cross_entropy(&logits(), &targets(vec![0, 1, 2, 0]), &bad_w), &["cross_entropy", "weight"]);
    let bad_s = CrossEntropyOptions { label_smoothing: 1.5, ..Default::default() };
    assert_err(cross_entropy(&logits(), &targets(vec![0, 1, 2, 0]), &bad_s), &["cross_entropy", "label_smoothing"]);
    // ignore_index with probability targets.
    let probs = Tensor::zeros([4, 3], DType::F32, &Device::cpu()).expect("probs");
    let ig = CrossEntropyOptions { ignore_index: Some(0), ..Default::default() };
    assert_err(cross_entropy(&logits(), &probs, &ig), &["cross_entropy", "ignore_index"]);
}

#[test]
fn i32_targets_match_i64() -> Res {
    let opts = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
    let t64 = targets(vec![0, 2, 1, 2]);
    let t32 = t64.to_dtype(DType::I32)?;
    let a = cross_entropy(&logits(), &t64, &opts)?.item()?;
    let b = cross_entropy(&logits(), &t32, &opts)?.item()?;
    assert_eq!(a, b);
    Ok(())
}

#[test]
fn elementwise_losses_check_shapes_and_dtypes() {
    let a = Tensor::zeros([2, 3], DType::F32, &Device::cpu()).expect("a");
    let b = Tensor::zeros([3, 2], DType::F32, &Device::cpu()).expect("b");
    let c = Tensor::zeros([2, 3], DType::F64, &Device::cpu()).expect("c");
    assert_err(mse_loss(&a, &b, Reduction::Mean), &["mse_loss", "shape"]);
    assert_err(mse_loss(&a, &c, Reduction::Mean), &["mse_loss", "dtype"]);
    assert_err(l1_loss(&a, &b, Reduction::Sum), &["l1_loss", "shape"]);
    assert_err(
        binary_cross_entropy_with_logits(&a, &b, None, None, Reduction::Mean),
        &["binary_cross_entropy_with_logits"],
    );
    assert_err(
        binary_cross_entropy_with_logits(&a, &c, None, None, Reduction::Mean),
        &["binary_cross_entropy_with_logits", "dtype"],
    );
}
