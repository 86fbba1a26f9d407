//! Calls whose request is a stream (client streaming, bidirectional), for
//! generated clients: the requests come from a Python iterable, an async
//! iterable, or the `send()` of a [`BidiCall`]; a pump task converts them
//! and hands them to knafeh as they come.
//!
//! Python is never waited for on a runtime thread: an iterable is pulled
//! on a blocking thread, an async iterable on its event loop (converted
//! there, with the GIL the loop holds anyway), and `send()` converts on
//! the caller's thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use knafeh::__private::Message;
use knafeh::{CallOptions, Client, Status, StreamSender, Streaming};
use pyo3::exceptions::asyncio::InvalidStateError;
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::client::{
    block_on, call_options, item_to_py, request_from_py, response_to_py, BlockingStream,
    NextFuture, NextItem, PyClient, PyItems, ToPy,
};
use crate::{aio, gil, status_to_pyerr};

/// Converted requests that may wait for the pump.
const REQUEST_BUFFER: usize = 4;

/// Where a call's requests come from.
enum Source {
    /// An iterator, pulled on a blocking thread.
    Sync(Arc<Py<PyAny>>),
    /// An async iterator, pulled on the event loop of the caller.
    Async {
        iter: Arc<Py<PyAny>>,
        event_loop: Arc<Py<PyAny>>,
    },
}

/// Why the pump stopped early: the status that cancels the call, and the
/// exception the user's iterator raised, if that is why.
type Pulled<T> = Result<Option<T>, Box<Stopped>>;

/// The status that cancels the call, and the exception the user's
/// iterator raised, if that is why.
type Stopped = (Status, Option<PyErr>);

/// Why the requests failed: a request that does not convert, or an
/// exception the user's iterator raised (the caller gets that exception
/// back rather than a status). The pump reports it here and the call is
/// dropped, which cancels it on the server.
///
/// Dropping the call, rather than ending the request stream with an
/// error item, also sidesteps a race in knafeh 0.1's client pump: a
/// request stream whose messages and error are all ready at once
/// sometimes leaves the call hanging.
#[derive(Clone, Default)]
struct Failure(Arc<FailureState>);

#[derive(Default)]
struct FailureState {
    slot: Mutex<(Option<Status>, Option<PyErr>)>,
    notify: tokio::sync::Notify,
}

impl Failure {
    fn fail(&self, status: Status, err: Option<PyErr>) {
        {
            let mut slot = self.0.slot.lock().unwrap_or_else(|p| p.into_inner());
            if slot.0.is_some() {
                return;
            }
            *slot = (Some(status), err);
        }
        self.0.notify.notify_one();
    }

    fn status(&self) -> Option<Status> {
        self.0
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Completes with the status once the requests have failed.
    async fn failed(&self) -> Status {
        loop {
            let notified = self.0.notify.notified();
            if let Some(status) = self.status() {
                return status;
            }
            notified.await;
        }
    }

    /// The exception for a call that ended with `status`.
    fn error(&self, py: Python<'_>, status: &Status) -> PyErr {
        self.0
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .take()
            .unwrap_or_else(|| status_to_pyerr(py, status))
    }
}

fn exiting() -> Status {
    Status::unavailable("the Python interpreter is exiting")
}

/// Converts the request at `index` of the stream, naming it on failure.
fn convert<Req: DeserializeOwned>(
    path: &str,
    index: usize,
    value: &Bound<'_, PyAny>,
) -> Pulled<Req> {
    crate::frompy::from_py::<Req>(value).map(Some).map_err(|e| {
        let status = Status::invalid_argument(format!(
            "{path}: requests[{index}] does not convert to {}: {e}",
            std::any::type_name::<Req>()
        ));
        Box::new((status, None))
    })
}

/// The iterator raised: cancel the call, keep the exception for the caller.
fn raised<T>(py: Python<'_>, path: &str, err: PyErr) -> Pulled<T> {
    Err(raised_error(py, path, err))
}

/// The status that cancels the call, and the exception itself.
fn raised_error(py: Python<'_>, path: &str, err: PyErr) -> Box<Stopped> {
    let value = err.value(py);
    let type_name = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".to_owned());
    let status = Status::cancelled(format!(
        "{path}: the request iterator raised {type_name}: {value}"
    ));
    Box::new((status, Some(err)))
}

impl Source {
    /// The source of `requests`: an async iterable (when `allow_async`,
    /// pulled on the running loop) or an iterable.
    ///
    /// # Errors
    /// `TypeError` for one request (a mapping) or a non-iterable.
    fn new(
        py: Python<'_>,
        path: &str,
        requests: &Bound<'_, PyAny>,
        allow_async: bool,
    ) -> PyResult<Source> {
        if requests.is_instance_of::<PyDict>() || requests.cast::<PyMapping>().is_ok() {
            return Err(PyTypeError::new_err(format!(
                "{path}: pass an iterable of requests (e.g. a list of dicts), not one request"
            )));
        }
        if requests.hasattr("__aiter__")? {
            if !allow_async {
                return Err(PyTypeError::new_err(format!(
                    "{path}: the blocking client takes an iterable of requests, not an async iterable"
                )));
            }
            let iter = requests.call_method0("__aiter__")?;
            let event_loop = aio::get_running_loop(py)?;
            return Ok(Source::Async {
                iter: Arc::new(iter.unbind()),
                event_loop: Arc::new(event_loop.unbind()),
            });
        }
        let iter = requests.try_iter().map_err(|_| {
            let type_name = requests
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            PyTypeError::new_err(format!(
                "{path}: expected an iterable of requests, got {type_name}"
            ))
        })?;
        Ok(Source::Sync(Arc::new(iter.into_any().unbind())))
    }

