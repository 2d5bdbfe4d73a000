//! The module tree: derived names, state dicts, loading with every problem
//! reported, train/eval propagation, device/dtype moves, Sequential.

use oar_nn::{BatchNorm2d, Buffer, Conv2d, Dropout, Forward, Linear, Module, Param, ReLU, Sequential, StateDict};
use oar_tensor::{DType, Device, ErrorKind, Result, Tensor};

#[derive(Module)]
struct Block {
    conv: Conv2d,
    bn: BatchNorm2d,
    #[module(skip)]
    #[allow(dead_code)]
    name: String,
}

#[derive(Module)]
struct Net {
    stem: Block,
    blocks: Vec<Linear>,
    head: Option<Linear>,
    absent: Option<Linear>,
    scale: Param,
    drop: Dropout,
}

#[derive(Module)]
struct Pair(Linear, Linear);

fn net() -> Result<Net> {
    Ok(Net {
        stem: Block { conv: Conv2d::new(3, 4, 3)?, bn: BatchNorm2d::new(4)?, name: "stem".into() },
        blocks: vec![Linear::new(4, 4)?, Linear::no_bias(4, 4)?],
        head: Some(Linear::new(4, 2)?),
        absent: None,
        scale: Param::new(Tensor::ones([1], DType::F32, &Device::cpu())?)?,
        drop: Dropout::new(0.5)?,
    })
}

#[test]
fn derived_names_follow_pytorch_state_dict_keys() -> Result<()> {
    let n = net()?;
    let keys = n.state_dict().keys().into_iter().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        keys,
        [
            "stem.conv.weight",
            "stem.conv.bias",
            "stem.bn.weight",
            "stem.bn.bias",
            "stem.bn.running_mean",
            "stem.bn.running_var",
            "stem.bn.num_batches_tracked",
            "blocks.0.weight",
            "blocks.0.bias",
            "blocks.1.weight",
            "head.weight",
            "head.bias",
            "scale",
        ]
    );
    let params: Vec<String> = n.named_parameters().into_iter().map(|(k, _)| k).collect();
    assert_eq!(params.len(), 10);
    assert!(!params.iter().any(|k| k.contains("running")));
    let buffers: Vec<String> = n.named_buffers().into_iter().map(|(k, _)| k).collect();
    assert_eq!(buffers, ["stem.bn.running_mean", "stem.bn.running_var", "stem.bn.num_batches_tracked"]);
    assert_eq!(n.num_parameters(), 4 * 3 * 9 + 4 + 4 + 4 + 16 + 4 + 16 + 8 + 2 + 1);
    let pair = Pair(Linear::new(2, 3)?, Linear::new(3, 1)?);
    assert_eq!(pair.state_dict().keys(), ["0.weight", "0.bias", "1.weight", "1.bias"]);
    Ok(())
}

#[test]
fn train_and_eval_reach_every_child() -> Result<()> {
    let mut n = net()?;
    assert!(n.drop.is_training() && n.stem.bn.is_training());
    n.eval();
    assert!(!n.drop.is_training() && !n.stem.bn.is_training());
    // Eval-mode dropout is the identity.
    let x = Tensor::randn([8, 4], DType::F32, &Device::cpu())?;
    assert_eq!(n.drop.forward(&x)?.to_vec::<f32>()?, x.to_vec::<f32>()?);
    n.train();
    assert!(n.drop.is_training() && n.stem.bn.is_training());
    Ok(())
}

#[test]
fn state_dict_round_trip_copies_values() -> Result<()> {
    let (a, b) = (net()?, net()?);
    assert_ne!(a.stem.conv.weight.get().to_vec::<f32>()?, b.stem.conv.weight.get().to_vec::<f32>()?);
    let report = b.load_state_dict(&a.state_dict(), true)?;
    assert!(report.is_clean());
    for ((ka, va), (kb, vb)) in a.state_dict().iter().zip(b.state_dict().iter()) {
        assert_eq!(ka, kb);
        assert_eq!(va.to_dtype(DType::F64)?.to_vec::<f64>()?, vb.to_dtype(DType::F64)?.to_vec::<f64>()?, "{ka}");
    }
    // Loaded parameters still require grad and are leaves.
    let w = b.stem.conv.weight.get();
    assert!(w.requires_grad() && w.is_leaf());
    Ok(())
}

#[test]
fn loading_reports_every_problem_and_changes_nothing() -> Result<()> {
    let n = net()?;
    let before = n.head.as_ref().unwrap().weight.get().to_vec::<f32>()?;
    let mut sd = n.state_dict();
    let dev = Device::cpu();
    sd.insert("stem.conv.weight", Tensor::zeros([4, 3, 5, 5], DType::F32, &dev)?); // wrong shape
    sd.insert("blocks.0.bias", Tensor::zeros([4], DType::F64, &dev)?); // wrong dtype
    sd.insert("head.weight", Tensor::zeros([2, 4], DType::F32, &dev)?); // fine, but must not be applied
    sd.insert("extra.weight", Tensor::zeros([1], DType::F32, &dev)?); // unexpected
    let sd: StateDict = sd.iter().filter(|(k, _)| *k != "scale").map(|(k, t)| (k.to_string(), t.clone())).collect();
    let err = n.load_state_dict(&sd, true).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err.kind(), ErrorKind::StateDict { .. }), "{err:?}");
    for needle in [
        "4 problem(s)",
        "stem.conv.weight: shape [4, 3, 5, 5] in the state dict, [4, 3, 3, 3] in the model",
        "blocks.0.bias: dtype f64 in the state dict, f32 in the model",
        "scale: missing",
        "extra.weight: not in the model",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    assert_eq!(n.head.as_ref().unwrap().weight.get().to_vec::<f32>()?, before, "a failed load changed a parameter");
    // Non-strict: missing and unexpected keys are reported, shape/dtype errors still fail.
    let err = n.load_state_dict(&sd, false).unwrap_err().to_string();
    assert!(err.contains("2 problem(s)") && !err.contains("missing"), "{err}");
    let ok: StateDict = n
        .state_dict()
        .iter()
        .filter(|(k, _)| *k != "scale")
        .map(|(k, t)| (k.to_string(), t.clone()))
        .chain([("extra.weight".to_string(), Tensor::zeros([1], DType::F32, &dev)?)])
        .collect();
    let report = n.load_state_dict(&ok, false)?;
    assert_eq!(report.missing, ["scale"]);
    assert_eq!(report.unexpected, ["extra.weight"]);
    Ok(())
}

