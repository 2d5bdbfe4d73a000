//! The executor allocates nothing per run after the first, apart from the
//! buffers of the outputs it hands back: a counting global allocator watches
//! every thread of the process (kernel helpers included) during the runs.

mod common;

use common::{conv_bn_net, randn};
use oar_jit::{to_static, Predictor};
use oar_nn::models::{LeNet5, Mlp, SimpleCnn};
use oar_nn::Module;
use oar_tensor::Device;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Counts allocations of at least `BIG` bytes (tensor buffers and kernel
/// scratch, not the few bytes of bookkeeping a run may box).
struct Counting;

const BIG: usize = 1024;
static BIG_ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; the counter
// is a relaxed atomic, which cannot allocate or re-enter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= BIG {
            BIG_ALLOCS.fetch_add(1, Relaxed);
        }
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= BIG {
            BIG_ALLOCS.fetch_add(1, Relaxed);
        }
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= BIG {
            BIG_ALLOCS.fetch_add(1, Relaxed);
        }
        // SAFETY: as `alloc`; `ptr` and `layout` come from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Large allocations made on any thread by each of `runs` runs of the
/// model's static graph, and the misses of the plan's arenas per run.
fn per_run(model: &dyn oar_nn::Layer, x: &oar_tensor::Tensor, runs: usize) -> (Vec<usize>, Vec<usize>) {
    let fast = to_static(model, x).unwrap();
    let plan = fast.compiled(x).unwrap().plan;
    let mut misses = plan.arena_stats().allocated;
    (0..runs)
        .map(|_| {
            let before = BIG_ALLOCS.load(Relaxed);
            let out = fast.forward(x).unwrap();
            let n = BIG_ALLOCS.load(Relaxed) - before;
            drop(out);
            let now = plan.arena_stats().allocated;
            let missed = now - misses;
            misses = now;
            (n, missed)
        })
        .unzip()
}

// One test in this binary: the counter is process-wide, so no other test may
// run beside it.
#[test]
fn runs_after_the_first_allocate_only_their_outputs() {
    let _no_grad = oar_tensor::no_grad();
    let mut lenet = LeNet5::new().unwrap();
    lenet.eval();
    let mut bn = conv_bn_net().unwrap();
    bn.eval();
    let cnn = SimpleCnn::new().unwrap();
    let mlp = Mlp::new().unwrap();
    // (name, model, input, whether its products are ones the gemm crate
    // packs into a buffer of its own per call: batched linear layers on
    // AVX-512 hosts, where that crate serves f32 products)
    let cases: [(&str, &dyn oar_nn::Layer, Vec<usize>, bool); 5] = [
        ("lenet5 bs64", &lenet, vec![64, 1, 28, 28], true),
        ("lenet5 bs1", &lenet, vec![1, 1, 28, 28], false),
        ("simple_cnn bs1", &cnn, vec![1, 3, 32, 32], false),
        ("mlp bs32", &mlp, vec![32, 784], true),
        ("conv_bn bs4", &bn, vec![4, 3, 16, 16], false),
    ];
    for (name, model, dims, gemm_crate_packs) in cases {
        let x = randn(&dims);
        let out_bytes = model.forward(&x).unwrap().numel() * 4;
        let large_outputs = usize::from(out_bytes > 64);
        let (allocs, misses) = per_run(model, &x, 4);
        println!("{name}: large allocations per run {allocs:?}, arena misses per run {misses:?}");
        assert!(misses[0] > large_outputs, "{name}: the first run fills the arena ({misses:?})");
        for (run, &m) in misses.iter().enumerate().skip(1) {
            assert_eq!(m, large_outputs, "{name}: run {run} missed the arena for more than its output ({misses:?})");
        }
        // Every thread's allocations, kernel scratch included. Off x86-64
        // the im2col convolution allocates its column buffer per call.
        if cfg!(target_arch = "x86_64") && !gemm_crate_packs {
            let large_outputs = usize::from(out_bytes >= BIG);
            assert!(allocs[1..].iter().all(|&a| a == large_outputs), "{name}: allocations per run {allocs:?}");
        }
        assert!(
            allocs[1..].iter().all(|&a| a < allocs[0]),
            "{name}: later runs allocate less than the first {allocs:?}"
        );
    }

    // A predictor hands its last outputs back to the plan before each run,
    // so after the first run it misses the arena not even for its outputs.
    let x = randn(&[64, 1, 28, 28]);
    let plan = to_static(&lenet, &x).unwrap().compiled(&x).unwrap().plan;
    let mut predictor = Predictor::from_plan(plan.clone(), Device::cpu());
    predictor.input("input0").unwrap().set(&x).unwrap();
    let mut misses = Vec::new();
    let mut logits = Vec::new();
    for _ in 0..4 {
        let before = plan.arena_stats().allocated;
        predictor.run().unwrap();
        misses.push(plan.arena_stats().allocated - before);
        logits.push(predictor.output(0).unwrap().copy_to_cpu::<f32>().unwrap());
    }
    println!("lenet5 bs64 predictor: arena misses per run {misses:?}");
    assert!(misses[0] > 0 && misses[1..].iter().all(|&m| m == 0), "{misses:?}");
    assert!(logits.windows(2).all(|w| w[0] == w[1]), "reused buffers change no output");
}
