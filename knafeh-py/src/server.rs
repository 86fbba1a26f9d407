//! Serving Python implementations: `knafeh.Server` and the bridge that
//! lets any knafeh server route calls to a Python object.
//!
//! A generated `{Trait}Service` class (in the user's extension module)
//! wraps the Python implementation and converts between wire payloads and
//! Python objects with the Rust types (`_knafeh_decode`/`_knafeh_encode`).
//! Only Python objects cross between the user's module and this one, so
//! the two compiled copies of the runtime never share Rust types.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use knafeh::__private::{BoxFuture, Call, Reply, Request, RequestShape, Service};
use knafeh::schema::{SchemaError, ServiceSchema};
use knafeh::{Code, Codec, Status, StreamSender, Streaming};
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;
use pyo3_async_runtimes::TaskLocals;

use crate::requests::RequestStream;
use crate::{gil, knafeh_py_module, status_to_pyerr};

/// The status of a call whose handler can no longer run: the program is
/// exiting.
fn exiting() -> Status {
    Status::unavailable("the Python interpreter is exiting")
}

/// Runs `f` with the GIL from a runtime thread; UNAVAILABLE once the
/// interpreter is exiting (see [`gil`]).
fn with_py<R>(f: impl FnOnce(Python<'_>) -> Result<R, Status>) -> Result<R, Status> {
    gil::attach(f).unwrap_or_else(|| Err(exiting()))
}

/// [`pyerr_to_status`] from a runtime thread.
fn py_status(err: PyErr, path: &str) -> Status {
    gil::attach(|py| pyerr_to_status(py, err, path)).unwrap_or_else(exiting)
}

/// The codec a generated class was asked to use.
pub(crate) fn codec_from_name(name: &str) -> PyResult<Codec> {
    crate::codec::from_name(name).map_err(PyRuntimeError::new_err)
}

/// Turns an exception raised by a Python handler into a status: a
/// `knafeh.RpcError` keeps its code and message; anything else is
/// INTERNAL with the exception's type and message, and is logged.
fn pyerr_to_status(py: Python<'_>, err: PyErr, path: &str) -> Status {
    let value = err.value(py);
    if let Ok(module) = knafeh_py_module(py) {
        if let Ok(rpc_error) = module.getattr("RpcError") {
            if value.is_instance(&rpc_error).unwrap_or(false) {
                let code = value
                    .getattr("code")
                    .and_then(|c| c.extract::<i32>())
                    .map(Code::from_i32)
                    .unwrap_or(Code::Unknown);
                let message = value
                    .getattr("message")
                    .and_then(|m| m.extract::<String>())
                    .unwrap_or_default();
                return with_error_metadata(Status::new(code, message), value, path);
            }
        }
    }
    let type_name = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".to_owned());
    tracing::error!(path, exception = %type_name, message = %value, "Python handler raised");
    Status::internal(format!("{path}: the handler raised {type_name}: {value}"))
}

/// `status` with the `metadata` dict of a raised `knafeh.RpcError`, sent
/// to the client as trailing metadata. Metadata the wire cannot carry
/// turns the status into INTERNAL (logged): it is the handler's bug.
fn with_error_metadata(status: Status, error: &Bound<'_, PyAny>, path: &str) -> Status {
    let md = match error.getattr("metadata") {
        Ok(md) if !md.is_none() => md,
        _ => return status,
    };
    match crate::metadata_from_py(&md) {
        Ok(md) => status.with_metadata(md),
        Err(e) => {
            tracing::error!(path, error = %e, "Python handler raised RpcError with bad metadata");
            Status::internal(format!(
                "{path}: the handler raised RpcError with metadata that cannot be sent: {e}"
            ))
        }
    }
}

/// Runs an awaitable on the event loop of `locals` and waits for it from
/// Rust. Dropping the returned future cancels the asyncio task, so a
/// handler whose call was cancelled sees `CancelledError`.
fn run_on_loop(
    py: Python<'_>,
    locals: &TaskLocals,
    awaitable: &Bound<'_, PyAny>,
) -> PyResult<impl std::future::Future<Output = PyResult<Py<PyAny>>> + Send + 'static> {
    let fut = crate::aio::run_on_loop(py, &locals.event_loop(py), awaitable, |_py, out| {
        out.map(Bound::unbind)
    })?;
    Ok(async move {
        fut.await
            .unwrap_or_else(|| Err(PyRuntimeError::new_err("the event loop dropped the task")))
    })
}

