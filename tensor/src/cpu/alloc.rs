//! Keeps freed tensor buffers in the process heap instead of returning them
//! to the kernel.
//!
//! glibc serves allocations above its mmap threshold (128 KiB at first,
//! adapting up to a few MiB) with a fresh `mmap` and unmaps them on free, and
//! trims the heap top above 128 KiB of free space. A training step allocates
//! and frees the same multi-MiB activations and gradients every iteration, so
//! each one came back as new pages: profiling the SimpleCNN step showed 30%
//! of its time in page faults and page zeroing. Raising both thresholds once
//! lets freed buffers be reused from the heap (the effect PyTorch's and
//! TensorFlow's CPU allocators get from caching); memory is kept at the
//! working set's high-water mark, as those caches keep it.
//!
//! Set `OAR_MALLOC_TUNING=0` to leave the allocator as the program set it.

use std::sync::Once;

/// Largest allocation kept on the heap: glibc's maximum mmap threshold on
/// 64-bit targets (`HEAP_MAX_SIZE / 2`); larger buffers are still mapped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free space kept at the top of the heap before it is given back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 512 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune() {
    if std::env::var("OAR_MALLOC_TUNING").is_ok_and(|v| v.trim() == "0") {
        return;
    }
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: `mallopt` is glibc's documented, thread-safe tuning call (it
    // takes the arena locks); these parameters only change when memory is
    // mapped or trimmed, never the validity of existing allocations.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune() {}

/// Applies the tuning once per process (before the first CPU buffer).
#[inline]
pub(crate) fn ensure_tuned() {
    static ONCE: Once = Once::new();
    ONCE.call_once(tune);
}
