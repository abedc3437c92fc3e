//! TUN (layer 3) and TAP (layer 2) adapters on `/dev/net/tun`, and the adapter type that
//! also serves macvtap links (`device::macvtap`): a macvtap's `/dev/tapN` speaks the same
//! ABI (read/write, the virtio-net header, TUNSETIFF/TUNSETOFFLOAD/TUNSETVNETHDRSZ), so
//! one [`Queue`] implementation serves both; [`Backend`] holds what differs.
//!
//! An adapter has one or more queues (one file descriptor each; more than one needs
//! IFF_MULTI_QUEUE). Descriptors are non-blocking and close-on-exec; waiting is done with
//! `poll` on the descriptor plus an eventfd that `close()` signals, so a thread blocked in
//! receive returns promptly when another thread closes the adapter. A descriptor is
//! released only after every call using it has returned (a read lock per call, the write
//! lock to close), so a number can never be reused under a running `read`.

mod config;
mod filter;
mod open;
mod queue;

use config::Link;
pub use config::{format_mac, parse_cidr, parse_mac};
use filter::KernelFilter;
use open::open_dev;
pub(crate) use open::{set_offload_mask, setup_vnet, Parts};
pub use queue::Queue;

use std::os::fd::{AsFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::netlink::{LinkStats, Netlink};
use super::{Device, Stats};
use crate::batch::PacketBatch;
use crate::error::{Error, VnetResult};
use crate::filter::bpf::Program;
use crate::filter::Placement;
use crate::sys::{self, IfName};
use crate::wire::vnet::VnetHdr;
use crate::wire::Medium;

/// Where the TUN driver lives.
pub const TUN_PATH: &str = "/dev/net/tun";
/// Largest queue length `set_queue_length` takes: the kernel allocates a pointer per slot
/// per queue, so this is 8 MiB of ring (the queued frames themselves cost more).
pub const MAX_QUEUE_LENGTH: u32 = 1 << 20;

/// How to open an adapter.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Name or `%d` pattern (`"vn%d"`).
    pub name: String,
    /// TAP (Ethernet) or TUN (IP).
    pub medium: Medium,
    /// Number of queues; more than one sets IFF_MULTI_QUEUE.
    pub queues: usize,
    /// Make the adapter outlive this process (TUNSETPERSIST).
    pub persist: bool,
    /// Network namespace (as in `ip netns list`) to create or attach in.
    pub netns: Option<String>,
    /// User allowed to attach without CAP_NET_ADMIN (TUNSETOWNER).
    pub owner: Option<u32>,
    /// Group allowed to attach without CAP_NET_ADMIN (TUNSETGROUP).
    pub group: Option<u32>,
    /// MTU to set once open.
    pub mtu: Option<u32>,
    /// Turn on virtio-net headers and kernel offloads (checksum, TSO, USO).
    pub offload: bool,
    /// How frames are received when `offload` is on.
    pub rx_mode: RxMode,
}

/// How an offload adapter hands received frames to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RxMode {
    /// As they would cross a wire: partial checksums completed, super-frames split.
    #[default]
    Segments,
    /// Intact, with their offload metadata (for forwarding at full speed).
    Superframes,
}

/// The TUN_F_* masks tried, richest first: the kernel refuses a mask with any flag it does
/// not know, so older kernels fall through to a smaller one.
const OFFLOAD_MASKS: [libc::c_uint; 3] = [
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_USO4 | libc::TUN_F_USO6,
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6,
    libc::TUN_F_CSUM,
];

