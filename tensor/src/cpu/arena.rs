//! Where CPU kernels get their output buffers, and the [`BufferArena`] that
//! lets a repeated computation reuse them.
//!
//! A static graph runs the same ops on the same shapes every time, so the
//! buffers one run frees are exactly the ones the next run needs. While an
//! arena is installed on a thread ([`BufferArena::scope`]), every large
//! buffer freed on that thread is kept in it, and [`with_capacity`] hands
//! out a kept buffer of exactly the requested byte size and alignment before
//! asking the allocator. With liveness-based freeing in the executor (a value
//! is dropped after its last reader), the second run of a plan allocates
//! only the buffers of the outputs it returns.
//!
//! Small buffers keep going through [`super::small_bufs`], arena or not.
//! Outside a scope, large buffers come from and go to the allocator as usual.

use super::small_bufs;
use std::alloc::{dealloc, Layout};
use std::cell::RefCell;
use std::mem::{align_of, size_of, ManuallyDrop};
use std::ptr::NonNull;

/// Buffers one arena keeps at most; more are freed as usual.
const KEEP: usize = 512;

/// Counts of what an arena did (since it was made or last [`BufferArena::clear`]ed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Buffers handed out from the arena.
    pub reused: usize,
    /// Large buffers requested in a scope that the arena could not serve.
    pub allocated: usize,
    /// Buffers the arena holds now.
    pub kept: usize,
    /// Their total size in bytes.
    pub kept_bytes: usize,
}

impl std::iter::Sum for ArenaStats {
    fn sum<I: Iterator<Item = ArenaStats>>(iter: I) -> ArenaStats {
        iter.fold(ArenaStats::default(), |a, s| ArenaStats {
            reused: a.reused + s.reused,
            allocated: a.allocated + s.allocated,
            kept: a.kept + s.kept,
            kept_bytes: a.kept_bytes + s.kept_bytes,
        })
    }
}

struct Kept {
    ptr: NonNull<u8>,
    bytes: usize,
    align: usize,
}

/// A cache of freed tensor buffers for one repeated computation (one
/// executor run at a time): see the module documentation.
///
/// ```
/// use oar_tensor::{BufferArena, DType, Device, Tensor};
/// # fn main() -> oar_tensor::Result<()> {
/// let x = Tensor::randn([256, 256], DType::F32, &Device::cpu())?;
/// let mut arena = BufferArena::new();
/// for _ in 0..3 {
///     arena.scope(|| x.exp()?.sum_all().map(drop))?;
/// }
/// // The first run's exp buffer served the next two.
/// assert_eq!(arena.stats().reused, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct BufferArena {
    kept: Vec<Kept>,
    stats: ArenaStats,
}

// SAFETY: the arena exclusively owns the buffers it keeps (plain heap memory
// holding no live values); nothing else points into them, so moving the
// arena to another thread moves that ownership with it.
unsafe impl Send for BufferArena {}

impl std::fmt::Debug for BufferArena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferArena").field("stats", &self.stats()).finish()
    }
}

thread_local! {
    static ACTIVE: RefCell<Option<BufferArena>> = const { RefCell::new(None) };
}

impl BufferArena {
    pub fn new() -> BufferArena {
        BufferArena::default()
    }

    /// Runs `f` with this arena installed on the calling thread: large
    /// buffers freed on this thread are kept, and large outputs are served
    /// from what is kept. An arena installed by an enclosing scope is put
    /// back afterwards, also when `f` panics.
    pub fn scope<R>(&mut self, f: impl FnOnce() -> R) -> R {
        struct Restore<'a> {
            arena: &'a mut BufferArena,
            outer: Option<BufferArena>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                let outer = self.outer.take();
                // Only in a thread-local destructor can ACTIVE be gone; the
                // arena's buffers are then freed with it.
                let mine = ACTIVE.try_with(|a| a.replace(outer)).ok().flatten();
                *self.arena = mine.unwrap_or_default();
            }
        }
        let outer = ACTIVE.with(|a| a.replace(Some(std::mem::take(self))));
        let _restore = Restore { arena: self, outer };
        f()
    }

    pub fn stats(&self) -> ArenaStats {
        ArenaStats { kept: self.kept.len(), kept_bytes: self.kept.iter().map(|k| k.bytes).sum(), ..self.stats }
    }

    /// Frees every kept buffer and resets the counts.
    pub fn clear(&mut self) {
        for k in self.kept.drain(..) {
            // SAFETY: kept buffers were allocated by `Vec`s with exactly this
            // size and alignment and are owned by the arena alone.
            unsafe { dealloc(k.ptr.as_ptr(), Layout::from_size_align_unchecked(k.bytes, k.align)) };
        }
        self.stats = ArenaStats::default();
    }

    fn take<T>(&mut self, n: usize) -> Option<Vec<T>> {
        // An overflowing size matches nothing; `Vec::with_capacity` then
        // reports it as it always did.
        let (bytes, align) = (n.checked_mul(size_of::<T>())?, align_of::<T>());
        let Some(i) = self.kept.iter().position(|k| k.bytes == bytes && k.align == align) else {
            self.stats.allocated += 1;
            return None;
        };
        let k = self.kept.swap_remove(i);
        self.stats.reused += 1;
        // SAFETY: the buffer was allocated by a `Vec` with `bytes` bytes at
        // alignment `align_of::<T>()`, which is the allocation of a `Vec<T>`
        // of capacity `n`; the arena gives up its ownership here, and the
        // vector starts empty, so no element is read before it is written.
        Some(unsafe { Vec::from_raw_parts(k.ptr.as_ptr().cast::<T>(), 0, n) })
    }

    fn give<T>(&mut self, v: &mut Vec<T>) {
        if self.kept.len() >= KEEP {
            return;
        }
        // Storage element types are `Copy`: forgetting the elements drops nothing.
        let mut buf = ManuallyDrop::new(std::mem::take(v));
        let bytes = buf.capacity() * size_of::<T>();
        let ptr = NonNull::new(buf.as_mut_ptr().cast::<u8>()).expect("a vector with capacity has a buffer");
        self.kept.push(Kept { ptr, bytes, align: align_of::<T>() });
    }
}