static BACKGROUND_LOOP: OnceLock<TaskLocals> = OnceLock::new();

/// An asyncio loop on a daemon thread, for `async def` handlers served
/// without a running loop of the caller's (a Rust program serving a Python
/// implementation).
fn background_loop(py: Python<'_>) -> PyResult<TaskLocals> {
    if let Some(l) = BACKGROUND_LOOP.get() {
        return Ok(l.clone());
    }
    let asyncio = py.import("asyncio")?;
    let event_loop = asyncio.call_method0("new_event_loop")?;
    let thread = py.import("threading")?.getattr("Thread")?.call(
        (),
        Some(&{
            let kw = pyo3::types::PyDict::new(py);
            kw.set_item("target", event_loop.getattr("run_forever")?)?;
            kw.set_item("daemon", true)?;
            kw.set_item("name", "knafeh-asyncio")?;
            kw
        }),
    )?;
    thread.call_method0("start")?;
    let locals = TaskLocals::new(event_loop);
    Ok(BACKGROUND_LOOP.get_or_init(|| locals).clone())
}

/// Serves a Python implementation wrapped in a generated `{Trait}Service`
/// object. Add it to a Rust [`knafeh::Server`] with `add_service`, or to a
/// Python `knafeh.Server`.
pub struct PyService {
    name: &'static str,
    /// Method name → whether it streams requests, and responses.
    methods: HashMap<String, (bool, bool)>,
    /// Method name → whether the Python method takes a call context
    /// (found out on its first call).
    wants_context: HashMap<String, Arc<OnceLock<bool>>>,
    service: Arc<Py<PyAny>>,
    implementation: Arc<Py<PyAny>>,
    locals: Arc<OnceLock<TaskLocals>>,
    /// What the generated class says of itself, read once.
    schema: Result<ServiceSchema, SchemaError>,
}

/// The schema a generated service class gives (`__knafeh_schema__()`, the
/// JSON of a `ServiceSchema`).
fn class_schema(service: &Bound<'_, PyAny>, name: &str) -> Result<ServiceSchema, SchemaError> {
    let text: String = service
        .call_method0("__knafeh_schema__")
        .and_then(|t| t.extract())
        .map_err(|e| {
            SchemaError::new(
                name,
                format!("the service class gives no schema (`__knafeh_schema__()`: {e})"),
            )
        })?;
    ServiceSchema::from_json(&text).map_err(|e| {
        SchemaError::new(
            name,
            format!("`__knafeh_schema__()` is not a service schema: {e}"),
        )
    })
}

impl PyService {
    /// Wraps a generated `{Trait}Service` object.
    ///
    /// # Errors
    /// `TypeError` if `service` is not a knafeh-generated service object.
    pub fn new(service: &Bound<'_, PyAny>) -> PyResult<Self> {
        gil::install_exit_hook(service.py());
        let bad = |_| {
            pyo3::exceptions::PyTypeError::new_err(
                "expected a service object generated by #[pyservice] (e.g. greeter.GreeterService(impl))",
            )
        };
        let name: String = service
            .getattr("_knafeh_name")
            .and_then(|n| n.extract())
            .map_err(bad)?;
        let methods: Vec<(String, bool, bool)> = service
            .getattr("_knafeh_methods")
            .and_then(|m| m.extract())
            .map_err(bad)?;
        let implementation = service.getattr("implementation").map_err(bad)?;
        let wants_context = methods
            .iter()
            .map(|(m, _, _)| (m.clone(), Arc::new(OnceLock::new())))
            .collect();
        let schema = class_schema(service, &name);
        Ok(PyService {
            schema,
            // One per service for the life of the server.
            name: Box::leak(name.into_boxed_str()),
            methods: methods
                .into_iter()
                .map(|(m, requests, responses)| (m, (requests, responses)))
                .collect(),
            wants_context,
            service: Arc::new(service.clone().unbind()),
            implementation: Arc::new(implementation.unbind()),
            locals: Arc::new(OnceLock::new()),
        })
    }

