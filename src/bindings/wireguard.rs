//! `WireGuard` (the tunnel engine of `device::wireguard`) and the key functions. The
//! Python class `vnetio.wireguard.Interface` composes it with its plaintext adapter.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyDictMethods};

use super::adapter::PyAdapter;
use super::gil::detached;
use crate::capture::writer::{CaptureWriter, WriterOptions};
use crate::capture::LINKTYPE_RAW;
use crate::device::wireguard::{
    keys, parse_network, DropReason, Mirror, PeerChange, PeerConfig, Reconfig, Tunnel,
    TunnelConfig, KEY_LEN,
};

/// A WireGuard endpoint between a plaintext adapter (IP packets) and a UDP socket.
#[pyclass(name = "WireGuard", module = "vnetio._core", frozen)]
pub struct PyWireGuard {
    tunnel: Tunnel,
    /// The capture file the tunnel mirrors its plaintext into, while one is open.
    capture: Mutex<Option<Arc<Mutex<CaptureWriter>>>>,
}

/// The tunnel's mirror: a capture writer shared with the binding, which finishes it.
struct CaptureMirror(Arc<Mutex<CaptureWriter>>);

impl Mirror for CaptureMirror {
    fn packets(&mut self, packets: &[&[u8]], timestamp_ns: u64) -> Result<(), String> {
        let mut writer = self
            .0
            .lock()
            .map_err(|_| "the capture writer panicked".to_owned())?;
        for p in packets {
            writer
                .write_frame(p, timestamp_ns)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn key(text: &str, what: &str) -> PyResult<[u8; KEY_LEN]> {
    Ok(keys::parse(text, what)?)
}

/// "192.0.2.1:51820", "[2001:db8::1]:51820" or "host.example:51820" (resolved once, now).
fn endpoint(text: &str) -> PyResult<SocketAddr> {
    if let Ok(addr) = text.trim().parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |why: String| {
        PyValueError::new_err(format!(
            "endpoint {text:?}: {why}; write HOST:PORT, such as \"192.0.2.1:51820\" or \
             \"[2001:db8::1]:51820\""
        ))
    };
    let mut addrs = text
        .trim()
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| bad("the name has no address".into()))
}

/// The keys a peer change of `reconfigure` may have.
const PEER_CHANGE_KEYS: [&str; 8] = [
    "public_key",
    "remove",
    "update_only",
    "preshared_key",
    "endpoint",
    "persistent_keepalive",
    "replace_allowed_ips",
    "allowed_ips",
];

/// One peer change from its dict (keys as in [`PEER_CHANGE_KEYS`]; keys in base64).
fn peer_change(d: &Bound<'_, PyDict>) -> PyResult<PeerChange> {
    for k in d.keys() {
        let k: String = k.extract()?;
        if !PEER_CHANGE_KEYS.contains(&k.as_str()) {
            return Err(PyValueError::new_err(format!(
                "a peer change has no key {k:?}; it takes {}",
                PEER_CHANGE_KEYS.join(", ")
            )));
        }
    }
    let flag = |name: &str| -> PyResult<bool> {
        d.get_item(name)?.map_or(Ok(false), |v| v.extract::<bool>())
    };
    let text = |name: &str| -> PyResult<Option<String>> {
        match d.get_item(name)? {
            Some(v) if !v.is_none() => Ok(Some(v.extract()?)),
            _ => Ok(None),
        }
    };
    let public_key = text("public_key")?
        .ok_or_else(|| PyValueError::new_err("a peer change needs its \"public_key\""))?;
    let keepalive = match d.get_item("persistent_keepalive")? {
        Some(v) if !v.is_none() => Some(v.extract::<u16>().map_err(|_| {
            PyValueError::new_err("persistent_keepalive is seconds from 0 (off) to 65535")
        })?),
        _ => None,
    };
    let allowed_ips: Vec<String> = match d.get_item("allowed_ips")? {
        Some(v) if !v.is_none() => v.extract()?,
        _ => Vec::new(),
    };
    Ok(PeerChange {
        public_key: key(&public_key, "peer public key")?,
        remove: flag("remove")?,
        update_only: flag("update_only")?,
        preshared_key: text("preshared_key")?
            .map(|k| key(&k, "preshared key"))
            .transpose()?,
        endpoint: text("endpoint")?.map(|e| endpoint(&e)).transpose()?,
        persistent_keepalive: keepalive,
        replace_allowed_ips: flag("replace_allowed_ips")?,
        allowed_ips: allowed_ips
            .iter()
            .map(|n| parse_network(n))
            .collect::<Result<_, _>>()?,
    })
}

#[pymethods]
impl PyWireGuard {
    /// Start an interface with `private_key` on UDP `listen_port` (None: any) in network
    /// namespace `netns`, carrying the IP packets of `port` (a TUN or a loopback end).
    #[new]
    #[pyo3(signature = (private_key, port, *, listen_port = None, netns = None))]
    fn new(
        py: Python<'_>,
        private_key: &str,
        port: &Bound<'_, PyAdapter>,
        listen_port: Option<u16>,
        netns: Option<&str>,
    ) -> PyResult<Self> {
        let config = TunnelConfig {
            private_key: key(private_key, "private key")?,
            listen_port,
        };
        let dev = port.get().device().clone();
        let tunnel = detached(py, || Tunnel::start(&config, dev, netns))?;
        Ok(PyWireGuard {
            tunnel,
            capture: Mutex::new(None),
        })
    }

    /// This end's public key (base64).
    #[getter]
    fn public_key(&self) -> String {
        keys::to_text(&self.tunnel.public_key())
    }

    /// The UDP port datagrams arrive on.
    #[getter]
    fn listen_port(&self) -> u16 {
        self.tunnel.listen_port()
    }

    /// This end's private key (base64).
    #[getter]
    fn private_key(&self) -> String {
        keys::to_text(&self.tunnel.private_key())
    }

    /// The UDP socket's firewall mark (0: none).
    #[getter]
    fn fwmark(&self) -> u32 {
        self.tunnel.fwmark()
    }

    /// The preshared key of a peer (base64; None: none, or no such peer).
    fn preshared_key_of(&self, public_key: &str) -> PyResult<Option<String>> {
        let k = key(public_key, "peer public key")?;
        Ok(self.tunnel.preshared_key_of(&k).map(|p| keys::to_text(&p)))
    }

    /// Change the running interface (what `wg set` does): every argument is checked, and
    /// everything that can fail is done, before anything changes.
    #[allow(clippy::needless_pass_by_value)] // PyO3 hands extracted arguments over by value
    #[pyo3(signature = (*, private_key = None, listen_port = None, fwmark = None,
                        replace_peers = false, peers = Vec::new()))]
    fn reconfigure(
        &self,
        py: Python<'_>,
        private_key: Option<&str>,
        listen_port: Option<u16>,
        fwmark: Option<u32>,
        replace_peers: bool,
        peers: Vec<Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let change = Reconfig {
            private_key: private_key.map(|k| key(k, "private key")).transpose()?,
            listen_port,
            fwmark,
            replace_peers,
            peers: peers.iter().map(peer_change).collect::<PyResult<_>>()?,
        };
        detached(py, || self.tunnel.reconfigure(&change))
    }

    /// Whether close() was called.
    #[getter]
    fn closed(&self) -> bool {
        self.tunnel.is_closed()
    }

    /// Add a peer (or replace the one with the same public key).
    #[allow(clippy::needless_pass_by_value)] // PyO3 hands extracted arguments over by value
    #[pyo3(signature = (public_key, *, endpoint = None, allowed_ips = Vec::new(),
                        preshared_key = None, persistent_keepalive = None))]
    fn add_peer(
        &self,
        py: Python<'_>,
        public_key: &str,
        endpoint: Option<&str>,
        allowed_ips: Vec<String>,
        preshared_key: Option<&str>,
        persistent_keepalive: Option<u16>,
    ) -> PyResult<()> {
        let config = PeerConfig {
            public_key: key(public_key, "peer public key")?,
            preshared_key: preshared_key.map(|k| key(k, "preshared key")).transpose()?,
            endpoint: endpoint.map(self::endpoint).transpose()?,
            allowed_ips: allowed_ips
                .iter()
                .map(|n| parse_network(n))
                .collect::<Result<_, _>>()?,
            persistent_keepalive: persistent_keepalive.filter(|&s| s > 0),
        };
        detached(py, || self.tunnel.add_peer(config))
    }

    /// Remove a peer; returns whether it existed.
    fn remove_peer(&self, public_key: &str) -> PyResult<bool> {
        Ok(self
            .tunnel
            .remove_peer(&key(public_key, "peer public key")?))
    }

    /// Every peer, as `wg show` describes it (a list of dicts).
    fn peers<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.tunnel
            .peers()
            .into_iter()
            .map(|p| {
                let d = PyDict::new(py);
                d.set_item("public_key", keys::to_text(&p.public_key))?;
                d.set_item("endpoint", p.endpoint.map(|e| e.to_string()))?;
                d.set_item(
                    "allowed_ips",
                    p.allowed_ips
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                )?;
                d.set_item(
                    "latest_handshake",
                    p.latest_handshake
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_secs_f64()),
                )?;
                d.set_item("rx_bytes", p.rx_bytes)?;
                d.set_item("tx_bytes", p.tx_bytes)?;
                d.set_item("rx_datagrams", p.rx_datagrams)?;
                d.set_item("tx_datagrams", p.tx_datagrams)?;
                d.set_item("persistent_keepalive", p.persistent_keepalive)?;
                d.set_item("preshared_key", p.preshared_key)?;
                Ok(d)
            })
            .collect()
    }

    /// The interface's counters: datagrams, packets, handshakes, and every drop by reason.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.tunnel.stats();
        let d = PyDict::new(py);
        for (name, value) in [
            ("rx_datagrams", s.rx_datagrams),
            ("rx_bytes", s.rx_bytes),
            ("tx_datagrams", s.tx_datagrams),
            ("tx_bytes", s.tx_bytes),
            ("rx_packets", s.rx_packets),
            ("tx_packets", s.tx_packets),
            ("queued", s.queued),
            ("handshakes", s.handshakes),
            ("rx_errors", s.rx_errors),
            ("gso_fallbacks", s.gso_fallbacks),
            ("gso_unavailable", s.gso_unavailable),
            ("gro_unavailable", s.gro_unavailable),
        ] {
            d.set_item(name, value)?;
        }
        let drops = PyDict::new(py);
        for (reason, n) in DropReason::ALL.iter().zip(s.drops) {
            drops.set_item(reason.name(), n)?;
        }
        // Dropped by the kernel before the interface saw them (SO_RXQ_OVFL).
        drops.set_item("socket_buffer_full", s.socket_overflow)?;
        d.set_item("drops", drops)?;
        Ok(d)
    }

    /// Write every plaintext packet the tunnel carries, both ways, to a capture file
    /// (LINKTYPE_RAW) until `stop_capture`.
    #[pyo3(signature = (path, *, format = "pcapng", snaplen = 262_144, direct_io = true))]
    #[allow(clippy::needless_pass_by_value)] // PyO3 extracts os.PathLike into an owned PathBuf
    fn start_capture(
        &self,
        py: Python<'_>,
        path: PathBuf,
        format: &str,
        snaplen: u32,
        direct_io: bool,
    ) -> PyResult<()> {
        let mut current = self
            .capture
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.is_some() {
            return Err(PyOSError::new_err(
                "this interface is already capturing; call stop_capture() first",
            ));
        }
        let options = WriterOptions {
            format: super::capture::parse_format(format)?,
            snaplen,
            linktype: LINKTYPE_RAW,
            direct_io,
            ..WriterOptions::default()
        };
        let writer = Arc::new(Mutex::new(detached(py, || {
            CaptureWriter::create(&path, options)
        })?));
        self.tunnel
            .set_mirror(Some(Box::new(CaptureMirror(Arc::clone(&writer)))));
        *current = Some(writer);
        Ok(())
    }

    /// Packets written so far by the running capture (None: not capturing).
    fn capture_frames(&self) -> Option<u64> {
        let current = self
            .capture
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current.as_ref().map(|w| w.lock().map_or(0, |w| w.frames()))
    }

    /// Stop the capture and complete the file; returns {"frames", "bytes"}. A write
    /// error that stopped it earlier is raised here (the file ends at a complete record).
    fn stop_capture<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let writer = self
            .capture
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| PyOSError::new_err("this interface is not capturing"))?;
        let (_, error) = self.tunnel.set_mirror(None);
        let (frames, bytes) = py.detach(|| {
            let mut w = writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let done = w.finish();
            (done.map(|()| w.frames()), w.bytes())
        });
        if let Some(e) = error {
            return Err(PyOSError::new_err(format!("the capture stopped: {e}")));
        }
        let d = PyDict::new(py);
        d.set_item("frames", frames?)?;
        d.set_item("bytes", bytes)?;
        Ok(d)
    }

    /// Stop the threads and close the plaintext port. Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.tunnel.close());
    }
}

/// A new private key (base64), like `wg genkey`.
#[pyfunction]
pub fn wg_genkey() -> String {
    keys::to_text(&keys::generate_private())
}

/// The public key of a private key (base64), like `wg pubkey`.
#[pyfunction]
pub fn wg_pubkey(private_key: &str) -> PyResult<String> {
    Ok(keys::to_text(&keys::public_of(&key(
        private_key,
        "private key",
    )?)))
}
