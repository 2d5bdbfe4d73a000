//! Golden tests of the layer modules against PyTorch.
//!
//! `tests/fixtures/layers.{safetensors,json}` are produced by `scripts/gen_nn_golden.py`
//! (see its docstring for the format) and committed, so this test needs no Python. Each
//! case builds an Oar module from its JSON config, loads PyTorch's initial state dict
//! into it strictly (so the parameter and buffer names and layouts must be PyTorch's),
//! then runs a sequence of train / eval calls: for each, the output, the gradients of
//! `sum(out * r)` with respect to the input and every parameter (cleared before each
//! call) and the buffers after the call (BatchNorm's running statistics and
//! `num_batches_tracked`) are compared. Tolerances: see `common/mod.rs` (f32: 1e-5
//! relative to `|want| + max|want|`; integers exact).
//!
//! The error-path tests at the end check that bad input is an `Err` naming the layer.

mod common;

use common::{assert_err, Cfg, Checker, Fixture, Res};
use oar_autograd::Backward;
use oar_nn::{
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Conv2dOptions, Embedding, Flatten, Forward,
    GroupNorm, LayerNorm, LeakyReLU, Linear, LogSoftmax, MaxPool2d, Module, ReLU, Sequential, SiLU, Softmax, StateDict,
    GELU,
};
use oar_tensor::{DType, Device, Tensor};
use serde_json::Value;

/// The number of layer cases in the fixture (a guard against an empty or truncated file).
const LAYER_CASES: usize = 47;

/// Optional momentum: JSON `null` is PyTorch's `momentum=None` (a cumulative average).
fn momentum(cfg: &Value) -> Option<f64> {
    cfg["momentum"].as_f64()
}

/// The Oar module of a module config (the generator's `build_torch`, in Oar's API).
fn build(cfg: &Value) -> Res<Box<dyn oar_nn::Layer>> {
    Ok(match cfg.s("kind") {
        "linear" => {
            let (i, o) = (cfg.u("in_features"), cfg.u("out_features"));
            Box::new(if cfg.b("bias") { Linear::new(i, o)? } else { Linear::no_bias(i, o)? })
        }
        "conv2d" => {
            let opts = Conv2dOptions::default()
                .stride(cfg.pair("stride"))
                .padding(cfg.pair("padding"))
                .dilation(cfg.pair("dilation"))
                .groups(cfg.u("groups"))
                .bias(cfg.b("bias"));
            Box::new(Conv2d::with_options(cfg.u("in_channels"), cfg.u("out_channels"), cfg.pair("kernel_size"), opts)?)
        }
        "max_pool2d" => Box::new(
            MaxPool2d::new(cfg.pair("kernel_size"))
                .stride(cfg.pair("stride"))
                .padding(cfg.pair("padding"))
                .dilation(cfg.pair("dilation"))
                .ceil_mode(cfg.b("ceil_mode")),
        ),
        "avg_pool2d" => Box::new(
            AvgPool2d::new(cfg.pair("kernel_size"))
                .stride(cfg.pair("stride"))
                .padding(cfg.pair("padding"))
                .ceil_mode(cfg.b("ceil_mode"))
                .count_include_pad(cfg.b("count_include_pad")),
        ),
        "adaptive_avg_pool2d" => Box::new(AdaptiveAvgPool2d::new(cfg.pair("output_size"))),
        "batch_norm1d" => Box::new(
            BatchNorm1d::with_options(cfg.u("num_features"), cfg.b("affine"), cfg.b("track_running_stats"))?
                .momentum(momentum(cfg))
                .eps(cfg.f("eps")),
        ),
        "batch_norm2d" => Box::new(
            BatchNorm2d::with_options(cfg.u("num_features"), cfg.b("affine"), cfg.b("track_running_stats"))?
                .momentum(momentum(cfg))
                .eps(cfg.f("eps")),
        ),
        "layer_norm" => {
            let mut ln = LayerNorm::with_options(cfg.usizes("normalized_shape"), cfg.b("elementwise_affine"))?;
            ln.eps = cfg.f("eps");
            Box::new(ln)
        }
        "group_norm" => {
            let mut gn = GroupNorm::with_options(cfg.u("num_groups"), cfg.u("num_channels"), cfg.b("affine"))?;
            gn.eps = cfg.f("eps");
            Box::new(gn)
        }
        "embedding" => {
            let pad = cfg["padding_idx"].as_u64().map(|p| p as usize);
            Box::new(Embedding::with_padding(cfg.u("num_embeddings"), cfg.u("embedding_dim"), pad)?)
        }
        "relu" => Box::new(ReLU),
        "leaky_relu" => Box::new(LeakyReLU::new(cfg.f("negative_slope"))),
        "gelu" => Box::new(GELU { tanh_approximation: cfg.b("tanh_approximation") }),
        "silu" => Box::new(SiLU),
        "softmax" => Box::new(Softmax::new(cfg.i("dim") as isize)),
        "log_softmax" => Box::new(LogSoftmax::new(cfg.i("dim") as isize)),
        "flatten" => Box::new(Flatten::new(cfg.i("start_dim") as isize, cfg.i("end_dim") as isize)),
        "sequential" => {
            let mut seq = Sequential::new();
            for layer in cfg["layers"].as_array().expect("layers") {
                seq.push(build(layer)?);
            }
            Box::new(seq)
        }
        other => panic!("unknown layer kind {other:?}"),
    })
}

