//! The design brief's Greeter, defined with `#[pyservice]`: the same wire
//! service as `examples/greeter`, plus Python classes re-exported from the
//! `greeter` Python module.

// The message types are the Rust example's: both crates speak the same
// `helloworld.Greeter` on the wire.
pub use ::greeter::{Count, CountRequest, HelloReply, HelloRequest};
use knafeh_py::knafeh::{Status, Streaming};
use pyo3::prelude::*;

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