    /// Feeds the requests to `tx` until they end, fail, or the call ends.
    async fn pump<Req>(self, path: &'static str, tx: StreamSender<Req>, failure: Failure)
    where
        Req: Message + DeserializeOwned,
    {
        let mut index = 0;
        loop {
            let next = tokio::select! {
                next = self.next::<Req>(path, index) => next,
                () = tx.closed() => break,
            };
            match next {
                Ok(Some(req)) => {
                    if tx.send(req).await.is_err() {
                        break;
                    }
                }
                Ok(None) => return,
                Err(stopped) => {
                    let (status, err) = *stopped;
                    failure.fail(status, err);
                    // Not ending the requests: the server must not take
                    // them as complete. The call is dropped meanwhile.
                    tx.closed().await;
                    break;
                }
            }
            index += 1;
        }
        self.close();
    }

    /// The next request, converted; `None` at the end.
    async fn next<Req: DeserializeOwned + Send + 'static>(
        &self,
        path: &'static str,
        index: usize,
    ) -> Pulled<Req> {
        match self {
            Source::Sync(iter) => {
                let iter = iter.clone();
                let pulled = tokio::task::spawn_blocking(move || {
                    gil::attach(|py| match iter.bind(py).call_method0("__next__") {
                        Ok(v) => convert::<Req>(path, index, &v),
                        Err(e) if e.is_instance_of::<PyStopIteration>(py) => Ok(None),
                        Err(e) => raised(py, path, e),
                    })
                })
                .await;
                match pulled {
                    Ok(Some(pulled)) => pulled,
                    Ok(None) => Err(Box::new((exiting(), None))),
                    Err(e) => Err(Box::new((
                        Status::internal(format!("{path}: the request thread failed: {e}")),
                        None,
                    ))),
                }
            }
            Source::Async { iter, event_loop } => {
                let started = gil::attach(|py| {
                    let next = iter.bind(py).call_method0("__anext__").and_then(|next| {
                        aio::run_on_loop(py, event_loop.bind(py), &next, move |py, out| match out {
                            Ok(v) => convert::<Req>(path, index, &v),
                            Err(e) if e.is_instance_of::<PyStopAsyncIteration>(py) => Ok(None),
                            Err(e) => raised(py, path, e),
                        })
                    });
                    next.map_err(|e| raised_error(py, path, e))
                });
                match started {
                    None => Err(Box::new((exiting(), None))),
                    Some(Err(e)) => Err(e),
                    Some(Ok(fut)) => fut.await.unwrap_or_else(|| {
                        Err(Box::new((
                            Status::cancelled(format!(
                                "{path}: the event loop of the request iterator stopped"
                            )),
                            None,
                        )))
                    }),
                }
            }
        }
    }

