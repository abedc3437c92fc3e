//! `SerialPair`, `SlipLink`, `SlipDecoder` and `slip_encode`/`slip_encode_batch`: the
//! bindings of `device::serial`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use super::adapter::PyAdapter;
use super::batch::PyBatch;
use super::gil::detached;
use crate::device::serial::link::{line_from_fd, open_line};
use crate::device::serial::slip::{self, DecodeStats, Decoder};
use crate::device::serial::{
    Faults, LineStats, LinkOptions, LinkStats, PairOptions, SerialPair, SlipLink,
};
use crate::device::Device;

// The signatures below spell the default MTU out (a literal shows in `__text_signature__`).
const _: () = assert!(slip::RFC1055_MTU == 1006);

/// Where `SerialPair` puts its symlinks unless told otherwise.
const DEFAULT_LINK_DIR: &str = "/tmp";

fn path_text(p: &std::path::Path) -> String {
    p.display().to_string()
}

fn parse_faults(faults: &Bound<'_, PyDict>) -> PyResult<Faults> {
    let mut f = Faults::default();
    for (key, value) in faults.iter() {
        let key: String = key.extract()?;
        match key.as_str() {
            "drop" => f.drop = value.extract()?,
            "corrupt" => f.corrupt = value.extract()?,
            "delay" => f.delay = value.extract()?,
            "delay_ms" => {
                let ms: f64 = value.extract()?;
                f.delay_for = Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| {
                    PyValueError::new_err(format!("delay_ms must be a number >= 0, not {ms}"))
                })?;
            }
            "seed" => f.seed = value.extract()?,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown fault {other:?}: the faults are \"drop\", \"corrupt\", \"delay\" \
                     (rates per byte, 0 to 1), \"delay_ms\" and \"seed\""
                )))
            }
        }
    }
    Ok(f)
}

fn line_stats_dict<'py>(py: Python<'py>, s: &LineStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("bytes_in", s.bytes_in)?;
    d.set_item("bytes_out", s.bytes_out)?;
    d.set_item("dropped", s.dropped)?;
    d.set_item("corrupted", s.corrupted)?;
    d.set_item("delays", s.delays)?;
    d.set_item("blocked_s", s.blocked.as_secs_f64())?;
    Ok(d)
}

/// A virtual null-modem cable: two pseudo-terminals joined by a relay in Rust. What is
/// written to one end is read from the other, optionally paced at `baud` and with
/// injected faults.
#[pyclass(name = "SerialPair", module = "vnetio._core", frozen)]
pub struct PySerialPair {
    pair: Arc<SerialPair>,
}

#[pymethods]
impl PySerialPair {
    #[new]
    #[pyo3(signature = (links = Some((String::from("ttyVN0"), String::from("ttyVN1"))), *, link_dir = None, baud = None, faults = None))]
    fn new(
        py: Python<'_>,
        links: Option<(String, String)>,
        link_dir: Option<PathBuf>,
        baud: Option<u32>,
        faults: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let opts = PairOptions {
            links: links.map(|(a, b)| [a, b]),
            link_dir: link_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_LINK_DIR)),
            baud,
            faults: faults.map(parse_faults).transpose()?,
        };
        let pair = detached(py, || SerialPair::open(&opts))?;
        Ok(PySerialPair {
            pair: Arc::new(pair),
        })
    }

    /// The two ends as users open them: the symlinks, or the ptys when links=None.
    #[getter]
    fn paths(&self) -> (String, String) {
        let [a, b] = self.pair.paths();
        (path_text(a), path_text(b))
    }

    /// The two ends' pseudo-terminals (/dev/pts/N).
    #[getter]
    fn ptys(&self) -> (String, String) {
        let [a, b] = self.pair.ptys();
        (path_text(a), path_text(b))
    }

    /// The line rate in bit/s (None: not paced).
    #[getter]
    fn baud(&self) -> Option<u32> {
        self.pair.baud()
    }

    /// Whether close() was called.
    #[getter]
    fn closed(&self) -> bool {
        self.pair.is_closed()
    }

    /// Counters of each direction: {"a_to_b": {...}, "b_to_a": {...}} where a is
    /// paths[0] and b is paths[1]; each has bytes_in, bytes_out, dropped, corrupted,
    /// delays and blocked_s (seconds bytes waited because nobody read the receiving end).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let [ab, ba] = self.pair.stats();
        let d = PyDict::new(py);
        d.set_item("a_to_b", line_stats_dict(py, &ab)?)?;
        d.set_item("b_to_a", line_stats_dict(py, &ba)?)?;
        Ok(d)
    }

    /// Stop the relay, close both ptys (their users see a hang-up) and remove the links.
    /// Idempotent.
    fn close(&self, py: Python<'_>) {
        let pair = Arc::clone(&self.pair);
        py.detach(move || pair.close());
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) {
        self.close(py);
    }

    fn __repr__(&self) -> String {
        let [a, b] = self.pair.paths();
        let rate = self
            .pair
            .baud()
            .map_or_else(String::new, |b| format!(" baud={b}"));
        let faults = if self.pair.faults().is_some() {
            " faults"
        } else {
            ""
        };
        let state = if self.pair.is_closed() {
            "closed"
        } else {
            "open"
        };
        format!(
            "<vnetio.SerialPair {} <-> {}{rate}{faults} {state}>",
            a.display(),
            b.display()
        )
    }
}

