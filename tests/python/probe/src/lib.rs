//! A `#[pyservice]` module used only by the Python tests: binary fields.

use knafeh_py::knafeh::Status;
use pyo3::prelude::*;
use serde::{Deserialize, Serialize};

/// A message with a binary field.
#[derive(Serialize, Deserialize)]
pub struct Blob {
    /// Raw bytes: `bytes` in Python.
    pub data: Vec<u8>,
    /// A label.
    pub tag: String,
}

/// Echo-like calls with binary payloads.
#[knafeh_py::pyservice(package = "knafeh.pytest")]
pub trait Probe {
    /// Returns a blob derived from the one it got.
    async fn blob(&self, req: Blob) -> Result<Blob, Status>;
}

#[pymodule]
fn knafeh_probe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ProbePyClient>()?;
    m.add_class::<ProbePyService>()?;
    Ok(())
}