    /// The call ended before the requests did: close the iterator so that
    /// a generator's `finally` blocks run (on a blocking thread, or on the
    /// loop for an async generator).
    fn close(self) {
        match self {
            Source::Sync(iter) => {
                tokio::task::spawn_blocking(move || {
                    gil::attach(|py| {
                        let iter = iter.bind(py);
                        if iter.hasattr("close").unwrap_or(false) {
                            let _ = iter.call_method0("close");
                        }
                    })
                });
            }
            Source::Async { iter, event_loop } => {
                gil::attach(|py| {
                    let iter = iter.bind(py);
                    if !iter.hasattr("aclose").unwrap_or(false) {
                        return;
                    }
                    let close = iter.call_method0("aclose").and_then(|c| {
                        aio::run_on_loop(py, event_loop.bind(py), &c, |_py, _out| ())
                    });
                    if let Ok(f) = close {
                        tokio::spawn(f);
                    }
                });
            }
        }
    }
}

/// The requests of a call from `source`, and the task that pumps them
/// (to spawn on the runtime once the call starts).
fn pumped<Req: Message + DeserializeOwned>(
    path: &'static str,
    source: Source,
    failure: &Failure,
) -> (Streaming<Req>, impl Future<Output = ()> + Send + 'static) {
    let (tx, requests) = Streaming::channel(REQUEST_BUFFER);
    (requests, source.pump(path, tx, failure.clone()))
}

/// `await client.method(requests)` for a client-streaming method:
/// `requests` is an iterable or async iterable of requests (dicts); the
/// awaitable gives the one reply.
///
/// # Errors
/// `TypeError` for requests that are not an iterable; the call raises
/// `RpcError` (a request that does not convert: `INVALID_ARGUMENT` naming
/// `requests[i]` and the field), or the exception the iterator raised.
pub fn client_streaming_async<'py, Req, Resp>(
    py: Python<'py>,
    client: &PyClient,
    path: &'static str,
    requests: &Bound<'py, PyAny>,
    timeout: Option<f64>,
    metadata: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>>
where
    Req: Message + DeserializeOwned,
    Resp: Message + Serialize,
{
    let source = Source::new(py, path, requests, true)?;
    let opts = call_options(py, timeout, metadata)?;
    let failure = Failure::default();
    let work = client_streaming_call::<Req, Resp>(&client.client, path, source, opts, &failure);
    aio::awaitable(py, &client.completers, work, move |py, out| match out {
        Ok(resp) => response_to_py(py, path, resp.get_ref()),
        Err(status) => Err(failure.error(py, &status)),
    })
}

/// `client.method(requests)` for a client-streaming method of the blocking
/// client: `requests` is an iterable; returns the one reply.
///
/// # Errors
/// As [`client_streaming_async`]; async iterables are refused.
pub fn client_streaming_blocking<'py, Req, Resp>(
    py: Python<'py>,
    client: &PyClient,
    path: &'static str,
    requests: &Bound<'py, PyAny>,
    timeout: Option<f64>,
    metadata: Option<&Bound<'py, PyAny>>,
) -> PyResult<Py<PyAny>>
where
    Req: Message + DeserializeOwned,
    Resp: Message + Serialize,
{
    let source = Source::new(py, path, requests, false)?;
    let opts = call_options(py, timeout, metadata)?;
    let failure = Failure::default();
    let work = client_streaming_call::<Req, Resp>(&client.client, path, source, opts, &failure);
    match block_on(py, work)? {
        Ok(resp) => response_to_py(py, path, resp.get_ref()),
        Err(status) => Err(failure.error(py, &status)),
    }
}

/// The client-streaming call with its request pump (run on the runtime).
fn client_streaming_call<Req, Resp>(
    client: &Client,
    path: &'static str,
    source: Source,
    opts: CallOptions,
    failure: &Failure,
) -> impl Future<Output = Result<knafeh::Response<Resp>, Status>> + Send + 'static
where
    Req: Message + DeserializeOwned,
    Resp: Message,
{
    let client = client.clone();
    let (requests, pump) = pumped::<Req>(path, source, failure);
    let failure = failure.clone();
    async move {
        tokio::spawn(pump);
        let call = client.client_streaming::<Req, Resp>(path, requests, opts);
        tokio::select! {
            biased;
            status = failure.failed() => Err(status),
            out = call => out,
        }
    }
}

/// How a bidirectional call ended (set once), shared by its reader, its
/// sender and the call object.
#[derive(Clone, Default)]
struct Ended(Arc<Mutex<Option<Status>>>);

