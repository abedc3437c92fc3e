//! `vnetio.checksum`: the Internet checksum and frame-level verify/fix, GIL released.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

use super::convert::medium;
use crate::wire::checksum::{self, FrameCheck};

fn copy_in(data: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let buf = pyo3::buffer::PyBuffer::<u8>::get(data).map_err(|_| {
        PyTypeError::new_err("expected a bytes-like object (bytes, bytearray, memoryview)")
    })?;
    buf.to_vec(data.py())
}

/// The Internet checksum (RFC 1071) of `data`: the value a checksum field holds.
#[pyfunction]
pub fn internet_checksum(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<u16> {
    let bytes = copy_in(data)?;
    Ok(py.detach(|| checksum::checksum(&bytes)))
}

/// RFC 1624 incremental update: the new checksum after a 16-bit field changes from `old`
/// to `new` (e.g. a TTL/protocol word), without summing the data again.
#[pyfunction]
pub fn update_checksum(check: u16, old: u16, new: u16) -> u16 {
    checksum::update(check, old, new)
}

/// RFC 1624 for a changed 32-bit field (an IPv4 address, a TCP sequence number).
#[pyfunction]
pub fn update_checksum32(check: u16, old: u32, new: u32) -> u16 {
    checksum::update32(check, old, new)
}

/// Verify one frame's IPv4 header and TCP/UDP/ICMP/ICMPv6 checksums.
/// Returns (ip_ok, l4_ok); None where a checksum does not apply.
#[pyfunction]
#[pyo3(signature = (frame, kind = "tap"))]
pub fn verify_checksums(
    py: Python<'_>,
    frame: &Bound<'_, PyAny>,
    kind: &str,
) -> PyResult<(Option<bool>, Option<bool>)> {
    let medium = medium(kind)?;
    let bytes = copy_in(frame)?;
    let FrameCheck { ip, l4 } = py
        .detach(|| checksum::verify_frame(&bytes, medium))
        .map_err(|e| PyValueError::new_err(format!("cannot parse the frame: {e}")))?;
    Ok((ip, l4))
}

/// Recompute the IPv4 header and transport checksums of a frame held in a bytearray,
/// in place.
#[pyfunction]
#[pyo3(signature = (frame, kind = "tap"))]
pub fn fix_checksums(py: Python<'_>, frame: &Bound<'_, PyByteArray>, kind: &str) -> PyResult<()> {
    let medium = medium(kind)?;
    let mut bytes = frame.to_vec();
    py.detach(|| checksum::fix_frame(&mut bytes, medium))
        .map_err(|e| PyValueError::new_err(format!("cannot parse the frame: {e}")))?;
    // Copy back through Python (no unsafe access to the bytearray's memory).
    frame.call_method1(
        "__setitem__",
        (
            pyo3::types::PySlice::full(py),
            pyo3::types::PyBytes::new(py, &bytes),
        ),
    )?;
    Ok(())
}
