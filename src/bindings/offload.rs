//! `Offload`: a frame's virtio-net offload metadata as one immutable, typed object, both
//! ways across the boundary (`Batch.offload_info` returns it, `Batch.from_frames` takes
//! it). It is also a read-only mapping with the keys of [`KEYS`], so code written against
//! the earlier plain dicts (`info["gso_type"]`, `dict(info)`, `info == {...}`) keeps
//! working, and `from_frames` still takes such dicts.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyMapping};
use pyo3::IntoPyObjectExt;

use crate::wire::vnet::{gso, VnetHdr, F_DATA_VALID, F_NEEDS_CSUM};

/// The field names, in order: attribute names and mapping keys alike.
const KEYS: [&str; 8] = [
    "gso_type",
    "ecn",
    "gso_size",
    "hdr_len",
    "csum_start",
    "csum_offset",
    "needs_csum",
    "data_valid",
];

/// Offload metadata of one frame (a virtio-net header).
#[pyclass(name = "Offload", module = "vnetio._core", frozen)]
#[derive(Clone, Copy)]
pub struct PyOffload {
    pub(super) hdr: VnetHdr,
}

impl PyOffload {
    fn value<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let flag = |b: bool| b.into_bound_py_any(py);
        let num = |n: u16| n.into_bound_py_any(py);
        Ok(Some(match key {
            "gso_type" => self.gso_type().into_bound_py_any(py)?,
            "ecn" => flag(self.ecn())?,
            "gso_size" => num(self.hdr.gso_size)?,
            "hdr_len" => num(self.hdr.hdr_len)?,
            "csum_start" => num(self.hdr.csum_start)?,
            "csum_offset" => num(self.hdr.csum_offset)?,
            "needs_csum" => flag(self.needs_csum())?,
            "data_valid" => flag(self.data_valid())?,
            _ => return Ok(None),
        }))
    }

    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
    fn build(
        gso_type: &str,
        ecn: bool,
        gso_size: u16,
        hdr_len: u16,
        csum_start: u16,
        csum_offset: u16,
        needs_csum: bool,
        data_valid: bool,
    ) -> PyResult<VnetHdr> {
        let kind = gso::from_name(gso_type).ok_or_else(|| {
            let names: Vec<String> = gso::NAMES.iter().map(|(_, n)| format!("{n:?}")).collect();
            PyValueError::new_err(format!(
                "gso_type must be one of {}, not {gso_type:?}",
                names.join(", ")
            ))
        })?;
        let mut flags = 0;
        if needs_csum {
            flags |= F_NEEDS_CSUM;
        }
        if data_valid {
            flags |= F_DATA_VALID;
        }
        Ok(VnetHdr {
            flags,
            gso_type: kind | if ecn { gso::ECN } else { 0 },
            hdr_len,
            gso_size,
            csum_start,
            csum_offset,
        })
    }

    /// The header a Python value describes: an `Offload`, or a mapping with (some of)
    /// the keys of [`KEYS`] (missing keys default to 0 / False / "none").
    pub(super) fn from_py(value: &Bound<'_, PyAny>) -> PyResult<VnetHdr> {
        if let Ok(o) = value.cast::<PyOffload>() {
            return Ok(o.get().hdr);
        }
        let d = value
            .cast::<PyMapping>()
            .map_err(|_| PyTypeError::new_err("expected an Offload, a dict or None"))?;
        for key in d.keys()? {
            let k: String = key.extract()?;
            if !KEYS.contains(&k.as_str()) {
                return Err(PyValueError::new_err(format!(
                    "unknown key {k:?} (the keys are {})",
                    KEYS.join(", ")
                )));
            }
        }
        let get = |k: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
            if d.contains(k)? {
                Ok(Some(d.get_item(k)?))
            } else {
                Ok(None)
            }
        };
        let int = |k: &str| -> PyResult<u16> {
            get(k)?.map_or(Ok(0), |v| {
                v.extract::<u16>()
                    .map_err(|_| PyValueError::new_err(format!("{k} must be an integer 0..65535")))
            })
        };
        let flag = |k: &str| -> PyResult<bool> { get(k)?.map_or(Ok(false), |v| v.is_truthy()) };
        let gso_type = get("gso_type")?.map_or(Ok("none".to_owned()), |v| v.extract())?;
        Self::build(
            &gso_type,
            flag("ecn")?,
            int("gso_size")?,
            int("hdr_len")?,
            int("csum_start")?,
            int("csum_offset")?,
            flag("needs_csum")?,
            flag("data_valid")?,
        )
    }
}

