//! The client runtime behind generated `{Trait}Client` and
//! `{Trait}BlockingClient` classes: connecting, unary calls and streams.

use super::*;
use std::future::Future;
use std::time::Duration;

use knafeh::{CallOptions, Client, Status};
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration, PyTypeError};
use pyo3::types::PyDict;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How a Python client connects; built by generated `connect` methods.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// `host:port`.
    pub addr: String,
    /// CA file the server certificate must chain to.
    pub ca: Option<String>,
    /// Name the certificate must carry (default: the host of `addr`).
    pub server_name: Option<String>,
    /// Skip certificate verification (development only).
    pub insecure: bool,
    /// `"bincode"` (default) or `"json"`.
    pub codec: Option<String>,
    /// Default per-call timeout, seconds.
    pub timeout: Option<f64>,
    /// Connect timeout, seconds.
    pub connect_timeout: Option<f64>,
    /// How requests are compressed: `"identity"`/`"none"` (default),
    /// `"gzip"` or `"zstd"`.
    pub compression: Option<String>,
    /// Send calls to idempotent methods as 0-RTT early data on resumed
    /// connections (see `ClientBuilder::zero_rtt`).
    pub zero_rtt: bool,
}

fn seconds(what: &str, v: f64) -> Result<Duration, Status> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        Status::invalid_argument(format!(
            "{what} must be a non-negative number of seconds, got {v}"
        ))
    })
}

impl ConnectOptions {
    fn builder(&self) -> Result<knafeh::ClientBuilder, Status> {
        let mut b = Client::builder(self.addr.clone());
        if let Some(ca) = &self.ca {
            b = b.ca_file(ca);
        }
        if let Some(name) = &self.server_name {
            b = b.server_name(name);
        }
        if self.insecure {
            b = b.insecure_skip_verify();
        }
        if let Some(name) = &self.codec {
            b = b.codec(crate::codec::from_name(name).map_err(Status::invalid_argument)?);
        }
        if let Some(t) = self.timeout {
            b = b.default_timeout(seconds("timeout", t)?);
        }
        if let Some(name) = &self.compression {
            let c: knafeh::Compression = name.parse().map_err(Status::invalid_argument)?;
            b = b.compression(c);
        }
        if let Some(t) = self.connect_timeout {
            b = b.connect_timeout(seconds("connect_timeout", t)?);
        }
        Ok(b.zero_rtt(self.zero_rtt))
    }
}

/// A connected client, shared by a generated Python class.
#[derive(Clone, Debug)]
pub struct PyClient {
    pub(crate) client: Client,
    pub(crate) completers: aio::LoopCompleter,
}

async fn connect(opts: ConnectOptions) -> Result<PyClient, Status> {
    let client = opts.builder()?.connect().await?;
    Ok(PyClient {
        client,
        completers: Default::default(),
    })
}

/// `await Class.connect(...)`: connects, then wraps the client.
pub fn connect_async<'py, T, F>(
    py: Python<'py>,
    opts: ConnectOptions,
    wrap: F,
) -> PyResult<Bound<'py, PyAny>>
where
    F: FnOnce(PyClient) -> T + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    use pyo3::IntoPyObjectExt;
    let once = aio::LoopCompleter::default();
    aio::awaitable(py, &once, connect(opts), move |py, out| match out {
        Ok(c) => wrap(c).into_py_any(py),
        Err(status) => Err(status_to_pyerr(py, &status)),
    })
}

/// `Class.connect(...)` for the blocking client.
pub fn connect_blocking(py: Python<'_>, opts: ConnectOptions) -> PyResult<PyClient> {
    gil::install_exit_hook(py);
    match block_on(py, connect(opts))? {
        Ok(c) => Ok(c),
        Err(status) => Err(status_to_pyerr(py, &status)),
    }
}

/// Runs `fut` on the shared tokio runtime without holding the GIL, waking
/// every 100 ms to let Python deliver signals (Ctrl-C raises
/// `KeyboardInterrupt` and drops `fut`, which cancels the call).
pub fn block_on<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let rt = pyo3_async_runtimes::tokio::get_runtime();
    let mut fut = Box::pin(fut);
    loop {
        // The timer must be made inside the runtime.
        let step = py.detach(|| {
            rt.block_on(async { tokio::time::timeout(Duration::from_millis(100), &mut fut).await })
        });
        match step {
            Ok(v) => return Ok(v),
            Err(_) => py.check_signals()?,
        }
    }
}

