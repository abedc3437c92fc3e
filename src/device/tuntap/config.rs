//! Configuring an open adapter over ioctls and rtnetlink: up/down, MTU, queue length,
//! MAC, addresses, persistence, kernel counters; and parsing MACs and CIDRs.

use super::{Adapter, Backend, Queue, MAX_QUEUE_LENGTH};
use crate::device::netlink::Netlink;
use crate::device::{now_ns, Device, Stats};
use crate::error::{Error, VnetResult};
use crate::filter::UserFilter;
use crate::sys;
use crate::sys::IfName;
use crate::wire::Medium;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};

/// How long a cached MTU is trusted before a send re-reads it (an outside
/// `ip link set … mtu` is seen within this time; one ioctl per send call at most).
const MTU_TTL_NS: u64 = 1_000_000;

/// The adapter's control socket (in its namespace) and its MTU cache, shared by the
/// adapter and its queues.
pub(super) struct Link {
    pub(super) ctl: OwnedFd,
    pub(super) ifname: IfName,
    pub(super) mtu: AtomicUsize,
    pub(super) checked_ns: AtomicU64,
    /// The filter run in this process (TUN, or a TAP whose kernel filter was refused).
    pub(super) filter: UserFilter,
}

impl Link {
    fn refresh_mtu(&self) -> io::Result<u32> {
        let mtu = sys::if_get_mtu(self.ctl.as_fd(), &self.ifname)?;
        self.store_mtu(mtu);
        Ok(mtu)
    }

    fn store_mtu(&self, mtu: u32) {
        self.mtu.store(mtu as usize, Ordering::Relaxed);
        self.checked_ns.store(now_ns(), Ordering::Relaxed);
    }

    /// The MTU, re-read from the kernel when the cached value is older than MTU_TTL_NS.
    pub(super) fn current_mtu(&self) -> usize {
        if now_ns().saturating_sub(self.checked_ns.load(Ordering::Relaxed)) > MTU_TTL_NS {
            let _ = self.refresh_mtu(); // on failure (adapter gone) keep the last value
        }
        self.mtu.load(Ordering::Relaxed)
    }

    /// Check frames against the MTU; before refusing one, re-read the MTU once in case it
    /// was raised outside vnetio since the last read.
    pub(super) fn check_frames(&self, medium: Medium, frames: &[&[u8]]) -> VnetResult<()> {
        let mut mtu = self.current_mtu();
        let mut refreshed = false;
        for (index, frame) in frames.iter().enumerate() {
            if let Err(reason) = medium.check_frame(frame, mtu) {
                if !refreshed {
                    refreshed = true;
                    if let Ok(fresh) = self.refresh_mtu() {
                        mtu = fresh as usize;
                        if medium.check_frame(frame, mtu).is_ok() {
                            continue;
                        }
                    }
                }
                let reason = medium.check_frame(frame, mtu).err().unwrap_or(reason);
                return Err(Error::BadFrame { index, reason });
            }
        }
        Ok(())
    }
}

