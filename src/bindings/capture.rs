//! `vnetio.capture.Writer` and `Reader`: pcap/pcapng files from Python, and the capture
//! loop (adapter → filter → file) that runs with the interpreter released.
//!
//! Why the loop is in Rust: a Python loop of `recv_batch` + `write_batch` costs two
//! attach/detach round trips and a Batch object per read; at 64-byte frames that is
//! most of the budget (see benches/capture_loop.py). Here one detached stretch of up to
//! `SLICE` reads, filters and writes with no Python object at all, then re-attaches only
//! to check for signals.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::adapter::PyAdapter;
use super::batch::{bpf_program, PyBatch};
use super::gil::{deadline, detached, wait_in_slices};
use crate::batch::PacketBatch;
use crate::capture::{
    linktype_for, medium_for, CaptureReader, CaptureWriter, Format, WriterOptions,
    LINKTYPE_ETHERNET, LINKTYPE_RAW,
};
use crate::device::Device;
use crate::error::Error;
use crate::filter::bpf::Program;
use crate::wire::Medium;

/// Frames per read in the capture loop.
const READ_FRAMES: usize = 256;

fn lock<T>(m: &Mutex<T>) -> PyResult<MutexGuard<'_, T>> {
    m.lock().map_err(|_| {
        PyRuntimeError::new_err("an earlier call panicked while using this object; open a new one")
    })
}

pub(super) fn parse_format(format: &str) -> PyResult<Format> {
    match format {
        "pcapng" => Ok(Format::PcapNg),
        "pcap" => Ok(Format::Pcap),
        other => Err(PyValueError::new_err(format!(
            "format must be \"pcapng\" or \"pcap\", not {other:?}"
        ))),
    }
}

fn linktype_name(linktype: u32) -> Option<&'static str> {
    match linktype {
        LINKTYPE_ETHERNET => Some("ethernet"),
        LINKTYPE_RAW => Some("raw"),
        _ => None,
    }
}

/// The link type from `linktype=` and what `interface=` says (an adapter's kind).
fn resolve_linktype(linktype: &Bound<'_, PyAny>, from_adapter: Option<Medium>) -> PyResult<u32> {
    if let Ok(n) = linktype.extract::<u32>() {
        if n > u32::from(u16::MAX) {
            return Err(PyValueError::new_err(format!(
                "linktype {n} is out of range (LINKTYPE_* values fit in 16 bits)"
            )));
        }
        return Ok(n);
    }
    let Ok(text) = linktype.extract::<String>() else {
        return Err(PyTypeError::new_err(
            "linktype must be \"auto\", \"ethernet\", \"raw\" or a LINKTYPE_* number",
        ));
    };
    match (text.as_str(), from_adapter) {
        ("ethernet", _) => Ok(LINKTYPE_ETHERNET),
        ("raw", _) => Ok(LINKTYPE_RAW),
        ("auto", Some(m)) => Ok(linktype_for(m)),
        ("auto", None) => Err(PyValueError::new_err(
            "linktype=\"auto\" needs interface= to be an adapter (a TAP gives Ethernet, a TUN raw \
             IP); pass interface=adapter, or linktype=\"ethernet\" (TAP frames) or \"raw\" (TUN \
             packets)",
        )),
        (other, _) => Err(PyValueError::new_err(format!(
            "linktype must be \"auto\", \"ethernet\", \"raw\" or a LINKTYPE_* number, not {other:?}"
        ))),
    }
}

/// A pcap or pcapng file being written.
#[pyclass(name = "Writer", module = "vnetio._core", frozen)]
pub struct PyWriter {
    inner: Mutex<CaptureWriter>,
    path: String,
    format: Format,
    linktype: u32,
    snaplen: u32,
    interface: Option<String>,
    filter: Option<String>,
    program: Option<Program>,
    filtered: AtomicU64,
}

impl PyWriter {
    /// Run `f` on the writer, locked (call detached: a capture may hold the lock).
    fn locked<T>(
        &self,
        f: impl FnOnce(&mut CaptureWriter) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut w = self.inner.lock().map_err(|_| {
            Error::InvalidArgument("writer poisoned by a panic; open a new one".into())
        })?;
        f(&mut w)
    }