#[test]
fn to_dtype_casts_floats_only_and_param_set_checks_shapes() -> Result<()> {
    let n = net()?;
    n.to_dtype(DType::F64)?;
    assert_eq!(n.stem.conv.weight.dtype(), DType::F64);
    assert_eq!(n.stem.bn.running_mean().unwrap().get().dtype(), DType::F64);
    let nbt = n.named_buffers().into_iter().find(|(k, _)| k.ends_with("num_batches_tracked")).unwrap().1;
    assert_eq!(nbt.get().dtype(), DType::I64);
    let y = n.blocks[0].forward(&Tensor::ones([2, 4], DType::F64, &Device::cpu())?)?;
    assert_eq!(y.dtype(), DType::F64);
    let p = &n.scale;
    let err = p.set(&Tensor::ones([2], DType::F64, &Device::cpu())?).unwrap_err().to_string();
    assert!(err.contains("Param::set") && err.contains("[1]") && err.contains("[2]"), "{err}");
    let err = p.set(&Tensor::ones([1], DType::F32, &Device::cpu())?).unwrap_err().to_string();
    assert!(err.contains("dtype"), "{err}");
    let b = Buffer::new(Tensor::zeros([3], DType::F32, &Device::cpu())?);
    assert!(b.set(&Tensor::zeros([4], DType::F32, &Device::cpu())?).is_err());
    Ok(())
}

#[test]
fn param_keeps_gradients_across_updates_and_can_be_frozen() -> Result<()> {
    use oar_autograd::Backward;
    let p = Param::new(Tensor::from_vec(vec![1.0f32, 2.0], [2], &Device::cpu())?)?;
    p.get().square()?.sum_all()?.backward()?;
    assert_eq!(p.grad().unwrap().to_vec::<f32>()?, vec![2.0, 4.0]);
    // A new value keeps the accumulated gradient (an in-place update would).
    p.set(&Tensor::from_vec(vec![0.0f32, 0.0], [2], &Device::cpu())?)?;
    assert_eq!(p.grad().unwrap().to_vec::<f32>()?, vec![2.0, 4.0]);
    p.zero_grad();
    assert!(p.grad().is_none());
    p.set_requires_grad(false)?;
    assert!(!p.get().requires_grad());
    let y = p.get().add_scalar(1.0)?.sum_all()?;
    assert!(y.backward().is_err(), "a frozen parameter's graph has nothing to differentiate");
    Ok(())
}

#[test]
fn sequential_runs_layers_in_order() -> Result<()> {
    let dev = Device::cpu();
    let l1 = Linear::from_tensors(Tensor::from_vec(vec![1.0f32, -1.0], [2, 1], &dev)?, None)?;
    let l2 = Linear::from_tensors(
        Tensor::from_vec(vec![1.0f32, 1.0], [1, 2], &dev)?,
        Some(Tensor::from_vec(vec![0.5f32], [1], &dev)?),
    )?;
    let seq = Sequential::new().add(l1).add(ReLU).add(l2);
    assert_eq!(seq.len(), 3);
    // x = 3: [3, -3] -> relu [3, 0] -> 3 + 0 + 0.5.
    let y = seq.forward(&Tensor::from_vec(vec![3.0f32, -2.0], [2, 1], &dev)?)?;
    assert_eq!(y.to_vec::<f32>()?, vec![3.5, 2.5]);
    assert_eq!(seq.state_dict().keys(), ["0.weight", "2.weight", "2.bias"]);
    Ok(())
}

#[test]
fn activation_modules_compute_their_functions() -> Result<()> {
    use oar_nn::{Identity, Sigmoid, Tanh};
    let xs = [-3.0f64, -0.5, 0.0, 0.25, 2.0, 30.0];
    let x = Tensor::from_vec(xs.to_vec(), [6], &Device::cpu())?;
    let close = |got: Vec<f64>, want: Vec<f64>| {
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-15 * w.abs().max(1.0), "{got:?} vs {want:?}");
        }
    };
    close(Sigmoid.forward(&x)?.to_vec()?, xs.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect());
    close(Tanh.forward(&x)?.to_vec()?, xs.iter().map(|v| (v.exp() - (-v).exp()) / (v.exp() + (-v).exp())).collect());
    let y = Identity.forward(&x)?;
    assert_eq!(y.to_vec::<f64>()?, xs.to_vec());
    assert!(y.same_storage(&x), "Identity copies nothing");
    Ok(())
}