    pub(crate) fn set_locals(&self, locals: TaskLocals) {
        let _ = self.locals.set(locals);
    }
}

struct Handler {
    method: String,
    codec: &'static str,
    service: Arc<Py<PyAny>>,
    implementation: Arc<Py<PyAny>>,
    locals: Arc<OnceLock<TaskLocals>>,
    /// What the handler may learn about its call, and whether it asks.
    context: knafeh::Context,
    wants_context: Arc<OnceLock<bool>>,
}

impl Handler {
    /// The method's path, for error messages.
    fn path(&self) -> &str {
        self.context.path()
    }

    fn locals(&self, py: Python<'_>) -> PyResult<TaskLocals> {
        match self.locals.get() {
            Some(l) => Ok(l.clone()),
            None => background_loop(py),
        }
    }

    /// The handler's request: one message decoded, or a
    /// [`RequestStream`] over the request messages.
    fn request_object(&self, py: Python<'_>, request: Request) -> Result<Py<PyAny>, Status> {
        let made = match request {
            Request::One(payload) => self
                .service
                .bind(py)
                .call_method1(
                    "_knafeh_decode",
                    (&self.method, self.codec, PyBytes::new(py, &payload)),
                )
                .map(Bound::unbind),
            Request::Stream(payloads) => {
                let stream =
                    RequestStream::new(payloads, self.service.clone(), &self.method, self.codec);
                Py::new(py, stream).map(Py::into_any)
            }
        };
        made.map_err(|e| pyerr_to_status(py, e, self.path()))
    }

    /// Makes the request object and calls the Python method; for a plain
    /// `def` this runs the whole handler, so it runs on a blocking thread.
    async fn invoke(self: &Arc<Self>, request: Request) -> Result<Py<PyAny>, Status> {
        let h = self.clone();
        let res = tokio::task::spawn_blocking(move || {
            with_py(|py| {
                let req = h.request_object(py, request)?;
                let method = h
                    .implementation
                    .bind(py)
                    .getattr(h.method.as_str())
                    .map_err(|e| pyerr_to_status(py, e, h.path()))?;
                // Not `get_or_init`: inspecting runs Python, which may let
                // another thread take the GIL and wait on the same lock.
                let wants = match h.wants_context.get() {
                    Some(w) => *w,
                    None => {
                        let w = takes_context(py, &method);
                        let _ = h.wants_context.set(w);
                        w
                    }
                };
                let result = if wants {
                    let ctx = Py::new(py, PyCallContext::new(&h.context))
                        .map_err(|e| pyerr_to_status(py, e, h.path()))?;
                    method.call1((req, ctx))
                } else {
                    method.call1((req,))
                };
                result
                    .map(Bound::unbind)
                    .map_err(|e| pyerr_to_status(py, e, h.path()))
            })
        })
        .await
        .map_err(|e| Status::internal(format!("{}: handler thread failed: {e}", self.path())))??;
        self.resolve(res).await
    }

    /// Awaits `value` if it is awaitable (an `async def` result).
    async fn resolve(&self, value: Py<PyAny>) -> Result<Py<PyAny>, Status> {
        let fut = with_py(|py| {
            let v = value.bind(py);
            let awaitable = py
                .import("inspect")
                .and_then(|i| i.call_method1("isawaitable", (v,)))
                .and_then(|b| b.extract::<bool>())
                .unwrap_or(false);
            if !awaitable {
                return Ok(None);
            }
            let locals = self
                .locals(py)
                .map_err(|e| pyerr_to_status(py, e, self.path()))?;
            run_on_loop(py, &locals, v)
                .map(Some)
                .map_err(|e| pyerr_to_status(py, e, self.path()))
        })?;
        match fut {
            None => Ok(value),
            Some(fut) => fut.await.map_err(|e| py_status(e, self.path())),
        }
    }

    fn encode(&self, value: &Py<PyAny>) -> Result<Bytes, Status> {
        with_py(|py| {
            let out = self
                .service
                .bind(py)
                .call_method1("_knafeh_encode", (&self.method, self.codec, value.bind(py)))
                .map_err(|e| pyerr_to_status(py, e, self.path()))?;
            let bytes = out.cast::<PyBytes>().map_err(|_| {
                Status::internal(format!(
                    "{}: _knafeh_encode did not return bytes",
                    self.path()
                ))
            })?;
            Ok(Bytes::copy_from_slice(bytes.as_bytes()))
        })
    }

