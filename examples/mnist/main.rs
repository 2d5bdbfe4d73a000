//! Trains LeNet-5 on MNIST and reports held-out accuracy.
//!
//! cargo run --release --example mnist [-- --epochs 12 --lr 2e-3 ...]
//!
//! By default it trains on the first 8,000 images of the bundled MNIST test
//! set (`data/mnist`) and holds out the last 2,000; `--data DIR` uses the
//! full 60,000-image training set in the same IDX format instead. Each epoch
//! prints its loss and held-out accuracy and writes `checkpoint.safetensors`
//! to `--out` (atomically; `--resume` continues from it); at the end it
//! writes `model.safetensors` and the curves to `curves.svg`. Then it deploys:
//! the model is traced into a static graph, saved to `<out>/model/`, loaded
//! by a `Predictor`, and its held-out accuracy must equal the eager one.

#[path = "../common/mod.rs"]
mod common;

use common::args::{opt, switch, Args};
use common::train::{load_mnist, peak_rss_mib, train, TrainConfig};
use oar::nn::models::LeNet5;
use oar::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

const OPTS: &[common::args::Opt] = &[
    opt("epochs", "12", "training epochs"),
    opt("batch-size", "64", "examples per step"),
    opt("lr", "", "learning rate (default: 2e-3 for adam, 0.05 for sgd)"),
    opt("lr-decay", "0.8", "learning-rate factor per epoch"),
    opt("optimizer", "adam", "adam, or sgd (momentum 0.9)"),
    opt("seed", "0", "seed of the initialization and the shuffling"),
    opt("threads", "0", "kernel threads (0: all cores)"),
    opt("data", "", "directory with the full MNIST IDX files (default: bundled 8,000/2,000 split)"),
    opt("out", "runs/mnist", "directory for the checkpoint, model and curves"),
    switch("resume", "continue from <out>/checkpoint.safetensors"),
];

fn main() -> Result<()> {
    let args = Args::parse("mnist", "Train LeNet-5 on MNIST with Oar.", OPTS);
    let threads: usize = args.get("threads");
    if threads > 0 {
        oar::set_num_threads(threads);
    }
    let seed: u64 = args.get("seed");
    oar::manual_seed(seed);
    let (train_set, test_set) = load_mnist(args.get_opt("data").map(PathBuf::from).as_deref())?;
    println!(
        "MNIST: {} training / {} held-out images; LeNet-5; {} kernel threads",
        oar::nn::data::Dataset::len(&train_set),
        oar::nn::data::Dataset::len(&test_set),
        oar::num_threads()
    );
    let mut model = LeNet5::new()?;
    println!("LeNet-5: {} parameters", model.num_parameters());
    let cfg = TrainConfig {
        epochs: args.get("epochs"),
        batch_size: args.get("batch-size"),
        lr: match args.get_opt("lr") {
            Some(_) => args.get("lr"),
            None if args.get::<String>("optimizer") == "sgd" => 0.05,
            None => 2e-3,
        },
        lr_decay: args.get("lr-decay"),
        seed,
        optimizer: args.get("optimizer"),
        out: PathBuf::from(args.get::<String>("out")),
        resume: args.has("resume"),
    };
    let t0 = Instant::now();
    train(&mut model, train_set, &test_set, &cfg, "LeNet-5")?;
    model.eval();
    let acc = common::train::accuracy(&model, &test_set)?;
    println!("training took {:.1} s", t0.elapsed().as_secs_f64());
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS: {rss:.0} MiB");
    }
    // Deploy: the same model as a static graph, saved and served by a Predictor.
    let static_acc = common::deploy::export_and_evaluate(&model, &test_set, &cfg.out.join("model"))?;
    println!(
        "Predictor accuracy: {:.2}% ({} the eager model)",
        static_acc * 100.0,
        if static_acc == acc { "equal to" } else { "DIFFERENT from" }
    );
    if static_acc != acc {
        return Err(oar::Error::invalid_arg("mnist", "the static graph disagrees with the eager model"));
    }
    println!("test accuracy: {:.2}%", acc * 100.0);
    Ok(())
}