/// Per-call options from Python arguments.
pub(crate) fn call_options(
    py: Python<'_>,
    timeout: Option<f64>,
    metadata: Option<&Bound<'_, PyAny>>,
) -> PyResult<CallOptions> {
    let mut opts = CallOptions::new();
    if let Some(t) = timeout {
        opts = opts.timeout(seconds("timeout", t).map_err(|s| status_to_pyerr(py, &s))?);
    }
    if let Some(md) = metadata {
        *opts.metadata_mut() = metadata_from_py(md).map_err(|e| match e {
            MetadataError::Type(msg) => PyTypeError::new_err(msg),
            MetadataError::Invalid(msg) => status_to_pyerr(py, &Status::invalid_argument(msg)),
        })?;
    }
    Ok(opts)
}

/// Converts the Python request (a mapping, or keyword fields) to `T`, or
/// raises `RpcError(INVALID_ARGUMENT)` naming what is wrong.
pub(crate) fn request_from_py<T: DeserializeOwned>(
    py: Python<'_>,
    path: &str,
    request: Option<&Bound<'_, PyAny>>,
    fields: Option<&Bound<'_, PyDict>>,
) -> PyResult<T> {
    let fields = fields.filter(|f| !f.is_empty());
    let obj = match (request, fields) {
        (Some(r), None) => r.clone(),
        (None, Some(f)) => f.clone().into_any(),
        (None, None) => PyDict::new(py).into_any(),
        (Some(_), Some(_)) => {
            return Err(status_to_pyerr(
                py,
                &Status::invalid_argument(format!(
                    "{path}: pass the request either as one object or as keyword fields, not both"
                )),
            ))
        }
    };
    frompy::from_py::<T>(&obj).map_err(|e| {
        status_to_pyerr(
            py,
            &Status::invalid_argument(format!(
                "{path}: the request does not convert to {}: {e}",
                std::any::type_name::<T>()
            )),
        )
    })
}

pub(crate) fn response_to_py<T: Serialize>(
    py: Python<'_>,
    path: &str,
    value: &T,
) -> PyResult<Py<PyAny>> {
    topy::to_py(py, value).map(Bound::unbind).map_err(|e| {
        status_to_pyerr(
            py,
            &Status::internal(format!(
                "{path}: the response does not convert to Python: {e}"
            )),
        )
    })
}