    /// The next item of a Python (async) iterator; `None` at the end.
    async fn next_item(
        &self,
        iter: &Py<PyAny>,
        is_async: bool,
    ) -> Result<Option<Py<PyAny>>, Status> {
        if is_async {
            let fut = with_py(|py| {
                let start = || {
                    let locals = self.locals(py)?;
                    let next = iter.bind(py).call_method0("__anext__")?;
                    run_on_loop(py, &locals, &next)
                };
                start().map_err(|e| pyerr_to_status(py, e, self.path()))
            })?;
            match fut.await {
                Ok(v) => Ok(Some(v)),
                Err(e) => with_py(|py| {
                    if e.is_instance_of::<PyStopAsyncIteration>(py) {
                        Ok(None)
                    } else {
                        Err(pyerr_to_status(py, e, self.path()))
                    }
                }),
            }
        } else {
            let iter = with_py(|py| Ok(iter.clone_ref(py)))?;
            let path = self.path().to_owned();
            tokio::task::spawn_blocking(move || {
                with_py(|py| match iter.bind(py).call_method0("__next__") {
                    Ok(v) => Ok(Some(v.unbind())),
                    Err(e) if e.is_instance_of::<PyStopIteration>(py) => Ok(None),
                    Err(e) => Err(pyerr_to_status(py, e, &path)),
                })
            })
            .await
            .map_err(|e| Status::internal(format!("{}: handler thread failed: {e}", self.path())))?
        }
    }
}

impl Handler {
    /// Feeds a Python (async) iterator's items to the response stream
    /// until it ends, fails or the client goes away.
    async fn pump(self: Arc<Self>, iter: Py<PyAny>, is_async: bool, tx: StreamSender<Bytes>) {
        loop {
            // The client may go away while the handler waits (e.g. for
            // its next request): stop waiting and close the generator.
            let next = tokio::select! {
                next = self.next_item(&iter, is_async) => next,
                () = tx.closed() => {
                    self.close_iterator(&iter, is_async);
                    return;
                }
            };
            let item = match next {
                Ok(Some(item)) => item,
                Ok(None) => return,
                Err(status) => {
                    let _ = tx.send_error(status).await;
                    return;
                }
            };
            let frame = match self.encode(&item) {
                Ok(f) => f,
                Err(status) => {
                    let _ = tx.send_error(status).await;
                    return;
                }
            };
            if tx.send(frame).await.is_err() {
                self.close_iterator(&iter, is_async);
                return;
            }
        }
    }

    /// The client went away: closes the generator so that its `finally`
    /// blocks run (`aclose()` runs to completion on the loop).
    fn close_iterator(&self, iter: &Py<PyAny>, is_async: bool) {
        gil::attach(|py| {
            let closer = if is_async { "aclose" } else { "close" };
            let Ok(c) = iter.bind(py).call_method0(closer) else {
                return;
            };
            if is_async {
                if let Ok(f) = self.locals(py).and_then(|l| run_on_loop(py, &l, &c)) {
                    tokio::spawn(f);
                }
            }
        });
    }
}

