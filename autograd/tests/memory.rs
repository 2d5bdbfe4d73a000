//! Memory stays flat over 1,000 training-like steps (forward, backward,
//! parameter update, drop): live heap bytes are counted by a global allocator
//! installed for this test binary only.

use oar_autograd::{no_grad, Backward};
use oar_tensor::{DType, Device, Generator, Result, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: defers to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE_BYTES.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn step(params: &mut [Tensor], x: &Tensor, target: &Tensor) -> Result<f64> {
    let h = x.matmul(&params[0].t()?)?.add(&params[1])?.relu()?;
    let logits = h.matmul(&params[2].t()?)?;
    let loss = logits.log_softmax(1)?.gather(1, target)?.mean_all()?.neg()?;
    loss.backward()?;
    let _g = no_grad();
    for p in params.iter_mut() {
        let g = p.grad().expect("every parameter gets a gradient");
        *p = p.sub(&g.mul_scalar(0.1)?)?.with_requires_grad(true)?;
    }
    loss.item()
}

#[test]
fn training_steps_keep_memory_flat() -> Result<()> {
    let dev = Device::cpu();
    let mut gen = Generator::new(0);
    let mut params = vec![
        Tensor::randn_with(&mut gen, [32, 16], DType::F32, &dev)?.mul_scalar(0.2)?.with_requires_grad(true)?,
        Tensor::zeros([32], DType::F32, &dev)?.with_requires_grad(true)?,
        Tensor::randn_with(&mut gen, [4, 32], DType::F32, &dev)?.mul_scalar(0.2)?.with_requires_grad(true)?,
    ];
    let x = Tensor::randn_with(&mut gen, [8, 16], DType::F32, &dev)?;
    let target = Tensor::from_vec(vec![0i64, 1, 2, 3, 0, 1, 2, 3], [8, 1], &dev)?;
    let mut first_loss = 0.0;
    let mut baseline = 0;
    let mut last_loss = 0.0;
    for i in 0..1000 {
        let loss = step(&mut params, &x, &target)?;
        if i == 0 {
            first_loss = loss;
        }
        if i == 99 {
            baseline = LIVE_BYTES.load(Ordering::Relaxed);
        }
        last_loss = loss;
    }
    let end = LIVE_BYTES.load(Ordering::Relaxed);
    // Training happened, and 900 more steps left no trace on the heap.
    assert!(last_loss < first_loss * 0.5, "loss {first_loss} -> {last_loss}");
    assert!(end - baseline <= 4096, "live heap grew from {baseline} to {end} bytes over 900 steps");
    Ok(())
}