impl Adapter {
    /// The adapter's name (a `%d` pattern resolved).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Interface index in its namespace.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
    /// The namespace it lives in (`None`: the caller's).
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }
    /// Whether this open created it.
    pub fn created(&self) -> bool {
        self.created
    }
    /// Whether it outlives its last descriptor.
    pub fn persistent(&self) -> bool {
        self.persistent.load(Ordering::Relaxed)
    }
    /// Whether frames carry virtio-net headers (opened with `offload`).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// The TUN_F_* offloads the kernel accepted for this adapter.
    pub fn offloads(&self) -> u32 {
        self.offloads
    }

    /// Its queues.
    pub fn queues(&self) -> &[Arc<Queue>] {
        &self.queues
    }

    pub(super) fn live(&self) -> VnetResult<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    pub(super) fn nl(&self) -> MutexGuard<'_, Netlink> {
        self.nl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// TUNSETPERSIST on or off; on a macvtap adapter, whether its link stays after close.
    pub fn set_persistent(&self, persist: bool) -> VnetResult<()> {
        self.live()?;
        if let Backend::Tun = self.backend {
            let guard = self.queues[0]
                .file
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let file = guard.as_ref().ok_or(Error::Closed)?;
            sys::tun_set_persist(file.as_fd(), persist)
                .map_err(|e| Error::os(format!("TUNSETPERSIST {}", self.name), e))?;
        }
        self.persistent.store(persist, Ordering::Relaxed);
        Ok(())
    }

    /// Whether IFF_UP is set.
    pub fn is_up(&self) -> VnetResult<bool> {
        self.live()?;
        let flags = sys::if_get_flags(self.link.ctl.as_fd(), &self.ifname)
            .map_err(|e| Error::os(format!("flags of {}", self.name), e))?;
        Ok(i32::from(flags) & libc::IFF_UP != 0)
    }

    /// Set or clear IFF_UP.
    pub fn set_up(&self, up: bool) -> VnetResult<()> {
        self.live()?;
        let ctl = self.link.ctl.as_fd();
        let step = || format!("set {} {}", self.name, if up { "up" } else { "down" });
        let flags = sys::if_get_flags(ctl, &self.ifname).map_err(|e| Error::os(step(), e))?;
        let flags = if up {
            flags | libc::IFF_UP as libc::c_short
        } else {
            flags & !(libc::IFF_UP as libc::c_short)
        };
        sys::if_set_flags(ctl, &self.ifname, flags).map_err(|e| with_cap_hint(Error::os(step(), e)))
    }

    /// Read the MTU from the kernel (and refresh the cached copy frames are checked against).
    pub fn get_mtu(&self) -> VnetResult<u32> {
        self.live()?;
        let mtu = self
            .link
            .refresh_mtu()
            .map_err(|e| Error::os(format!("MTU of {}", self.name), e))?;
        Ok(mtu)
    }

    /// Set the MTU.
    pub fn set_mtu(&self, mtu: u32) -> VnetResult<()> {
        self.live()?;
        check_mtu(mtu)?;
        sys::if_set_mtu(self.link.ctl.as_fd(), &self.ifname, mtu).map_err(|e| {
            with_cap_hint(Error::os(format!("set MTU of {} to {mtu}", self.name), e))
        })?;
        self.link.store_mtu(mtu);
        Ok(())
    }

    /// The kernel queue length (txqueuelen): how many frames the adapter holds for each
    /// reader before it drops them (counted in `rx_dropped`).
    pub fn queue_length(&self) -> VnetResult<u32> {
        self.live()?;
        sys::if_get_txqlen(self.link.ctl.as_fd(), &self.ifname)
            .map_err(|e| Error::os(format!("queue length of {}", self.name), e))
    }

    /// Set the kernel queue length (frames already queued are kept).
    pub fn set_queue_length(&self, frames: u32) -> VnetResult<()> {
        self.live()?;
        if !(1..=MAX_QUEUE_LENGTH).contains(&frames) {
            return Err(Error::InvalidArgument(format!(
                "queue_length must be 1 to {MAX_QUEUE_LENGTH} frames, not {frames}"
            )));
        }
        sys::if_set_txqlen(self.link.ctl.as_fd(), &self.ifname, frames).map_err(|e| {
            with_cap_hint(Error::os(
                format!("set queue length of {} to {frames}", self.name),
                e,
            ))
        })
    }

    /// The Ethernet address (TAP).
    pub fn mac(&self) -> VnetResult<[u8; 6]> {
        self.live()?;
        sys::if_get_hwaddr(self.link.ctl.as_fd(), &self.ifname)
            .map_err(|e| Error::os(format!("MAC of {}", self.name), e))
    }

    /// Set the Ethernet address (TAP only).
    pub fn set_mac(&self, mac: [u8; 6]) -> VnetResult<()> {
        self.live()?;
        if self.medium != Medium::Ethernet {
            return Err(Error::InvalidArgument(
                "a TUN adapter has no MAC address".into(),
            ));
        }
        if mac[0] & 1 == 1 {
            return Err(Error::InvalidArgument(format!(
                "{} is a multicast address; an adapter needs a unicast MAC (first octet even)",
                format_mac(mac)
            )));
        }
        sys::if_set_hwaddr(self.link.ctl.as_fd(), &self.ifname, mac)
            .map_err(|e| with_cap_hint(Error::os(format!("set MAC of {}", self.name), e)))
    }

    /// Add an address (`ip addr add`).
    pub fn add_address(&self, addr: IpAddr, prefix: u8) -> VnetResult<()> {
        self.live()?;
        self.nl()
            .add_address(self.ifindex, addr, prefix)
            .map_err(|e| {
                let errno = e.raw_os_error();
                let err = Error::os(format!("add address {addr}/{prefix} to {}", self.name), e);
                match errno {
                    Some(libc::EEXIST) => err.with_hint("the adapter already has this address"),
                    // The kernel's answer when IPv6 is switched off for the device.
                    Some(libc::EACCES) if addr.is_ipv6() => err.with_hint(format!(
                        "IPv6 is disabled on {} (sysctl net.ipv6.conf.{}.disable_ipv6 = 1, or \
                         for the whole namespace); enable it or give IPv4 addresses only",
                        self.name, self.name
                    )),
                    _ => with_cap_hint(err),
                }
            })
    }

    /// Remove an address.
    pub fn del_address(&self, addr: IpAddr, prefix: u8) -> VnetResult<()> {
        self.live()?;
        self.nl()
            .del_address(self.ifindex, addr, prefix)
            .map_err(|e| {
                with_cap_hint(Error::os(
                    format!("remove address {addr}/{prefix} from {}", self.name),
                    e,
                ))
            })
    }

    /// Route `dst/prefix` through this adapter (`ip route add DST/PREFIX dev NAME`).
    pub fn add_route(&self, dst: IpAddr, prefix: u8) -> VnetResult<()> {
        self.live()?;
        self.nl().add_route(self.ifindex, dst, prefix).map_err(|e| {
            let exists = e.raw_os_error() == Some(libc::EEXIST);
            let err = with_cap_hint(Error::os(
                format!("add route {dst}/{prefix} via {}", self.name),
                e,
            ));
            if exists {
                err.with_hint("a route to this network exists already (`ip route show`)")
            } else {
                err
            }
        })
    }

    /// Remove a route added with [`Adapter::add_route`].
    pub fn del_route(&self, dst: IpAddr, prefix: u8) -> VnetResult<()> {
        self.live()?;
        self.nl().del_route(self.ifindex, dst, prefix).map_err(|e| {
            with_cap_hint(Error::os(
                format!("remove route {dst}/{prefix} via {}", self.name),
                e,
            ))
        })
    }

    /// Every address with its prefix length.
    pub fn addresses(&self) -> VnetResult<Vec<(IpAddr, u8)>> {
        self.live()?;
        self.nl()
            .addresses(self.ifindex)
            .map_err(|e| Error::os(format!("list addresses of {}", self.name), e))
    }

    pub(super) fn kernel_stats(&self) -> VnetResult<Stats> {
        let mut s = Stats::default();
        for q in &self.queues {
            s += &q.stats()?; // per-queue traffic; drops below come from the kernel
        }
        let k = self
            .nl()
            .link_stats(self.ifindex)
            .map_err(|e| Error::os(format!("counters of {}", self.name), e))?;
        // A TUN/TAP's view is mirrored: what it transmits is what our readers receive.
        // A macvtap counts as its lower device's traffic flows: frames for our readers
        // are its received ones (rx_dropped: the reader's ring was full), frames we write
        // its transmitted ones. A TUN's tx_dropped also holds the frames a kernel-side
        // filter rejected; with the eBPF filter those are counted apart, so they are moved
        // to rx_filtered.
        let kf = self.kfilter();
        let kernel_rejected = kf.rejected();
        let base = &self.kernel_base;
        let (to_readers, from_writers) = match self.backend {
            Backend::Tun => (
                k.tx_dropped.saturating_sub(base.tx_dropped),
                k.rx_dropped.saturating_sub(base.rx_dropped),
            ),
            Backend::Macvtap { .. } => (
                k.rx_dropped.saturating_sub(base.rx_dropped),
                k.tx_dropped.saturating_sub(base.tx_dropped),
            ),
        };
        s.rx_dropped =
            to_readers.saturating_sub(kernel_rejected) + self.link.filter.dropped_by_catch_up();
        s.tx_dropped = from_writers;
        s.rx_filtered = (!kf.classic).then(|| kernel_rejected + self.link.filter.rejected());
        Ok(s)
    }
}

