//! The fork-join team the element-wise, reduction, pooling and convolution
//! kernels split their work over: the calling thread plus `threads - 1`
//! helpers that spin for a while after each job before they park, as
//! OpenMP runtimes do.
//!
//! Why not rayon's pool: a rayon job is handed to a sleeping worker and the
//! caller sleeps until it is done, two thread wake-ups per kernel. On the
//! 2-core VMs Oar is benchmarked on, `pool.install(|| ())` alone took 13-21 us
//! and a join of two 24 us halves took 41 us, where a spinning helper took
//! 24 us (a one-off timing program). Kernels of tens of microseconds (a
//! [64, 1000] softmax, a 64K-element exp, LeNet's pooling) gained nothing
//! from a second thread. Here the caller works on the job itself, and a
//! helper that finished a job moments ago picks up the next one without a
//! wake-up. The `gemm` crate's products run on it too, as strips of the
//! output (see `matmul::gemm_call`).
//!
//! One job runs at a time. A kernel started while the team is busy (from
//! inside a task, or from another thread) runs on its calling thread alone.
//!
//! `OAR_SPIN_US` sets how long an idle helper spins before parking
//! (default 200 us; 0 parks at once).

use std::any::Any;
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest task count of one job (the task fields of [`State`] are 24 bits).
const MAX_TASKS: usize = (1 << 24) - 1;

/// The job word: the unclaimed tasks `next..end` (24 bits each) and the
/// `active` helpers inside the job (16 bits). Claiming a task and entering
/// the job are one compare-and-swap, so the caller, which waits for every
/// task to be claimed and `active` to be 0, never returns while a helper can
/// still reach its closure.
///
/// The caller claims from the front and helpers from the back: with two
/// threads each then works on the same half of the data in every job, which
/// stays in its core's cache from one op to the next (claiming in one order,
/// a 32K-element add took 1.7x as long on two threads as on one).
#[derive(Clone, Copy, PartialEq, Debug)]
struct State {
    end: usize,
    next: usize,
    active: usize,
}

impl State {
    fn pack(self) -> u64 {
        ((self.end as u64) << 40) | ((self.next as u64) << 16) | self.active as u64
    }

    fn unpack(w: u64) -> Self {
        State { end: (w >> 40) as usize, next: ((w >> 16) & 0xff_ffff) as usize, active: (w & 0xffff) as usize }
    }
}

/// What a participant runs: called with its first claimed task and a
/// function that claims the next (`None` when all are claimed).
type Worker<'a> = dyn Fn(usize, &dyn Fn() -> Option<usize>) + Sync + 'a;

/// One posted job, on the caller's stack for the job's duration.
struct Job<'a> {
    worker: &'a Worker<'a>,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

struct Shared {
    word: AtomicU64,
    /// The current job (a `Job` with its lifetime erased), valid while the
    /// word shows unclaimed tasks or active helpers.
    job: AtomicPtr<Job<'static>>,
    /// Held by the caller that owns the team for a job.
    busy: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
    spin: Duration,
}

impl Shared {
    /// Claims an unclaimed task, if any: the first for the caller, the last
    /// for a helper (`helper`), which with `enter` is also counted inside the job.
    fn claim(&self, helper: bool, enter: bool) -> Option<usize> {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            let s = State::unpack(w);
            if s.next >= s.end {
                return None;
            }
            let (t, task) = if helper {
                (State { end: s.end - 1, active: s.active + enter as usize, ..s }, s.end - 1)
            } else {
                (State { next: s.next + 1, ..s }, s.next)
            };
            match self.word.compare_exchange_weak(w, t.pack(), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(task),
                Err(now) => w = now,
            }
        }
    }

    fn has_work(&self) -> bool {
        let s = State::unpack(self.word.load(Ordering::SeqCst));
        s.next < s.end
    }

    /// A helper's life: run tasks when there are any, spin `spin` after the
    /// last one, then park until a caller posts work.
    fn helper(&self) {
        let mut idle_since = Instant::now();
        let mut polls = 0u32;
        while !self.shutdown.load(Ordering::Relaxed) {
            if let Some(first) = self.claim(true, true) {
                // SAFETY: the claim succeeded, so the job the pointer names is
                // live (the caller waits for `active` to return to 0) and was
                // published before the word this claim read (release/acquire).
                let job = unsafe { &*self.job.load(Ordering::Acquire) };
                let claim = || self.claim(true, false);
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| (job.worker)(first, &claim))) {
                    *job.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
                }
                // Leaving: after this the job may be gone.
                self.word.fetch_sub(1, Ordering::AcqRel);
                idle_since = Instant::now();
                continue;
            }
            polls += 1;
            // Reading the clock every poll would cost more than the poll.
            if !polls.is_multiple_of(64) || idle_since.elapsed() < self.spin {
                std::hint::spin_loop();
                continue;
            }
            let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            // Checked under the lock, after announcing the sleep: a caller
            // posting work either sees the sleeper and notifies (taking the
            // lock, so after this wait began) or posted before this check.
            let guard = if self.has_work() || self.shutdown.load(Ordering::SeqCst) {
                guard
            } else {
                self.wake.wait(guard).unwrap_or_else(|e| e.into_inner())
            };
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
            idle_since = Instant::now();
        }
    }
}