impl Ended {
    fn get(&self) -> Option<Status> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records `status` unless the call had ended already; whether it had
    /// not.
    fn set(&self, status: Status) -> bool {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let first = slot.is_none();
        slot.get_or_insert(status);
        first
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The replies of a bidirectional call, read by its driver task. Dropping
/// them aborts the driver, which cancels the call.
struct Replies {
    rx: mpsc::Receiver<Result<ToPy, Status>>,
    ended: Ended,
    failure: Failure,
    /// Whether the caller has been given the call's error status.
    told: bool,
    _driver: AbortOnDrop,
}

impl Replies {
    /// The error the caller sees for `status` (the iterator's exception
    /// when that is why the call ended).
    fn error(&mut self, status: Status) -> Option<Result<ToPy, Status>> {
        self.told = true;
        let failure = self.failure.clone();
        let raise: ToPy = Box::new(move |py| Err(failure.error(py, &status)));
        Some(Ok(raise))
    }
}

impl NextItem for Replies {
    fn next(&mut self) -> NextFuture<'_> {
        Box::pin(async move {
            match self.rx.recv().await {
                Some(Ok(item)) => Some(Ok(item)),
                Some(Err(status)) => self.error(status),
                // The driver is gone: the end, unless the call was
                // cancelled and the caller has not been told.
                None => match self.ended.get() {
                    Some(status) if !self.told && status.code() != knafeh::Code::Ok => {
                        self.error(status)
                    }
                    _ => None,
                },
            }
        })
    }
}

/// Runs a bidirectional call: waits for it to start, then hands its
/// replies to `replies` as the caller takes them (converted on the
/// caller's thread).
async fn drive<Resp: Message + Serialize>(
    call: impl Future<Output = Result<Streaming<Resp>, Status>>,
    path: &'static str,
    replies: mpsc::Sender<Result<ToPy, Status>>,
    ended: Ended,
    failure: Failure,
) {
    let started = tokio::select! {
        biased;
        status = failure.failed() => Err(status),
        started = call => started,
    };
    let mut stream = match started {
        Ok(stream) => stream,
        Err(status) => {
            ended.set(status.clone());
            let _ = replies.send(Err(status)).await;
            return;
        }
    };
    loop {
        let Ok(permit) = replies.reserve().await else {
            return;
        };
        let next = tokio::select! {
            biased;
            status = failure.failed() => Some(Err(status)),
            next = stream.message() => next,
        };
        match next {
            Some(Ok(item)) => permit.send(Ok(Box::new(move |py| response_to_py(py, path, &item)))),
            Some(Err(status)) => {
                ended.set(status.clone());
                permit.send(Err(status));
                return;
            }
            None => {
                ended.set(Status::ok());
                return;
            }
        }
    }
}

/// A started bidirectional call: its replies, the sender `send()` uses
/// (when the requests do not come from an iterable), and how it ended.
struct Bidi {
    replies: Replies,
    sender: Option<Box<dyn SendRequest>>,
    driver: tokio::task::AbortHandle,
    ended: Ended,
}

/// Starts a bidirectional call on the runtime, its requests from `source`
/// or, without one, from `send()`.
fn start_bidi<Req, Resp>(
    client: &PyClient,
    path: &'static str,
    source: Option<Source>,
    opts: CallOptions,
) -> Bidi
where
    Req: Message + DeserializeOwned,
    Resp: Message + Serialize,
{
    let failure = Failure::default();
    let ended = Ended::default();
    let (requests, pump, sender) = match source {
        Some(source) => {
            let (requests, pump) = pumped::<Req>(path, source, &failure);
            (requests, Some(pump), None)
        }
        None => {
            let (tx, requests) = Streaming::channel(REQUEST_BUFFER);
            let sender: Box<dyn SendRequest> = Box::new(TypedSender { path, tx });
            (requests, None, Some(sender))
        }
    };
    let (reply_tx, rx) = mpsc::channel(1);
    let c = client.client.clone();
    let driver_ended = ended.clone();
    let driver_failure = failure.clone();
    let driver = pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
        if let Some(pump) = pump {
            tokio::spawn(pump);
        }
        let call = c.bidi_streaming::<Req, Resp>(path, requests, opts);
        drive(call, path, reply_tx, driver_ended, driver_failure).await
    });
    let driver = driver.abort_handle();
    let replies = Replies {
        rx,
        ended: ended.clone(),
        failure,
        told: false,
        _driver: AbortOnDrop(driver.clone()),
    };
    Bidi {
        replies,
        sender,
        driver,
        ended,
    }
}

