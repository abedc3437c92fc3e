//! Python arguments into core values, each in one place: adapter kinds ("tap"/"tun").

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::wire::Medium;

/// The medium a `kind=` argument names.
pub(super) fn medium(kind: &str) -> PyResult<Medium> {
    Medium::parse(kind).ok_or_else(|| {
        PyValueError::new_err(format!(
            "kind must be \"tap\" (Ethernet frames) or \"tun\" (IP packets), not {kind:?}"
        ))
    })
}
