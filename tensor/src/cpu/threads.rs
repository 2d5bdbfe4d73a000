//! How many threads CPU kernels use, and the fork-join team they split their
//! work over ([`super::team`]). The count respects `RAYON_NUM_THREADS` (kept
//! from the rayon pool Oar used before the team), else the
//! available parallelism, and is changed at run time with [`set_num_threads`].

use super::team::Team;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// The thread count, readable without the lock (0 until first asked).
static THREADS: AtomicUsize = AtomicUsize::new(0);

fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn team_cell() -> &'static RwLock<Arc<Team>> {
    static TEAM: OnceLock<RwLock<Arc<Team>>> = OnceLock::new();
    TEAM.get_or_init(|| RwLock::new(Arc::new(Team::new(num_threads()))))
}

/// The fork-join team of the kernels (see [`super::team`]).
pub(crate) fn team() -> Arc<Team> {
    team_cell().read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Number of threads CPU kernels use.
pub fn num_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = default_threads();
            // A concurrent `set_num_threads` wins over the default.
            match THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => n,
                Err(set) => set,
            }
        }
        n => n,
    }
}

/// Sets the number of threads CPU kernels use (at least 1): the calling
/// thread plus `n - 1` helper threads, started here, which spin for
/// `OAR_SPIN_US` microseconds (default 200) after each kernel before parking.
pub fn set_num_threads(n: usize) {
    let n = n.max(1);
    THREADS.store(n, Ordering::Relaxed);
    let team = Arc::new(Team::new(n));
    // The old team's helpers stop when the last job holding it is done.
    *team_cell().write().unwrap_or_else(|e| e.into_inner()) = team;
}

/// Below this many elements, kernels of a few instructions per element
/// (arithmetic, copies, sums, max) stay on the calling thread. With rayon's
/// hand-off (6-8 us, more on VMs) this was 128K; the team's spinning helpers
/// take a job in well under a microsecond, and at 32K elements (PyTorch's
/// grain size too) a 2-thread add is still ahead of a 1-thread one.
const PAR_MIN_ELEMS: usize = 1 << 15;

/// The same for kernels of tens of instructions per element (softmax's
/// exponentials), where splitting pays off sooner.
const PAR_MIN_ELEMS_HEAVY: usize = 1 << 13;

/// Whether a cheap kernel over `elems` elements should split across the team:
/// large enough, and the team has more than one thread.
#[inline]
pub(crate) fn worth_parallel(elems: usize) -> bool {
    elems >= PAR_MIN_ELEMS && num_threads() > 1
}

/// [`worth_parallel`] for kernels of tens of instructions per element.
#[inline]
pub(crate) fn worth_parallel_heavy(elems: usize) -> bool {
    elems >= PAR_MIN_ELEMS_HEAVY && num_threads() > 1
}
