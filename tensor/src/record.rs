//! Thread-local switches that decide whether ops record their provenance:
//! grad mode (for autograd) and trace mode (for the jit).

use std::cell::Cell;

/// Both switches in one thread-local, so an op reads them with one access.
#[derive(Clone, Copy)]
pub(crate) struct Mode {
    pub(crate) grad_enabled: bool,
    pub(crate) trace_depth: u32,
}

impl Mode {
    pub(crate) fn tracing(self) -> bool {
        self.trace_depth > 0
    }
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode { grad_enabled: true, trace_depth: 0 }) };
}

#[inline]
pub(crate) fn mode() -> Mode {
    MODE.with(|m| m.get())
}

fn update(f: impl FnOnce(&mut Mode)) {
    MODE.with(|m| {
        let mut v = m.get();
        f(&mut v);
        m.set(v);
    })
}

/// Whether ops on tensors that require grad record provenance (default: true).
pub fn is_grad_enabled() -> bool {
    mode().grad_enabled
}

/// Whether a trace is active on this thread: every op records provenance.
pub fn is_tracing() -> bool {
    mode().tracing()
}

/// Restores the previous grad mode when dropped.
#[must_use = "grad mode is restored when the guard is dropped"]
pub struct GradModeGuard {
    prev: bool,
}

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        let prev = self.prev;
        update(|m| m.grad_enabled = prev);
    }
}

/// Sets grad mode for the guard's lifetime.
pub fn set_grad_enabled(enabled: bool) -> GradModeGuard {
    let prev = is_grad_enabled();
    update(|m| m.grad_enabled = enabled);
    GradModeGuard { prev }
}

/// Disables gradient recording until the guard drops, as `torch.no_grad()`.
pub fn no_grad() -> GradModeGuard {
    set_grad_enabled(false)
}

/// Keeps a trace active on this thread until dropped (used by the jit).
#[must_use = "the trace ends when the guard is dropped"]
pub struct TraceGuard(());

impl Drop for TraceGuard {
    fn drop(&mut self) {
        update(|m| m.trace_depth -= 1);
    }
}

/// Starts recording every op's provenance on this thread.
pub fn start_trace() -> TraceGuard {
    update(|m| m.trace_depth += 1);
    TraceGuard(())
}