/// The future that sends one converted request.
type SendFuture = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// Converts and sends `send()`'s requests; object-safe over the type.
trait SendRequest: Send + Sync {
    /// Converts the request (as one object or keyword fields, like a
    /// unary call's) with the GIL held, and returns the future that sends
    /// it.
    fn prepare(
        &self,
        py: Python<'_>,
        request: Option<&Bound<'_, PyAny>>,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<SendFuture>;

    /// Lets go of the sender once the call is over. Dropping it at once
    /// would end the requests, which may reach the server as a normal
    /// end (a FIN) before the cancellation that is on its way.
    fn retire(self: Box<Self>);
}

struct TypedSender<Req> {
    path: &'static str,
    tx: StreamSender<Req>,
}

impl<Req: Message + DeserializeOwned> SendRequest for TypedSender<Req> {
    fn prepare(
        &self,
        py: Python<'_>,
        request: Option<&Bound<'_, PyAny>>,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<SendFuture> {
        let req: Req = request_from_py(py, self.path, request, fields)?;
        let tx = self.tx.clone();
        let path = self.path;
        Ok(Box::pin(async move {
            tx.send(req).await.map_err(|e| {
                e.status()
                    .cloned()
                    .unwrap_or_else(|| Status::cancelled(format!("{path}: the call has ended")))
            })
        }))
    }

    fn retire(self: Box<Self>) {
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move { self.tx.closed().await });
    }
}

/// `client.method(requests=None)` for a bidirectional method of the async
/// client: starts the call at once and returns its [`BidiCall`]. With an
/// iterable or async iterable, the requests come from it; without, from
/// `await call.send(...)`.
///
/// # Errors
/// `TypeError` for requests that are not an iterable; `RuntimeError`
/// without a running event loop.
pub fn bidi_streaming_async<'py, Req, Resp>(
    py: Python<'py>,
    client: &PyClient,
    path: &'static str,
    requests: Option<&Bound<'py, PyAny>>,
    timeout: Option<f64>,
    metadata: Option<&Bound<'py, PyAny>>,
) -> PyResult<BidiCall>
where
    Req: Message + DeserializeOwned,
    Resp: Message + Serialize,
{
    // Replies and `send()` complete futures on the caller's loop.
    aio::get_running_loop(py)?;
    let source = requests
        .map(|r| Source::new(py, path, r, true))
        .transpose()?;
    let opts = call_options(py, timeout, metadata)?;
    let from_iterable = source.is_some();
    let bidi = start_bidi::<Req, Resp>(client, path, source, opts);
    let items: PyItems = Box::new(bidi.replies);
    Ok(BidiCall {
        path,
        items: Arc::new(tokio::sync::Mutex::new(items)),
        sender: Mutex::new(bidi.sender),
        from_iterable,
        driver: bidi.driver,
        ended: bidi.ended,
        completers: client.completers.clone(),
    })
}

/// `client.method(requests)` for a bidirectional method of the blocking
/// client: starts the call with the requests of an iterable and returns
/// an iterator over the replies (dropping it cancels the call).
///
/// # Errors
/// `TypeError` for requests that are not an iterable, or an async one.
pub fn bidi_streaming_blocking<'py, Req, Resp>(
    py: Python<'py>,
    client: &PyClient,
    path: &'static str,
    requests: &Bound<'py, PyAny>,
    timeout: Option<f64>,
    metadata: Option<&Bound<'py, PyAny>>,
) -> PyResult<BlockingStream>
where
    Req: Message + DeserializeOwned,
    Resp: Message + Serialize,
{
    gil::install_exit_hook(py);
    let source = Source::new(py, path, requests, false)?;
    let opts = call_options(py, timeout, metadata)?;
    let bidi = start_bidi::<Req, Resp>(client, path, Some(source), opts);
    let items: PyItems = Box::new(bidi.replies);
    Ok(BlockingStream {
        items: Arc::new(tokio::sync::Mutex::new(items)),
    })
}

