//! The methods of the core's classes whose work is Python at heart — asyncio coroutines,
//! scapy packets, libpcap's tcpdump compiler (reached through the `libpcap` package), the
//! capture-to-file options — and which must exist on objects the core itself creates (a
//! `Queue` from `tap.queues`, a `Batch` from `recv_batch`, a `Loopback` end).
//!
//! The core never imports vnetio's Python modules. Instead the `vnetio` package, when it
//! is imported, hands the core the Python functions these methods forward to
//! (`_core._install_python_layer`, called from `vnetio/_python_layer.py`): the Python
//! layer composes the core and supplies these parts, and the core knows no module path.
//! Why not Python subclasses of the core's classes: the core creates Batches and Queues
//! itself, so it would have to call a Python class per batch on the hot path.

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

/// Every function the Python layer supplies, by name, with what it does.
pub(super) const HOOKS: [(&str, &str); 10] = [
    ("recv_batch_async", "Adapter.recv_batch_async (asyncio)"),
    ("send_batch_async", "Adapter.send_batch_async (asyncio)"),
    ("batches", "Adapter.batches (asyncio)"),
    ("aenter", "async with adapter"),
    ("aexit", "async with adapter"),
    ("send_packets", "Adapter.send_packets (scapy packets)"),
    ("capture_to", "Adapter.capture_to (capture options)"),
    ("compile_filter", "tcpdump expressions (libpcap)"),
    ("to_scapy", "Batch.to_scapy (scapy packets)"),
    (
        "filter_batch",
        "Batch.filter with a predicate (scapy packets)",
    ),
];

static INSTALLED: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// Take the Python layer's functions (a dict with exactly the names of [`HOOKS`], each
/// callable). Called once by the `vnetio` package at import; a second call is refused.
#[pyfunction]
pub fn _install_python_layer(py: Python<'_>, functions: &Bound<'_, PyDict>) -> PyResult<()> {
    if INSTALLED.get(py).is_some() {
        return Err(PyRuntimeError::new_err(
            "the Python layer is already installed",
        ));
    }
    for (name, _) in HOOKS {
        match functions.get_item(name)? {
            Some(f) if f.is_callable() => {}
            Some(_) => return Err(PyTypeError::new_err(format!("{name} must be callable"))),
            None => return Err(PyValueError::new_err(format!("missing function {name}"))),
        }
    }
    if let Some(extra) = functions
        .keys()
        .iter()
        .filter_map(|k| k.extract::<String>().ok())
        .find(|k| !HOOKS.iter().any(|(name, _)| name == k))
    {
        return Err(PyValueError::new_err(format!("unknown function {extra}")));
    }
    INSTALLED
        .set(py, functions.copy()?.unbind())
        .map_err(|_| PyRuntimeError::new_err("the Python layer is already installed"))
}

/// The Python layer's function `name` (one of [`HOOKS`]).
pub(super) fn hook<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let what = HOOKS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(name, |(_, what)| what);
    let installed = INSTALLED.get(py).ok_or_else(|| {
        PyRuntimeError::new_err(format!(
            "{what} is written in Python and is installed by the vnetio package: `import \
             vnetio` instead of using vnetio._core alone"
        ))
    })?;
    installed
        .bind(py)
        .get_item(name)?
        .ok_or_else(|| PyRuntimeError::new_err(format!("no Python function {name}")))
}