fn run_case(fx: &Fixture, c: &mut Checker, name: &str, cfg: &Value) -> Res {
    let mut m = build(&cfg["layer"])?;
    // PyTorch's initial state dict, loaded strictly: names, shapes and dtypes must all match.
    let prefix = format!("{name}.state.");
    let mut sd = StateDict::new();
    for key in fx.keys_with_prefix(&prefix) {
        sd.insert(&key[prefix.len()..], fx.get(&key)?);
    }
    m.load_state_dict(&sd, true)?;
    let calls = cfg["calls"].as_array().expect("calls");
    for (k, mode) in calls.iter().enumerate() {
        match mode.as_str() {
            Some("train") => m.train(),
            Some("eval") => m.eval(),
            other => panic!("{name}: bad mode {other:?}"),
        }
        m.zero_grad();
        let at = |key: &str| format!("{name}.{k}.{key}");
        let x = fx.get(&at("x"))?;
        let x = if x.dtype().is_float() { x.with_requires_grad(true)? } else { x };
        let r = fx.get(&at("r"))?;
        let out = m.forward(&x)?;
        out.mul(&r)?.sum_all()?.backward()?;
        c.check(&at("out"), &out, &fx.get(&at("out"))?);
        if x.dtype().is_float() {
            c.check_grad(&at("grad.x"), x.grad(), &fx.get(&at("grad.x"))?);
        }
        for (pname, p) in m.named_parameters() {
            let key = at(&format!("grad.{pname}"));
            match fx.try_get(&key) {
                Some(want) => c.check_grad(&key, p.grad(), &want),
                None => c.fail(format!("{key}: the Oar module has parameter {pname}, PyTorch's does not")),
            }
        }
        for (bname, b) in m.named_buffers() {
            let key = at(&format!("state.{bname}"));
            match fx.try_get(&key) {
                Some(want) => c.check(&key, &b.get(), &want),
                None => c.fail(format!("{key}: the Oar module has buffer {bname}, PyTorch's does not")),
            }
        }
    }
    Ok(())
}

#[test]
fn golden_layers() -> Res {
    let fx = Fixture::open("layers");
    let cases = fx.cases_where(|_| true);
    assert_eq!(cases.len(), LAYER_CASES, "layer cases in layers.json");
    let mut c = Checker::new();
    for (name, cfg) in &cases {
        if let Err(e) = run_case(&fx, &mut c, name, cfg) {
            c.fail(format!("{name}: error: {e}"));
        }
    }
    // Every stored tensor (each gradient of a PyTorch parameter, each buffer) was compared.
    fx.assert_used(&cases.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
    c.finish("golden_layers");
    Ok(())
}

// ----------------------------------------------------------------------------- error paths

fn f32s(shape: &[usize]) -> Tensor {
    Tensor::ones(shape, DType::F32, &Device::cpu()).expect("ones")
}

#[test]
fn batch_norm_rejects_wrong_rank() -> Res {
    let bn2 = BatchNorm2d::new(3)?;
    assert_err(bn2.forward(&f32s(&[2, 3, 4])), &["BatchNorm2d", "rank"]);
    assert_err(bn2.forward(&f32s(&[2, 3])), &["BatchNorm2d"]);
    let bn1 = BatchNorm1d::new(3)?;
    assert_err(bn1.forward(&f32s(&[2, 3, 4, 4])), &["BatchNorm1d", "rank"]);
    // The wrong number of channels, and a single value per channel in training.
    assert_err(bn2.forward(&f32s(&[2, 4, 3, 3])), &["batch_norm", "running_mean"]);
    assert_err(bn1.forward(&f32s(&[1, 3])), &["batch_norm", "more than 1 value per channel"]);
    Ok(())
}

#[test]
fn layer_shape_errors_name_the_layer() -> Res {
    let lin = Linear::new(4, 2)?;
    assert_err(lin.forward(&f32s(&[3, 5])), &["linear"]);
    assert_err(Linear::new(0, 2), &["Linear", "positive"]);
    assert_err(Linear::from_tensors(f32s(&[2, 4]), Some(f32s(&[3]))), &["Linear"]);
    assert_err(Conv2d::with_options(4, 6, 3, Conv2dOptions::default().groups(4)), &["Conv2d", "groups"]);
    assert_err(Conv2d::with_options(4, 6, 3, Conv2dOptions::default().stride(0)), &["Conv2d", "stride"]);
    let conv = Conv2d::new(3, 2, 3)?;
    assert_err(conv.forward(&f32s(&[1, 4, 5, 5])), &["conv2d"]);
    let ln = LayerNorm::new([4, 5])?;
    assert_err(ln.forward(&f32s(&[2, 5, 4])), &["layer_norm", "normalized_shape"]);
    assert_err(LayerNorm::new(Vec::<usize>::new()), &["LayerNorm"]);
    assert_err(GroupNorm::new(3, 4), &["GroupNorm", "num_groups"]);
    let gn = GroupNorm::new(2, 4)?;
    assert_err(gn.forward(&f32s(&[2, 6, 3])), &["group_norm"]);
    assert_err(Embedding::with_padding(5, 2, Some(5)), &["Embedding", "padding_idx"]);
    let emb = Embedding::new(5, 2)?;
    assert_err(emb.forward(&f32s(&[3])), &["Embedding", "i64"]);
    let idx = Tensor::from_vec(vec![1i64, 5], [2], &Device::cpu())?;
    assert_err(emb.forward(&idx), &["Embedding", "index 5", "out of range"]);
    Ok(())
}

/// Loading a state dict with a PyTorch-style key mismatch is an error naming the key.
#[test]
fn load_state_dict_reports_bad_keys() -> Res {
    let bn = BatchNorm2d::new(3)?;
    let mut sd = bn.state_dict();
    sd.insert("running_mean", f32s(&[4]));
    assert_err(bn.load_state_dict(&sd, true), &["running_mean"]);
    let mut sd = StateDict::new();
    sd.insert("weight", f32s(&[3]));
    assert_err(bn.load_state_dict(&sd, true), &["bias"]);
    Ok(())
}