fn link_stats_dict<'py>(py: Python<'py>, s: &LinkStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in [
        ("line_bytes_in", s.line_bytes_in),
        ("line_bytes_out", s.line_bytes_out),
        ("packets_in", s.packets_in),
        ("packets_out", s.packets_out),
        ("empty", s.empty),
        ("bad_escape", s.bad_escape),
        ("over_mtu", s.over_mtu),
        ("noise", s.noise),
        ("bad_checksum", s.bad_checksum),
        ("refused", s.refused),
        ("oversize", s.oversize),
        ("line_errors", s.line_errors),
    ] {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// IP over a serial line (RFC 1055 SLIP). Bridges the tty `serial` (a path, e.g. one of
/// a SerialPair's paths, or an open descriptor) and the Tun `tun` (the link then reads
/// the Tun: do not receive from it yourself; closing the link leaves it open); with
/// `tun=None` the link is itself an adapter of IP packets (recv_batch/send_batch).
#[pyclass(name = "SlipLink", module = "vnetio._core", extends = PyAdapter, frozen)]
pub struct PySlipLink {
    link: Arc<SlipLink>,
    line: String,
}

#[pymethods]
impl PySlipLink {
    #[new]
    #[pyo3(signature = (serial, tun = None, *, mtu = 1006, baud = None, capacity = 1024))]
    fn new(
        py: Python<'_>,
        serial: &Bound<'_, PyAny>,
        tun: Option<&Bound<'_, PyAny>>,
        mtu: usize,
        baud: Option<u32>,
        capacity: usize,
    ) -> PyResult<PyClassInitializer<Self>> {
        let opts = LinkOptions { mtu, capacity };
        let (tty, name) = if let Ok(fd) = serial.extract::<i32>() {
            if fd < 0 {
                return Err(PyValueError::new_err(format!(
                    "a descriptor must be >= 0, not {fd}"
                )));
            }
            // The link duplicates the descriptor: the caller keeps (and closes) `fd`.
            (detached(py, || line_from_fd(fd, baud))?, format!("fd:{fd}"))
        } else if serial.is_instance_of::<PySerialPair>() {
            return Err(PyTypeError::new_err(
                "pass one end of the SerialPair, e.g. pair.paths[1], not the pair itself",
            ));
        } else {
            let path: PathBuf = serial.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "serial must be a tty path (str or os.PathLike) or an open descriptor \
                     (int), not {}",
                    serial
                        .get_type()
                        .name()
                        .map_or_else(|_| "?".into(), |n| n.to_string())
                ))
            })?;
            let name = path_text(&path);
            (detached(py, || open_line(&path, baud))?, name)
        };
        let link = match tun {
            None => detached(py, || SlipLink::adapter(tty, opts))?,
            Some(t) => {
                let adapter = t.cast::<PyAdapter>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "tun must be a vnetio.Tun (or None for an in-process adapter), not {}",
                        t.get_type()
                            .name()
                            .map_or_else(|_| "?".into(), |n| n.to_string())
                    ))
                })?;
                let dev = Arc::clone(adapter.get().device());
                let dev_name = adapter.get().name().to_owned();
                detached(py, || SlipLink::bridge(tty, dev, &dev_name, opts))?
            }
        };
        let link = Arc::new(link);
        let dev: Arc<dyn Device> = Arc::clone(&link) as Arc<dyn Device>;
        Ok(
            PyClassInitializer::from(PyAdapter::new(dev, name.clone(), "SlipLink"))
                .add_subclass(PySlipLink { link, line: name }),
        )
    }

    /// The SLIP MTU: the largest IP packet carried each way.
    #[getter]
    fn mtu(&self) -> usize {
        self.link.mtu()
    }

    /// The line: its path, or "fd:N".
    #[getter]
    fn line(&self) -> &str {
        &self.line
    }

    /// The name of the Tun the link bridges to (None: the link is the adapter).
    #[getter]
    fn tun(&self) -> Option<&str> {
        self.link.bridged_to()
    }

    /// The link's counters: line_bytes_in/out, packets_in/out, and what was dropped —
    /// empty (END END, not an error), bad_escape, over_mtu, noise, bad_checksum, refused
    /// (by the device), oversize (from the device, over the MTU), line_errors.
    fn link_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        link_stats_dict(py, &self.link.link_stats())
    }
}