/// Names of the TUN_F_* bits in `mask`.
pub fn offload_names(mask: u32) -> Vec<&'static str> {
    [
        (libc::TUN_F_CSUM, "csum"),
        (libc::TUN_F_TSO4, "tso4"),
        (libc::TUN_F_TSO6, "tso6"),
        (libc::TUN_F_USO4, "uso4"),
        (libc::TUN_F_USO6, "uso6"),
    ]
    .into_iter()
    .filter(|(bit, _)| mask & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

impl OpenOptions {
    /// Defaults: one queue, not persistent, caller's namespace.
    pub fn new(name: &str, medium: Medium) -> Self {
        OpenOptions {
            name: name.to_owned(),
            medium,
            queues: 1,
            persist: false,
            netns: None,
            owner: None,
            group: None,
            mtu: None,
            offload: false,
            rx_mode: RxMode::Segments,
        }
    }
}

/// What an adapter's descriptors are, and with it who owns the link.
#[derive(Debug)]
pub(crate) enum Backend {
    /// `/dev/net/tun` (TUN or TAP): the kernel removes the adapter with its last
    /// descriptor unless it is persistent (TUNSETPERSIST); kernel-side filters available.
    Tun,
    /// `/dev/tapN` of a macvtap link: the link lives until deleted, so vnetio deletes the
    /// one it created when the adapter closes, unless it is persistent (a flag of the
    /// adapter only). The tap driver has no filter ioctls and counts its drops on the
    /// receive side (see `kernel_stats`).
    Macvtap {
        /// The link was deleted (or deleting it was attempted).
        removed: AtomicBool,
    },
}

/// A TUN, TAP or macvtap adapter: its queues plus the sockets used to configure it (opened
/// in the adapter's network namespace, so configuration works from any thread).
pub struct Adapter {
    queues: Vec<Arc<Queue>>,
    ifname: IfName,
    name: String,
    medium: Medium,
    ifindex: u32,
    netns: Option<String>,
    created: bool,
    persistent: AtomicBool,
    link: Arc<Link>,
    nl: Mutex<Netlink>,
    kernel_base: LinkStats,
    final_stats: Mutex<Option<Stats>>,
    offloads: u32,
    offload: bool,
    kfilter: Mutex<KernelFilter>,
    backend: Backend,
}

impl Device for Adapter {
    fn medium(&self) -> Medium {
        self.medium
    }

    fn mtu(&self) -> usize {
        self.link.current_mtu()
    }

    fn recv_batch(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        self.queues[0].recv_batch(batch, max, wait)
    }

    fn send_frames(&self, frames: &[&[u8]]) -> VnetResult<usize> {
        self.queues[0].send_frames(frames)
    }

    fn send_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<usize> {
        self.queues[0].send_frames_meta(frames, hdrs)
    }

    fn check_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<()> {
        self.queues[0].check_frames_meta(frames, hdrs)
    }

    fn check_frames(&self, frames: &[&[u8]]) -> VnetResult<()> {
        self.link.check_frames(self.medium, frames)
    }

    fn stats(&self) -> VnetResult<Stats> {
        if let Some(s) = *self
            .final_stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            return Ok(s);
        }
        self.kernel_stats()
    }

    fn set_filter(
        &self,
        program: Option<Program>,
        placement: Option<Placement>,
    ) -> VnetResult<Option<Placement>> {
        self.live()?;
        self.apply_filter(program, placement)
    }

    fn filter_placement(&self) -> Option<Placement> {
        self.kfilter().placement
    }

    fn close(&self) {
        if self.is_closed() {
            return;
        }
        let last = self.kernel_stats().ok();
        *self
            .final_stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = last;
        self.detach_kernel_filters();
        for q in &self.queues {
            q.close_fd();
        }
        self.remove_owned_link();
    }

    fn is_closed(&self) -> bool {
        self.queues[0].is_closed()
    }

    fn raw_fd(&self) -> VnetResult<RawFd> {
        self.queues[0].raw_fd()
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        if !self.is_closed() {
            self.detach_kernel_filters();
        }
        for q in &self.queues {
            q.close_fd();
        }
        self.remove_owned_link();
    }
}

impl Adapter {
    /// A macvtap link this adapter created and does not keep (`persistent` false) is
    /// deleted once its descriptors are closed. Only a macvtap still of this name and
    /// kind at this ifindex is deleted; errors (already gone) are ignored.
    fn remove_owned_link(&self) {
        let Backend::Macvtap { removed } = &self.backend else {
            return;
        };
        if !self.created || self.persistent() || removed.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut nl = self.nl();
        let ours = nl.links().is_ok_and(|links| {
            links.iter().any(|l| {
                l.ifindex == self.ifindex
                    && l.name == self.name
                    && l.kind.as_deref() == Some("macvtap")
            })
        });
        if ours {
            let _ = nl.del_link(self.ifindex);
        }
    }
}

impl Backend {
    /// The backend of a macvtap link's adapter (link not yet removed).
    pub(crate) fn macvtap() -> Backend {
        Backend::Macvtap {
            removed: AtomicBool::new(false),
        }
    }
}

/// TUNGETFEATURES: which IFF_* flags the kernel's TUN driver supports.
pub fn features() -> VnetResult<u32> {
    let file = open_dev()?;
    sys::tun_get_features(file.as_fd()).map_err(|e| Error::os("TUNGETFEATURES", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac = parse_mac("02:AB:0c:00:00:ff").unwrap();
        assert_eq!(mac, [2, 0xab, 0x0c, 0, 0, 0xff]);
        assert_eq!(format_mac(mac), "02:ab:0c:00:00:ff");
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "002:00:00:00:00:0",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr() {
        assert_eq!(
            parse_cidr("192.0.2.1/24").unwrap(),
            ("192.0.2.1".parse().unwrap(), 24)
        );
        assert_eq!(
            parse_cidr("2001:db8::1").unwrap(),
            ("2001:db8::1".parse().unwrap(), 128)
        );
        assert_eq!(parse_cidr("198.51.100.7").unwrap().1, 32);
        for bad in [
            "",
            "192.0.2.1/33",
            "2001:db8::1/129",
            "host/24",
            "192.0.2.1/x",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }
}
