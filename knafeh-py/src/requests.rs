//! The requests of a client-streaming or bidirectional call, as the Python
//! handler sees them: one object that is both an async iterator (for
//! `async def` handlers) and an iterator (for `def` handlers, which run on
//! a thread of their own and wait without holding the GIL).

use std::sync::Arc;

use bytes::Bytes;
use knafeh::__private::PayloadStream;
use knafeh::{Status, Streaming};
use pyo3::exceptions::{PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{aio, status_to_pyerr};

/// The next payload: a message, the end (`None`), or how the call ended
/// (`CANCELLED` when the client cancelled).
type Next = Option<Result<Bytes, Status>>;

/// `async for req in requests` / `for req in requests` in a handler. Each
/// request is decoded as it is taken; one that does not decode raises
/// `RpcError(INVALID_ARGUMENT)`, as does reading after the client
/// cancelled (`RpcError(CANCELLED)`).
#[pyclass(module = "knafeh", name = "RequestStream")]
pub(crate) struct RequestStream {
    payloads: Arc<tokio::sync::Mutex<Streaming<Bytes>>>,
    decoder: Arc<Decoder>,
    completers: aio::LoopCompleter,
}

/// Decodes a payload with the generated service's `_knafeh_decode`.
struct Decoder {
    service: Arc<Py<PyAny>>,
    method: String,
    codec: &'static str,
}

impl Decoder {
    fn to_py(&self, py: Python<'_>, next: Next, end: PyErr) -> PyResult<Py<PyAny>> {
        match next {
            Some(Ok(payload)) => self
                .service
                .bind(py)
                .call_method1(
                    "_knafeh_decode",
                    (&self.method, self.codec, PyBytes::new(py, &payload)),
                )
                .map(Bound::unbind),
            Some(Err(status)) => Err(status_to_pyerr(py, &status)),
            None => Err(end),
        }
    }
}

impl RequestStream {
    /// The request stream of one call of `method`.
    pub(crate) fn new(
        payloads: PayloadStream,
        service: Arc<Py<PyAny>>,
        method: &str,
        codec: &'static str,
    ) -> Self {
        RequestStream {
            payloads: Arc::new(tokio::sync::Mutex::new(Streaming::new(payloads))),
            decoder: Arc::new(Decoder {
                service,
                method: method.to_owned(),
                codec,
            }),
            completers: aio::LoopCompleter::default(),
        }
    }
}

#[pymethods]
impl RequestStream {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next request (decoded on the event loop's thread).
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let payloads = self.payloads.clone();
        let decoder = self.decoder.clone();
        let next = async move { payloads.lock().await.message().await };
        aio::awaitable(py, &self.completers, next, move |py, next| {
            decoder.to_py(py, next, PyStopAsyncIteration::new_err(()))
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next request, waiting without the GIL. For `def` handlers; an
    /// `async def` handler would block its event loop, and uses
    /// `async for`.
    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let payloads = self.payloads.clone();
        let next =
            crate::client::block_on(py, async move { payloads.lock().await.message().await })?;
        self.decoder.to_py(py, next, PyStopIteration::new_err(()))
    }
}
