//! Safetensors checkpoints: round trips in every dtype, PyTorch-exported
//! files, corrupt/truncated files, atomic writes, training checkpoints.

use oar_nn::checkpoint::{load_safetensors, parse_safetensors, save_safetensors, write_atomic, Checkpoint};
use oar_nn::models::LeNet5;
use oar_nn::optim::{Adam, AdamConfig, Optimizer};
use oar_nn::{Forward, Module, StateDict};
use oar_tensor::{bf16, f16, DType, Device, ErrorKind, Result, Tensor};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oar-ckpt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn all_dtypes() -> Result<StateDict> {
    let dev = Device::cpu();
    let mut sd = StateDict::new();
    sd.insert("f32", Tensor::from_vec(vec![1.5f32, -0.0, f32::INFINITY, 3.25], [2, 2], &dev)?);
    sd.insert("f64", Tensor::from_vec(vec![1e-300f64, -2.0], [2], &dev)?);
    sd.insert("f16", Tensor::from_vec(vec![f16::from_f32(0.5), f16::MAX], [2], &dev)?);
    sd.insert("bf16", Tensor::from_vec(vec![bf16::from_f32(-7.0)], [1], &dev)?);
    sd.insert("i64", Tensor::from_vec(vec![i64::MIN, 7], [2, 1], &dev)?);
    sd.insert("i32", Tensor::from_vec(vec![-3i32], [], &dev)?);
    sd.insert("u8", Tensor::from_vec(vec![0u8, 255], [2], &dev)?);
    sd.insert("bool", Tensor::from_vec(vec![true, false, true], [3], &dev)?);
    sd.insert("empty", Tensor::zeros([0, 3], DType::F32, &dev)?);
    Ok(sd)
}

#[test]
fn every_dtype_round_trips_bit_exactly() -> Result<()> {
    let path = tmp("dtypes").join("all.safetensors");
    let sd = all_dtypes()?;
    let meta = [("note".to_string(), "hello".to_string())].into_iter().collect();
    save_safetensors(&path, &sd, Some(meta))?;
    let (back, meta) = load_safetensors(&path)?;
    assert_eq!(meta.get("note").map(String::as_str), Some("hello"));
    assert_eq!(back.len(), sd.len());
    for (k, t) in sd.iter() {
        let b = back.get(k).unwrap();
        assert_eq!((b.dims(), b.dtype()), (t.dims(), t.dtype()), "{k}");
        let bits = |t: &Tensor| -> Result<Vec<u64>> {
            Ok(match t.dtype() {
                DType::F32 => t.to_vec::<f32>()?.iter().map(|v| v.to_bits() as u64).collect(),
                DType::F64 => t.to_vec::<f64>()?.iter().map(|v| v.to_bits()).collect(),
                _ => t
                    .to_dtype(DType::I64)
                    .and_then(|t| t.to_vec::<i64>())
                    .map(|v| v.iter().map(|&x| x as u64).collect())?,
            })
        };
        if t.dtype() == DType::F16 || t.dtype() == DType::BF16 {
            assert_eq!(t.to_dtype(DType::F64)?.to_vec::<f64>()?, b.to_dtype(DType::F64)?.to_vec::<f64>()?);
        } else {
            assert_eq!(bits(t)?, bits(b)?, "{k}");
        }
    }
    Ok(())
}

/// A LeNet-5 state dict written by PyTorch as its users write it,
/// `safetensors.torch.save_file(model.state_dict(), path)`, loads into the
/// Oar model as it is, and the model then gives PyTorch's logits.
#[test]
fn pytorch_exported_state_dict_loads_directly() -> Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let model = LeNet5::new()?;
    let report = model.load(fixtures.join("lenet5_state_dict.safetensors"), true)?;
    assert!(report.is_clean());
    let (parity, _) = load_safetensors(fixtures.join("parity_lenet5.safetensors"))?;
    assert_eq!(model.conv1.weight.get().to_vec::<f32>()?, parity.get("init.conv1.weight").unwrap().to_vec::<f32>()?);
    let logits = model.forward(parity.get("export.input").unwrap())?.to_vec::<f32>()?;
    let want = parity.get("export.logits").unwrap().to_vec::<f32>()?;
    for (g, w) in logits.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "logits {logits:?} vs PyTorch {want:?}");
    }
    // And Oar's own save of it reads back equal.
    let out = tmp("lenet").join("model.safetensors");
    model.save(&out)?;
    let again = LeNet5::new()?;
    again.load(&out, true)?;
    let x = Tensor::randn([2, 1, 28, 28], DType::F32, &Device::cpu())?;
    assert_eq!(model.forward(&x)?.to_vec::<f32>()?, again.forward(&x)?.to_vec::<f32>()?);
    Ok(())
}

