//! `Forwarder`: the binding of `device::forward`, frames moved both ways between two
//! adapters by Rust threads, no Python per batch.

use std::sync::Arc;
use std::time::Instant;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::adapter::PyAdapter;
use super::gil::{deadline, detached, wait_in_slices};
use crate::device::forward::{DirectionStats, ForwardOptions, Forwarder, State};
use crate::device::Device;

/// Forward frames both ways between two adapters, in two Rust threads. Offload metadata
/// crosses when the destination takes it; otherwise it is resolved in software. Closing
/// the forwarder (or either adapter) stops it; closing it leaves both adapters open. A
/// multi-queue adapter is forwarded through its first queue (pass `Queue`s for the others).
#[pyclass(name = "Forwarder", module = "vnetio._core", frozen)]
pub struct PyForwarder {
    fwd: Arc<Forwarder>,
    /// The adapters, kept alive (and returned by `a`/`b`) while the forwarder exists.
    ends: [Py<PyAny>; 2],
}

fn adapter_of<'py>(obj: &Bound<'py, PyAny>, which: &str) -> PyResult<Bound<'py, PyAdapter>> {
    obj.cast::<PyAdapter>().cloned().map_err(|_| {
        PyTypeError::new_err(format!(
            "{which} must be a vnetio adapter (Tap, Tun, Queue, VhostUserNet, Macvtap, \
             Loopback, SlipLink…), not {}",
            obj.get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })
}

fn direction_dict<'py>(py: Python<'py>, s: &DirectionStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in [
        ("frames", s.frames),
        ("bytes", s.bytes),
        ("batches", s.batches),
        ("superframes", s.superframes),
        ("delivered", s.delivered),
        ("dropped", s.dropped),
        ("refused", s.refused),
        ("recv_errors", s.recv_errors),
        ("send_errors", s.send_errors),
    ] {
        d.set_item(k, v)?;
    }
    Ok(d)
}

#[pymethods]
impl PyForwarder {
    #[new]
    #[pyo3(signature = (a, b, *, batch = 256))]
    fn new(
        py: Python<'_>,
        a: &Bound<'_, PyAny>,
        b: &Bound<'_, PyAny>,
        batch: usize,
    ) -> PyResult<Self> {
        let (pa, pb) = (adapter_of(a, "a")?, adapter_of(b, "b")?);
        let devs: [Arc<dyn Device>; 2] =
            [Arc::clone(pa.get().device()), Arc::clone(pb.get().device())];
        let mut names = [pa.get().name().to_owned(), pb.get().name().to_owned()];
        if names[0] == names[1] {
            // Two ends both called e.g. "loop1": say which side a message is about.
            names = [format!("a ({})", names[0]), format!("b ({})", names[1])];
        }
        let [da, db] = devs;
        let fwd = detached(py, || {
            Forwarder::start(da, db, names, ForwardOptions { batch })
        })?;
        Ok(PyForwarder {
            fwd: Arc::new(fwd),
            ends: [a.clone().unbind(), b.clone().unbind()],
        })
    }

    /// The first adapter.
    #[getter]
    fn a(&self, py: Python<'_>) -> Py<PyAny> {
        self.ends[0].clone_ref(py)
    }

    /// The second adapter.
    #[getter]
    fn b(&self, py: Python<'_>) -> Py<PyAny> {
        self.ends[1].clone_ref(py)
    }

    /// "running", "closed" (close() was called) or "stopped" (an adapter was closed;
    /// `reason` says which).
    #[getter]
    fn state(&self) -> &'static str {
        match self.fwd.state() {
            State::Running => "running",
            State::Closed => "closed",
            State::Stopped(_) => "stopped",
        }
    }

    /// Whether both threads are still forwarding.
    #[getter]
    fn running(&self) -> bool {
        self.fwd.state() == State::Running
    }

    /// Why the forwarder stopped ("<name> was closed", "close() was called"), or None.
    #[getter]
    fn reason(&self) -> Option<String> {
        match self.fwd.state() {
            State::Running => None,
            State::Closed => Some("close() was called".into()),
            State::Stopped(why) => Some(why),
        }
    }

    /// The last receive or send error met (None: none so far). Errors are counted in
    /// stats() and do not stop the forwarder; only a closed adapter does.
    #[getter]
    fn last_error(&self) -> Option<String> {
        self.fwd.last_error()
    }

    /// Counters per direction: {"a_to_b": {...}, "b_to_a": {...}}, each with frames,
    /// bytes, batches, superframes (taken), delivered, dropped (taken and not delivered),
    /// refused (of dropped: failed the destination's checks), recv_errors, send_errors.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let [ab, ba] = self.fwd.stats();
        let d = PyDict::new(py);
        d.set_item("a_to_b", direction_dict(py, &ab)?)?;
        d.set_item("b_to_a", direction_dict(py, &ba)?)?;
        Ok(d)
    }

    /// Wait until the forwarder stops (an adapter closed, or close()), at most `timeout`
    /// seconds (None: for ever). Returns whether it stopped. Ctrl-C interrupts it.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline(timeout)?;
        let fwd = Arc::clone(&self.fwd);
        let done = wait_in_slices(py, deadline, move |slice_end| {
            let left = slice_end.saturating_duration_since(Instant::now());
            Ok(fwd.wait(left).then_some(()))
        })?;
        Ok(done.is_some())
    }

    /// Stop forwarding (within a few tens of milliseconds) and wait for the threads. Both
    /// adapters stay open. Idempotent.
    fn close(&self, py: Python<'_>) {
        let fwd = Arc::clone(&self.fwd);
        py.detach(move || fwd.close());
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) {
        self.close(py);
    }

    fn __repr__(&self) -> String {
        let [a, b] = self.fwd.names();
        format!("<vnetio.Forwarder {a} <-> {b} {}>", self.state())
    }
}