    /// Read from `dev` into the file until `count` frames were written, the file reached
    /// `max_bytes`, or `deadline`; signals are checked every `SLICE`.
    fn run_capture(
        &self,
        py: Python<'_>,
        dev: &Arc<dyn Device>,
        count: Option<u64>,
        max_bytes: Option<u64>,
        deadline: Option<Instant>,
    ) -> PyResult<(u64, u64, &'static str)> {
        let mut batch = PacketBatch::with_capacity(READ_FRAMES, READ_FRAMES * 2048);
        let mut captured = 0u64;
        let done = wait_in_slices(py, deadline, |slice_end| {
            let mut filtered = 0u64;
            let step = self.locked(|w| loop {
                let left = count.map(|c| c.saturating_sub(captured));
                if left == Some(0) {
                    return Ok(Some("count"));
                }
                if max_bytes.is_some_and(|m| w.file_bytes() >= m) {
                    return Ok(Some("size"));
                }
                let wait = slice_end.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    return Ok(None);
                }
                let max = left.map_or(READ_FRAMES, |l| READ_FRAMES.min(l as usize));
                batch.clear();
                if dev.recv_batch(&mut batch, max, wait)? == 0 {
                    continue;
                }
                let kept = batch.iter().zip(batch.timestamps_ns()).filter(|(f, _)| {
                    let keep = self.program.as_ref().is_none_or(|p| p.accepts(f));
                    if !keep {
                        filtered += 1;
                    }
                    keep
                });
                let before = w.frames();
                let result = w.write_frames(kept);
                captured += w.frames().saturating_sub(before);
                result?;
            });
            self.filtered.fetch_add(filtered, Relaxed);
            step
        })?;
        Ok((
            captured,
            self.filtered.load(Relaxed),
            done.unwrap_or("timeout"),
        ))
    }
}

#[pymethods]
impl PyWriter {
    #[new]
    #[allow(clippy::needless_pass_by_value, clippy::too_many_arguments)] // PyO3 extracts os.PathLike into an owned PathBuf; keyword arguments
    #[pyo3(signature = (path, *, format = "pcapng", snaplen = 262_144, linktype = None, interface = None, filter = None, direct_io = true))]
    fn new(
        py: Python<'_>,
        path: std::path::PathBuf,
        format: &str,
        snaplen: u32,
        linktype: Option<&Bound<'_, PyAny>>,
        interface: Option<&Bound<'_, PyAny>>,
        filter: Option<String>,
        direct_io: bool,
    ) -> PyResult<Self> {
        let format = parse_format(format)?;
        let (medium, if_name) = match interface {
            None => (None, None),
            Some(obj) => {
                if let Ok(adapter) = obj.cast::<PyAdapter>() {
                    let a = adapter.get();
                    (Some(a.device().medium()), Some(a.name().to_owned()))
                } else if let Ok(name) = obj.extract::<String>() {
                    (None, Some(name))
                } else {
                    return Err(PyTypeError::new_err(
                        "interface must be an adapter (Tap, Tun, Queue, Loopback) or a name (str)",
                    ));
                }
            }
        };
        let auto = pyo3::types::PyString::new(py, "auto");
        let linktype = resolve_linktype(linktype.unwrap_or(auto.as_any()), medium)?;
        if let (Some(m), Some(kind)) = (medium, medium_for(linktype)) {
            if m != kind {
                return Err(PyValueError::new_err(format!(
                    "linktype {} does not carry a {} adapter's frames; leave linktype=\"auto\"",
                    linktype_name(linktype).unwrap_or("?"),
                    m.as_str()
                )));
            }
        }
        // Compile the filter first: a typo is a ValueError before the file exists.
        let program = match (&filter, medium_for(linktype)) {
            (Some(expr), Some(m)) => {
                let text = pyo3::types::PyString::new(py, expr);
                Some(bpf_program(text.as_any(), m.as_str())?)
            }
            _ => None,
        };
        let opts = WriterOptions {
            format,
            snaplen,
            linktype,
            if_name: if_name.clone(),
            filter: filter.clone(),
            direct_io,
        };
        let p = path.clone();
        let writer = detached(py, move || CaptureWriter::create(p, opts))?;
        Ok(PyWriter {
            inner: Mutex::new(writer),
            path: path.display().to_string(),
            format,
            linktype,
            snaplen,
            interface: if_name,
            filter,
            program,
            filtered: AtomicU64::new(0),
        })
    }

    /// Append a Batch (its timestamps are kept; frames stamped 0 get the current time),
    /// or an iterable of frames, with the GIL released. Returns the number of frames.
    fn write_batch(&self, py: Python<'_>, batch: &Bound<'_, PyAny>) -> PyResult<usize> {
        let owned;
        let inner = if let Ok(b) = batch.cast::<PyBatch>() {
            b.get().inner()
        } else {
            owned = PyBatch::collect(batch)?;
            &owned
        };
        py.detach(|| self.locked(|w| w.write_frames(inner.iter().zip(inner.timestamps_ns()))))?;
        Ok(inner.len())
    }

