//! `list_links()` and `delete_link()`: rtnetlink views used by the hygiene tools.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::gil::detached;
use crate::device::links::{self, LinkInfo};
use crate::device::macvtap::Mode;
use crate::device::tuntap::format_mac;

fn link_dict<'py>(py: Python<'py>, l: &LinkInfo, all: &[LinkInfo]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("ifindex", l.ifindex)?;
    d.set_item("name", &l.name)?;
    d.set_item("kind", l.kind.as_deref())?;
    d.set_item("flags", l.flags)?;
    d.set_item("up", l.flags & libc::IFF_UP as u32 != 0)?;
    d.set_item("mtu", l.mtu)?;
    d.set_item("txqlen", l.txqlen)?;
    d.set_item("operstate", l.operstate)?;
    d.set_item("carrier", l.carrier)?;
    d.set_item("master", l.master)?;
    let mac = <[u8; 6]>::try_from(l.address.as_slice())
        .ok()
        .map(format_mac);
    d.set_item("mac", mac)?;
    d.set_item("link", l.link)?;
    d.set_item("link_netnsid", l.link_netnsid)?;
    match &l.macvtap {
        None => d.set_item("macvtap", py.None())?,
        Some(m) => {
            let md = PyDict::new(py);
            let mode = Mode::from_bits(m.mode)
                .map_or_else(|| m.mode.to_string(), |x| x.as_str().to_owned());
            md.set_item("mode", mode)?;
            // The lower device by name, when it is in this namespace.
            let lower = l
                .link
                .filter(|_| l.link_netnsid.is_none())
                .and_then(|i| all.iter().find(|x| x.ifindex == i))
                .map(|x| x.name.as_str());
            md.set_item("lower", lower)?;
            md.set_item("dev", m.dev)?;
            d.set_item("macvtap", md)?;
        }
    }
    match &l.tun {
        None => d.set_item("tun", py.None())?,
        Some(t) => {
            let td = PyDict::new(py);
            td.set_item("mode", if t.tap { "tap" } else { "tun" })?;
            td.set_item("owner", t.owner)?;
            td.set_item("group", t.group)?;
            td.set_item("pi", t.pi)?;
            td.set_item("vnet_hdr", t.vnet_hdr)?;
            td.set_item("persist", t.persist)?;
            td.set_item("multi_queue", t.multi_queue)?;
            td.set_item("queues", t.queues)?;
            td.set_item("disabled_queues", t.disabled_queues)?;
            d.set_item("tun", td)?;
        }
    }
    Ok(d)
}

/// Every interface of a network namespace (None: the caller's), as dicts; TUN/TAP
/// adapters carry a "tun" dict with the driver's view (mode, owner, group, persist,
/// multi_queue, queues attached now, …), macvtap links a "macvtap" dict (mode, lower,
/// dev: the character device's (major, minor) or None).
#[pyfunction]
#[pyo3(signature = (netns = None))]
pub fn list_links<'py>(py: Python<'py>, netns: Option<&str>) -> PyResult<Bound<'py, PyList>> {
    let list = detached(py, || links::list(netns))?;
    let out = PyList::empty(py);
    for l in &list {
        out.append(link_dict(py, l, &list)?)?;
    }
    Ok(out)
}

/// Delete the TUN/TAP adapter or macvtap link `name` over rtnetlink, even while a process
/// holds it (only if its index is still `ifindex`, when given); refuses any other kind of
/// interface (`vnetio.delete_adapter` is the public API).
#[pyfunction]
#[pyo3(signature = (name, *, netns = None, ifindex = None))]
pub fn delete_link(
    py: Python<'_>,
    name: &str,
    netns: Option<&str>,
    ifindex: Option<u32>,
) -> PyResult<()> {
    detached(py, || links::delete(name, netns, ifindex))
}

/// The network namespace, as (st_dev, st_ino), of the adapter behind descriptor `fd` of
/// process `pid`, or None when it cannot be learnt (needs root; Linux 5.6+).
#[pyfunction]
pub fn tun_fd_netns(py: Python<'_>, pid: i32, fd: i32) -> Option<(u64, u64)> {
    py.detach(|| links::tun_fd_netns(pid, fd))
}
