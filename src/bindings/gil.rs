//! Releasing the interpreter around the core's work, in one place.
//!
//! Every syscall and batch loop runs detached (`py.detach`), so other Python threads run
//! meanwhile. [`detached`] is that plus the conversion of the core's `Error` into a Python
//! exception. [`wait_in_slices`] is the shape of every blocking wait: detached slices of
//! at most [`SLICE`], re-attaching between slices to let Ctrl-C (and other signal
//! handlers) run, until the work is done or the deadline passes.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::error::Error;

/// Longest time spent detached in one wait before checking for signals.
pub(super) const SLICE: Duration = Duration::from_millis(50);

/// Run `f` with the interpreter released; its `Error` becomes the matching Python
/// exception.
pub(super) fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: Send + FnOnce() -> Result<T, Error>,
    T: Send,
{
    Ok(py.detach(f)?)
}

/// A deadline `timeout` seconds from now; `None` waits for ever (so does a finite timeout
/// too large to represent, e.g. 1e300).
pub(super) fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Duration::try_from_secs_f64(t)
            .ok()
            .and_then(|d| Instant::now().checked_add(d))),
        Some(t) => Err(PyValueError::new_err(format!(
            "timeout must be None or a finite number >= 0, not {t}"
        ))),
    }
}

/// Call `step(slice_end)` detached, again and again, until it returns `Some` (done), the
/// `deadline` passes (`Ok(None)`), or a signal handler raises. `step` must return by
/// `slice_end` (at most [`SLICE`] away, never past the deadline).
pub(super) fn wait_in_slices<T, F>(
    py: Python<'_>,
    deadline: Option<Instant>,
    mut step: F,
) -> PyResult<Option<T>>
where
    F: Send + FnMut(Instant) -> Result<Option<T>, Error>,
    T: Send,
{
    loop {
        let now = Instant::now();
        let slice_end = deadline.map_or(now + SLICE, |d| d.min(now + SLICE));
        if let Some(done) = detached(py, || step(slice_end))? {
            return Ok(Some(done));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}
