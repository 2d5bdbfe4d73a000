//! Setup shared by the criterion benches (`tensor_ops`, `autograd`): random
//! inputs and the `OAR_BENCH_THREADS` kernel thread count.
//!
//! Not a bench target itself: Cargo only discovers `benches/*.rs` and
//! `benches/*/main.rs`; each bench pulls this in with `mod common;`.

use oar::prelude::*;

/// A standard-normal f32 CPU tensor (from the global generator, see `init`).
pub fn randn(shape: &[usize]) -> Tensor {
    Tensor::randn(shape, DType::F32, &Device::cpu()).expect("randn")
}

/// Kernel threads for the benches: `OAR_BENCH_THREADS`, default 2.
pub fn bench_threads() -> usize {
    match std::env::var("OAR_BENCH_THREADS") {
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("OAR_BENCH_THREADS must be a positive integer, got {v:?}")),
        Err(_) => 2,
    }
}

/// Sets the kernel thread count from `OAR_BENCH_THREADS`, seeds the global
/// generator with 0 and logs the thread count to stderr.
pub fn init(bench: &str) {
    oar::set_num_threads(bench_threads());
    oar::manual_seed(0);
    eprintln!("oar {bench} benches: {} kernel thread(s) (OAR_BENCH_THREADS)", oar::num_threads());
}
