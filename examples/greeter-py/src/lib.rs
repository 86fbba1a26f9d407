//! The design brief's Greeter, defined with `#[pyservice]`: the same wire
//! service as `examples/greeter`, plus Python classes re-exported from the
//! `greeter` Python module.

// The message types are the Rust example's: both crates speak the same
// `helloworld.Greeter` on the wire.
pub use ::greeter::{Count, CountRequest, HelloReply, HelloRequest, Total};
use knafeh_py::knafeh::{Status, Streaming};
use pyo3::prelude::*;

/// Greets people and counts.
#[knafeh_py::pyservice(package = "helloworld")]
pub trait Greeter {
    /// Unary: answers `"Hello, {name}!"`.
    async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status>;
    /// Server streaming: `1..=n`, one message each.
    async fn count_to(&self, req: CountRequest) -> Result<Streaming<Count>, Status>;
    /// Client streaming: sums the `value`s and counts the messages.
    async fn add_up(&self, req: Streaming<Count>) -> Result<Total, Status>;
    /// Bidirectional: one `"Hello, {name}!"` per request, sent as soon as
    /// that request arrives. An empty `name` ends the call with
    /// `INVALID_ARGUMENT` after the replies before it.
    async fn chat(&self, req: Streaming<HelloRequest>) -> Result<Streaming<HelloReply>, Status>;
}

/// The `greeter` Python module: one line per generated class.
#[pymodule]
fn greeter(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GreeterPyClient>()?;
    m.add_class::<GreeterPyBlockingClient>()?;
    m.add_class::<GreeterPyService>()?;
    Ok(())
}
