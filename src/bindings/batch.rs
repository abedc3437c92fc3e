//! `vnetio.Batch`: a `PacketBatch` seen from Python, zero-copy.
//!
//! The batch exports its arena through the buffer protocol (read-only); each frame is a
//! slice of one `memoryview` of it, so no frame bytes are copied. A batch never changes
//! after it is made, which is what makes handing out its memory sound. Arenas filled by
//! `recv_batch` come from a small per-adapter pool and go back to it when the batch is
//! garbage collected, so a steady receive loop allocates nothing.
//!
//! This file is the second `unsafe` island (after `device/sys.rs`): `__getbuffer__`.
#![allow(unsafe_code)]

use std::os::raw::c_int;
use std::sync::{Arc, Mutex, Weak};

use pyo3::exceptions::PyValueError;
use pyo3::exceptions::{PyBufferError, PyIndexError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyMemoryView, PySlice};

use super::offload::PyOffload;
use super::python_layer::hook;
use crate::batch::{PacketBatch, NO_TIMESTAMP};
use crate::offload::gso::segment_all;
use crate::wire::vnet::F_NEEDS_CSUM;

/// Arenas kept for reuse per adapter; more than this are freed.
const POOL_KEEP: usize = 4;

/// Reusable arenas for one adapter.
#[derive(Default)]
pub struct ArenaPool {
    free: Mutex<Vec<PacketBatch>>,
}

impl ArenaPool {
    /// An empty arena, recycled when one is free.
    pub fn take(&self) -> PacketBatch {
        self.free
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default()
    }

    fn give_back(&self, mut batch: PacketBatch) {
        batch.clear();
        if let Ok(mut v) = self.free.lock() {
            if v.len() < POOL_KEEP {
                v.push(batch);
            }
        }
    }
}

/// A batch of frames in one contiguous arena. Frames are read-only memoryviews.
#[pyclass(name = "Batch", module = "vnetio._core", frozen, sequence)]
pub struct PyBatch {
    inner: PacketBatch,
    pool: Weak<ArenaPool>,
}

/// A frame's length is a u32 in the arena's table: longer is a bad frame, refused before
/// anything is copied.
fn check_frame_len(index: usize, len: usize) -> PyResult<()> {
    if u32::try_from(len).is_err() {
        return Err(PyValueError::new_err(format!(
            "frame {index} is {len} bytes; a frame is at most {} bytes (4 GiB - 1)",
            u32::MAX
        )));
    }
    Ok(())
}

impl PyBatch {
    /// Wrap a filled arena that returns to `pool` when the batch dies.
    pub fn from_pool(inner: PacketBatch, pool: &Arc<ArenaPool>) -> Self {
        PyBatch {
            inner,
            pool: Arc::downgrade(pool),
        }
    }

    /// A batch of frames built in memory (not from a pool).
    pub fn new(inner: PacketBatch) -> Self {
        PyBatch {
            inner,
            pool: Weak::new(),
        }
    }

    /// The frames.
    pub fn inner(&self) -> &PacketBatch {
        &self.inner
    }

    /// Copy each buffer of a Python iterable into a new arena.
    pub fn collect(frames: &Bound<'_, PyAny>) -> PyResult<PacketBatch> {
        let mut batch = PacketBatch::default();
        for (index, item) in frames.try_iter()?.enumerate() {
            let item = item?;
            if let Ok(b) = item.cast::<PyBytes>() {
                check_frame_len(index, b.as_bytes().len())?;
                batch.push(b.as_bytes(), 0);
            } else {
                let buf = byte_buffer(&item).map_err(|_| {
                    PyTypeError::new_err(format!(
                        "frame {index}: expected a bytes-like object (bytes, bytearray, memoryview, \
                         Batch frame), got {}",
                        item.get_type().name().map_or_else(|_| "?".into(), |n| n.to_string())
                    ))
                })?;
                let len = buf.len_bytes();
                check_frame_len(index, len)?;
                let slot = batch.recv_slot(len);
                buf.copy_to_slice(item.py(), &mut slot[..len])?;
                batch.commit(len, 0);
            }
        }
        Ok(batch)
    }

