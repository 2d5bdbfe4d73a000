//! Recycles the element buffers of small tensors (at most [`BYTES`] bytes)
//! through per-thread stacks, so a small op's output costs no `malloc`.
//!
//! After the tensor handle and buffer header moved to recycled blocks
//! ([`crate::pool_arc`]), the element buffer's `malloc`/`free` was the last
//! allocation of a one-element add (about 10% of its profile). Small buffers
//! are always allocated with exactly [`BYTES`] bytes (a `Vec` of capacity
//! `BYTES / size_of::<T>()`), so any two of the same alignment have the same
//! layout and can replace each other, whatever the element type. A buffer
//! that leaves the CPU storage as a plain `Vec` (`to_vec`) is still a valid
//! `Vec` and is freed by it as usual.

use std::alloc::{dealloc, Layout};
use std::cell::Cell;
use std::mem::{align_of, size_of, ManuallyDrop};
use std::ptr::NonNull;

/// Byte size of every recycled buffer: a `[16]` f32 tensor, the shape of
/// the per-op benchmark chain, or one element of any dtype.
pub(crate) const BYTES: usize = 64;
/// Buffers kept per alignment class and thread.
const KEEP: usize = 32;
/// Classes by alignment: 1, 2, 4, 8 bytes.
const CLASSES: usize = 4;

/// The class of element type `T`, if its buffers can be recycled.
#[inline(always)]
const fn class_of<T>() -> Option<usize> {
    let (size, align) = (size_of::<T>(), align_of::<T>());
    if size == 0 || !BYTES.is_multiple_of(size) || align > 8 {
        None
    } else {
        Some(align.trailing_zeros() as usize)
    }
}

/// An empty vector with room for `n` elements: a recycled [`BYTES`]-byte
/// buffer when `n` fits in one, else a fresh allocation of exactly `n`.
#[inline(always)]
pub(crate) fn with_capacity<T>(n: usize) -> Vec<T> {
    match class_of::<T>() {
        Some(class) if n.saturating_mul(size_of::<T>()) <= BYTES => {
            let cap = BYTES / size_of::<T>();
            match CACHE.try_with(|c| c.pop(class)).ok().flatten() {
                // SAFETY: the pointer is a buffer of `BYTES` bytes allocated
                // with alignment `align_of::<T>()` (its class), now owned by
                // nobody else: exactly the allocation of a `Vec<T>` with
                // capacity `BYTES / size_of::<T>()`, empty.
                Some(p) => unsafe { Vec::from_raw_parts(p.as_ptr().cast::<T>(), 0, cap) },
                // `with_capacity` allocates exactly the capacity asked for.
                None => Vec::with_capacity(cap),
            }
        }
        _ => Vec::with_capacity(n),
    }
}

/// Takes a [`BYTES`]-byte buffer out of `v` for reuse (leaving `v` empty),
/// if it is one and this thread's stack has room; otherwise leaves `v` alone
/// to be freed as usual.
#[inline(always)]
pub(crate) fn recycle<T>(v: &mut Vec<T>) {
    let Some(class) = class_of::<T>() else { return };
    if v.capacity() * size_of::<T>() != BYTES {
        return;
    }
    let _ = CACHE.try_with(|c| {
        if c.full(class) {
            return;
        }
        // The elements are plain data (storage dtypes are `Copy`), so
        // forgetting them drops nothing.
        let mut buf = ManuallyDrop::new(std::mem::take(v));
        let p = NonNull::new(buf.as_mut_ptr().cast::<u8>()).expect("a vector with capacity has a buffer");
        c.push(class, p);
    });
}

struct Cache {
    stacks: [[Cell<Option<NonNull<u8>>>; KEEP]; CLASSES],
    lens: [Cell<usize>; CLASSES],
}

impl Cache {
    #[inline(always)]
    fn pop(&self, class: usize) -> Option<NonNull<u8>> {
        let n = self.lens[class].get();
        if n == 0 {
            return None;
        }
        self.lens[class].set(n - 1);
        self.stacks[class][n - 1].take()
    }

    #[inline(always)]
    fn full(&self, class: usize) -> bool {
        self.lens[class].get() == KEEP
    }

    #[inline(always)]
    fn push(&self, class: usize, p: NonNull<u8>) {
        let n = self.lens[class].get();
        self.stacks[class][n].set(Some(p));
        self.lens[class].set(n + 1);
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        for class in 0..CLASSES {
            let layout = Layout::from_size_align(BYTES, 1 << class).expect("valid class layout");
            while let Some(p) = self.pop(class) {
                // SAFETY: stacked buffers were allocated by `Vec`s with this
                // layout (`BYTES` bytes at the class alignment) and are owned
                // by the stack.
                unsafe { dealloc(p.as_ptr(), layout) };
            }
        }
    }
}

thread_local! {
    static CACHE: Cache = const {
        Cache {
            stacks: [const { [const { Cell::new(None) }; KEEP] }; CLASSES],
            lens: [const { Cell::new(0) }; CLASSES],
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn buffers_are_reused_across_element_types_of_one_alignment_and_read_back_as_written() {
        // f32 and i32 share the 4-byte class: a recycled f32 buffer serves an
        // i32 vector. Values written after reuse must read back unchanged,
        // and the capacity is the class's.
        let mut a: Vec<f32> = with_capacity(3);
        assert_eq!(a.capacity(), BYTES / 4);
        a.extend([1.5, 2.5, 3.5]);
        let p = a.as_ptr() as usize;
        recycle(&mut a);
        assert!(a.is_empty() && a.capacity() == 0);
        let mut b: Vec<i32> = with_capacity(16);
        assert_eq!(b.as_ptr() as usize, p, "the recycled buffer is handed out again");
        b.extend(0..16);
        assert_eq!(b, (0..16).collect::<Vec<_>>());
        // Different alignment: a separate class.
        let mut h: Vec<f16> = with_capacity(1);
        h.push(f16::from_f32(0.25));
        assert_eq!(h.capacity(), BYTES / 2);
        assert_eq!(h[0].to_f32(), 0.25);
        recycle(&mut h);
        recycle(&mut b);
    }

    #[test]
    fn large_or_foreign_vectors_are_left_alone_and_stacks_stay_bounded() {
        let mut big: Vec<f64> = with_capacity(9);
        assert_eq!(big.capacity(), 9);
        big.extend([1.0; 9]);
        recycle(&mut big);
        assert_eq!(big.len(), 9, "a large vector is not taken");
        let mut odd: Vec<u8> = Vec::with_capacity(10);
        odd.push(1);
        recycle(&mut odd);
        assert_eq!(odd, vec![1], "a vector of another capacity is not taken");
        // More buffers than a stack keeps: the surplus is freed normally.
        let mut many: Vec<Vec<i64>> = (0..3 * KEEP).map(|_| with_capacity(8)).collect();
        for v in &mut many {
            recycle(v);
        }
        CACHE.with(|c| assert_eq!(c.lens[3].get(), KEEP));
        let again: Vec<Vec<i64>> = (0..KEEP + 1).map(|_| with_capacity(2)).collect();
        assert!(again.iter().all(|v| v.capacity() == BYTES / 8 && v.is_empty()));
    }
}