impl Service for PyService {
    fn name(&self) -> &'static str {
        self.name
    }

    fn schema(&self) -> Result<ServiceSchema, SchemaError> {
        self.schema.clone()
    }

    fn request_shape(&self, method: &str) -> Option<RequestShape> {
        self.methods.get(method).map(|&(requests, _)| {
            if requests {
                RequestShape::Stream
            } else {
                RequestShape::One
            }
        })
    }

    fn idempotent(&self, method: &str) -> bool {
        // From the trait's `#[knafeh(idempotent)]`, carried in the schema.
        self.schema
            .as_ref()
            .is_ok_and(|s| s.methods.iter().any(|m| m.name == method && m.idempotent))
    }

    fn call(&self, method: &str, call: Call) -> BoxFuture<Result<Reply, Status>> {
        let (_, streaming) = self.methods.get(method).copied().unwrap_or_default();
        // No GIL here: knafeh may start a call on its connection's task,
        // which must not wait for Python.
        let wants_context = self
            .wants_context
            .get(method)
            .cloned()
            .unwrap_or_else(|| Arc::new(OnceLock::new()));
        let handler = Arc::new(Handler {
            method: method.to_owned(),
            codec: crate::codec::name(call.codec),
            service: self.service.clone(),
            implementation: self.implementation.clone(),
            locals: self.locals.clone(),
            context: call.ctx.clone(),
            wants_context,
        });
        Box::pin(async move {
            // The first poll happens on the connection's task: hand the
            // call over to a task of its own before touching Python.
            tokio::task::yield_now().await;
            let result = handler.invoke(call.request).await?;
            if !streaming {
                return Ok(Reply::Unary(handler.encode(&result)?));
            }
            let (iter, is_async) = with_py(|py| {
                let iterate = || -> PyResult<_> {
                    let r = result.bind(py);
                    if r.hasattr("__anext__")? {
                        Ok((r.clone().unbind(), true))
                    } else if r.hasattr("__aiter__")? {
                        Ok((r.call_method0("__aiter__")?.unbind(), true))
                    } else {
                        Ok((r.try_iter()?.into_any().unbind(), false))
                    }
                };
                iterate().map_err(|e| pyerr_to_status(py, e, handler.path()))
            })?;
            let (tx, stream) = Streaming::<Bytes>::channel(2);
            tokio::spawn(handler.pump(iter, is_async, tx));
            Ok(Reply::Stream(Box::pin(stream)))
        })
    }
}

enum ServerState {
    Building(Option<Box<knafeh::ServerBuilder>>, Vec<Arc<PyService>>),
    Running(Option<knafeh::ServerHandle>),
    Stopped,
}

/// `knafeh.Server`: serves Python implementations (generated
/// `{Trait}Service` objects) from an asyncio program.
///
/// ```python
/// server = knafeh.Server("127.0.0.1:0", cert="cert.pem", key="key.pem")
/// server.add_service(greeter.GreeterService(MyGreeter()))
/// address = await server.start()
/// ...
/// await server.stop()
/// ```
#[pyclass(module = "knafeh", name = "Server")]
pub struct PyServer {
    state: Arc<Mutex<ServerState>>,
    /// The health reporter, when the server serves `knafeh.Health`.
    health: Option<knafeh::health::HealthReporter>,
}

