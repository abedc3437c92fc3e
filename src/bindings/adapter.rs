//! `Adapter` (the shared I/O interface), `Tap`, `Tun`, `Queue`, `Loopback` and `Stats`.
//!
//! Every method validates and extracts its Python arguments first, then releases the
//! interpreter (`py.detach`) around the syscalls and batch loops. Blocking waits are cut
//! into slices of at most `SLICE`; between slices the interpreter is re-attached to
//! check for signals, so Ctrl-C interrupts a blocked receive promptly.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use pyo3::exceptions::{PyTimeoutError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use super::batch::{ArenaPool, PyBatch};
use super::gil::{deadline, detached, wait_in_slices};
use super::python_layer::hook;
use crate::device::{Device, Stats};
use crate::filter::Placement;

/// Largest `max_frames` accepted by `recv_batch`.
const MAX_BATCH: usize = 65_536;

/// Receive into a pooled arena, waiting in signal-checked slices.
fn recv_into(
    py: Python<'_>,
    dev: &Arc<dyn Device>,
    pool: &Arc<ArenaPool>,
    max: usize,
    timeout: Option<f64>,
) -> PyResult<PyBatch> {
    if max == 0 || max > MAX_BATCH {
        return Err(PyValueError::new_err(format!(
            "max_frames must be between 1 and {MAX_BATCH}, not {max}"
        )));
    }
    let deadline = deadline(timeout)?;
    let mut batch = pool.take();
    wait_in_slices(py, deadline, |slice_end| {
        let wait = slice_end.saturating_duration_since(Instant::now());
        Ok((dev.recv_batch(&mut batch, max, wait)? > 0).then_some(()))
    })?;
    Ok(PyBatch::from_pool(batch, pool))
}

/// Validate and write frames given as a Batch or any iterable of buffers.
fn send_any(py: Python<'_>, dev: &Arc<dyn Device>, frames: &Bound<'_, PyAny>) -> PyResult<usize> {
    if let Ok(batch) = frames.cast::<PyBatch>() {
        let inner = batch.get().inner();
        let slices: Vec<&[u8]> = inner.iter().collect();
        if inner.has_offload() {
            let hdrs: Vec<_> = (0..inner.len()).map(|i| inner.hdr(i)).collect();
            dev.check_frames_meta(&slices, &hdrs)?;
            return detached(py, || dev.send_frames_meta(&slices, &hdrs));
        }
        return send_slices(py, dev, &slices);
    }
    if frames.is_instance_of::<PyBytes>() || frames.is_instance_of::<pyo3::types::PyByteArray>() {
        return Err(PyTypeError::new_err(
            "send_batch takes a Batch or an iterable of frames, not a single bytes object; use send(frame)",
        ));
    }
    let arena = PyBatch::collect(frames)?;
    let slices: Vec<&[u8]> = arena.iter().collect();
    send_slices(py, dev, &slices)
}

fn send_slices(py: Python<'_>, dev: &Arc<dyn Device>, slices: &[&[u8]]) -> PyResult<usize> {
    dev.check_frames(slices)?;
    if slices.is_empty() {
        return Ok(0);
    }
    detached(py, || dev.send_frames(slices))
}

fn send_one(py: Python<'_>, dev: &Arc<dyn Device>, frame: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(b) = frame.cast::<PyBytes>() {
        // bytes are immutable: borrow, no copy.
        send_slices(py, dev, &[b.as_bytes()])?;
    } else {
        let arena = PyBatch::collect(PyTuple::new(py, [frame])?.as_any())?;
        send_slices(py, dev, &[arena.get(0).unwrap_or_default()])?;
    }
    Ok(())
}

/// Counters of an adapter, queue or loopback end.
#[pyclass(name = "Stats", module = "vnetio._core", frozen, get_all)]
pub struct PyStats {
    rx_frames: u64,
    rx_bytes: u64,
    tx_frames: u64,
    tx_bytes: u64,
    rx_errors: u64,
    tx_errors: u64,
    rx_dropped: u64,
    tx_dropped: u64,
    tx_coalesced: u64,
    coalesce_fallbacks: u64,
    rx_filtered: Option<u64>,
}

impl From<Stats> for PyStats {
    fn from(s: Stats) -> Self {
        PyStats {
            rx_frames: s.rx_frames,
            rx_bytes: s.rx_bytes,
            tx_frames: s.tx_frames,
            tx_bytes: s.tx_bytes,
            rx_errors: s.rx_errors,
            tx_errors: s.tx_errors,
            rx_dropped: s.rx_dropped,
            tx_dropped: s.tx_dropped,
            tx_coalesced: s.tx_coalesced,
            coalesce_fallbacks: s.coalesce_fallbacks,
            rx_filtered: s.rx_filtered,
        }
    }
}