    fn index(&self, index: &Bound<'_, PyAny>) -> PyResult<usize> {
        let len = self.inner.len() as isize;
        let index = match index.extract::<isize>() {
            Ok(i) => i,
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(index.py()) => {
                return Err(PyIndexError::new_err(format!(
                    "frame index {index} out of range for a batch of {len}"
                )));
            }
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "batch indices must be integers, not {}",
                    index.get_type().name()?
                )));
            }
        };
        let i = if index < 0 { index + len } else { index };
        if i < 0 || i >= len {
            return Err(PyIndexError::new_err(format!(
                "frame index {index} out of range for a batch of {len}"
            )));
        }
        Ok(i as usize)
    }
}

impl Drop for PyBatch {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give_back(std::mem::take(&mut self.inner));
        }
    }
}

/// The object's bytes as a `u8` buffer: any C-contiguous buffer, whatever its item type
/// (`array('I')`, ctypes structures, …), seen through `memoryview(obj).cast("B")`.
fn byte_buffer(obj: &Bound<'_, PyAny>) -> PyResult<pyo3::buffer::PyBuffer<u8>> {
    pyo3::buffer::PyBuffer::<u8>::get(obj).or_else(|_| {
        let bytes_view = PyMemoryView::from(obj)?.call_method1("cast", ("B",))?;
        pyo3::buffer::PyBuffer::<u8>::get(&bytes_view)
    })
}

/// A validated BPF program from a tcpdump expression (compiled by libpcap through
/// `vnetio.filters`) or a sequence of (code, jt, jf, k) instructions.
pub fn bpf_program(
    program: &Bound<'_, PyAny>,
    kind: &str,
) -> PyResult<crate::filter::bpf::Program> {
    let insns: Vec<(u16, u8, u8, u32)> = if program.is_instance_of::<pyo3::types::PyString>() {
        let compile = hook(program.py(), "compile_filter")?;
        compile.call1((program, kind))?.extract()?
    } else {
        program.extract().map_err(|_| {
            PyTypeError::new_err(
                "a filter is a tcpdump expression (str), a list of (code, jt, jf, k) tuples, \
                 or a predicate (a callable taking the scapy packet)",
            )
        })?
    };
    let insns = insns
        .into_iter()
        .map(|(code, jt, jf, k)| crate::filter::bpf::Insn { code, jt, jf, k })
        .collect();
    crate::filter::bpf::Program::new(insns)
        .map_err(|e| PyValueError::new_err(format!("invalid BPF program: {e}")))
}

fn frame_view<'py>(
    view: &Bound<'py, PyMemoryView>,
    range: std::ops::Range<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    view.get_item(PySlice::new(
        view.py(),
        range.start as isize,
        range.end as isize,
        1,
    ))
}

#[pymethods]
impl PyBatch {
    /// Build a batch by copying each frame (any bytes-like objects) into one arena.
    /// `offload`: optional list, one entry per frame, of None or a dict of virtio-net
    /// metadata (see `offload_info`); a header that does not fit its frame is a ValueError.
    #[staticmethod]
    #[pyo3(signature = (frames, offload = None))]
    fn from_frames(
        frames: &Bound<'_, PyAny>,
        offload: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut inner = Self::collect(frames)?;
        if let Some(meta) = offload {
            let hdrs = meta
                .try_iter()?
                .enumerate()
                .map(|(i, item)| {
                    let item = item?;
                    if item.is_none() {
                        Ok(None)
                    } else {
                        PyOffload::from_py(&item).map(Some).map_err(|e| {
                            PyValueError::new_err(format!("offload[{i}]: {}", e.value(item.py())))
                        })
                    }
                })
                .collect::<PyResult<Vec<_>>>()?;
            if hdrs.len() != inner.len() {
                return Err(PyValueError::new_err(format!(
                    "{} frames but {} offload entries; give one per frame (None for plain frames)",
                    inner.len(),
                    hdrs.len()
                )));
            }
            for (i, h) in hdrs.iter().enumerate() {
                if let (Some(h), Some(frame)) = (h, inner.get(i)) {
                    h.validate(frame.len())
                        .map_err(|e| PyValueError::new_err(format!("offload[{i}]: {e}")))?;
                }
            }
            let mut with = PacketBatch::default();
            for (i, frame) in inner.iter().enumerate() {
                with.push_with(frame, 0, hdrs[i]);
            }
            inner = with;
        }
        Ok(PyBatch {
            inner,
            pool: Weak::new(),
        })
    }