    /// Append one frame (any bytes-like object) stamped `timestamp_ns` (default: now).
    #[pyo3(signature = (frame, timestamp_ns = None))]
    fn write(
        &self,
        py: Python<'_>,
        frame: &Bound<'_, PyAny>,
        timestamp_ns: Option<u64>,
    ) -> PyResult<()> {
        if timestamp_ns == Some(0) {
            return Err(PyValueError::new_err(
                "timestamp_ns must be positive (ns since the Unix epoch); omit it for now",
            ));
        }
        let arena = PyBatch::collect(PyTuple::new(py, [frame])?.as_any())?;
        let data = arena.get(0).unwrap_or_default();
        let ts = timestamp_ns.unwrap_or(0);
        detached(py, || self.locked(|w| w.write_frame(data, ts)))?;
        Ok(())
    }

    /// Write buffered frames to the file (it is then complete up to here).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || self.locked(CaptureWriter::flush))
    }

    /// Flush and close the file. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || self.locked(CaptureWriter::finish))
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close(py)
    }

    /// Capture from `adapter` into this file, with the GIL released, until `count`
    /// frames were written, the file holds `max_bytes`, or `timeout` seconds passed
    /// (None: no limit); Ctrl-C raises KeyboardInterrupt (frames read so far are kept).
    /// Frames the writer's `filter` rejects are counted in `filtered`, not written.
    /// Returns (frames written, frames filtered out in total, why it stopped: "count",
    /// "size" or "timeout").
    #[pyo3(signature = (adapter, *, count = None, max_bytes = None, timeout = None))]
    fn capture(
        &self,
        py: Python<'_>,
        adapter: &Bound<'_, PyAdapter>,
        count: Option<u64>,
        max_bytes: Option<u64>,
        timeout: Option<f64>,
    ) -> PyResult<(u64, u64, &'static str)> {
        let dev = Arc::clone(adapter.get().device());
        let medium = dev.medium();
        if medium_for(self.linktype) != Some(medium) {
            return Err(PyValueError::new_err(format!(
                "this file's link type ({}) cannot hold frames of a {} adapter; open the Writer \
                 with interface=adapter",
                self.linktype,
                medium.as_str()
            )));
        }
        let deadline = deadline(timeout)?;
        self.run_capture(py, &dev, count, max_bytes, deadline)
    }

    /// The file's path.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// "pcapng" or "pcap".
    #[getter]
    fn format(&self) -> &'static str {
        self.format.as_str()
    }

    /// The LINKTYPE_* number (1 Ethernet, 101 raw IP).
    #[getter]
    fn linktype(&self) -> u32 {
        self.linktype
    }

    /// Longest part of a frame kept.
    #[getter]
    fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// Interface name recorded in the file (pcapng), or None.
    #[getter]
    fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }

    /// Filter expression recorded in the file (pcapng) and applied by `capture`, or None.
    #[getter]
    fn filter(&self) -> Option<&str> {
        self.filter.as_deref()
    }

    /// Frames written (buffered ones included; after a write error, those in the file).
    #[getter]
    fn frames(&self) -> PyResult<u64> {
        Ok(lock(&self.inner)?.frames())
    }

    /// Frame bytes written (as stored, cut to the snaplen).
    #[getter]
    fn bytes(&self) -> PyResult<u64> {
        Ok(lock(&self.inner)?.bytes())
    }

    /// Size of the file, header included, once buffered frames are written.
    #[getter]
    fn file_bytes(&self) -> PyResult<u64> {
        Ok(lock(&self.inner)?.file_bytes())
    }

    /// Frames cut to the snaplen.
    #[getter]
    fn truncated_frames(&self) -> PyResult<u64> {
        Ok(lock(&self.inner)?.truncated_frames())
    }

    /// Whether whole pages go to the file with O_DIRECT (False when `direct_io=False` or
    /// the filesystem refused it; see the README's capture section).
    #[getter]
    fn direct_io(&self) -> PyResult<bool> {
        Ok(lock(&self.inner)?.direct_io())
    }

    /// Frames `capture` read and the filter rejected.
    #[getter]
    fn filtered(&self) -> u64 {
        self.filtered.load(Relaxed)
    }

    /// Whether close() was called.
    #[getter]
    fn closed(&self) -> PyResult<bool> {
        Ok(lock(&self.inner)?.is_closed())
    }

    fn __repr__(&self) -> String {
        format!(
            "<vnetio.capture.Writer path={:?} format={} linktype={}>",
            self.path,
            self.format.as_str(),
            self.linktype
        )
    }
}

/// A pcap or pcapng file being read, batch by batch.
#[pyclass(name = "Reader", module = "vnetio._core", frozen)]
pub struct PyReader {
    inner: Mutex<Option<CaptureReader>>,
    path: String,
    format: Format,
    pool: Arc<super::batch::ArenaPool>,
}

