//! Resuming from a checkpoint is exact: 2 epochs, a checkpoint, and a 3rd
//! epoch in a fresh model/optimizer/scheduler give the same weights, bit for
//! bit, as 3 epochs straight (same seed).

use oar_autograd::Backward;
use oar_nn::checkpoint::Checkpoint;
use oar_nn::data::{DataLoader, DataLoaderConfig, Mnist, TensorDataset};
use oar_nn::loss::{cross_entropy, CrossEntropyOptions};
use oar_nn::lr_scheduler::{ExponentialLR, LrScheduler};
use oar_nn::models::LeNet5;
use oar_nn::optim::{Adam, AdamConfig, Optimizer};
use oar_nn::{Forward, Module};
use oar_tensor::Result;
use std::path::{Path, PathBuf};

fn data() -> Result<TensorDataset> {
    Mnist::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist"), "t10k")?.to_dataset()?.slice(0, 384)
}

/// Trains epochs `from..to`, resuming from `ckpt` when `from > 0`, and
/// writes a checkpoint after every epoch. Returns the final weights.
fn run(from: usize, to: usize, ckpt: &Path) -> Result<Vec<Vec<f32>>> {
    oar_tensor::manual_seed(11);
    let model = LeNet5::new()?;
    let mut opt = Adam::new(model.parameters(), AdamConfig::new(2e-3))?;
    let mut sched = LrScheduler::new(ExponentialLR { gamma: 0.7 }, &mut opt);
    if from > 0 {
        let c = Checkpoint::load(ckpt)?;
        model.load_state_dict(&c.model, true)?;
        opt.load_state_dict(c.optimizer.as_ref().unwrap())?;
        assert_eq!(c.metadata["epoch"], from.to_string());
        sched.set_epoch(from, &mut opt);
    }
    let loader = DataLoader::new(data()?, DataLoaderConfig::new(64).shuffle(5))?;
    for epoch in from..to {
        for batch in loader.epoch(epoch) {
            let batch = batch?;
            let loss = cross_entropy(&model.forward(&batch.inputs)?, &batch.targets, &CrossEntropyOptions::default())?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
        }
        sched.step(&mut opt);
        let mut c = Checkpoint { model: model.state_dict(), optimizer: Some(opt.state_dict()), ..Default::default() };
        c.metadata.insert("epoch".into(), (epoch + 1).to_string());
        c.save(ckpt)?;
    }
    model.parameters().iter().map(|p| p.get().to_vec::<f32>()).collect()
}

#[test]
fn resuming_after_two_epochs_equals_three_straight() -> Result<()> {
    let dir: PathBuf = std::env::temp_dir().join(format!("oar-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let straight = run(0, 3, &dir.join("straight.safetensors"))?;
    let ckpt = dir.join("resumed.safetensors");
    let two = run(0, 2, &ckpt)?;
    assert_ne!(two, straight, "the third epoch must change the weights");
    let resumed = run(2, 3, &ckpt)?;
    assert!(resumed == straight, "resumed weights differ from the uninterrupted run");
    Ok(())
}