// Mapping methods ignore `self`: every Offload has the same keys.
#[pymethods]
#[allow(clippy::unused_self)]
impl PyOffload {
    #[new]
    #[pyo3(signature = (gso_type = "none", *, ecn = false, gso_size = 0, hdr_len = 0, csum_start = 0, csum_offset = 0, needs_csum = false, data_valid = false))]
    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
    fn new(
        gso_type: &str,
        ecn: bool,
        gso_size: u16,
        hdr_len: u16,
        csum_start: u16,
        csum_offset: u16,
        needs_csum: bool,
        data_valid: bool,
    ) -> PyResult<Self> {
        let hdr = Self::build(
            gso_type,
            ecn,
            gso_size,
            hdr_len,
            csum_start,
            csum_offset,
            needs_csum,
            data_valid,
        )?;
        Ok(PyOffload { hdr })
    }

    /// "none", "tcpv4", "tcpv6" or "udp_l4".
    #[getter]
    fn gso_type(&self) -> &'static str {
        gso::name(self.hdr.kind())
    }

    /// Whether the super-frame carries an ECN CE mark.
    #[getter]
    fn ecn(&self) -> bool {
        self.hdr.gso_type & gso::ECN != 0
    }

    /// Payload bytes per segment.
    #[getter]
    fn gso_size(&self) -> u16 {
        self.hdr.gso_size
    }

    /// Bytes of headers (link + IP + transport) in each segment.
    #[getter]
    fn hdr_len(&self) -> u16 {
        self.hdr.hdr_len
    }

    /// Where checksumming starts, from the frame start.
    #[getter]
    fn csum_start(&self) -> u16 {
        self.hdr.csum_start
    }

    /// Offset of the checksum field from `csum_start`.
    #[getter]
    fn csum_offset(&self) -> u16 {
        self.hdr.csum_offset
    }

    /// The checksum from `csum_start` on is partial and must be completed.
    #[getter]
    fn needs_csum(&self) -> bool {
        self.hdr.flags & F_NEEDS_CSUM != 0
    }

    /// The sender verified the checksum.
    #[getter]
    fn data_valid(&self) -> bool {
        self.hdr.flags & F_DATA_VALID != 0
    }

    /// The fields as a new dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for k in KEYS {
            d.set_item(k, self.value(py, k)?)?;
        }
        Ok(d)
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        self.value(py, key)?
            .ok_or_else(|| PyKeyError::new_err(key.to_owned()))
    }

    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self.value(py, key)?.or(default))
    }

    fn __contains__(&self, key: &str) -> bool {
        KEYS.contains(&key)
    }

    fn __len__(&self) -> usize {
        KEYS.len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyList::new(py, KEYS)?.try_iter().map(Bound::into_any)
    }

    fn keys(&self) -> Vec<&'static str> {
        KEYS.to_vec()
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        KEYS.iter().map(|k| self.__getitem__(py, k)).collect()
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Vec<(&'static str, Bound<'py, PyAny>)>> {
        KEYS.iter()
            .map(|k| Ok((*k, self.__getitem__(py, k)?)))
            .collect()
    }

    /// Equal to another `Offload` with the same fields, or to a mapping holding exactly
    /// the same keys and values (the dicts earlier versions returned).
    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        if let Ok(o) = other.cast::<PyOffload>() {
            return Ok(o.get().hdr == self.hdr);
        }
        if other.cast::<PyMapping>().is_ok() {
            return self.as_dict(py)?.eq(other);
        }
        Ok(false)
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.hdr.hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        format!(
            "Offload(gso_type={:?}, ecn={}, gso_size={}, hdr_len={}, csum_start={}, \
             csum_offset={}, needs_csum={}, data_valid={})",
            self.gso_type(),
            py_bool(self.ecn()),
            self.hdr.gso_size,
            self.hdr.hdr_len,
            self.hdr.csum_start,
            self.hdr.csum_offset,
            py_bool(self.needs_csum()),
            py_bool(self.data_valid()),
        )
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}