    /// The frames as they would cross a wire (GIL released): super-frames split into
    /// segments and partial checksums completed, in software, as the kernel's own GSO
    /// would; plain frames are copied unchanged. Raises ValueError for a frame whose
    /// metadata does not fit it.
    #[pyo3(signature = (kind = "tap"))]
    fn segment(&self, py: Python<'_>, kind: &str) -> PyResult<Self> {
        let medium = super::convert::medium(kind)?;
        let out = py.detach(|| {
            let mut out = PacketBatch::default();
            let b = &self.inner;
            let inputs = (0..b.len()).map(|i| {
                let frame = b.get(i).unwrap_or_default();
                (frame, b.hdr(i), b.timestamp_ns(i).unwrap_or(0))
            });
            segment_all(inputs, medium, &mut out, None)
                .map(|()| out)
                .map_err(|(i, e)| format!("frame {i}: {e}"))
        });
        Ok(PyBatch {
            inner: out.map_err(PyValueError::new_err)?,
            pool: Weak::new(),
        })
    }

    /// The frames as scapy packets, dissected lazily on access (`Ether` for "tap",
    /// `IP`/`IPv6` for "tun"); see `vnetio.inspect.to_scapy`.
    #[pyo3(signature = (kind = "tap"))]
    fn to_scapy<'py>(slf: &Bound<'py, Self>, kind: &str) -> PyResult<Bound<'py, PyAny>> {
        let f = hook(slf.py(), "to_scapy")?;
        f.call1((slf, kind))
    }

    /// The frames a filter accepts, as a new Batch (receive times and offload metadata
    /// kept). The filter is a tcpdump expression or a compiled classic BPF program (a list
    /// of (code, jt, jf, k)), run by vnetio's BPF interpreter with the GIL released; or a
    /// Python predicate on the scapy packet (`Ether` for "tap", `IP`/`IPv6` for "tun"),
    /// like scapy's `lfilter`, for what BPF cannot express (see
    /// `vnetio.inspect.filter_batch`). `kind`: "tap" for Ethernet frames, "tun" for IP.
    #[pyo3(signature = (program, kind = "tap"))]
    fn filter<'py>(
        slf: &Bound<'py, Self>,
        program: &Bound<'py, PyAny>,
        kind: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        if program.is_callable() && !program.is_instance_of::<pyo3::types::PyString>() {
            super::convert::medium(kind)?;
            let f = hook(py, "filter_batch")?;
            return f.call1((slf, program, kind));
        }
        let program = bpf_program(program, kind)?;
        let this = slf.get();
        let out = py.detach(|| {
            let mut out = PacketBatch::default();
            for i in 0..this.inner.len() {
                let frame = this.inner.get(i).unwrap_or_default();
                if program.accepts(frame) {
                    out.push_with(
                        frame,
                        this.inner.timestamp_ns(i).unwrap_or(0),
                        this.inner.hdr(i),
                    );
                }
            }
            out
        });
        Ok(Bound::new(py, PyBatch::new(out))?.into_any())
    }

    /// The frames at `indices` (in that order, repeats allowed), as a new Batch with their
    /// receive times and offload metadata; IndexError for an index out of range.
    fn _take(&self, py: Python<'_>, indices: Vec<isize>) -> PyResult<Self> {
        let len = self.inner.len() as isize;
        let mut picked = Vec::with_capacity(indices.len());
        for index in indices {
            let i = if index < 0 { index + len } else { index };
            if i < 0 || i >= len {
                return Err(PyIndexError::new_err(format!(
                    "frame index {index} out of range for a batch of {len}"
                )));
            }
            picked.push(i as usize);
        }
        let out = py.detach(|| {
            let mut out = PacketBatch::default();
            for i in picked {
                out.push_with(
                    self.inner.get(i).unwrap_or_default(),
                    self.inner.timestamp_ns(i).unwrap_or(0),
                    self.inner.hdr(i),
                );
            }
            out
        });
        Ok(PyBatch::new(out))
    }

    /// Offload metadata of frame `index` as an `Offload` (gso_type "none", "tcpv4",
    /// "tcpv6" or "udp_l4", ecn, gso_size, hdr_len, csum_start, csum_offset, needs_csum,
    /// data_valid; also readable as a mapping), or None for a plain frame.
    fn offload_info(&self, index: &Bound<'_, PyAny>) -> PyResult<Option<PyOffload>> {
        let i = self.index(index)?;
        Ok(self.inner.hdr(i).map(|hdr| PyOffload { hdr }))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __getitem__<'py>(
        slf: &Bound<'py, Self>,
        index: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let i = this.index(index)?;
        let view = PyMemoryView::from(slf.as_any())?;
        frame_view(&view, this.inner.range(i).unwrap_or(0..0))
    }

    fn __iter__(slf: &Bound<'_, Self>) -> PyResult<PyBatchIter> {
        Ok(PyBatchIter {
            batch: slf.clone().unbind(),
            view: PyMemoryView::from(slf.as_any())?.unbind(),
            pos: 0,
        })
    }

    /// Total bytes of all frames.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }

    /// Length of each frame.
    #[getter]
    fn lengths(&self) -> Vec<usize> {
        self.inner.lengths().collect()
    }

    /// Receive time of each frame (CLOCK_REALTIME, ns); 0 for frames built in memory;
    /// None for frames whose source recorded no time (pcapng Simple Packet Blocks).
    #[getter]
    fn timestamps_ns(&self) -> Vec<Option<u64>> {
        self.inner
            .timestamps_ns()
            .map(|t| (t != NO_TIMESTAMP).then_some(t))
            .collect()
    }

    /// Copy every frame out as `bytes`.
    fn to_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.inner.iter().map(|f| PyBytes::new(py, f)))
    }

    /// Verify every frame's IPv4/TCP/UDP/ICMP checksums (GIL released): one bool per
    /// frame, False when any checksum that applies is wrong or the frame cannot be parsed.
    #[pyo3(signature = (kind = "tap"))]
    fn verify_checksums(&self, py: Python<'_>, kind: &str) -> PyResult<Vec<bool>> {
        let medium = super::convert::medium(kind)?;
        Ok(py.detach(|| {
            self.inner
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    // A frame marked needs_csum carries a partial checksum: check that.
                    let partial = self
                        .inner
                        .hdr(i)
                        .is_some_and(|h| h.flags & F_NEEDS_CSUM != 0);
                    let check = if partial {
                        crate::wire::checksum::verify_frame_partial(f, medium)
                    } else {
                        crate::wire::checksum::verify_frame(f, medium)
                    };
                    check.is_ok_and(|c| c.ok())
                })
                .collect()
        }))
    }

    /// A copy of the batch with every parsable frame's checksums recomputed (GIL
    /// released); frames marked needs_csum get their partial checksum (the pseudo-header
    /// sum) instead. Frames that cannot be parsed are copied unchanged.
    #[pyo3(signature = (kind = "tap"))]
    fn fix_checksums(&self, py: Python<'_>, kind: &str) -> PyResult<Self> {
        let medium = super::convert::medium(kind)?;
        let fixed = py.detach(|| {
            let mut out = self.inner.clone();
            out.for_each_mut(|f, hdr| {
                // Frames marked needs_csum keep a partial checksum (the pseudo-header sum),
                // which is what an offload adapter or software segmentation completes.
                let _ = if hdr.is_some_and(|h| h.flags & F_NEEDS_CSUM != 0) {
                    crate::wire::checksum::fix_frame_partial(f, medium)
                } else {
                    crate::wire::checksum::fix_frame(f, medium)
                };
            });
            out
        });
        Ok(PyBatch {
            inner: fixed,
            pool: Weak::new(),
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<vnetio.Batch frames={} nbytes={}>",
            self.inner.len(),
            self.inner.nbytes()
        )
    }

    #[allow(clippy::needless_pass_by_value)] // the signature PyO3 requires
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("a Batch is read-only"));
        }
        let data = slf.get().inner.data();
        // SAFETY: `view` is the Py_buffer CPython passed to bf_getbuffer, valid for writes.
        // PyBuffer_FillInfo stores a new reference to `slf` in view->obj, so the batch — and
        // with it the arena behind `data` — outlives every consumer of the view. The arena
        // is never mutated or reallocated after construction (the class is frozen and no
        // method takes `&mut`), so the pointer and length stay valid. readonly=1 is passed
        // and writable requests were refused above. Not guaranteed: nothing; a zero-length
        // arena yields a valid empty buffer.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr().cast_mut().cast(),
                data.len() as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(PyErr::fetch(slf.py()))
        }
    }
}

/// Iterator over a batch's frames (one memoryview of the arena, sliced per frame).
#[pyclass(name = "_BatchIterator", module = "vnetio._core")]
pub struct PyBatchIter {
    batch: Py<PyBatch>,
    view: Py<PyMemoryView>,
    pos: usize,
}

#[pymethods]
impl PyBatchIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(range) = self.batch.get().inner.range(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        frame_view(self.view.bind(py), range).map(Some)
    }
}
