//! Touching Python from knafeh's runtime threads, and never once the
//! interpreter is shutting down.
//!
//! knafeh's tokio threads are not Python threads: they attach to the
//! interpreter to complete asyncio futures, convert messages and run
//! handlers. When a program exits, CPython runs its `atexit` hooks and
//! then finalizes; a thread that attaches during finalization crashes the
//! process (`PyGILState_Release: thread state must be current`). So every
//! runtime thread goes through [`attach`], and an `atexit` hook (installed
//! by [`install_exit_hook`] the first time the runtime is used) closes the
//! gate before finalization starts and waits, without the GIL, for the
//! threads already inside Python to leave.
//!
//! Each compiled copy of knafeh-py (the `knafeh` module and every user
//! module with generated classes) has its own runtime threads, its own
//! gate and its own hook.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Once;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// Set by the exit hook: no runtime thread may attach any more.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Runtime threads that passed the gate and may be inside Python.
static INSIDE: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

/// How often the exit hook says that it is still waiting.
const EXIT_WARN_EVERY: Duration = Duration::from_secs(5);

struct Leave;

impl Drop for Leave {
    fn drop(&mut self) {
        INSIDE.fetch_sub(1, SeqCst);
    }
}

/// Runs `f` attached to the interpreter, or returns `None` without
/// touching Python when the interpreter is exiting.
pub(crate) fn attach<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    // Announce first, then check: the hook closes first, then waits for
    // INSIDE to drain, so no thread can pass the gate after the wait.
    INSIDE.fetch_add(1, SeqCst);
    let _leave = Leave;
    if CLOSED.load(SeqCst) {
        return None;
    }
    Python::try_attach(f)
}

/// Registers the exit hook once per process (idempotent, cheap after the
/// first call). A failure to register is logged; it only matters at exit.
pub(crate) fn install_exit_hook(py: Python<'_>) {
    HOOK.call_once(|| {
        let register = || -> PyResult<()> {
            let hook = pyo3::types::PyCFunction::new_closure(
                py,
                Some(c"_knafeh_close_runtime"),
                Some(c"Stops knafeh's runtime threads from touching Python at exit."),
                |args, _kwargs| close(args.py()),
            )?;
            py.import("atexit")?.call_method1("register", (hook,))?;
            Ok(())
        };
        if let Err(e) = register() {
            tracing::warn!(error = %e, "could not register knafeh's exit hook");
        }
    });
}

/// Whether the exit hook has run: new work must not start (its result
/// could never reach Python).
pub(crate) fn closed() -> bool {
    CLOSED.load(SeqCst)
}

/// The exit hook: closes the gate, then lets the threads already inside
/// Python finish (they need the GIL, so it is released while waiting).
/// It waits as long as they run, as Python waits for its non-daemon
/// threads: a thread still inside Python when finalization starts would
/// crash the process. A handler that never returns keeps the program
/// from exiting; the wait is logged every few seconds.
fn close(py: Python<'_>) {
    CLOSED.store(true, SeqCst);
    py.detach(|| {
        let mut warned = Instant::now();
        // This thread holds no pass, so INSIDE counts only runtime threads.
        while INSIDE.load(SeqCst) > 0 {
            if warned.elapsed() >= EXIT_WARN_EVERY {
                tracing::warn!(
                    threads = INSIDE.load(SeqCst),
                    "exit waits for Python code that knafeh runs (a handler still running)"
                );
                warned = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}
