//! `Macvtap`: the bindings of `device::macvtap` (a macvtap link and its `/dev/tapN`).

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::convert::rx_mode as parse_rx_mode;
use super::gil::detached;
use super::tuntap::{kernel_adapter, PyKernelAdapter};
use crate::device::macvtap::{self, MacvtapOptions, Mode};
use crate::device::tuntap::{format_mac, parse_mac};

/// A macvtap link on a lower Ethernet device, created by vnetio and opened through its
/// character device: Ethernet frames, with the same I/O, offload and configuration as a
/// Tap. The link is deleted on close unless persist=True.
#[pyclass(name = "Macvtap", module = "vnetio._core", extends = PyKernelAdapter, frozen)]
pub struct PyMacvtap {
    lower: String,
    mode: Mode,
}

fn parse_mode(mode: &str) -> PyResult<Mode> {
    Mode::parse(mode).ok_or_else(|| {
        let names: Vec<&str> = Mode::ALL.iter().map(|m| m.1).collect();
        PyValueError::new_err(format!(
            "mode must be one of \"{}\", not {mode:?}",
            names.join("\", \"")
        ))
    })
}

#[pymethods]
impl PyMacvtap {
    #[new]
    // name: macvtap::DEFAULT_NAME (a literal here, for the text signature stubtest reads).
    #[pyo3(signature = (lower, *, name = "vnmvt%d", mode = "bridge", netns = None, mac = None, mtu = None, queues = 1, persist = false, offload = false, rx_mode = "segments"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        lower: &str,
        name: &str,
        mode: &str,
        netns: Option<String>,
        mac: Option<&str>,
        mtu: Option<u32>,
        queues: usize,
        persist: bool,
        offload: bool,
        rx_mode: &str,
    ) -> PyResult<PyClassInitializer<Self>> {
        let opts = MacvtapOptions {
            lower: lower.to_owned(),
            name: name.to_owned(),
            mode: parse_mode(mode)?,
            netns,
            mac: mac.map(parse_mac).transpose()?,
            mtu,
            queues,
            persist,
            offload,
            rx_mode: parse_rx_mode(rx_mode, offload)?,
        };
        let adapter = detached(py, || macvtap::open(&opts))?;
        Ok(
            kernel_adapter(py, "Macvtap", adapter)?.add_subclass(PyMacvtap {
                lower: opts.lower,
                mode: opts.mode,
            }),
        )
    }

    /// The lower device the link sits on.
    #[getter]
    fn lower(&self) -> &str {
        &self.lower
    }

    /// How the link shares its lower device: "private", "vepa", "bridge", "passthru" or
    /// "source".
    #[getter]
    fn mode(&self) -> &'static str {
        self.mode.as_str()
    }

    /// The link's Ethernet address, "aa:bb:cc:dd:ee:ff" (settable): frames to it (and
    /// broadcasts) reach this adapter.
    #[getter]
    fn get_mac(slf: &Bound<'_, Self>, py: Python<'_>) -> PyResult<String> {
        let adapter = Arc::clone(slf.as_super().get().adapter());
        Ok(format_mac(detached(py, || adapter.mac())?))
    }

    #[setter]
    fn set_mac(slf: &Bound<'_, Self>, py: Python<'_>, value: &str) -> PyResult<()> {
        let mac = parse_mac(value)?;
        let adapter = Arc::clone(slf.as_super().get().adapter());
        detached(py, || adapter.set_mac(mac))
    }
}
