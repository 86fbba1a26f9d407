//! The design brief's Greeter, defined with `#[pyservice]`: the same wire
//! service as `examples/greeter`, plus Python classes re-exported from the
//! `greeter` Python module.

use knafeh_py::knafeh::{Status, Streaming};
use pyo3::prelude::*;
use serde::{Deserialize, Serialize};

/// Request of `say_hello`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelloRequest {
    /// Who to greet.
    pub name: String,
}

/// Reply of `say_hello`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HelloReply {
    /// `"Hello, {name}!"`.
    pub message: String,
}

/// Request of `count_to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountRequest {
    /// Count up to this number.
    pub n: u32,
}

/// One item of `count_to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Count {
    /// The current number.
    pub value: u32,
}

/// Greets people and counts.
#[knafeh_py::pyservice(package = "helloworld")]
pub trait Greeter {
    /// Unary: answers `"Hello, {name}!"`.
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status>;
    /// Server streaming: `1..=n`, one message each.
    async fn count_to(&self, req: CountRequest) -> Result<Streaming<Count>, Status>;
}

/// The `greeter` Python module: one line per generated class.
#[pymodule]
fn greeter(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GreeterPyClient>()?;
    m.add_class::<GreeterPyBlockingClient>()?;
    m.add_class::<GreeterPyService>()?;
    Ok(())
}