/// Borrow the bytes of every item of `packets` (a Batch, or an iterable of buffers; bytes
/// are borrowed, other buffers copied into `spill`) and call `f` with them, GIL held.
fn with_packets<R>(
    packets: &Bound<'_, PyAny>,
    f: impl FnOnce(&[&[u8]]) -> PyResult<R>,
) -> PyResult<R> {
    if let Ok(batch) = packets.cast::<PyBatch>() {
        let slices: Vec<&[u8]> = batch.get().inner().iter().collect();
        return f(&slices);
    }
    let items: Vec<Bound<'_, PyAny>> = packets.try_iter()?.collect::<PyResult<_>>()?;
    if items.iter().all(PyAnyMethods::is_instance_of::<PyBytes>) {
        // Bytes are immutable and `items` holds a reference to each: borrow, no copy.
        let slices: Vec<&[u8]> = items
            .iter()
            .map(|i| i.cast::<PyBytes>().map(PyBytesMethods::as_bytes))
            .collect::<Result<_, _>>()?;
        return f(&slices);
    }
    let arena = PyBatch::collect(PyList::new(packets.py(), &items)?.as_any())?;
    let slices: Vec<&[u8]> = arena.iter().collect();
    f(&slices)
}

/// The encodings of `packets`, concatenated, written straight into a new bytes object.
/// The GIL stays held: the packets are borrowed from Python objects, and encoding is a
/// memory-speed loop (about a millisecond per few MB).
fn encode_all<'py>(py: Python<'py>, packets: &[&[u8]]) -> PyResult<Bound<'py, PyBytes>> {
    let total: usize = packets.iter().map(|p| slip::encoded_len(p)).sum();
    PyBytes::new_with(py, total, |out| {
        let mut at = 0;
        for p in packets {
            at += slip::encode_to(p, &mut out[at..]);
        }
        Ok(())
    })
}

/// The SLIP line encoding of one packet (leading and trailing END).
#[pyfunction]
pub fn slip_encode<'py>(
    py: Python<'py>,
    packet: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    if let Ok(b) = packet.cast::<PyBytes>() {
        return encode_all(py, &[b.as_bytes()]);
    }
    with_packets(PyTuple::new(py, [packet])?.as_any(), |p| encode_all(py, p))
}

/// The SLIP line encoding of every packet, concatenated.
#[pyfunction]
pub fn slip_encode_batch<'py>(
    py: Python<'py>,
    packets: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    with_packets(packets, |p| encode_all(py, p))
}

/// A streaming SLIP decoder: feed() it bytes in any pieces, get back the complete,
/// clean frames. Frames with bad escapes or over `mtu` bytes are dropped and counted.
#[pyclass(name = "SlipDecoder", module = "vnetio._core", frozen)]
pub struct PySlipDecoder {
    decoder: Mutex<Decoder>,
}

#[pymethods]
impl PySlipDecoder {
    #[new]
    #[pyo3(signature = (mtu = 1006))]
    fn new(mtu: usize) -> PyResult<Self> {
        if mtu == 0 || mtu > 1 << 20 {
            return Err(PyValueError::new_err(format!(
                "mtu must be between 1 and 1048576, not {mtu}"
            )));
        }
        Ok(PySlipDecoder {
            decoder: Mutex::new(Decoder::new(mtu)),
        })
    }

    /// Decode `data`; returns the frames it completed, in order.
    fn feed<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let input: pyo3::buffer::PyBuffer<u8> =
            pyo3::buffer::PyBuffer::get(data).map_err(|_| {
                PyTypeError::new_err("expected a bytes-like object (bytes, bytearray, memoryview)")
            })?;
        let bytes = input.to_vec(py)?;
        let mut ends = Vec::new();
        let mut frames = crate::batch::PacketBatch::default();
        {
            let mut dec = self
                .decoder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            dec.feed(&bytes, |f| frames.push(f, 0));
        }
        for f in frames.iter() {
            ends.push(PyBytes::new(py, f));
        }
        PyList::new(py, ends)
    }

    /// Counters: frames, bytes, empty, bad_escape, over_mtu.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s: DecodeStats = self
            .decoder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stats();
        let d = PyDict::new(py);
        for (k, v) in [
            ("frames", s.frames),
            ("bytes", s.bytes),
            ("empty", s.empty),
            ("bad_escape", s.bad_escape),
            ("over_mtu", s.over_mtu),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Bytes of the frame in progress.
    #[getter]
    fn pending(&self) -> usize {
        self.decoder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pending()
    }

    /// The largest frame passed on.
    #[getter]
    fn mtu(&self) -> usize {
        self.decoder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .mtu()
    }
}