impl PyStats {
    fn fields(&self) -> [(&'static str, Option<u64>); 11] {
        [
            ("rx_frames", Some(self.rx_frames)),
            ("rx_bytes", Some(self.rx_bytes)),
            ("tx_frames", Some(self.tx_frames)),
            ("tx_bytes", Some(self.tx_bytes)),
            ("rx_errors", Some(self.rx_errors)),
            ("tx_errors", Some(self.tx_errors)),
            ("rx_dropped", Some(self.rx_dropped)),
            ("tx_dropped", Some(self.tx_dropped)),
            ("tx_coalesced", Some(self.tx_coalesced)),
            ("coalesce_fallbacks", Some(self.coalesce_fallbacks)),
            ("rx_filtered", self.rx_filtered),
        ]
    }
}

#[pymethods]
impl PyStats {
    /// The counters as a dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.fields() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn __getitem__(&self, key: &str) -> PyResult<Option<u64>> {
        self.fields()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(key.to_owned()))
    }

    fn __repr__(&self) -> String {
        let body: Vec<String> = self
            .fields()
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => format!("{k}=None"),
            })
            .collect();
        format!("Stats({})", body.join(", "))
    }
}

/// The common interface of every adapter: receive, send, counters, close.
#[pyclass(name = "Adapter", module = "vnetio._core", subclass, frozen)]
pub struct PyAdapter {
    dev: Arc<dyn Device>,
    pool: Arc<ArenaPool>,
    name: String,
    class: &'static str,
    /// The tcpdump expression of the current filter (None: no filter, or a raw program).
    filter_expr: Mutex<Option<String>>,
}

impl PyAdapter {
    /// The device behind the adapter (for the capture loop).
    pub(super) fn device(&self) -> &Arc<dyn Device> {
        &self.dev
    }

    pub(super) fn new(dev: Arc<dyn Device>, name: String, class: &'static str) -> Self {
        PyAdapter {
            dev,
            pool: Arc::default(),
            name,
            class,
            filter_expr: Mutex::new(None),
        }
    }
}

