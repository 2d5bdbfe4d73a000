//! Eager against `to_static` inside Oar, interleaved: 15 alternating blocks
//! of eager and static inference runs of the same model on the same input,
//! and the medians of the two. Criterion (`benches/inference.rs`) times the
//! two rows minutes apart, which on a noisy shared host can reorder them;
//! alternating blocks puts both under the same conditions.
//!
//! Prints one line per model: the two medians (µs per run), eager / static
//! (above 1 means the static graph is faster) and the range of that ratio
//! over the block pairs.
//!
//! cargo bench --bench eager_vs_static

mod common;

use common::randn;
use oar::jit::to_static;
use oar::nn::models::{LeNet5, SimpleCnn};
use oar::nn::Layer;
use std::time::Instant;

/// Block pairs per model under `cargo bench`; one when run as a test.
const BLOCKS: usize = 15;

/// Seconds per call of `f`, averaged over `reps` calls.
fn block(reps: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn compare(id: &str, model: &mut dyn Layer, input: &[usize], blocks: usize) {
    model.eval();
    let x = randn(input);
    let _no_grad = oar::no_grad();
    let fast = to_static(&*model, &x).expect("to_static");
    let eager_run = || std::hint::black_box(model.forward(&x).expect("eager"));
    let static_run = || std::hint::black_box(fast.forward(&x).expect("static"));
    // About 20 ms per block, from one warm-up call of each.
    let once = block(3, || drop(eager_run())).max(block(3, || drop(static_run())));
    let reps = ((0.02 / once) as usize).clamp(1, 10_000);
    let (mut eager, mut stat) = (Vec::new(), Vec::new());
    for _ in 0..blocks {
        eager.push(block(reps, || drop(eager_run())));
        stat.push(block(reps, || drop(static_run())));
    }
    let ratios: Vec<f64> = eager.iter().zip(&stat).map(|(e, s)| e / s).collect();
    let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
    let (e, s) = (median(eager) * 1e6, median(stat) * 1e6);
    println!("{id:<18} eager {e:>9.1} µs  static {s:>9.1} µs  eager/static {:.2}× (blocks {lo:.2}–{hi:.2})", e / s);
}

fn main() {
    common::init("eager_vs_static");
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`)
    // one block per model checks that the bench runs.
    let blocks = if std::env::args().any(|a| a == "--bench") { BLOCKS } else { 1 };
    compare("simple_cnn_bs1", &mut SimpleCnn::new().expect("model"), &[1, 3, 32, 32], blocks);
    compare("simple_cnn_bs64", &mut SimpleCnn::new().expect("model"), &[64, 3, 32, 32], blocks);
    compare("lenet5_bs64", &mut LeNet5::new().expect("model"), &[64, 1, 28, 28], blocks);
    compare("lenet5_bs256", &mut LeNet5::new().expect("model"), &[256, 1, 28, 28], blocks);
}
