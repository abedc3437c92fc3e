//! `Loopback` and `loopback_pair`: the bindings of the in-memory adapter pair
//! (`device::loopback`).

use std::sync::Arc;

use pyo3::prelude::*;

use super::adapter::PyAdapter;
use crate::device::loopback::{self, LoopbackEnd};
use crate::device::Device;

/// One end of an in-memory adapter pair.
#[pyclass(name = "Loopback", module = "vnetio._core", extends = PyAdapter, frozen)]
pub struct PyLoopback {
    end: Arc<LoopbackEnd>,
}

#[pymethods]
impl PyLoopback {
    /// The MTU frames are checked against.
    #[getter]
    fn mtu(&self) -> usize {
        self.end.mtu()
    }

    /// Queue capacity in frames.
    #[getter]
    fn capacity(&self) -> usize {
        self.end.capacity()
    }

    /// Frames queued for this end's recv.
    #[getter]
    fn pending(&self) -> usize {
        self.end.pending()
    }
}

/// Make two connected in-memory adapters: what one sends, the other receives.
#[pyfunction]
#[pyo3(signature = (capacity = 1024, *, kind = "tap", mtu = 1500, overflow = "drop"))]
pub fn loopback_pair(
    py: Python<'_>,
    capacity: usize,
    kind: &str,
    mtu: usize,
    overflow: &str,
) -> PyResult<(Py<PyLoopback>, Py<PyLoopback>)> {
    let medium = super::convert::medium(kind)?;
    let overflow = super::convert::overflow(overflow)?;
    let (a, b) = loopback::pair(capacity, medium, mtu, overflow)?;
    let make = |end: LoopbackEnd, name: &str| -> PyResult<Py<PyLoopback>> {
        let end = Arc::new(end);
        let dev: Arc<dyn Device> = Arc::clone(&end) as Arc<dyn Device>;
        Py::new(
            py,
            PyClassInitializer::from(PyAdapter::new(dev, name.to_owned(), "Loopback"))
                .add_subclass(PyLoopback { end }),
        )
    };
    Ok((make(a, "loop0")?, make(b, "loop1")?))
}