fn lock(state: &Mutex<ServerState>) -> std::sync::MutexGuard<'_, ServerState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[pymethods]
impl PyServer {
    #[new]
    #[pyo3(signature = (addr = "127.0.0.1:0", *, cert, key, max_message_size = None, drain_timeout = None, health = false, compression = None))]
    fn new(
        addr: &str,
        cert: String,
        key: String,
        max_message_size: Option<usize>,
        drain_timeout: Option<f64>,
        health: bool,
        compression: Option<&str>,
    ) -> PyResult<Self> {
        let addr: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("addr {addr:?}: {e}")))?;
        let mut b = knafeh::Server::builder().bind(addr).tls(cert, key);
        if let Some(m) = max_message_size {
            b = b.max_message_size(m);
        }
        if let Some(c) = compression {
            let c: knafeh::Compression =
                c.parse().map_err(pyo3::exceptions::PyValueError::new_err)?;
            b = b.compression(c);
        }
        if let Some(d) = drain_timeout {
            b = b.drain_timeout(std::time::Duration::try_from_secs_f64(d).map_err(|_| {
                pyo3::exceptions::PyValueError::new_err("drain_timeout must be >= 0")
            })?);
        }
        let health = health.then(knafeh::health::HealthReporter::new);
        if let Some(h) = &health {
            b = b.health(h.clone());
        }
        Ok(PyServer {
            state: Arc::new(Mutex::new(ServerState::Building(
                Some(Box::new(b)),
                Vec::new(),
            ))),
            health,
        })
    }

    /// Sets what `knafeh.Health` reports for `service` (`""`: the whole
    /// server): `"SERVING"` or `"NOT_SERVING"` (or `"UNKNOWN"`). Needs
    /// `Server(..., health=True)`.
    fn set_health(&self, service: &str, status: &str) -> PyResult<()> {
        use knafeh::health::ServingStatus;
        let Some(health) = &self.health else {
            return Err(PyRuntimeError::new_err(
                "health is not served: create the server with health=True",
            ));
        };
        let status = match status {
            "SERVING" => ServingStatus::Serving,
            "NOT_SERVING" => ServingStatus::NotServing,
            "UNKNOWN" => ServingStatus::Unknown,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "status {other:?}: expected \"SERVING\", \"NOT_SERVING\" or \"UNKNOWN\""
                )))
            }
        };
        health.set(service, status);
        Ok(())
    }

    /// Adds a generated `{Trait}Service(implementation)` object.
    fn add_service(&self, service: &Bound<'_, PyAny>) -> PyResult<()> {
        let svc = Arc::new(PyService::new(service)?);
        match &mut *lock(&self.state) {
            ServerState::Building(Some(b), services) => {
                **b = std::mem::take(&mut **b).add_service(ArcService(svc.clone()));
                services.push(svc);
                Ok(())
            }
            _ => Err(PyRuntimeError::new_err("add services before start()")),
        }
    }

    /// Starts serving; resolves to the bound address (`host:port`).
    /// `async def` handlers run on the event loop that called `start()`.
    fn start<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let locals = pyo3_async_runtimes::tokio::get_current_locals(py)?;
        let builder = match &mut *lock(&self.state) {
            ServerState::Building(b, services) => {
                for s in services.iter() {
                    s.set_locals(locals.clone());
                }
                *b.take()
                    .ok_or_else(|| PyRuntimeError::new_err("start() called twice"))?
            }
            _ => return Err(PyRuntimeError::new_err("the server was already started")),
        };
        let state = self.state.clone();
        let once = crate::aio::LoopCompleter::default();
        let start = async move {
            let handle = builder.start().await.map_err(|e| e.to_string())?;
            let addr = handle.local_addr().to_string();
            *lock(&state) = ServerState::Running(Some(handle));
            Ok::<_, String>(addr)
        };
        crate::aio::awaitable(py, &once, start, |py, out| match out {
            Ok(addr) => addr.into_py_any(py),
            Err(e) => Err(pyo3::exceptions::PyOSError::new_err(e)),
        })
    }

    /// Graceful shutdown: in-flight calls finish (within the drain
    /// timeout), new ones are refused, the port is released.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = match std::mem::replace(&mut *lock(&self.state), ServerState::Stopped) {
            ServerState::Running(h) => h,
            _ => None,
        };
        let stop = async move {
            if let Some(h) = handle {
                h.shutdown().await;
            }
        };
        let once = crate::aio::LoopCompleter::default();
        crate::aio::awaitable(py, &once, stop, |py, ()| Ok(py.None()))
    }
}

/// Whether a Python handler takes a second positional parameter (the call
/// context): `def say_hello(self, req, ctx)`. Anything that cannot be
/// inspected is called with the request only.
fn takes_context(py: Python<'_>, method: &Bound<'_, PyAny>) -> bool {
    let positional = || -> PyResult<bool> {
        let sig = py.import("inspect")?.call_method1("signature", (method,))?;
        let mut n = 0;
        for p in sig
            .getattr("parameters")?
            .call_method0("values")?
            .try_iter()?
        {
            let kind: String = p?.getattr("kind")?.getattr("name")?.extract()?;
            match kind.as_str() {
                "POSITIONAL_ONLY" | "POSITIONAL_OR_KEYWORD" => n += 1,
                "VAR_POSITIONAL" => return Ok(true),
                _ => {}
            }
        }
        Ok(n >= 2)
    };
    positional().unwrap_or(false)
}

/// What a Python handler learns about its call: given to handlers that
/// declare a second parameter, `def say_hello(self, req, ctx)`.
#[pyclass(module = "knafeh", name = "CallContext", frozen)]
pub struct PyCallContext {
    /// The method's path, `/package.Service/method`.
    #[pyo3(get)]
    path: String,
    /// The method name, as written in the trait.
    #[pyo3(get)]
    method: String,
    /// The caller's address, `host:port`.
    #[pyo3(get)]
    peer_addr: String,
    metadata: knafeh::Metadata,
    deadline: Option<std::time::Instant>,
    /// The call's context, for the server's drain signal.
    context: knafeh::Context,
    /// Completes the awaitables of `draining()`.
    completers: crate::aio::LoopCompleter,
}

