//! `VhostUserNet` and `VhostStats`: the bindings of `device::vhost_user`, vnetio as the
//! other end of a virtual machine's virtio-net NIC.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFrozenSet, PyTuple};

use super::adapter::{PyAdapter, PyQueue};
use super::convert;
use super::gil::{deadline, wait_in_slices};
use crate::device::tuntap::{format_mac, parse_mac};
use crate::device::vhost_user::{features, Options, SocketMode, VhostStats, VhostUserNet};
use crate::device::Device;
use crate::error::Error;

/// A vhost-user virtio-net backend on a Unix socket: a virtual machine's NIC (QEMU's
/// `-netdev vhost-user`) with vnetio at the other end.
#[pyclass(name = "VhostUserNet", module = "vnetio._core", extends = PyAdapter, frozen)]
pub struct PyVhostUserNet {
    net: Arc<VhostUserNet>,
    queues: Py<PyTuple>,
    mac: [u8; 6],
}

#[pymethods]
impl PyVhostUserNet {
    #[new]
    #[pyo3(signature = (socket_path, *, queues = 1, mac = None, mtu = 1500, offload = true, rx_mode = "segments", client = false, send_timeout = 0.1, overflow = "drop"))]
    #[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)] // PyO3 extracts the path owned
    fn new(
        py: Python<'_>,
        socket_path: std::path::PathBuf,
        queues: usize,
        mac: Option<&str>,
        mtu: usize,
        offload: bool,
        rx_mode: &str,
        client: bool,
        send_timeout: f64,
        overflow: &str,
    ) -> PyResult<PyClassInitializer<Self>> {
        let mut opts = Options::new(&socket_path);
        opts.mode = if client {
            SocketMode::Client
        } else {
            SocketMode::Server
        };
        opts.queues = queues;
        if let Some(mac) = mac {
            opts.mac = parse_mac(mac)?;
        }
        opts.mtu = mtu;
        opts.offload = offload;
        opts.rx_mode = convert::rx_mode(rx_mode, offload)?;
        opts.send_timeout = Duration::try_from_secs_f64(send_timeout).map_err(|_| {
            PyValueError::new_err(format!(
                "send_timeout must be a finite number of seconds >= 0, not {send_timeout}"
            ))
        })?;
        opts.overflow = convert::overflow(overflow)?;
        let net = Arc::new(py.detach(|| VhostUserNet::new(&opts))?);
        let queues = PyQueue::tuple(
            py,
            net.queues().iter().map(|q| {
                let dev: Arc<dyn Device> = Arc::clone(q) as Arc<dyn Device>;
                (dev, format!("{}#{}", socket_path.display(), q.index()))
            }),
        )?;
        let dev: Arc<dyn Device> = Arc::clone(&net) as Arc<dyn Device>;
        let name = socket_path.display().to_string();
        let base = PyAdapter::new(dev, name, "VhostUserNet");
        let mac = opts.mac;
        Ok(PyClassInitializer::from(base).add_subclass(PyVhostUserNet { net, queues, mac }))
    }

    /// Wait until a guest driver has set up the NIC (rings running); True if it did
    /// within `timeout` seconds (None: wait for ever). Ctrl-C interrupts the wait.
    #[pyo3(signature = (timeout = None))]
    fn wait_connected(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline(timeout)?;
        let done = wait_in_slices(py, deadline, |slice_end| {
            let slice = slice_end.saturating_duration_since(Instant::now());
            Ok::<_, Error>(self.net.wait_connected(slice)?.then_some(()))
        })?;
        Ok(done.is_some() || self.net.connected())
    }

    /// Whether a guest driver is connected with its rings running.
    #[getter]
    fn connected(&self) -> bool {
        self.net.connected()
    }

    /// The virtio-net features the guest driver negotiated (empty while none is
    /// connected), by name: "csum", "guest_tso4", "mrg_rxbuf", "event_idx", "mq", ….
    #[getter]
    fn features<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        PyFrozenSet::new(py, features::names(self.net.features()))
    }

    /// The features this backend offers, by name.
    #[getter]
    fn offered_features<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        PyFrozenSet::new(py, features::names(self.net.offered_features()))
    }

    /// The vhost-user socket.
    #[getter]
    fn socket_path(&self) -> std::path::PathBuf {
        self.net.socket_path().to_owned()
    }

    /// The queue pairs (one `Queue` each; the adapter itself works on the first).
    #[getter]
    fn queues<'py>(&self, py: Python<'py>) -> Bound<'py, PyTuple> {
        self.queues.bind(py).clone()
    }

    /// The MAC address offered in the device's config space ("aa:bb:cc:dd:ee:ff").
    #[getter]
    fn mac(&self) -> String {
        format_mac(self.mac)
    }

    /// Why the last connection ended, if it ended on an error.
    #[getter]
    fn last_error(&self) -> Option<String> {
        self.net.last_error()
    }

    /// Counters beyond `stats()`: connections, frames lost at disconnects, refused
    /// descriptor chains by fault, super-frames, software offload, drops by cause, kicks
    /// and interrupts.
    fn vhost_stats(&self) -> PyVhostStats {
        self.net.vhost_stats().into()
    }
}

