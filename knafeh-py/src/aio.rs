//! Completing asyncio futures from tokio, in batches.
//!
//! A finished call does not wake the event loop by itself: its result goes
//! into the loop's queue, and only the call that finds the queue empty
//! schedules a drain (`call_soon_threadsafe`, one GIL acquisition from a
//! tokio thread). The drain runs on the loop's thread, turns every queued
//! result into Python objects and completes the futures. Under
//! concurrency many calls share one wake-up.

use std::future::Future;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::gil;

/// Builds a call's Python result on the loop's thread.
type Convert = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

struct Completion {
    future: Py<PyAny>,
    convert: Convert,
}

/// The completion queue of one event loop.
pub(crate) struct Completer {
    event_loop: Py<PyAny>,
    queue: Mutex<Vec<Completion>>,
}

impl Completer {
    fn new(event_loop: Py<PyAny>) -> Arc<Self> {
        Arc::new(Completer {
            event_loop,
            queue: Mutex::new(Vec::new()),
        })
    }

    fn push(self: &Arc<Self>, completion: Completion) {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let was_empty = q.is_empty();
            q.push(completion);
            was_empty
        };
        if !was_empty {
            return; // a drain is already scheduled
        }
        let scheduled = gil::attach(|py| {
            let drain = Drain {
                completer: self.clone(),
            };
            // Formatting a PyErr needs the GIL: done here, inside.
            self.event_loop
                .call_method1(py, "call_soon_threadsafe", (drain,))
                .map(drop)
                .map_err(|e| e.to_string())
        });
        let why = match scheduled {
            Some(Ok(())) => return,
            Some(Err(e)) => e,
            None => "the interpreter is exiting".to_owned(),
        };
        // Nobody is waiting any more. Dropping the results without the
        // GIL only queues their reference counts for pyo3.
        tracing::debug!(why, "event loop gone; dropping call results");
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Runs on the loop: completes every queued future.
#[pyclass]
struct Drain {
    completer: Arc<Completer>,
}

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) {
        let batch = std::mem::take(
            &mut *self
                .completer
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for Completion { future, convert } in batch {
            let future = future.bind(py);
            // Cancelled meanwhile: the call was aborted already.
            if future
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .unwrap_or(true)
            {
                continue;
            }
            let outcome = match convert(py) {
                Ok(value) => future.call_method1("set_result", (value,)),
                Err(err) => future.call_method1("set_exception", (err.into_value(py),)),
            };
            if let Err(e) = outcome {
                tracing::debug!(error = %e, "could not complete an asyncio future");
            }
        }
    }
}

/// Aborts the call when its asyncio future is cancelled.
#[pyclass]
struct AbortOnCancel {
    handle: tokio::task::AbortHandle,
}

#[pymethods]
impl AbortOnCancel {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            self.handle.abort();
        }
        Ok(())
    }
}

/// One completer per event loop, remembered by the client that used it
/// last (a client normally lives on one loop).
#[derive(Clone, Default)]
pub(crate) struct LoopCompleter(Arc<Mutex<Option<Arc<Completer>>>>);

impl std::fmt::Debug for LoopCompleter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoopCompleter")
    }
}

impl LoopCompleter {
    fn for_loop(&self, py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> Arc<Completer> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(c) if c.event_loop.bind(py).is(event_loop) => c.clone(),
            _ => {
                let c = Completer::new(event_loop.clone().unbind());
                *slot = Some(c.clone());
                c
            }
        }
    }
}

pub(crate) fn get_running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET_RUNNING_LOOP
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
        })?
        .bind(py)
        .call0()
}

/// A coroutine (a [`Pending`]) for the running loop that `work` (run on
/// knafeh's tokio runtime) completes with `convert`'s result. Cancelling
/// it aborts `work`.
pub(crate) fn awaitable<'py, T, W>(
    py: Python<'py>,
    completers: &LoopCompleter,
    work: W,
    convert: impl FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    W: Future<Output = T> + Send + 'static,
{
    gil::install_exit_hook(py);
    if gil::closed() {
        // E.g. an `atexit` handler that runs after knafeh's: the result
        // could never be delivered.
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "knafeh cannot start async work: the interpreter is exiting (use the blocking client in atexit handlers)",
        ));
    }
    let event_loop = get_running_loop(py)?;
    let completer = completers.for_loop(py, &event_loop);
    let future = event_loop.call_method0("create_future")?;
    let handle = {
        let future = future.clone().unbind();
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            let out = work.await;
            completer.push(Completion {
                future,
                convert: Box::new(move |py| convert(py, out)),
            });
        })
    };
    future.call_method1(
        "add_done_callback",
        (AbortOnCancel {
            handle: handle.abort_handle(),
        },),
    )?;
    Ok(Bound::new(
        py,
        Pending {
            future: future.unbind(),
        },
    )?
    .into_any())
}