/// A bidirectional call of the async client: `async for reply in call`
/// reads the replies while `await call.send(request)` (or
/// `call.send(**fields)`) sends requests, independently;
/// `await call.done_writing()` ends the requests and keeps the replies
/// coming; `call.cancel()` cancels the call. Dropping the object cancels
/// the call too.
///
/// ```python
/// call = client.chat()
/// await call.send(name="Ada")
/// print(await anext(call))        # {"message": "Hello, Ada!"}
/// await call.done_writing()
/// async for reply in call: ...    # the rest, until the server ends
/// ```
#[pyclass(module = "knafeh", name = "BidiCall")]
pub struct BidiCall {
    path: &'static str,
    items: Arc<tokio::sync::Mutex<PyItems>>,
    /// `None` after `done_writing()`, or when the requests come from an
    /// iterable.
    sender: Mutex<Option<Box<dyn SendRequest>>>,
    from_iterable: bool,
    driver: tokio::task::AbortHandle,
    ended: Ended,
    completers: aio::LoopCompleter,
}

#[pymethods]
impl BidiCall {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next reply; `StopAsyncIteration` after the last; `RpcError`
    /// when the call fails (the replies before the failure come first).
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let items = self.items.clone();
        let next = async move { items.lock().await.next().await };
        aio::awaitable(py, &self.completers, next, |py, item| {
            item_to_py(py, item, PyStopAsyncIteration::new_err(()))
        })
    }

    /// Sends one request (one object, or keyword fields); the awaitable
    /// completes once it is queued (it waits while the server is not
    /// reading). Await each `send()` before the next: requests go out in
    /// the order they are queued.
    ///
    /// Raises `RpcError(INVALID_ARGUMENT)` at once for a request that does
    /// not convert (the call goes on); `RpcError` with the call's status
    /// once the call has failed or been cancelled;
    /// `asyncio.InvalidStateError` after `done_writing()`, after the call
    /// ended successfully, or when the requests come from an iterable.
    #[pyo3(signature = (request = None, /, **fields))]
    fn send<'py>(
        &self,
        py: Python<'py>,
        request: Option<&Bound<'py, PyAny>>,
        fields: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_open(py)?;
        let sending = {
            let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
            let Some(sender) = sender.as_ref() else {
                return Err(self.no_sender());
            };
            sender.prepare(py, request, fields)?
        };
        let ended = self.ended.clone();
        aio::awaitable(py, &self.completers, sending, move |py, out| match out {
            Ok(()) => Ok(py.None()),
            // The call's own status when it is known by now.
            Err(status) => Err(status_to_pyerr(py, &ended.get().unwrap_or(status))),
        })
    }

    /// Ends the requests (half-close); the replies keep coming. Calling it
    /// again does nothing.
    fn done_writing<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.from_iterable {
            return Err(self.no_sender());
        }
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        aio::awaitable(py, &self.completers, async {}, |py, ()| Ok(py.None()))
    }

    /// Cancels the call: the server sees it cancelled, reading raises
    /// `RpcError(CANCELLED)`. Returns whether the call was still running.
    fn cancel(&self) -> bool {
        let status = Status::cancelled(format!("{}: the call was cancelled", self.path));
        let was_running = self.ended.set(status);
        self.driver.abort();
        self.retire_sender();
        was_running
    }

    /// Whether the call has ended (successfully, with an error, or
    /// cancelled).
    fn done(&self) -> bool {
        self.ended.get().is_some()
    }

    fn __repr__(&self) -> String {
        let state = match self.ended.get() {
            None => "running".to_owned(),
            Some(s) => s.code().as_str().to_owned(),
        };
        format!("BidiCall({}, {state})", self.path)
    }
}

impl Drop for BidiCall {
    fn drop(&mut self) {
        self.retire_sender();
    }
}

impl BidiCall {
    /// `send()` is over (cancelled or dropped): see [`SendRequest::retire`].
    fn retire_sender(&self) {
        if let Some(sender) = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take() {
            sender.retire();
        }
    }

    /// Refuses `send()` once the call has ended.
    fn check_open(&self, py: Python<'_>) -> PyResult<()> {
        match self.ended.get() {
            None => Ok(()),
            Some(s) if s.code() == knafeh::Code::Ok => Err(InvalidStateError::new_err(format!(
                "{}: the call has ended; it takes no more requests",
                self.path
            ))),
            Some(s) => Err(status_to_pyerr(py, &s)),
        }
    }

    fn no_sender(&self) -> PyErr {
        let why = if self.from_iterable {
            "the requests of this call come from the iterable it was given; send() and done_writing() are for calls started without one"
        } else {
            "done_writing() was called; the call takes no more requests"
        };
        InvalidStateError::new_err(format!("{}: {why}", self.path))
    }
}
