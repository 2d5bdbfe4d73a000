//! Thread-local switches that decide whether ops record their provenance:
//! grad mode (for autograd) and trace mode (for the jit).

use std::cell::Cell;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
    static TRACE_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Whether ops on tensors that require grad record provenance (default: true).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Whether a trace is active on this thread: every op records provenance.
pub fn is_tracing() -> bool {
    TRACE_DEPTH.with(|t| t.get() > 0)
}

/// Restores the previous grad mode when dropped.
#[must_use = "grad mode is restored when the guard is dropped"]
pub struct GradModeGuard {
    prev: bool,
}

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.prev));
    }
}

/// Sets grad mode for the guard's lifetime.
pub fn set_grad_enabled(enabled: bool) -> GradModeGuard {
    let prev = GRAD_ENABLED.with(|g| g.replace(enabled));
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
        TRACE_DEPTH.with(|t| t.set(t.get() - 1));
    }
}

/// Starts recording every op's provenance on this thread.
pub fn start_trace() -> TraceGuard {
    TRACE_DEPTH.with(|t| t.set(t.get() + 1));
    TraceGuard(())
}