pub(super) fn check_mtu(mtu: u32) -> VnetResult<()> {
    if (68..=65_535).contains(&mtu) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "mtu must be between 68 and 65535, not {mtu}"
        )))
    }
}

pub(super) fn with_cap_hint(err: Error) -> Error {
    if err.raw_os_error() == Some(libc::EPERM) {
        err.with_hint("changing adapter settings needs CAP_NET_ADMIN (run as root)")
    } else {
        err
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff` (or `-` separated).
pub fn parse_mac(text: &str) -> VnetResult<[u8; 6]> {
    let bad = || {
        Error::InvalidArgument(format!(
            "invalid MAC address {text:?}: expected six hex octets such as \"02:00:00:00:00:01\""
        ))
    };
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (dst, part) in mac.iter_mut().zip(parts) {
        if part.is_empty() || part.len() > 2 {
            return Err(bad());
        }
        *dst = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// Parse `192.0.2.1/24` or `2001:db8::1/64` (no prefix: a host address).
pub fn parse_cidr(text: &str) -> VnetResult<(IpAddr, u8)> {
    let bad = |why: &str| {
        Error::InvalidArgument(format!("invalid address {text:?}: {why} (expected e.g. \"192.0.2.1/24\" or \"2001:db8::1/64\")"))
    };
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let ip: IpAddr = addr.trim().parse().map_err(|_| bad("not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| bad("bad prefix length"))?,
    };
    Ok((ip, prefix))
}
