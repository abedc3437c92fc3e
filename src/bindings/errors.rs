//! The one place core errors become Python exceptions.
//!
//! The exception classes are defined in Python (`vnetio/exceptions.py`) so they can use
//! multiple inheritance (`AdapterClosedError` is also a `ValueError`); OS failures stay
//! built-in `OSError`s constructed as `OSError(errno, message)`, so CPython picks the
//! subclass (`PermissionError`, `BlockingIOError`, …) and `.errno` is set.

use std::fmt::Write as _;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;

pyo3::import_exception!(vnetio.exceptions, AdapterClosedError);
pyo3::import_exception!(vnetio.exceptions, QueueFullError);

fn strerror(e: &std::io::Error) -> String {
    // io::Error's Display ends in " (os error N)"; errno is carried separately.
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn os_error(py: Python<'_>, err: &Error, sent: Option<usize>) -> PyErr {
    let (step, source, hint) = match err {
        Error::Os { step, source, hint } => (step, source, hint),
        other => return other_error(py, other),
    };
    let errno = source.raw_os_error().unwrap_or(0);
    let mut msg = format!("{step}: {}", strerror(source));
    if let Some(h) = hint {
        msg.push_str(" — ");
        msg.push_str(h);
    }
    if let Some(k) = sent.filter(|k| *k > 0) {
        let _ = write!(msg, " ({k} frames were sent before the failure)");
    }
    let exc = PyOSError::new_err((errno, msg));
    if let Some(k) = sent {
        let _ = exc.value(py).setattr("sent", k);
    }
    exc
}

fn other_error(py: Python<'_>, err: &Error) -> PyErr {
    match err {
        Error::Closed => AdapterClosedError::new_err(
            "the adapter is closed (it was closed before or during this call); open a new one",
        ),
        Error::QueueFull { sent, .. } => {
            let exc = QueueFullError::new_err((libc::EAGAIN, err.to_string()));
            let _ = exc.value(py).setattr("sent", *sent);
            exc
        }
        Error::Os { .. } => os_error(py, err, None),
        Error::Partial { sent, source, .. } => os_error(py, source, Some(*sent)),
        Error::InvalidName { .. } | Error::InvalidArgument(_) | Error::BadFrame { .. } => {
            PyValueError::new_err(err.to_string())
        }
        Error::CaptureIo {
            source,
            path,
            frames,
            ..
        } => {
            // OSError(errno, message, filename): `.filename` names the file; `.frames`
            // says how many complete frames it holds after a write failure.
            let errno = source.raw_os_error().unwrap_or(0);
            let text = err.to_string();
            let exc = PyOSError::new_err((errno, text, path.display().to_string()));
            if let Some(n) = frames {
                let _ = exc.value(py).setattr("frames", *n);
            }
            exc
        }
        Error::BadCapture { offset, .. } => {
            let exc = PyValueError::new_err(err.to_string());
            let _ = exc.value(py).setattr("offset", *offset);
            exc
        }
    }
}

/// Convert a core error (needs the interpreter to attach attributes such as `.sent`).
pub fn to_py(err: &Error) -> PyErr {
    Python::attach(|py| other_error(py, err))
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        to_py(&err)
    }
}