/// Work running on knafeh's runtime, as a coroutine: `await` it, or hand
/// it to `asyncio.create_task`. Closing or cancelling it cancels the work.
#[pyclass(module = "knafeh", name = "Pending", frozen)]
pub(crate) struct Pending {
    /// The asyncio future the work completes.
    future: Py<PyAny>,
}

#[pymethods]
impl Pending {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.step(py)
    }

    /// Coroutine protocol: yields the future until it is done, then
    /// returns its result (`StopIteration`) or raises its exception.
    fn send(&self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.step(py)
    }

    /// Coroutine protocol: cancels the work and raises the exception in
    /// the awaiting code (how asyncio delivers a cancellation).
    #[pyo3(signature = (kind, value = None, traceback = None))]
    fn throw(
        &self,
        py: Python<'_>,
        kind: &Bound<'_, PyAny>,
        value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.future.bind(py).call_method0("cancel")?;
        Err(thrown(py, kind, value, traceback)?)
    }

    /// Coroutine protocol: cancels the work if it has not finished.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.future.bind(py).call_method0("cancel").map(drop)
    }
}

/// The exception `throw(kind, value, traceback)` raises, as a generator
/// would: an instance as given, or `kind(value)`.
fn thrown(
    py: Python<'_>,
    kind: &Bound<'_, PyAny>,
    value: Option<&Bound<'_, PyAny>>,
    traceback: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyErr> {
    let base = py.get_type::<pyo3::exceptions::PyBaseException>();
    let value = value.filter(|v| !v.is_none());
    let exc = match value {
        Some(v) if v.is_instance(&base)? => v.clone(),
        Some(v) => kind.call1((v,))?,
        None if kind.is_instance(&base)? => kind.clone(),
        None => kind.call0()?,
    };
    let exc = match traceback.filter(|t| !t.is_none()) {
        Some(tb) => exc.call_method1("with_traceback", (tb,))?,
        None => exc,
    };
    Ok(PyErr::from_value(exc))
}

impl Pending {
    fn step(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let future = self.future.bind(py);
        if !future.call_method0("done")?.is_truthy()? {
            // What `asyncio.Future.__await__` does: tell the task to wait.
            future.setattr("_asyncio_future_blocking", true)?;
            return Ok(future.clone().unbind());
        }
        let value = future.call_method0("result")?;
        Err(PyStopIteration::new_err((value.unbind(),)))
    }
}

/// Runs `awaitable` on `event_loop` (another thread's) and waits for it
/// from Rust; `convert` runs on the loop's thread, with the GIL, when it
/// is done (a cancelled task gives `CancelledError`). The future yields
/// `None` if the loop dropped the task. Dropping the future cancels the
/// asyncio task.
pub(crate) fn run_on_loop<T: Send + 'static>(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    awaitable: &Bound<'_, PyAny>,
    convert: impl FnOnce(Python<'_>, PyResult<Bound<'_, PyAny>>) -> T + Send + 'static,
) -> PyResult<impl Future<Output = Option<T>> + Send + 'static> {
    let asyncio = py.import("asyncio")?;
    // `run_coroutine_threadsafe` takes coroutines only.
    let coro = if asyncio
        .call_method1("iscoroutine", (awaitable,))?
        .extract::<bool>()?
    {
        awaitable.clone()
    } else {
        crate::knafeh_py_module(py)?
            .getattr("_await")?
            .call1((awaitable,))?
    };
    let cf = asyncio.call_method1("run_coroutine_threadsafe", (coro, event_loop))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<T>();
    let once = Mutex::new(Some((tx, convert)));
    let callback = pyo3::types::PyCFunction::new_closure(
        py,
        None,
        None,
        move |args, _kwargs| -> PyResult<()> {
            let fut = args.get_item(0)?;
            let result = if fut.call_method0("cancelled")?.extract::<bool>()? {
                Err(pyo3::exceptions::asyncio::CancelledError::new_err(
                    "cancelled",
                ))
            } else {
                fut.call_method0("result")
            };
            if let Some((tx, convert)) = once.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(convert(args.py(), result));
            }
            Ok(())
        },
    )?;
    cf.call_method1("add_done_callback", (callback,))?;
    let mut guard = CancelOnDrop(Some(cf.unbind()));
    Ok(async move {
        let out = rx.await.ok();
        guard.disarm();
        out
    })
}

/// Cancels a `concurrent.futures.Future` (and so its asyncio task) when the
/// Rust side stops waiting for it.
struct CancelOnDrop(Option<Py<PyAny>>);

impl CancelOnDrop {
    /// The task finished: nothing to cancel.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cf) = self.0.take() {
            gil::attach(|py| {
                let _ = cf.bind(py).call_method0("cancel");
            });
        }
    }
}
