//! The Python extension `vnetio._core`: the only part of the crate that uses PyO3.

mod adapter;
mod batch;
mod capture;
mod checksum;
mod convert;
mod errors;
mod forward;
mod gil;
mod links;
mod loopback;
mod macvtap;
mod offload;
mod python_layer;
mod responder;
mod serial;
mod tuntap;
mod vhost_user;
mod wireguard;

use pyo3::prelude::*;

/// The compiled core of vnetio. Use the `vnetio` package, which re-exports it.
#[pymodule(gil_used = false)]
mod _core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::adapter::{_panic_for_test, validate_ifname, PyAdapter, PyQueue, PyStats};
    #[pymodule_export]
    use super::batch::PyBatch;
    #[pymodule_export]
    use super::capture::{summarize, PyReader, PyWriter};
    #[pymodule_export]
    use super::checksum::{
        fix_checksums, internet_checksum, update_checksum, update_checksum32, verify_checksums,
    };
    #[pymodule_export]
    use super::forward::PyForwarder;
    #[pymodule_export]
    use super::links::{delete_link, list_links, tun_fd_netns};
    #[pymodule_export]
    use super::loopback::{loopback_pair, PyLoopback};
    #[pymodule_export]
    use super::macvtap::PyMacvtap;
    #[pymodule_export]
    use super::offload::PyOffload;
    #[pymodule_export]
    use super::python_layer::_install_python_layer;
    #[pymodule_export]
    use super::responder::PyEchoResponder;
    #[pymodule_export]
    use super::serial::{slip_encode, slip_encode_batch, PySerialPair, PySlipDecoder, PySlipLink};
    #[pymodule_export]
    use super::tuntap::{tun_features, PyKernelAdapter, PyTap, PyTun};
    #[pymodule_export]
    use super::vhost_user::{PyVhostStats, PyVhostUserNet};
    #[pymodule_export]
    use super::wireguard::{wg_genkey, wg_pubkey, PyWireGuard};

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
