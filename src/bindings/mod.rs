//! The Python extension `vnetio._core`: the only part of the crate that uses PyO3.

mod adapter;
mod batch;
mod capture;
mod checksum;
mod errors;
mod links;
mod responder;

use pyo3::prelude::*;

/// The compiled core of vnetio. Use the `vnetio` package, which re-exports it.
#[pymodule(gil_used = false)]
mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::adapter::{
        _panic_for_test, loopback_pair, tun_features, validate_ifname, PyAdapter, PyKernelAdapter,
        PyLoopback, PyQueue, PyStats, PyTap, PyTun,
    };
    #[pymodule_export]
    use super::batch::PyBatch;
    #[pymodule_export]
    use super::capture::{summarize, PyReader, PyWriter};
    #[pymodule_export]
    use super::checksum::{
        fix_checksums, internet_checksum, update_checksum, update_checksum32, verify_checksums,
    };
    #[pymodule_export]
    use super::links::{delete_link, list_links};
    #[pymodule_export]
    use super::responder::PyEchoResponder;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", crate::VERSION)?;
        m.add("ABI_VERSION", crate::ABI_VERSION)?;
        m.add(
            "build_profile",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        )?;
        m.add("IFF_TUN", libc::IFF_TUN)?;
        m.add("IFF_TAP", libc::IFF_TAP)?;
        m.add("IFF_NO_PI", libc::IFF_NO_PI)?;
        m.add("IFF_MULTI_QUEUE", libc::IFF_MULTI_QUEUE)?;
        m.add("IFF_VNET_HDR", libc::IFF_VNET_HDR)?;
        m.add("IFF_NAPI", libc::IFF_NAPI)?;
        m.add("IFF_PERSIST", libc::IFF_PERSIST)?;
        Ok(())
    }
}