/// Counters of a vhost-user adapter beyond `Stats` (refused descriptor chains by queue
/// direction and fault; see the Rust `VhostStats` for each).
#[pyclass(name = "VhostStats", module = "vnetio._core", frozen, get_all)]
pub struct PyVhostStats {
    connections: u64,
    disconnects: u64,
    lost: u64,
    bad_frames: u64,
    ring_faults: u64,
    superframes: u64,
    sent_in_software: u64,
    dropped_no_guest: u64,
    dropped_no_buffers: u64,
    dropped_too_big: u64,
    tx_kicks: u64,
    rx_kicks: u64,
    tx_interrupts: u64,
    rx_interrupts: u64,
    tx_taken_at_kick: u64,
    guest_tx_unterminated: u64,
    guest_tx_out_of_bounds: u64,
    guest_tx_wrong_direction: u64,
    guest_tx_too_long: u64,
    guest_tx_short_header: u64,
    guest_rx_unterminated: u64,
    guest_rx_out_of_bounds: u64,
    guest_rx_wrong_direction: u64,
    guest_rx_too_long: u64,
    guest_rx_short_header: u64,
}

impl From<VhostStats> for PyVhostStats {
    fn from(s: VhostStats) -> Self {
        let (tx, rx) = (s.guest_tx_faults, s.guest_rx_faults);
        PyVhostStats {
            connections: s.connections,
            disconnects: s.disconnects,
            lost: s.lost,
            bad_frames: s.bad_frames,
            ring_faults: s.ring_faults,
            superframes: s.superframes,
            sent_in_software: s.sent_in_software,
            dropped_no_guest: s.dropped_no_guest,
            dropped_no_buffers: s.dropped_no_buffers,
            dropped_too_big: s.dropped_too_big,
            tx_kicks: s.tx_kicks,
            rx_kicks: s.rx_kicks,
            tx_interrupts: s.tx_interrupts,
            rx_interrupts: s.rx_interrupts,
            tx_taken_at_kick: s.tx_taken_at_kick,
            guest_tx_unterminated: tx.unterminated,
            guest_tx_out_of_bounds: tx.out_of_bounds,
            guest_tx_wrong_direction: tx.wrong_direction,
            guest_tx_too_long: tx.too_long,
            guest_tx_short_header: tx.short_header,
            guest_rx_unterminated: rx.unterminated,
            guest_rx_out_of_bounds: rx.out_of_bounds,
            guest_rx_wrong_direction: rx.wrong_direction,
            guest_rx_too_long: rx.too_long,
            guest_rx_short_header: rx.short_header,
        }
    }
}

impl PyVhostStats {
    fn fields(&self) -> [(&'static str, u64); 25] {
        [
            ("connections", self.connections),
            ("disconnects", self.disconnects),
            ("lost", self.lost),
            ("bad_frames", self.bad_frames),
            ("ring_faults", self.ring_faults),
            ("superframes", self.superframes),
            ("sent_in_software", self.sent_in_software),
            ("dropped_no_guest", self.dropped_no_guest),
            ("dropped_no_buffers", self.dropped_no_buffers),
            ("dropped_too_big", self.dropped_too_big),
            ("tx_kicks", self.tx_kicks),
            ("rx_kicks", self.rx_kicks),
            ("tx_interrupts", self.tx_interrupts),
            ("rx_interrupts", self.rx_interrupts),
            ("tx_taken_at_kick", self.tx_taken_at_kick),
            ("guest_tx_unterminated", self.guest_tx_unterminated),
            ("guest_tx_out_of_bounds", self.guest_tx_out_of_bounds),
            ("guest_tx_wrong_direction", self.guest_tx_wrong_direction),
            ("guest_tx_too_long", self.guest_tx_too_long),
            ("guest_tx_short_header", self.guest_tx_short_header),
            ("guest_rx_unterminated", self.guest_rx_unterminated),
            ("guest_rx_out_of_bounds", self.guest_rx_out_of_bounds),
            ("guest_rx_wrong_direction", self.guest_rx_wrong_direction),
            ("guest_rx_too_long", self.guest_rx_too_long),
            ("guest_rx_short_header", self.guest_rx_short_header),
        ]
    }
}

#[pymethods]
impl PyVhostStats {
    /// Descriptor chains the guest posted that were refused (all faults, both queues).
    #[getter]
    fn refused_chains(&self) -> u64 {
        self.fields()[10..].iter().map(|(_, v)| v).sum()
    }

    /// The counters as a dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.fields() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let body: Vec<String> = self
            .fields()
            .iter()
            .filter(|(_, v)| *v != 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("VhostStats({})", body.join(", "))
    }
}
