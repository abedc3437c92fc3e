//! `Tap`, `Tun`, their shared `_KernelAdapter` configuration, `Queue` (one descriptor of
//! a multi-queue adapter) and `tun_features`: the bindings of `device::tuntap`.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::adapter::{PyAdapter, PyQueue};
use super::convert::rx_mode as parse_rx_mode;
use super::gil::detached;
use crate::device::tuntap::{self, format_mac, offload_names, parse_cidr, parse_mac, OpenOptions};
use crate::device::Device;
use crate::wire::Medium;

/// Shared by Tap, Tun and Macvtap: configuration of a kernel adapter.
#[pyclass(name = "_KernelAdapter", module = "vnetio._core", extends = PyAdapter, subclass, frozen)]
pub struct PyKernelAdapter {
    adapter: Arc<tuntap::Adapter>,
    queues: Py<PyTuple>,
}

impl PyKernelAdapter {
    /// The core adapter.
    pub(super) fn adapter(&self) -> &Arc<tuntap::Adapter> {
        &self.adapter
    }
}

fn open_kernel(
    py: Python<'_>,
    class: &'static str,
    opts: &OpenOptions,
) -> PyResult<PyClassInitializer<PyKernelAdapter>> {
    let adapter = detached(py, || tuntap::Adapter::open(opts))?;
    kernel_adapter(py, class, adapter)
}

/// The Python objects of an open kernel adapter: the adapter (named `class` in reprs) and
/// one `Queue` per descriptor.
pub(super) fn kernel_adapter(
    py: Python<'_>,
    class: &'static str,
    adapter: tuntap::Adapter,
) -> PyResult<PyClassInitializer<PyKernelAdapter>> {
    let adapter = Arc::new(adapter);
    let queues = PyQueue::tuple(
        py,
        adapter.queues().iter().map(|q| {
            let dev: Arc<dyn Device> = Arc::clone(q) as Arc<dyn Device>;
            (dev, q.name().to_owned())
        }),
    )?;
    let dev: Arc<dyn Device> = Arc::clone(&adapter) as Arc<dyn Device>;
    let base = PyAdapter::new(dev, adapter.name().to_owned(), class);
    Ok(PyClassInitializer::from(base).add_subclass(PyKernelAdapter { adapter, queues }))
}

#[pymethods]
impl PyKernelAdapter {
    /// Interface index.
    #[getter]
    fn ifindex(&self) -> u32 {
        self.adapter.ifindex()
    }

    /// Network namespace name, or None for the caller's.
    #[getter]
    fn netns(&self) -> Option<&str> {
        self.adapter.netns()
    }

    /// Whether the adapter outlives its last descriptor.
    #[getter]
    fn persistent(&self) -> bool {
        self.adapter.persistent()
    }

    /// True when this open created the adapter (False: attached to an existing one).
    #[getter]
    fn created(&self) -> bool {
        self.adapter.created()
    }

    /// Whether frames carry virtio-net offload metadata (opened with offload=True).
    #[getter]
    fn offload(&self) -> bool {
        self.adapter.offload()
    }

