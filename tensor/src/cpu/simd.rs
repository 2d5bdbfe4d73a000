//! Run-time CPU feature dispatch for hot loops. The default x86-64 target
//! only has SSE2; [`vectorized`] runs a closure inside a function compiled for
//! AVX-512 or AVX2+FMA when the CPU has them, so the closure's loops (inlined
//! there) use 16 or 8 lanes. Results match the baseline: no fast-math.
//! Only code inlined into the closure benefits: helpers it calls must be
//! `#[inline(always)]`.

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::sync::atomic::{AtomicU8, Ordering};

    /// 0 = unknown, 1 = baseline, 3 = AVX2+FMA, 4 = AVX-512.
    static LEVEL: AtomicU8 = AtomicU8::new(0);

    pub(super) fn level() -> u8 {
        match LEVEL.load(Ordering::Relaxed) {
            0 => {
                let l = if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("fma")
                {
                    4
                } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    3
                } else {
                    1
                };
                LEVEL.store(l, Ordering::Relaxed);
                l
            }
            l => l,
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
    pub(super) unsafe fn v4<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn v3<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// The vector extension this CPU has: 4 = the AVX-512 subset the
/// hand-written kernels use, 3 = AVX2 + FMA, 1 = baseline (or not x86-64).
pub(crate) fn level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        x86::level()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        1
    }
}

/// Runs `f` compiled for the best vector extension this CPU has.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match x86::level() {
            // SAFETY: level() verified the features these functions enable.
            4 => return unsafe { x86::v4(f) },
            // SAFETY: as above.
            3 => return unsafe { x86::v3(f) },
            _ => {}
        }
    }
    f()
}
