//! A `#[pyservice]` module used only by the Python tests: binary fields,
//! nested messages (conversion errors name the path).

use knafeh_py::knafeh::{Status, Streaming};
use pyo3::prelude::*;
use serde::{Deserialize, Serialize};

/// A message with a binary field.
#[derive(Serialize, Deserialize)]
pub struct Blob {
    /// Raw bytes: `bytes` in Python.
    pub data: Vec<u8>,
    /// A label.
    pub tag: String,
    /// Raw bytes carried as one block (`knafeh::as_bytes`): `bytes` in
    /// Python even when empty; optional in requests.
    #[serde(default, with = "knafeh_py::knafeh::as_bytes")]
    pub block: Vec<u8>,
}

/// One line of an order.
#[derive(Serialize, Deserialize)]
pub struct Item {
    /// How many.
    pub value: u32,
}

/// A nested message.
#[derive(Serialize, Deserialize)]
pub struct Inner {
    /// A name.
    pub name: String,
}

/// An enum with every variant form.
#[derive(Serialize, Deserialize)]
pub enum Shape {
    /// A unit variant: `"Dot"` in Python.
    Dot,
    /// A struct variant: `{"Circle": {"radius": 1.0}}`.
    Circle {
        /// The radius.
        radius: f64,
    },
    /// A tuple variant: `{"Pair": [1, 2]}`.
    Pair(u8, u8),
}

/// Nested data: structs, lists, enums, options, small integers.
#[derive(Serialize, Deserialize)]
pub struct Order {
    /// A nested struct.
    pub inner: Inner,
    /// A list of structs.
    pub items: Vec<Item>,
    /// A signed 8-bit integer.
    #[serde(default)]
    pub small: i8,
    /// An optional enum.
    #[serde(default)]
    pub shape: Option<Shape>,
    /// A 32-bit float.
    #[serde(default)]
    pub ratio: f32,
}

/// Echo-like calls with binary payloads and nested data.
#[knafeh_py::pyservice(package = "knafeh.pytest")]
pub trait Probe {
    /// Returns a blob derived from the one it got.
    async fn blob(&self, req: Blob) -> Result<Blob, Status>;
    /// Returns what the implementation makes of the order.
    async fn order(&self, req: Order) -> Result<Order, Status>;
    /// Streams what the implementation makes of the order.
    async fn orders(&self, req: Order) -> Result<Streaming<Order>, Status>;
}

#[pymodule]
fn knafeh_probe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ProbePyClient>()?;
    m.add_class::<ProbePyBlockingClient>()?;
    m.add_class::<ProbePyService>()?;
    m.add_class::<RustServer>()?;
    m.add_function(wrap_pyfunction!(start_rust_server, m)?)?;
    Ok(())
}

/// A Rust `knafeh::Server` serving a Python implementation through
/// `knafeh_py::PyService` (the "from Rust" path, without `knafeh.Server`).
#[pyclass]
struct RustServer {
    handle: std::sync::Mutex<Option<knafeh_py::knafeh::ServerHandle>>,
    #[pyo3(get)]
    address: String,
}

#[pymethods]
impl RustServer {
    /// Graceful shutdown (blocking).
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            knafeh_py::__private::block_on(py, h.shutdown())?;
        }
        Ok(())
    }
}

/// Starts a Rust server for `service` (a generated `{Trait}Service`).
#[pyfunction]
fn start_rust_server(
    py: Python<'_>,
    service: &Bound<'_, PyAny>,
    cert: String,
    key: String,
) -> PyResult<RustServer> {
    let svc = knafeh_py::PyService::new(service)?;
    let builder = knafeh_py::knafeh::Server::builder()
        .tls(cert, key)
        .add_service(svc);
    let handle = knafeh_py::__private::block_on(py, builder.start())?
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
    Ok(RustServer {
        address: handle.local_addr().to_string(),
        handle: std::sync::Mutex::new(Some(handle)),
    })
}
