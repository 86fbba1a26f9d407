//! Statuses as `knafeh.RpcError`, and metadata between Python dicts and
//! knafeh's `Metadata`.

use super::*;

use knafeh::{Metadata, Status};
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyString};

pub(crate) static KNAFEH_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The `knafeh` Python module. Generated classes live in the user's own
/// extension module; importing `knafeh` gives every module the same
/// `RpcError` and `Code`.
pub(crate) fn knafeh_py_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    KNAFEH_MODULE
        .get_or_try_init(py, || {
            py.import("knafeh").map(Bound::unbind).map_err(|e| {
                PyErr::new::<pyo3::exceptions::PyImportError, _>(format!(
                    "knafeh-generated classes need the `knafeh` Python package (build knafeh-py with maturin): {e}"
                ))
            })
        })
        .map(|m| m.bind(py))
}

pub(crate) fn metadata_to_py<'py>(py: Python<'py>, md: &Metadata) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in md.iter() {
        match v {
            knafeh::MetadataValue::Ascii(s) => d.set_item(k, s)?,
            knafeh::MetadataValue::Binary(b) => d.set_item(k, PyBytes::new(py, b))?,
        }
    }
    Ok(d)
}

/// Turns a status into a `knafeh.RpcError`.
pub(crate) fn status_to_pyerr(py: Python<'_>, status: &Status) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let module = knafeh_py_module(py)?;
        let err = module.getattr("RpcError")?.call1((
            status.code().as_i32(),
            status.message(),
            metadata_to_py(py, status.metadata())?,
        ))?;
        Ok(PyErr::from_value(err))
    };
    build().unwrap_or_else(|e| e)
}

/// Why a Python metadata dict cannot be sent.
pub(crate) enum MetadataError {
    /// Not a dict of str -> str | bytes.
    Type(String),
    /// A key or value the wire does not allow.
    Invalid(String),
}

impl std::fmt::Display for MetadataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetadataError::Type(m) | MetadataError::Invalid(m) => f.write_str(m),
        }
    }
}

/// A Python dict of str -> str (bytes for `-bin` keys) as metadata.
pub(crate) fn metadata_from_py(md: &Bound<'_, PyAny>) -> Result<Metadata, MetadataError> {
    let dict = md
        .cast::<PyDict>()
        .map_err(|_| MetadataError::Type("metadata must be a dict of str -> str | bytes".into()))?;
    let mut out = Metadata::new();
    for (k, v) in dict.iter() {
        let key: String = k
            .extract()
            .map_err(|_| MetadataError::Type("metadata keys must be str".into()))?;
        let res = if let Ok(b) = v.cast::<PyBytes>() {
            out.append_bin(&key, b.as_bytes())
        } else if let Ok(s) = v.cast::<PyString>() {
            let s = s
                .to_cow()
                .map_err(|e| MetadataError::Invalid(format!("metadata {key:?}: {e}")))?;
            out.append(&key, &s)
        } else {
            return Err(MetadataError::Type(format!(
                "metadata value for {key:?} must be str or bytes"
            )));
        };
        res.map_err(|e| MetadataError::Invalid(e.to_string()))?;
    }
    Ok(out)
}