#[pymethods]
impl PyAdapter {
    /// The adapter's name.
    #[getter]
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// "tap" (Ethernet frames) or "tun" (IP packets).
    #[getter]
    fn kind(&self) -> &'static str {
        self.dev.medium().as_str()
    }

    /// Whether close() was called.
    #[getter]
    fn closed(&self) -> bool {
        self.dev.is_closed()
    }

    /// A descriptor that polls readable when frames are waiting.
    fn fileno(&self) -> PyResult<i32> {
        Ok(self.dev.raw_fd()?)
    }

    /// Close. Wakes any thread blocked in recv (it raises AdapterClosedError). Idempotent.
    fn close(&self, py: Python<'_>) {
        let dev = Arc::clone(&self.dev);
        py.detach(move || dev.close());
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) {
        self.close(py);
    }

    /// Receive one frame as bytes; raises TimeoutError if none arrives within `timeout`.
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let batch = recv_into(py, &self.dev, &self.pool, 1, timeout)?;
        match batch.inner().get(0) {
            Some(frame) => Ok(PyBytes::new(py, frame)),
            None => Err(PyTimeoutError::new_err(format!(
                "no frame arrived on {} within {} s",
                self.name,
                timeout.unwrap_or(0.0)
            ))),
        }
    }

    /// Receive up to `max_frames` frames into one Batch.
    #[pyo3(signature = (max_frames = 256, timeout = None))]
    fn recv_batch(
        &self,
        py: Python<'_>,
        max_frames: usize,
        timeout: Option<f64>,
    ) -> PyResult<PyBatch> {
        recv_into(py, &self.dev, &self.pool, max_frames, timeout)
    }

    /// Send one frame (any bytes-like object).
    fn send(&self, py: Python<'_>, frame: &Bound<'_, PyAny>) -> PyResult<()> {
        send_one(py, &self.dev, frame)
    }

    /// Send a Batch or an iterable of frames; returns how many were sent.
    fn send_batch(&self, py: Python<'_>, frames: &Bound<'_, PyAny>) -> PyResult<usize> {
        send_any(py, &self.dev, frames)
    }

    /// Send scapy packets: one conversion to bytes each, then one batch
    /// (`vnetio.inspect.send_packets`).
    fn send_packets(slf: &Bound<'_, Self>, packets: &Bound<'_, PyAny>) -> PyResult<usize> {
        let f = hook(slf.py(), "send_packets")?;
        f.call1((slf, packets))?.extract()
    }

    /// Coroutine: receive without blocking the event loop (`vnetio.aio`).
    #[pyo3(signature = (max_frames = 256, timeout = None))]
    fn recv_batch_async<'py>(
        slf: &Bound<'py, Self>,
        max_frames: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        hook(slf.py(), "recv_batch_async")?.call1((slf, max_frames, timeout))
    }

    /// Coroutine: send without blocking the event loop (`vnetio.aio`).
    fn send_batch_async<'py>(
        slf: &Bound<'py, Self>,
        frames: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        hook(slf.py(), "send_batch_async")?.call1((slf, frames))
    }

    /// Async iterator of batches (`async for batch in adapter.batches()`).
    #[pyo3(signature = (max_frames = 256))]
    fn batches<'py>(slf: &Bound<'py, Self>, max_frames: usize) -> PyResult<Bound<'py, PyAny>> {
        hook(slf.py(), "batches")?.call1((slf, max_frames))
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        hook(slf.py(), "aenter")?.call1((slf,))
    }

    #[pyo3(signature = (*exc_info))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        exc_info: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut args = vec![slf.clone().into_any()];
        args.extend(exc_info.iter());
        hook(slf.py(), "aexit")?.call1(PyTuple::new(slf.py(), args)?)
    }

    /// Capture into a pcapng/pcap file until `count` frames, `duration` seconds or Ctrl-C
    /// (`vnetio.capture.capture_to`); returns a `CaptureStats`.
    #[pyo3(signature = (path, **kwargs))]
    fn capture_to<'py>(
        slf: &Bound<'py, Self>,
        path: &Bound<'py, PyAny>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let f = hook(slf.py(), "capture_to")?;
        f.call((slf, path), kwargs)
    }

    /// Keep only the received frames `filter` accepts: a tcpdump expression (compiled by
    /// libpcap for this adapter's link type) or a classic BPF program as (code, jt, jf, k)
    /// tuples; None removes the filter. `placement`: "auto" (in the kernel on a TAP, as a
    /// counting eBPF filter, else in this process), "kernel", "classic" (TUNATTACHFILTER:
    /// no CAP_BPF needed, but rejects are counted with the kernel's drops) or "userspace".
    /// Returns where the filter runs. On error the previous filter stays in place.
    #[pyo3(signature = (filter, *, placement = "auto"))]
    fn set_filter(
        &self,
        py: Python<'_>,
        filter: &Bound<'_, PyAny>,
        placement: &str,
    ) -> PyResult<Option<&'static str>> {
        let wanted = match placement {
            "auto" => None,
            other => Some(Placement::parse(other).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "placement must be \"auto\", \"kernel\", \"classic\" or \"userspace\", \
                     not {other:?}"
                ))
            })?),
        };
        let (program, expr) = if filter.is_none() {
            (None, None)
        } else {
            let kind = self.dev.medium().as_str();
            let expr = filter.extract::<String>().ok();
            (Some(super::batch::bpf_program(filter, kind)?), expr)
        };
        let dev = Arc::clone(&self.dev);
        let placed = detached(py, move || dev.set_filter(program, wanted))?;
        *self
            .filter_expr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = expr;
        Ok(placed.map(Placement::as_str))
    }

    /// The tcpdump expression of the current filter (None: no filter, or a raw program).
    #[getter]
    fn filter(&self) -> Option<String> {
        self.dev.filter_placement()?;
        self.filter_expr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Where the current filter runs: "kernel", "classic", "userspace", or None.
    #[getter]
    fn filter_placement(&self) -> Option<&'static str> {
        self.dev.filter_placement().map(Placement::as_str)
    }

    /// Counters (kernel drop counters are read now).
    fn stats(&self, py: Python<'_>) -> PyResult<PyStats> {
        let dev = Arc::clone(&self.dev);
        Ok(detached(py, move || dev.stats())?.into())
    }

    fn __repr__(&self) -> String {
        let state = if self.dev.is_closed() {
            "closed"
        } else {
            "open"
        };
        format!(
            "<vnetio.{} name={:?} kind={} {state}>",
            self.class,
            self.name,
            self.dev.medium().as_str()
        )
    }
}

/// One queue of a multi-queue adapter (a descriptor of a TUN/TAP adapter, a queue pair
/// of a vhost-user adapter): the whole `Adapter` interface on that queue alone.
#[pyclass(name = "Queue", module = "vnetio._core", extends = PyAdapter, frozen)]
pub struct PyQueue {
    index: usize,
}

impl PyQueue {
    /// The Python objects of an adapter's queues, in order: `(device, name)` each.
    pub(super) fn tuple(
        py: Python<'_>,
        queues: impl Iterator<Item = (Arc<dyn Device>, String)>,
    ) -> PyResult<Py<PyTuple>> {
        let mut objects = Vec::new();
        for (index, (dev, name)) in queues.enumerate() {
            let init = PyClassInitializer::from(PyAdapter::new(dev, name, "Queue"))
                .add_subclass(PyQueue { index });
            objects.push(Py::new(py, init)?);
        }
        Ok(PyTuple::new(py, objects)?.unbind())
    }
}

#[pymethods]
impl PyQueue {
    /// Position of this queue in its adapter.
    #[getter]
    fn index(&self) -> usize {
        self.index
    }
}

/// Raise ValueError if `name` is not a valid interface name (or `%d` pattern).
#[pyfunction]
pub fn validate_ifname(name: &str) -> PyResult<()> {
    crate::device::validate_ifname(name)?;
    Ok(())
}

/// Raise a Rust panic (tests prove it surfaces as PanicException).
#[pyfunction]
#[allow(clippy::panic)]
pub fn _panic_for_test() {
    panic!("deliberate panic from vnetio._core._panic_for_test");
}