impl PyReader {
    /// Run `f` on the reader, locked; a ValueError once the file is closed.
    fn with_mut<T>(&self, f: impl FnOnce(&mut CaptureReader) -> T) -> PyResult<T> {
        let mut guard = lock(&self.inner)?;
        let r = guard.as_mut().ok_or_else(|| {
            PyValueError::new_err(format!("capture file {} is closed", self.path))
        })?;
        Ok(f(r))
    }

    fn with<T>(&self, f: impl FnOnce(&CaptureReader) -> T) -> PyResult<T> {
        self.with_mut(|r| f(r))
    }
}

#[pymethods]
impl PyReader {
    #[new]
    #[allow(clippy::needless_pass_by_value)] // PyO3 extracts os.PathLike into an owned PathBuf
    fn new(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let p = path.clone();
        let reader = py.detach(move || -> Result<CaptureReader, Error> {
            let mut r = CaptureReader::open(p)?;
            r.read_interfaces()?;
            Ok(r)
        })?;
        Ok(PyReader {
            format: reader.format(),
            inner: Mutex::new(Some(reader)),
            path: path.display().to_string(),
            pool: Arc::default(),
        })
    }

    /// Up to `max_frames` frames as a Batch (timestamps from the file); an empty Batch
    /// at the end. Malformed or cut-short data raises ValueError naming the byte offset.
    #[pyo3(signature = (max_frames = 256))]
    fn read_batch(&self, py: Python<'_>, max_frames: usize) -> PyResult<PyBatch> {
        if max_frames == 0 || max_frames > 65_536 {
            return Err(PyValueError::new_err(format!(
                "max_frames must be between 1 and 65536, not {max_frames}"
            )));
        }
        let mut batch = self.pool.take();
        self.with_mut(|reader| detached(py, || reader.read_batch(&mut batch, max_frames)))??;
        Ok(PyBatch::from_pool(batch, &self.pool))
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<PyBatch> {
        let batch = self.read_batch(py, 256)?;
        if batch.inner().is_empty() {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(batch)
    }

    /// Close the file. Idempotent.
    fn close(&self) -> PyResult<()> {
        lock(&self.inner)?.take();
        Ok(())
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, _exc_info: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close()
    }

    /// The file's path.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// "pcapng" or "pcap".
    #[getter]
    fn format(&self) -> &'static str {
        self.format.as_str()
    }

    /// LINKTYPE_* of the first interface (1 Ethernet, 101 raw IP), or None when the file
    /// describes no interface.
    #[getter]
    fn linktype(&self) -> PyResult<Option<u32>> {
        self.with(|r| r.interfaces().first().map(|i| i.linktype))
    }

    /// The adapter kind whose frames the first interface holds: "tap", "tun", or None
    /// (another link type).
    #[getter]
    fn kind(&self) -> PyResult<Option<&'static str>> {
        self.with(|r| {
            r.interfaces()
                .first()
                .and_then(|i| medium_for(i.linktype))
                .map(Medium::as_str)
        })
    }

    /// Every interface described so far: dicts with name, filter, linktype, snaplen.
    #[getter]
    fn interfaces<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let all = self.with(CaptureReader::all_interfaces)?;
        let list = PyList::empty(py);
        for i in all {
            let d = PyDict::new(py);
            d.set_item("name", i.name)?;
            d.set_item("filter", i.filter)?;
            d.set_item("linktype", i.linktype)?;
            d.set_item("snaplen", i.snaplen)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Frames read so far.
    #[getter]
    fn frames(&self) -> PyResult<u64> {
        self.with(CaptureReader::frames)
    }

    /// Frames stored shorter than on the wire (cut to a snaplen).
    #[getter]
    fn truncated_frames(&self) -> PyResult<u64> {
        self.with(CaptureReader::truncated_frames)
    }

    fn __repr__(&self) -> String {
        format!(
            "<vnetio.capture.Reader path={:?} format={}>",
            self.path,
            self.format.as_str()
        )
    }
}

/// One tcpdump-style line per frame of `batch` (newline-terminated), decoded in Rust.
/// `utc_offset`: seconds east of UTC for the time of day (None: this machine's local).
#[pyfunction]
#[pyo3(signature = (batch, kind = "tap", utc_offset = None))]
pub fn summarize(
    py: Python<'_>,
    batch: &Bound<'_, PyBatch>,
    kind: &str,
    utc_offset: Option<i64>,
) -> PyResult<String> {
    let medium = super::convert::medium(kind)?;
    let offset = match utc_offset {
        Some(o) => o,
        None => py
            .import("time")?
            .call_method0("localtime")?
            .getattr("tm_gmtoff")?
            .extract()?,
    };
    let inner = batch.get().inner();
    Ok(py.detach(|| {
        let mut out = String::with_capacity(inner.len() * 80);
        crate::capture::summary::summarize(inner, medium, offset, &mut out);
        out
    }))
}
