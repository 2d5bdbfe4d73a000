//! The training loop the MNIST examples share: seeded shuffling, Adam or
//! SGD with momentum, a per-epoch learning-rate decay, a progress bar,
//! held-out accuracy, an atomic checkpoint per epoch, resume, and curves.

use indicatif::{ProgressBar, ProgressStyle};
use oar::nn::checkpoint::Checkpoint;
use oar::nn::data::{DataLoader, DataLoaderConfig, Dataset, Mnist, TensorDataset};
use oar::nn::loss::{cross_entropy, CrossEntropyOptions};
use oar::nn::lr_scheduler::{ExponentialLR, LrScheduler};
use oar::nn::optim::{Adam, AdamConfig, Sgd, SgdConfig};
use oar::nn::Layer;
use oar::prelude::*;
use oar::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Examples used for training from the bundled 10,000-image set; the rest are held out.
pub const BUNDLED_TRAIN: usize = 8000;

/// The bundled MNIST test set split 8,000 / 2,000, or with `dir` the full
/// set there (`train-*` for training, `t10k-*` held out).
pub fn load_mnist(dir: Option<&Path>) -> Result<(TensorDataset, TensorDataset)> {
    match dir {
        Some(dir) => Ok((Mnist::load(dir, "train")?.to_dataset()?, Mnist::load(dir, "t10k")?.to_dataset()?)),
        None => {
            let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
            let all = Mnist::load(&bundled, "t10k")?.to_dataset()?;
            Ok((all.slice(0, BUNDLED_TRAIN)?, all.slice(BUNDLED_TRAIN, all.len())?))
        }
    }
}

/// Fraction of `data` the model classifies correctly (eval mode, no grad).
pub fn accuracy(model: &dyn Layer, data: &TensorDataset) -> Result<f64> {
    let _guard = oar::no_grad();
    let loader = DataLoader::new(data.clone(), DataLoaderConfig::new(1000).prefetch(0))?;
    let mut correct = 0.0;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let pred = model.forward(&batch.inputs)?.argmax(1, false)?;
        correct += pred.eq(&batch.targets)?.to_dtype(DType::F64)?.sum_all()?.item()?;
    }
    Ok(correct / data.len() as f64)
}

pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Multiplies the learning rate after every epoch.
    pub lr_decay: f64,
    pub seed: u64,
    /// `adam` or `sgd` (momentum 0.9).
    pub optimizer: String,
    pub out: PathBuf,
    pub resume: bool,
}

/// Loss and held-out accuracy per epoch.
#[derive(Default)]
pub struct History {
    pub loss: Vec<f64>,
    pub accuracy: Vec<f64>,
}

fn to_json(v: &[f64]) -> String {
    serde_json::to_string(v).expect("numbers")
}

fn from_json(meta: &std::collections::BTreeMap<String, String>, key: &str) -> Result<Vec<f64>> {
    let raw = meta.get(key).ok_or_else(|| Error::invalid_arg("resume", format!("checkpoint has no {key}")))?;
    serde_json::from_str(raw).map_err(|e| Error::invalid_arg("resume", format!("checkpoint {key}: {e}")))
}

