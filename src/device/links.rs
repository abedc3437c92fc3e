//! Interfaces of a network namespace, seen through rtnetlink: listing (with the tun
//! driver's own view of each TUN/TAP adapter and the macvlan driver's of each macvtap
//! link) and deleting TUN/TAP adapters and macvtap links.

use super::netlink::Netlink;
pub use super::netlink::{LinkInfo, MacvtapInfo, TunInfo};
use super::{macvtap, netns, validate_ifname};
use crate::error::{Error, VnetResult};

fn netlink() -> VnetResult<Netlink> {
    Netlink::open().map_err(|e| Error::os("socket(AF_NETLINK)", e))
}

/// Every interface of namespace `netns` (`None`: the caller's). Macvtap links carry their
/// character device's numbers when sysfs tells them (see `macvtap::char_devs`).
pub fn list(netns: Option<&str>) -> VnetResult<Vec<LinkInfo>> {
    let mut links = netns::run_in(netns, || {
        netlink()?
            .links()
            .map_err(|e| Error::os("list interfaces (RTM_GETLINK)", e))
    })?;
    let macvtaps: Vec<(String, u32)> = links
        .iter()
        .filter(|l| l.macvtap.is_some())
        .map(|l| (l.name.clone(), l.ifindex))
        .collect();
    if !macvtaps.is_empty() {
        let devs = macvtap::char_devs(netns, &macvtaps).unwrap_or_default();
        for ((_, ifindex), dev) in macvtaps.iter().zip(devs) {
            if let Some(info) = links
                .iter_mut()
                .find(|l| l.ifindex == *ifindex)
                .and_then(|l| l.macvtap.as_mut())
            {
                info.dev = dev;
            }
        }
    }
    Ok(links)
}

/// Delete the TUN/TAP adapter or macvtap link `name` (when `ifindex` is given, only if it
/// still has that index), persistent or not, held or not (attached descriptors are cut
/// off). Refuses any other kind of interface.
pub fn delete(name: &str, netns: Option<&str>, ifindex: Option<u32>) -> VnetResult<()> {
    validate_ifname(name)?;
    if name.contains('%') {
        return Err(Error::InvalidArgument(format!(
            "{name:?} is a pattern; delete takes a name"
        )));
    }
    netns::run_in(netns, || {
        let mut nl = netlink()?;
        let links = nl
            .links()
            .map_err(|e| Error::os("list interfaces (RTM_GETLINK)", e))?;
        let gone = || {
            Error::os(
                format!("delete {name}"),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        };
        let Some(link) = links.iter().find(|l| l.name == name) else {
            return Err(
                gone().with_hint("there is no interface of that name in this network namespace")
            );
        };
        if ifindex.is_some_and(|i| i != link.ifindex) {
            return Err(gone().with_hint(format!(
                "{name} was deleted and another interface now has its name"
            )));
        }
        if !matches!(link.kind.as_deref(), Some("tun" | "macvtap")) {
            return Err(Error::InvalidArgument(format!(
                "{name} is a {} interface, not a TUN/TAP adapter or macvtap link; vnetio \
                 deletes only those",
                link.kind.as_deref().unwrap_or("plain")
            )));
        }
        nl.del_link(link.ifindex).map_err(|e| {
            let err = Error::os(format!("delete {name} (RTM_DELLINK)"), e);
            if err.raw_os_error() == Some(libc::EPERM) {
                err.with_hint("deleting an adapter needs CAP_NET_ADMIN (run as root)")
            } else {
                err
            }
        })
    })
}

/// The network namespace, as `(st_dev, st_ino)` of its nsfs inode, of the TUN/TAP adapter
/// behind descriptor `fd` of process `pid`; `None` when it cannot be learnt (process gone,
/// no CAP_SYS_PTRACE over it, not a TUN descriptor, kernel before 5.6).
pub fn tun_fd_netns(pid: i32, fd: i32) -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let pidfd = crate::sys::pidfd::pidfd_open(pid).ok()?;
    let dup = crate::sys::pidfd::pidfd_getfd(pidfd.as_fd(), fd).ok()?;
    let ns = crate::sys::pidfd::tun_get_dev_netns(dup.as_fd()).ok()?;
    let meta = std::fs::File::from(ns).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}