impl Drop for BufferArena {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Whether a buffer of this size goes to the arena rather than the small
/// buffer cache (or nowhere: zero-sized types and empty buffers).
#[inline(always)]
fn large<T>(bytes: usize) -> bool {
    size_of::<T>() != 0 && bytes > small_bufs::BYTES
}

/// An empty vector with room for exactly `n` elements (or a small cache
/// buffer's room): the buffer every CPU kernel writes its output into.
#[inline(always)]
pub(crate) fn with_capacity<T>(n: usize) -> Vec<T> {
    if !large::<T>(n.saturating_mul(size_of::<T>())) {
        return small_bufs::with_capacity(n);
    }
    let from_arena = ACTIVE.try_with(|a| a.try_borrow_mut().ok()?.as_mut()?.take(n)).ok().flatten();
    from_arena.unwrap_or_else(|| Vec::with_capacity(n))
}

/// `n` copies of `value` in a buffer from [`with_capacity`].
pub(crate) fn filled<T: Copy>(n: usize, value: T) -> Vec<T> {
    let mut v = with_capacity(n);
    v.resize(n, value);
    v
}

/// Hands the buffer of a dying storage to the small cache or the installed
/// arena, leaving `v` empty; with neither taking it, `v` is freed as usual.
#[inline(always)]
pub(crate) fn recycle<T>(v: &mut Vec<T>) {
    if !large::<T>(v.capacity() * size_of::<T>()) {
        return small_bufs::recycle(v);
    }
    let _ = ACTIVE.try_with(|a| {
        if let Ok(mut a) = a.try_borrow_mut() {
            if let Some(a) = a.as_mut() {
                a.give(v);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_serves_exact_sizes_from_what_it_kept_and_reads_back_what_is_written() {
        let mut arena = BufferArena::new();
        let p = arena.scope(|| {
            let mut a: Vec<f32> = with_capacity(1000);
            a.extend((0..1000).map(|i| i as f32));
            let p = a.as_ptr() as usize;
            recycle(&mut a);
            assert!(a.is_empty() && a.capacity() == 0);
            // Another element type of the same size and alignment takes it.
            let mut b: Vec<i32> = with_capacity(1000);
            assert_eq!(b.as_ptr() as usize, p);
            b.extend(0..1000);
            assert_eq!(b[999], 999);
            recycle(&mut b);
            // Another size does not.
            let c: Vec<f32> = with_capacity(999);
            assert_ne!(c.as_ptr() as usize, p);
            p
        });
        assert_eq!(arena.stats(), ArenaStats { reused: 1, allocated: 2, kept: 1, kept_bytes: 4000 });
        // Outside the scope nothing is taken from or given to the arena.
        let mut d: Vec<f32> = with_capacity(1000);
        recycle(&mut d);
        assert_eq!(d.capacity(), 1000);
        let again: Vec<f32> = arena.scope(|| with_capacity(1000));
        assert_eq!(again.as_ptr() as usize, p, "the kept buffer survives between scopes");
        assert_eq!(arena.stats().kept, 0);
    }

    #[test]
    fn nested_scopes_restore_the_outer_arena_even_after_a_panic() {
        let mut outer = BufferArena::new();
        outer.scope(|| {
            let mut inner = BufferArena::new();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                inner.scope(|| {
                    let mut v: Vec<u8> = with_capacity(4096);
                    recycle(&mut v);
                    panic!("inside");
                })
            }));
            assert!(r.is_err());
            assert_eq!(inner.stats().kept, 1, "the inner arena kept its buffer through the panic");
            let mut w: Vec<u8> = with_capacity(8192);
            recycle(&mut w);
        });
        assert_eq!(outer.stats().kept, 1, "the outer arena was active again after the inner scope");
        assert_eq!(outer.stats().kept_bytes, 8192);
    }
}