    /// The offloads the kernel accepted: "csum", "tso4", "tso6", "uso4", "uso6".
    #[getter]
    fn offloads(&self) -> Vec<&'static str> {
        offload_names(self.adapter.offloads())
    }

    /// The adapter's queues (one per descriptor).
    #[getter]
    fn queues<'py>(&self, py: Python<'py>) -> Bound<'py, PyTuple> {
        self.queues.bind(py).clone()
    }

    /// MTU (read from the kernel; settable).
    #[getter]
    fn get_mtu(&self, py: Python<'_>) -> PyResult<u32> {
        detached(py, || self.adapter.get_mtu())
    }

    #[setter]
    fn set_mtu(&self, py: Python<'_>, value: u32) -> PyResult<()> {
        detached(py, || self.adapter.set_mtu(value))
    }

    /// Kernel queue length in frames (txqueuelen; settable, needs CAP_NET_ADMIN): how
    /// many frames wait for a reader before the kernel drops them (`rx_dropped`).
    #[getter]
    fn get_queue_length(&self, py: Python<'_>) -> PyResult<u32> {
        detached(py, || self.adapter.queue_length())
    }

    #[setter]
    fn set_queue_length(&self, py: Python<'_>, value: u32) -> PyResult<()> {
        detached(py, || self.adapter.set_queue_length(value))
    }

    /// Whether the adapter is administratively up.
    #[getter]
    fn is_up(&self, py: Python<'_>) -> PyResult<bool> {
        detached(py, || self.adapter.is_up())
    }

    /// Bring the adapter up.
    fn up(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || self.adapter.set_up(true))
    }

    /// Take the adapter down.
    fn down(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || self.adapter.set_up(false))
    }

    /// Add an IPv4 or IPv6 address in CIDR form, e.g. "192.0.2.1/24".
    fn add_address(&self, py: Python<'_>, address: &str) -> PyResult<()> {
        let (ip, prefix) = parse_cidr(address)?;
        detached(py, || self.adapter.add_address(ip, prefix))
    }

    /// Remove an address given in CIDR form.
    fn del_address(&self, py: Python<'_>, address: &str) -> PyResult<()> {
        let (ip, prefix) = parse_cidr(address)?;
        detached(py, || self.adapter.del_address(ip, prefix))
    }

    /// Route a network in CIDR form through this adapter (`ip route add NET dev NAME`).
    fn add_route(&self, py: Python<'_>, network: &str) -> PyResult<()> {
        let (ip, prefix) = parse_cidr(network)?;
        detached(py, || self.adapter.add_route(ip, prefix))
    }

    /// Remove a route added with `add_route`.
    fn del_route(&self, py: Python<'_>, network: &str) -> PyResult<()> {
        let (ip, prefix) = parse_cidr(network)?;
        detached(py, || self.adapter.del_route(ip, prefix))
    }

    /// Every address, in CIDR form.
    fn addresses(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let list = detached(py, || self.adapter.addresses())?;
        Ok(list
            .into_iter()
            .map(|(ip, p)| format!("{ip}/{p}"))
            .collect())
    }

    /// Make the adapter persistent (outlive this process) or not.
    fn set_persistent(&self, py: Python<'_>, persistent: bool) -> PyResult<()> {
        detached(py, || self.adapter.set_persistent(persistent))
    }
}

/// Defines a kernel adapter class (`Tap`, `Tun`): one constructor signature and one way
/// to open, for both; `$extra` holds methods only that class has.
macro_rules! kernel_adapter_class {
    ($ty:ident, $name:literal, $medium:expr, $doc:literal, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[pyclass(name = $name, module = "vnetio._core", extends = PyKernelAdapter, frozen)]
        pub struct $ty {}

        #[pymethods]
        impl $ty {
            #[new]
            #[pyo3(signature = (name = "vn%d", *, queues = 1, persist = false, netns = None, owner = None, group = None, mtu = None, offload = false, rx_mode = "segments"))]
            #[allow(clippy::too_many_arguments)]
            fn new(
                py: Python<'_>,
                name: &str,
                queues: usize,
                persist: bool,
                netns: Option<String>,
                owner: Option<u32>,
                group: Option<u32>,
                mtu: Option<u32>,
                offload: bool,
                rx_mode: &str,
            ) -> PyResult<PyClassInitializer<Self>> {
                let opts = OpenOptions {
                    name: name.to_owned(),
                    medium: $medium,
                    queues,
                    persist,
                    netns,
                    owner,
                    group,
                    mtu,
                    offload,
                    rx_mode: parse_rx_mode(rx_mode, offload)?,
                };
                Ok(open_kernel(py, $name, &opts)?.add_subclass($ty {}))
            }

            $($extra)*
        }
    };
}

kernel_adapter_class!(
    PyTap,
    "Tap",
    Medium::Ethernet,
    "A TAP adapter: Ethernet frames.",
    {
        /// The Ethernet address, "aa:bb:cc:dd:ee:ff" (settable).
        #[getter]
        fn get_mac(slf: &Bound<'_, Self>, py: Python<'_>) -> PyResult<String> {
            let adapter = Arc::clone(&slf.as_super().get().adapter);
            Ok(format_mac(detached(py, || adapter.mac())?))
        }

        #[setter]
        fn set_mac(slf: &Bound<'_, Self>, py: Python<'_>, value: &str) -> PyResult<()> {
            let mac = parse_mac(value)?;
            let adapter = Arc::clone(&slf.as_super().get().adapter);
            detached(py, || adapter.set_mac(mac))
        }
    }
);

kernel_adapter_class!(
    PyTun,
    "Tun",
    Medium::Ip,
    "A TUN adapter: IPv4/IPv6 packets.",
    {}
);

/// The kernel's TUNGETFEATURES bit mask.
#[pyfunction]
pub fn tun_features(py: Python<'_>) -> PyResult<u32> {
    detached(py, tuntap::features)
}