/// Trains `model` on `train`, evaluating on `test` after every epoch, and
/// writes `checkpoint.safetensors` (every epoch), `model.safetensors` and
/// `curves.svg` into `cfg.out`.
pub fn train(
    model: &mut dyn Layer,
    train: TensorDataset,
    test: &TensorDataset,
    cfg: &TrainConfig,
    name: &str,
) -> Result<History> {
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(format!("creating {}", cfg.out.display()), e))?;
    let params = model.parameters();
    let mut opt: Box<dyn Optimizer> = match cfg.optimizer.as_str() {
        "adam" => Box::new(Adam::new(params, AdamConfig::new(cfg.lr))?),
        "sgd" => Box::new(Sgd::new(params, SgdConfig::new(cfg.lr).momentum(0.9))?),
        other => return Err(Error::invalid_arg("train", format!("unknown optimizer {other:?} (adam or sgd)"))),
    };
    let mut sched = LrScheduler::new(ExponentialLR { gamma: cfg.lr_decay }, opt.as_mut());
    let ckpt_path = cfg.out.join("checkpoint.safetensors");
    let mut history = History::default();
    let mut start = 0;
    if cfg.resume {
        let ckpt = Checkpoint::load(&ckpt_path)?;
        model.load_state_dict(&ckpt.model, true)?;
        let state =
            ckpt.optimizer.as_ref().ok_or_else(|| Error::invalid_arg("resume", "checkpoint has no optimizer state"))?;
        opt.load_state_dict(state)?;
        start = ckpt.metadata.get("epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
        history.loss = from_json(&ckpt.metadata, "loss")?;
        history.accuracy = from_json(&ckpt.metadata, "accuracy")?;
        sched.set_epoch(start, opt.as_mut());
        println!("resumed from {} after epoch {start}", ckpt_path.display());
    }
    let n_train = train.len();
    let loader = DataLoader::new(train, DataLoaderConfig::new(cfg.batch_size).shuffle(cfg.seed))?;
    let ce = CrossEntropyOptions::default();
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    for epoch in start..cfg.epochs {
        model.train();
        let bar = ProgressBar::new(loader.len() as u64).with_style(style.clone());
        bar.set_prefix(format!("epoch {:>2}/{}", epoch + 1, cfg.epochs));
        let t0 = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for batch in loader.epoch(epoch) {
            let batch = batch?;
            let loss = cross_entropy(&model.forward(&batch.inputs)?, &batch.targets, &ce)?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            let n = batch.inputs.dims()[0];
            loss_sum += loss.item()? * n as f64;
            seen += n;
            bar.inc(1);
            if bar.position().is_multiple_of(10) || seen == n_train {
                let rate = seen as f64 / t0.elapsed().as_secs_f64();
                bar.set_message(format!("loss {:.4}  {rate:.0} img/s", loss_sum / seen as f64));
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        sched.step(opt.as_mut());
        let acc = accuracy(model, test)?;
        history.loss.push(loss_sum / seen.max(1) as f64);
        history.accuracy.push(acc * 100.0);
        println!(
            "epoch {:>2}/{}  loss {:.4}  held-out accuracy {:.2}%  ({secs:.1} s, {:.0} img/s, lr {:.2e})",
            epoch + 1,
            cfg.epochs,
            loss_sum / seen.max(1) as f64,
            acc * 100.0,
            seen as f64 / secs,
            opt.lr()
        );
        let mut ckpt =
            Checkpoint { model: model.state_dict(), optimizer: Some(opt.state_dict()), ..Default::default() };
        ckpt.metadata.insert("epoch".into(), (epoch + 1).to_string());
        ckpt.metadata.insert("model".into(), name.into());
        ckpt.metadata.insert("loss".into(), to_json(&history.loss));
        ckpt.metadata.insert("accuracy".into(), to_json(&history.accuracy));
        ckpt.save(&ckpt_path)?;
    }
    oar::nn::checkpoint::save_safetensors(cfg.out.join("model.safetensors"), &model.state_dict(), None)?;
    let svg = super::plot::svg(
        &format!("{name} on MNIST"),
        &[
            super::plot::Series { title: "training loss", values: &history.loss, color: "#c0392b", unit: "" },
            super::plot::Series { title: "held-out accuracy", values: &history.accuracy, color: "#2471a3", unit: "%" },
        ],
    );
    let plot = cfg.out.join("curves.svg");
    oar::nn::checkpoint::write_atomic(&plot, |f| std::io::Write::write_all(f, svg.as_bytes()))?;
    println!("wrote {}, {} and {}", ckpt_path.display(), cfg.out.join("model.safetensors").display(), plot.display());
    Ok(history)
}

/// Peak resident memory of this process (Linux), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|kb| kb / 1024.0)
}
