//! Python arguments into core values, each in one place: adapter kinds ("tap"/"tun"),
//! receive modes, overflow policies.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::device::loopback::Overflow;
use crate::device::tuntap::RxMode;
use crate::wire::Medium;

/// The medium a `kind=` argument names.
pub(super) fn medium(kind: &str) -> PyResult<Medium> {
    Medium::parse(kind).ok_or_else(|| {
        PyValueError::new_err(format!(
            "kind must be \"tap\" (Ethernet frames) or \"tun\" (IP packets), not {kind:?}"
        ))
    })
}

/// The receive mode an `rx_mode=` argument names; "superframes" needs `offload`.
pub(super) fn rx_mode(mode: &str, offload: bool) -> PyResult<RxMode> {
    if mode == "superframes" && !offload {
        return Err(PyValueError::new_err(
            "rx_mode=\"superframes\" needs offload=True (without offload the kernel hands out \
             only wire-sized frames)",
        ));
    }
    match mode {
        "segments" => Ok(RxMode::Segments),
        "superframes" => Ok(RxMode::Superframes),
        other => Err(PyValueError::new_err(format!(
            "rx_mode must be \"segments\" or \"superframes\", not {other:?}"
        ))),
    }
}

/// What an `overflow=` argument asks for when frames find no room.
pub(super) fn overflow(policy: &str) -> PyResult<Overflow> {
    match policy {
        "drop" => Ok(Overflow::Drop),
        "error" => Ok(Overflow::Error),
        other => Err(PyValueError::new_err(format!(
            "overflow must be \"drop\" or \"error\", not {other:?}"
        ))),
    }
}
