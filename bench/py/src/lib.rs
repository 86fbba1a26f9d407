//! The benchmark's echo service under `#[pyservice]`: the same wire service
//! as `knafeh-bench-echo` (`/bench.Echo/...`), with its message types, plus
//! the generated Python clients, exported from the `knafeh_bench` module.

pub use knafeh_bench_echo::{EchoMsg, StreamRequest};
use knafeh_py::knafeh::{Status, Streaming};
use pyo3::prelude::*;

/// The echo service.
#[knafeh_py::pyservice(package = "bench")]
pub trait Echo {
    /// Unary: returns the request.
    async fn echo(&self, req: EchoMsg) -> Result<EchoMsg, Status>;
    /// Server streaming: `count` items of `size` bytes each.
    async fn stream(&self, req: StreamRequest) -> Result<Streaming<EchoMsg>, Status>;
}

/// The `knafeh_bench` Python module.
#[pymodule]
fn knafeh_bench(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EchoPyClient>()?;
    m.add_class::<EchoPyBlockingClient>()?;
    m.add_class::<EchoPyService>()?;
    Ok(())
}
