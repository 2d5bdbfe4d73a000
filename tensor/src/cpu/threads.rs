//! The thread pool CPU kernels run on. It respects `RAYON_NUM_THREADS` and can
//! be resized at run time with [`set_num_threads`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// The pool's thread count, kept beside it so kernels can ask on every call
/// without the lock (0 until the pool exists).
static THREADS: AtomicUsize = AtomicUsize::new(0);

fn pool_cell() -> &'static RwLock<Arc<rayon::ThreadPool>> {
    static POOL: OnceLock<RwLock<Arc<rayon::ThreadPool>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        THREADS.store(n, Ordering::Relaxed);
        RwLock::new(Arc::new(build(n)))
    })
}

fn build(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("oar-cpu-{i}"))
        .build()
        .expect("failed to spawn CPU worker threads")
}

/// Number of threads CPU kernels use.
pub fn num_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => pool_cell().read().unwrap_or_else(|e| e.into_inner()).current_num_threads(),
        n => n,
    }
}

/// Sets the number of threads CPU kernels use (at least 1).
pub fn set_num_threads(n: usize) {
    let pool = Arc::new(build(n.max(1)));
    let mut cell = pool_cell().write().unwrap_or_else(|e| e.into_inner());
    *cell = pool;
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// Runs `f` inside the kernel pool, so rayon parallel iterators and gemm use it.
pub(crate) fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = pool_cell().read().unwrap_or_else(|e| e.into_inner()).clone();
    pool.install(f)
}

/// Runs `f` on the pool when `split` (it will fan out there), otherwise on the
/// calling thread: handing work that stays on one thread to a worker and
/// waiting for it is pure cost.
pub(crate) fn install_if<R: Send>(split: bool, f: impl FnOnce() -> R + Send) -> R {
    if split {
        install(f)
    } else {
        f()
    }
}

/// Below this many elements, kernels of a few instructions per element
/// (arithmetic, copies, sums, max) stay on the calling thread: the hand-off
/// to the pool and back cost about 6-8 us on a 2-core host, and at 64K
/// elements a 2-thread add, sum or max took longer than a 1-thread one (a
/// one-off timing loop).
const PAR_MIN_ELEMS: usize = 1 << 17;

/// The same for kernels of tens of instructions per element (softmax's
/// exponentials), where splitting pays off sooner.
const PAR_MIN_ELEMS_HEAVY: usize = 1 << 15;

/// Whether a cheap kernel over `elems` elements should run on the pool:
/// large enough, and the pool has more than one thread (a one-thread pool
/// gains nothing from the hand-off, which cost a [64, 1000] add half its time).
#[inline]
pub(crate) fn worth_parallel(elems: usize) -> bool {
    elems >= PAR_MIN_ELEMS && num_threads() > 1
}

/// [`worth_parallel`] for kernels of tens of instructions per element.
#[inline]
pub(crate) fn worth_parallel_heavy(elems: usize) -> bool {
    elems >= PAR_MIN_ELEMS_HEAVY && num_threads() > 1
}