/// An awaitable unary call.
#[allow(clippy::too_many_arguments)]
pub fn unary_async<'py, Req, Resp>(
    py: Python<'py>,
    client: &PyClient,
    (path, idempotent): (&'static str, bool),
    request: Option<&Bound<'py, PyAny>>,
    fields: Option<&Bound<'py, PyDict>>,
    timeout: Option<f64>,
    metadata: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>>
where
    Req: knafeh::__private::Message + DeserializeOwned,
    Resp: knafeh::__private::Message + Serialize,
{
    let req: Req = request_from_py(py, path, request, fields)?;
    let opts = call_options(py, timeout, metadata)?.idempotent(idempotent);
    let call = client.client.unary::<Req, Resp>(path, &req, opts);
    aio::awaitable(py, &client.completers, call, move |py, out| match out {
        Ok(resp) => response_to_py(py, path, resp.get_ref()),
        Err(status) => Err(status_to_pyerr(py, &status)),
    })
}

/// A blocking unary call.
pub fn unary_blocking<'py, Req, Resp>(
    py: Python<'py>,
    client: &PyClient,
    (path, idempotent): (&'static str, bool),
    request: Option<&Bound<'py, PyAny>>,
    fields: Option<&Bound<'py, PyDict>>,
    timeout: Option<f64>,
    metadata: Option<&Bound<'py, PyAny>>,
) -> PyResult<Py<PyAny>>
where
    Req: knafeh::__private::Message + DeserializeOwned,
    Resp: knafeh::__private::Message + Serialize,
{
    let req: Req = request_from_py(py, path, request, fields)?;
    let opts = call_options(py, timeout, metadata)?.idempotent(idempotent);
    let client = client.client.clone();
    match block_on(py, async move {
        client.unary::<Req, Resp>(path, &req, opts).await
    })? {
        Ok(resp) => response_to_py(py, path, resp.get_ref()),
        Err(status) => Err(status_to_pyerr(py, &status)),
    }
}

/// Builds a stream item's Python value; run where the GIL is held
/// anyway (the event loop's drain, or the blocking caller's thread).
pub(crate) type ToPy = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// The next item of a stream, `None` at its end.
pub(crate) type NextFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = Option<Result<ToPy, Status>>> + Send + 'a>>;

/// Object-safe "next item" over a `Streaming<T>`; the call starts lazily
/// on the first item.
pub(crate) trait NextItem: Send {
    /// The next item, `None` at the end.
    fn next(&mut self) -> NextFuture<'_>;
}

/// Items of a server stream, shared by the iterator object.
pub(crate) type PyItems = Box<dyn NextItem>;

/// The Python outcome of one `next`: an item, the end, or an error.
pub(crate) fn item_to_py(
    py: Python<'_>,
    item: Option<Result<ToPy, Status>>,
    end: PyErr,
) -> PyResult<Py<PyAny>> {
    match item {
        Some(Ok(to_py)) => to_py(py),
        Some(Err(status)) => Err(status_to_pyerr(py, &status)),
        None => Err(end),
    }
}

/// The items of one server-streaming call (see [`server_streaming`]).
pub struct StreamItems {
    items: std::sync::Arc<tokio::sync::Mutex<PyItems>>,
    completers: aio::LoopCompleter,
}

impl From<StreamItems> for AsyncStream {
    fn from(s: StreamItems) -> Self {
        AsyncStream {
            items: s.items,
            completers: s.completers,
        }
    }
}

impl From<StreamItems> for BlockingStream {
    fn from(s: StreamItems) -> Self {
        BlockingStream { items: s.items }
    }
}

enum StreamState<Req, Resp> {
    NotStarted(Client, &'static str, Req, CallOptions),
    Running(&'static str, knafeh::Streaming<Resp>),
    Done,
}

impl<Req, Resp> NextItem for StreamState<Req, Resp>
where
    Req: knafeh::__private::Message,
    Resp: knafeh::__private::Message + Serialize,
{
    fn next(&mut self) -> NextFuture<'_> {
        Box::pin(async move {
            if let StreamState::NotStarted(..) = self {
                let StreamState::NotStarted(client, path, req, opts) =
                    std::mem::replace(self, StreamState::Done)
                else {
                    return None;
                };
                match client.server_streaming::<Req, Resp>(path, &req, opts).await {
                    Ok(s) => *self = StreamState::Running(path, s),
                    Err(status) => return Some(Err(status)),
                }
            }
            let StreamState::Running(path, stream) = self else {
                return None;
            };
            let path = *path;
            match stream.message().await {
                Some(Ok(item)) => {
                    let to_py: ToPy = Box::new(move |py| response_to_py(py, path, &item));
                    Some(Ok(to_py))
                }
                Some(Err(status)) => {
                    *self = StreamState::Done;
                    Some(Err(status))
                }
                None => {
                    *self = StreamState::Done;
                    None
                }
            }
        })
    }
}

/// An `async for` iterator over a server stream. Dropping it (or breaking
/// out of the loop and letting it go) cancels the call.
#[pyclass(module = "knafeh", name = "AsyncStream")]
pub struct AsyncStream {
    items: std::sync::Arc<tokio::sync::Mutex<PyItems>>,
    completers: aio::LoopCompleter,
}

#[pymethods]
impl AsyncStream {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let items = self.items.clone();
        let next = async move { items.lock().await.next().await };
        aio::awaitable(py, &self.completers, next, |py, item| {
            item_to_py(py, item, PyStopAsyncIteration::new_err(()))
        })
    }
}

/// A plain iterator over a server stream, for the blocking client.
#[pyclass(module = "knafeh", name = "BlockingStream")]
pub struct BlockingStream {
    pub(crate) items: std::sync::Arc<tokio::sync::Mutex<PyItems>>,
}

#[pymethods]
impl BlockingStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let items = self.items.clone();
        let item = block_on(py, async move { items.lock().await.next().await })?;
        item_to_py(py, item, PyStopIteration::new_err(()))
    }
}

/// A server-streaming call, started lazily on the first item; wrap it in
/// [`AsyncStream`] or [`BlockingStream`] (both `From<StreamItems>`).
pub fn server_streaming<'py, Req, Resp>(
    py: Python<'py>,
    client: &PyClient,
    (path, idempotent): (&'static str, bool),
    request: Option<&Bound<'py, PyAny>>,
    fields: Option<&Bound<'py, PyDict>>,
    timeout: Option<f64>,
    metadata: Option<&Bound<'py, PyAny>>,
) -> PyResult<StreamItems>
where
    Req: knafeh::__private::Message + DeserializeOwned,
    Resp: knafeh::__private::Message + Serialize,
{
    let req: Req = request_from_py(py, path, request, fields)?;
    let opts = call_options(py, timeout, metadata)?.idempotent(idempotent);
    let state: StreamState<Req, Resp> =
        StreamState::NotStarted(client.client.clone(), path, req, opts);
    Ok(StreamItems {
        items: std::sync::Arc::new(tokio::sync::Mutex::new(Box::new(state))),
        completers: client.completers.clone(),
    })
}
