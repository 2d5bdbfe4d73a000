//! Trains a 784-512-512-10 MLP on MNIST (the same data, split and loop as
//! the `mnist` example) and reports held-out accuracy.
//!
//! cargo run --release --example mlp [-- --epochs 8 ...]

#[path = "../common/mod.rs"]
mod common;

use common::args::{opt, switch, Args};
use common::train::{accuracy, load_mnist, peak_rss_mib, train, TrainConfig};
use oar::nn::models::Mlp;
use oar::prelude::*;
use std::path::PathBuf;

const OPTS: &[common::args::Opt] = &[
    opt("epochs", "8", "training epochs"),
    opt("batch-size", "128", "examples per step"),
    opt("lr", "1e-3", "learning rate"),
    opt("lr-decay", "0.7", "learning-rate factor per epoch"),
    opt("optimizer", "adam", "adam, or sgd (momentum 0.9)"),
    opt("seed", "0", "seed of the initialization and the shuffling"),
    opt("threads", "0", "kernel threads (0: all cores)"),
    opt("data", "", "directory with the full MNIST IDX files (default: bundled 8,000/2,000 split)"),
    opt("out", "runs/mlp", "directory for the checkpoint, model and curves"),
    switch("resume", "continue from <out>/checkpoint.safetensors"),
];

fn main() -> Result<()> {
    let args = Args::parse("mlp", "Train a 784-512-512-10 MLP on MNIST with Oar.", OPTS);
    let threads: usize = args.get("threads");
    if threads > 0 {
        oar::set_num_threads(threads);
    }
    let seed: u64 = args.get("seed");
    oar::manual_seed(seed);
    let (train_set, test_set) = load_mnist(args.get_opt("data").map(PathBuf::from).as_deref())?;
    let mut model = Mlp::new()?;
    println!("MLP 784-512-512-10: {} parameters; {} kernel threads", model.num_parameters(), oar::num_threads());
    let cfg = TrainConfig {
        epochs: args.get("epochs"),
        batch_size: args.get("batch-size"),
        lr: args.get("lr"),
        lr_decay: args.get("lr-decay"),
        seed,
        optimizer: args.get("optimizer"),
        out: PathBuf::from(args.get::<String>("out")),
        resume: args.has("resume"),
    };
    train(&mut model, train_set, &test_set, &cfg, "MLP")?;
    model.eval();
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS: {rss:.0} MiB");
    }
    println!("test accuracy: {:.2}%", accuracy(&model, &test_set)? * 100.0);
    Ok(())
}
