//! `vnetio._core.EchoResponder`: the core's echo responder (`crate::responder`) on
//! batches, with the GIL released. `vnetio.loopback.EchoResponder` wraps it with an adapter
//! and a serving thread.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::batch::PyBatch;
use crate::batch::PacketBatch;
use crate::device::tuntap::{format_mac, parse_mac};
use crate::responder::{Config, Counters, Responder};
use crate::wire::Medium;

/// Answers ARP, IPv6 neighbour solicitations and ICMP/ICMPv6 echo requests for one MAC
/// and IPv4 and/or IPv6 address.
#[pyclass(name = "EchoResponder", module = "vnetio._core", frozen)]
pub struct PyEchoResponder {
    responder: Responder,
    counters: Mutex<Counters>,
}

fn parse_ipv4(text: &str) -> PyResult<[u8; 4]> {
    let ip: Ipv4Addr = text.parse().map_err(|_| {
        PyValueError::new_err(format!(
            "ipv4={text:?} is not an IPv4 address; give one without a prefix, e.g. \"192.0.2.2\""
        ))
    })?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        return Err(PyValueError::new_err(format!(
            "ipv4={text:?}: the responder needs a unicast address (not 0.0.0.0, multicast or \
             broadcast)"
        )));
    }
    Ok(ip.octets())
}

fn parse_ipv6(text: &str) -> PyResult<[u8; 16]> {
    let ip: Ipv6Addr = text.parse().map_err(|_| {
        PyValueError::new_err(format!(
            "ipv6={text:?} is not an IPv6 address; give one without a prefix, e.g. \
             \"2001:db8::2\""
        ))
    })?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(PyValueError::new_err(format!(
            "ipv6={text:?}: the responder needs a unicast address (not :: or multicast)"
        )));
    }
    Ok(ip.octets())
}

#[pymethods]
impl PyEchoResponder {
    /// `kind="tap"` answers Ethernet frames (ARP, neighbour solicitation, echo) and needs
    /// `mac`; `kind="tun"` answers raw IP packets (echo only). At least one address.
    #[new]
    #[pyo3(signature = (mac = None, *, ipv4 = None, ipv6 = None, kind = "tap"))]
    fn new(
        mac: Option<&str>,
        ipv4: Option<&str>,
        ipv6: Option<&str>,
        kind: &str,
    ) -> PyResult<Self> {
        let medium = super::convert::medium(kind)?;
        let mac = match (mac, medium) {
            (Some(text), _) => {
                let mac = parse_mac(text)?;
                if mac[0] & 1 == 1 || mac == [0; 6] {
                    return Err(PyValueError::new_err(format!(
                        "mac={text:?}: the responder needs a unicast MAC address, e.g. \
                         \"02:00:00:00:00:02\" (locally administered)"
                    )));
                }
                mac
            }
            (None, Medium::Ethernet) => {
                return Err(PyValueError::new_err(
                    "a responder on Ethernet frames (kind=\"tap\") needs mac=, e.g. \
                     \"02:00:00:00:00:02\"",
                ))
            }
            (None, Medium::Ip) => [0; 6],
        };
        let ipv4 = ipv4.map(parse_ipv4).transpose()?;
        let ipv6 = ipv6.map(parse_ipv6).transpose()?;
        if ipv4.is_none() && ipv6.is_none() {
            return Err(PyValueError::new_err(
                "give the responder an address: ipv4=\"192.0.2.2\" and/or ipv6=\"2001:db8::2\"",
            ));
        }
        Ok(PyEchoResponder {
            responder: Responder::new(Config { mac, ipv4, ipv6 }, medium),
            counters: Mutex::new(Counters::default()),
        })
    }

    /// The replies to the frames of `frames` (a Batch, or any iterable of bytes-like
    /// frames) that deserve one, as a new Batch (possibly empty). Every frame is counted
    /// in `stats()`. Runs with the GIL released.
    fn answer(&self, py: Python<'_>, frames: &Bound<'_, PyAny>) -> PyResult<PyBatch> {
        let owned;
        let input: &PacketBatch = if let Ok(batch) = frames.cast::<PyBatch>() {
            batch.get().inner()
        } else {
            owned = PyBatch::collect(frames)?;
            &owned
        };
        let out = py.detach(|| {
            let mut out = PacketBatch::default();
            let mut counts = Counters::default();
            self.responder.answer_batch(input, &mut out, &mut counts);
            if let Ok(mut total) = self.counters.lock() {
                total.add(&counts);
            }
            out
        });
        Ok(PyBatch::new(out))
    }

    /// Counters: arp, ns, echo4, echo6 (requests answered), ignored (not for us),
    /// malformed (failed a check), answered (the sum of the first four).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.counters.lock().map(|c| *c).unwrap_or_default();
        let d = PyDict::new(py);
        for (k, v) in [
            ("arp", c.arp),
            ("ns", c.ns),
            ("echo4", c.echo4),
            ("echo6", c.echo6),
            ("ignored", c.ignored),
            ("malformed", c.malformed),
            ("answered", c.answered()),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// The responder's MAC address (00:00:00:00:00:00 on a TUN without one).
    #[getter]
    fn mac(&self) -> String {
        format_mac(self.responder.config().mac)
    }

    /// Its IPv4 address, or None.
    #[getter]
    fn ipv4(&self) -> Option<String> {
        self.responder
            .config()
            .ipv4
            .map(|a| Ipv4Addr::from(a).to_string())
    }

    /// Its IPv6 address, or None.
    #[getter]
    fn ipv6(&self) -> Option<String> {
        self.responder
            .config()
            .ipv6
            .map(|a| Ipv6Addr::from(a).to_string())
    }

    /// "tap" (Ethernet frames) or "tun" (IP packets).
    #[getter]
    fn kind(&self) -> &'static str {
        self.responder.medium().as_str()
    }

    fn __repr__(&self) -> String {
        format!(
            "EchoResponder(mac={:?}, ipv4={:?}, ipv6={:?}, kind={:?})",
            self.mac(),
            self.ipv4(),
            self.ipv6(),
            self.kind()
        )
    }
}