impl PyCallContext {
    fn new(ctx: &knafeh::Context) -> Self {
        PyCallContext {
            path: ctx.path().to_owned(),
            method: ctx.method().to_owned(),
            peer_addr: ctx.peer_addr().to_string(),
            metadata: ctx.metadata().clone(),
            deadline: ctx.deadline(),
            context: ctx.clone(),
            completers: crate::aio::LoopCompleter::default(),
        }
    }
}

#[pymethods]
impl PyCallContext {
    /// The caller's metadata: a dict of str -> str (bytes for `-bin` keys).
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        crate::metadata_to_py(py, &self.metadata)
    }

    /// Seconds left before the caller's deadline (0.0 once it has passed),
    /// or `None` when the call has no deadline.
    fn time_remaining(&self) -> Option<f64> {
        self.deadline.map(|d| {
            d.saturating_duration_since(std::time::Instant::now())
                .as_secs_f64()
        })
    }

    /// Whether the server has begun a graceful shutdown: a long-lived
    /// stream should end soon, before the drain timeout cuts it off.
    fn is_draining(&self) -> bool {
        self.context.is_draining()
    }

    /// An awaitable that completes when the server begins a graceful
    /// shutdown (at once if it has): `await ctx.draining()` in an
    /// `async def` handler. The wait happens on knafeh's runtime; the
    /// event loop and the GIL stay free meanwhile.
    fn draining<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let draining = self.context.draining();
        crate::aio::awaitable(py, &self.completers, draining, |py, ()| Ok(py.None()))
    }

    fn __repr__(&self) -> String {
        format!(
            "CallContext(path={:?}, peer_addr={:?})",
            self.path, self.peer_addr
        )
    }
}

/// Lets one `PyService` be shared by the builder and `start()`.
struct ArcService(Arc<PyService>);

impl Service for ArcService {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn schema(&self) -> Result<ServiceSchema, SchemaError> {
        self.0.schema()
    }

    fn request_shape(&self, method: &str) -> Option<RequestShape> {
        self.0.request_shape(method)
    }

    fn idempotent(&self, method: &str) -> bool {
        self.0.idempotent(method)
    }

    fn call(&self, method: &str, call: Call) -> BoxFuture<Result<Reply, Status>> {
        self.0.call(method, call)
    }
}

/// `_knafeh_decode` of generated service classes: payload → Python object.
pub fn decode_to_py<T>(
    py: Python<'_>,
    path: &str,
    codec: &str,
    payload: &[u8],
) -> PyResult<Py<PyAny>>
where
    T: knafeh::__private::Message + serde::Serialize,
{
    let codec = codec_from_name(codec)?;
    let value = T::decode_message(codec, payload).map_err(|e| {
        status_to_pyerr(
            py,
            &Status::invalid_argument(format!(
                "{path}: request does not decode as {} ({}): {e}",
                std::any::type_name::<T>(),
                codec.content_type()
            )),
        )
    })?;
    crate::client::response_to_py(py, path, &value)
}

/// `_knafeh_encode` of generated service classes: Python object → framed
/// payload.
pub fn encode_from_py<T>(
    py: Python<'_>,
    path: &str,
    codec: &str,
    value: &Bound<'_, PyAny>,
) -> PyResult<Py<PyBytes>>
where
    T: knafeh::__private::Message + serde::de::DeserializeOwned,
{
    let codec = codec_from_name(codec)?;
    let v: T = crate::frompy::from_py(value).map_err(|e| {
        let message = format!(
            "{path}: the handler returned a value that does not convert to {}: {e}",
            std::any::type_name::<T>()
        );
        tracing::error!(path, error = %e, "Python handler returned a bad value");
        status_to_pyerr(py, &Status::internal(message))
    })?;
    let mut buf = bytes::BytesMut::new();
    v.encode_message(codec, &mut buf)
        .map_err(|e| status_to_pyerr(py, &Status::internal(format!("{path}: {e}"))))?;
    Ok(PyBytes::new(py, &buf).unbind())
}