#[test]
fn corrupt_and_truncated_files_are_errors() -> Result<()> {
    let dir = tmp("corrupt");
    let good = dir.join("good.safetensors");
    save_safetensors(&good, &all_dtypes()?, None)?;
    let bytes = std::fs::read(&good).unwrap();
    let p = Path::new("x.safetensors");
    // Every truncation point fails cleanly.
    for cut in (0..bytes.len()).step_by(7) {
        let err = parse_safetensors(p, &bytes[..cut]).unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::InvalidFile { .. }), "cut at {cut}: {err:?}");
    }
    // Flipped header bytes: an error or a valid (different) file, never a panic.
    let mut failed = 0;
    for i in 0..bytes.len().min(400) {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        failed += parse_safetensors(p, &b).is_err() as usize;
    }
    assert!(failed > 100, "only {failed} corruptions detected");
    // A bool byte other than 0/1.
    let mut sd = StateDict::new();
    sd.insert("b", Tensor::from_vec(vec![true], [1], &Device::cpu())?);
    let path = dir.join("bool.safetensors");
    save_safetensors(&path, &sd, None)?;
    let mut b = std::fs::read(&path).unwrap();
    *b.last_mut().unwrap() = 7;
    let err = parse_safetensors(&path, &b).unwrap_err().to_string();
    assert!(err.contains("bool byte 7"), "{err}");
    // A missing file names the path.
    let err = load_safetensors(dir.join("nope.safetensors")).unwrap_err().to_string();
    assert!(err.contains("nope.safetensors"), "{err}");
    // A wrong-shaped tensor in a checkpoint is reported by the model load.
    let mut sd = LeNet5::new()?.state_dict();
    sd.insert("fc1.weight", Tensor::zeros([120, 401], DType::F32, &Device::cpu())?);
    let path = dir.join("wrong.safetensors");
    save_safetensors(&path, &sd, None)?;
    let err = LeNet5::new()?.load(&path, true).unwrap_err().to_string();
    assert!(err.contains("fc1.weight: shape [120, 401] in the state dict, [120, 400] in the model"), "{err}");
    Ok(())
}

#[test]
fn an_interrupted_save_leaves_the_previous_file_intact() -> Result<()> {
    let dir = tmp("atomic");
    let path = dir.join("model.safetensors");
    let model = LeNet5::new()?;
    model.save(&path)?;
    let before = std::fs::read(&path).unwrap();
    // The write fails halfway through.
    let err = write_atomic(&path, |f| {
        use std::io::Write;
        f.write_all(&before[..before.len() / 2])?;
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert!(err.to_string().contains("disk full") && err.to_string().contains("model.safetensors"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary files left behind: {leftovers:?}");
    // A save into a directory that does not exist fails without creating anything.
    assert!(model.save(dir.join("missing/dir/model.safetensors")).is_err());
    Ok(())
}

/// A child process killed in the middle of writing a large checkpoint never
/// leaves a partial file under the real name.
#[test]
fn a_killed_writer_never_exposes_a_partial_file() {
    if std::env::var("OAR_CKPT_CHILD").is_ok() {
        let path = PathBuf::from(std::env::var("OAR_CKPT_CHILD").unwrap());
        let big = vec![0xabu8; 64 << 20];
        loop {
            write_atomic(&path, |f| {
                use std::io::Write;
                for chunk in big.chunks(1 << 20) {
                    f.write_all(chunk)?;
                }
                Ok(())
            })
            .unwrap();
        }
    }
    let dir = tmp("killed");
    let path = dir.join("big.bin");
    std::fs::write(&path, b"previous").unwrap();
    let exe = std::env::current_exe().unwrap();
    for delay_ms in [5u64, 40, 150] {
        let mut child = std::process::Command::new(&exe)
            .args(["a_killed_writer_never_exposes_a_partial_file", "--exact", "--nocapture"])
            .env("OAR_CKPT_CHILD", &path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len == 8 || len == 64 << 20, "after a kill at {delay_ms} ms the file has {len} bytes");
    }
}

#[test]
fn training_checkpoint_restores_model_optimizer_and_metadata() -> Result<()> {
    use oar_autograd::Backward;
    let model = LeNet5::new()?;
    let mut opt = Adam::new(model.parameters(), AdamConfig::new(1e-3))?;
    let x = Tensor::randn([4, 1, 28, 28], DType::F32, &Device::cpu())?;
    for _ in 0..2 {
        opt.zero_grad();
        model.forward(&x)?.square()?.mean_all()?.backward()?;
        opt.step()?;
    }
    let mut ckpt = Checkpoint { model: model.state_dict(), optimizer: Some(opt.state_dict()), ..Default::default() };
    ckpt.metadata.insert("epoch".into(), "2".into());
    let path = tmp("train").join("checkpoint.safetensors");
    ckpt.save(&path)?;
    let back = Checkpoint::load(&path)?;
    assert_eq!(back.metadata.get("epoch").map(String::as_str), Some("2"));
    let restored = LeNet5::new()?;
    restored.load_state_dict(&back.model, true)?;
    let mut opt2 = Adam::new(restored.parameters(), AdamConfig::new(1e-3))?;
    opt2.load_state_dict(back.optimizer.as_ref().unwrap())?;
    // One more identical step on both gives identical weights.
    for (m, o) in [(&model, &mut opt as &mut dyn Optimizer), (&restored, &mut opt2)] {
        o.zero_grad();
        m.forward(&x)?.square()?.mean_all()?.backward()?;
        o.step()?;
    }
    for ((k, a), (_, b)) in model.named_parameters().iter().zip(restored.named_parameters().iter()) {
        assert_eq!(a.get().to_vec::<f32>()?, b.get().to_vec::<f32>()?, "{k}");
    }
    // A plain state dict is not a training checkpoint.
    let plain = tmp("train").join("plain.safetensors");
    model.save(&plain)?;
    let err = Checkpoint::load(&plain).unwrap_err().to_string();
    assert!(err.contains("not an Oar training checkpoint"), "{err}");
    // An optimizer state for other shapes is rejected.
    let other = oar_nn::Linear::new(3, 2)?;
    let mut wrong = Adam::new(other.parameters(), AdamConfig::new(1e-3))?;
    let err = wrong.load_state_dict(back.optimizer.as_ref().unwrap()).unwrap_err().to_string();
    assert!(err.contains("Adam"), "{err}");
    Ok(())
}