/// The caller and its helpers.
pub(crate) struct Team {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Team {
    /// A team of `threads` participants (the caller and `threads - 1` helpers).
    pub(crate) fn new(threads: usize) -> Team {
        let spin_us = std::env::var("OAR_SPIN_US").ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(200);
        let shared = Arc::new(Shared {
            word: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            busy: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            spin: Duration::from_micros(spin_us),
        });
        let handles = (1..threads.max(1))
            .filter_map(|i| {
                let s = shared.clone();
                // A helper that cannot be spawned only makes the team smaller.
                std::thread::Builder::new().name(format!("oar-team-{i}")).spawn(move || s.helper()).ok()
            })
            .collect();
        Team { shared, handles }
    }

    /// Runs `worker` on the caller and on every helper that joins; together
    /// they run each task in `0..tasks` exactly once. On the caller alone when
    /// there is one task, no helper, or another job holds the team.
    fn run(&self, tasks: usize, worker: &Worker<'_>) {
        let serial = |worker: &Worker<'_>| {
            let next = AtomicUsize::new(1);
            let claim = || {
                let i = next.fetch_add(1, Ordering::Relaxed);
                (i < tasks).then_some(i)
            };
            worker(0, &claim)
        };
        if tasks == 0 {
            return;
        }
        let s = &*self.shared;
        if tasks == 1
            || tasks > MAX_TASKS
            || self.handles.is_empty()
            || s.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            return serial(worker);
        }
        let job = Job { worker, panic: Mutex::new(None) };
        // SAFETY (lifetime erasure): helpers reach the job only through a
        // successful claim, and this function does not return (or unwind)
        // before every task is claimed and no helper is inside the job.
        let ptr = (&job as *const Job<'_>).cast_mut().cast::<Job<'static>>();
        s.job.store(ptr, Ordering::Release);
        s.word.store(State { end: tasks, next: 0, active: 0 }.pack(), Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let mine = match s.claim(false, false) {
            Some(first) => catch_unwind(AssertUnwindSafe(|| worker(first, &|| s.claim(false, false)))).err(),
            None => None,
        };
        // A worker returns once every task is claimed, unless it panicked:
        // then the rest are claimed here (and skipped), so that no helper can
        // enter the job after the wait below.
        while s.claim(false, false).is_some() {}
        // Wait for the helpers still inside the job.
        let mut spins = 0u32;
        while State::unpack(s.word.load(Ordering::Acquire)).active > 0 {
            spins += 1;
            if spins < 1 << 16 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        s.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        s.busy.store(false, Ordering::Release);
        let theirs = job.panic.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = mine.or(theirs) {
            resume_unwind(p);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Runs `f(state, task)` for every task in `0..tasks` across the team (or on
/// the calling thread when `par` is false); each participant makes its
/// `state` with `init` once per job.
pub(crate) fn for_each_init<S>(par: bool, tasks: usize, init: impl Fn() -> S + Sync, f: impl Fn(&mut S, usize) + Sync) {
    let worker = |first: usize, next: &dyn Fn() -> Option<usize>| {
        let mut state = init();
        let mut task = Some(first);
        while let Some(i) = task {
            f(&mut state, i);
            task = next();
        }
    };
    if par {
        super::threads::team().run(tasks, &worker);
    } else if tasks > 0 {
        let mut state = init();
        (0..tasks).for_each(|i| f(&mut state, i));
    }
}

/// Runs `f(task)` for every task in `0..tasks`; see [`for_each_init`].
pub(crate) fn for_each(par: bool, tasks: usize, f: impl Fn(usize) + Sync) {
    for_each_init(par, tasks, || (), |_, i| f(i))
}

/// A raw pointer the tasks of one job may share; each task touches a
/// disjoint part of what it points to.
struct SharedMut<T>(*mut T);
// SAFETY: the pointer is only dereferenced through `chunk`, whose callers
// address disjoint ranges from different tasks (see its uses).
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// Elements `lo..hi` of the buffer.
    ///
    /// # Safety
    /// `lo <= hi <= ` the buffer's length, and no other live reference
    /// overlaps `lo..hi`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn chunk(&self, lo: usize, hi: usize) -> &mut [T] {
        // SAFETY: the caller's guarantee.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(lo), hi - lo) }
    }
}

/// `f(state, index, chunk)` for the consecutive `chunk`-element pieces of
/// `buf` (the last may be shorter), across the team when `par`; each
/// participant makes its `state` with `init`.
pub(crate) fn chunks_mut_init<T: Send, S>(
    par: bool,
    buf: &mut [T],
    chunk: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &mut [T]) + Sync,
) {
    let (len, chunk) = (buf.len(), chunk.max(1));
    let ptr = SharedMut(buf.as_mut_ptr());
    for_each_init(par, len.div_ceil(chunk), init, |state, i| {
        let (lo, hi) = (i * chunk, ((i + 1) * chunk).min(len));
        // SAFETY: task `i` alone gets elements lo..hi, inside `buf`, which
        // this function borrows mutably for the whole job.
        f(state, i, unsafe { ptr.chunk(lo, hi) })
    })
}

/// [`chunks_mut_init`] without per-participant state.
pub(crate) fn chunks_mut<T: Send>(par: bool, buf: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    chunks_mut_init(par, buf, chunk, || (), |_, i, c| f(i, c))
}

/// [`chunks_mut`] over two buffers cut into the same number of chunks
/// (`ca` and `cb` elements each): task `i` gets chunk `i` of both.
pub(crate) fn chunks_mut2<A: Send, B: Send>(
    par: bool,
    a: &mut [A],
    ca: usize,
    b: &mut [B],
    cb: usize,
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync,
) {
    let (ca, cb) = (ca.max(1), cb.max(1));
    let tasks = a.len().div_ceil(ca).min(b.len().div_ceil(cb));
    let (la, lb) = (a.len(), b.len());
    let (pa, pb) = (SharedMut(a.as_mut_ptr()), SharedMut(b.as_mut_ptr()));
    for_each(par, tasks, |i| {
        // SAFETY: as in `chunks_mut_init`, for each buffer.
        let (x, y) = unsafe { (pa.chunk(i * ca, ((i + 1) * ca).min(la)), pb.chunk(i * cb, ((i + 1) * cb).min(lb))) };
        f(i, x, y)
    })
}

/// `f(task)` for every task in `0..tasks`, collected in task order.
pub(crate) fn map<A: Send>(par: bool, tasks: usize, f: impl Fn(usize) -> A + Sync) -> Vec<A> {
    let mut out: Vec<A> = Vec::with_capacity(tasks);
    chunks_mut(par, &mut out.spare_capacity_mut()[..tasks], 1, |i, slot: &mut [MaybeUninit<A>]| {
        slot[0].write(f(i));
    });
    // SAFETY: every task wrote its slot (a panicking task unwinds out of
    // `chunks_mut` before this point, leaking what was written).
    unsafe { out.set_len(tasks) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_packs_and_unpacks() {
        let s = State { end: MAX_TASKS, next: 12_345, active: 7 };
        assert_eq!(State::unpack(s.pack()), s);
    }

    #[test]
    fn every_task_runs_once_across_helpers() {
        let team = Team::new(3);
        for tasks in [1, 2, 3, 17, 1000] {
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            team.run(tasks, &|first, next: &dyn Fn() -> Option<usize>| {
                let mut t = Some(first);
                while let Some(i) = t {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                    t = next();
                }
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{tasks} tasks");
        }
    }

    #[test]
    fn map_collects_in_task_order_and_nested_jobs_run_serially() {
        let v = map(true, 100, |i| map(true, 3, |j| i * 3 + j).into_iter().sum::<usize>());
        assert_eq!(v, (0..100).map(|i| 9 * i + 3).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_after_the_job() {
        let team = Team::new(2);
        let ran = AtomicUsize::new(0);
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.run(64, &|first, next: &dyn Fn() -> Option<usize>| {
                let mut t = Some(first);
                while let Some(i) = t {
                    ran.fetch_add(1, Ordering::Relaxed);
                    assert!(i != 40, "task 40 fails");
                    t = next();
                }
            })
        }));
        assert!(r.is_err());
        // The team is usable afterwards.
        let sum = AtomicUsize::new(0);
        team.run(10, &|first, next: &dyn Fn() -> Option<usize>| {
            let mut t = Some(first);
            while let Some(i) = t {
                sum.fetch_add(i, Ordering::Relaxed);
                t = next();
            }
        });
        assert_eq!(sum.load(Ordering::Relaxed), 45);
    }

    #[test]
    fn chunks_mut2_hands_out_matching_chunks() {
        let mut a = vec![0usize; 10];
        let mut b = vec![0usize; 20];
        chunks_mut2(true, &mut a, 2, &mut b, 4, |i, x, y| {
            x.iter_mut().for_each(|v| *v = i);
            y.iter_mut().for_each(|v| *v = i);
        });
        assert_eq!(a, (0..10).map(|j| j / 2).collect::<Vec<_>>());
        assert_eq!(b, (0..20).map(|j| j / 4).collect::<Vec<_>>());
    }
}
