//! The thread pool CPU kernels run on. It respects `RAYON_NUM_THREADS` and can
//! be resized at run time with [`set_num_threads`].

use std::sync::{Arc, OnceLock, RwLock};

fn pool_cell() -> &'static RwLock<Arc<rayon::ThreadPool>> {
    static POOL: OnceLock<RwLock<Arc<rayon::ThreadPool>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
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
    pool_cell().read().unwrap_or_else(|e| e.into_inner()).current_num_threads()
}

/// Sets the number of threads CPU kernels use (at least 1).
pub fn set_num_threads(n: usize) {
    let pool = Arc::new(build(n.max(1)));
    *pool_cell().write().unwrap_or_else(|e| e.into_inner()) = pool;
}

/// Runs `f` inside the kernel pool, so rayon parallel iterators and gemm use it.
pub(crate) fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = pool_cell().read().unwrap_or_else(|e| e.into_inner()).clone();
    pool.install(f)
}

/// Below this many elements, element-wise kernels stay on the calling thread.
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;
