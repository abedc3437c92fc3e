//! How a vhost-user adapter is set up (`Options`, `SocketMode`) and what it counts
//! beyond the frame counters (`VhostStats`).

use super::ring::FaultCounts;
use crate::device::loopback::Overflow;
use crate::device::tuntap::RxMode;
use std::path::PathBuf;
use std::time::Duration;

/// Who opens the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SocketMode {
    /// vnetio listens on the socket; QEMU connects (`-chardev socket,path=SOCK`). After a
    /// disconnect the next connection is accepted.
    #[default]
    Server,
    /// QEMU listens (`-chardev socket,path=SOCK,server=on,wait=off`); vnetio connects, and
    /// connects again whenever the connection ends.
    Client,
}

/// How to create a [`VhostUserNet`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The vhost-user socket.
    pub socket: PathBuf,
    /// Listen (server) or connect (client).
    pub mode: SocketMode,
    /// Queue pairs offered (MQ when more than one).
    pub queues: usize,
    /// The MAC address in the device's config space (QEMU shows the guest its own
    /// `-device …,mac=` instead).
    pub mac: [u8; 6],
    /// The MTU frames are checked against (and offered in the config space; QEMU shows the
    /// guest its own `host_mtu=`).
    pub mtu: usize,
    /// Offer checksum and segmentation offload (CSUM, GUEST_CSUM, TSO4/6, ECN).
    pub offload: bool,
    /// Receive super-frames with their metadata, or split and completed.
    pub rx_mode: RxMode,
    /// How long a send waits for the guest to post receive buffers before dropping.
    pub send_timeout: Duration,
    /// What a send does with frames it cannot place (no guest, no buffers after
    /// `send_timeout`): drop and count them, or fail with how many were placed.
    pub overflow: Overflow,
}

impl Options {
    /// Defaults: server mode, one queue pair, MTU 1500, offload on, segments mode, a 100 ms
    /// send timeout, drop on overflow.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Options {
            socket: socket.into(),
            mode: SocketMode::Server,
            queues: 1,
            mac: [0x02, 0x76, 0x6e, 0x00, 0x00, 0x01],
            mtu: 1500,
            offload: true,
            rx_mode: RxMode::Segments,
            send_timeout: Duration::from_millis(100),
            overflow: Overflow::Drop,
        }
    }
}

/// Counters of a vhost-user adapter, beyond the frame counts of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VhostStats {
    /// Frontend connections made (accepted, or connected in client mode).
    pub connections: u64,
    /// Connections that ended.
    pub disconnects: u64,
    /// Frames the guest had queued for transmission that were lost: still on its TX ring
    /// when the connection ended or the driver reset the ring. Also in `rx_dropped`.
    pub lost: u64,
    /// Chains refused on guest TX queues, by fault (also in `rx_errors`).
    pub guest_tx_faults: FaultCounts,
    /// Chains refused on guest RX queues, by fault.
    pub guest_rx_faults: FaultCounts,
    /// Frames from the guest whose virtio-net header did not describe them, or shorter
    /// than an Ethernet header: refused (also in `rx_errors`).
    pub bad_frames: u64,
    /// Times a ring's indexes or structures made no sense (it then waits for a reset).
    pub ring_faults: u64,
    /// Segmentation-offload super-frames received from the guest (before any split).
    pub superframes: u64,
    /// Frames to the guest completed or split in software (the guest did not negotiate
    /// the offload they carry).
    pub sent_in_software: u64,
    /// Frames dropped because no guest was connected (also in `tx_dropped`).
    pub dropped_no_guest: u64,
    /// Frames dropped because the guest posted no buffers in time (also in `tx_dropped`).
    pub dropped_no_buffers: u64,
    /// Frames dropped because they exceed the guest's buffers (also in `tx_dropped`).
    pub dropped_too_big: u64,
    /// Guest TX kicks the vring worker thread woke for (kicks that came while it was
    /// busy are coalesced into one by the eventfd).
    pub tx_kicks: u64,
    /// Guest RX kicks (buffers posted) the vring worker thread woke for, coalesced so.
    pub rx_kicks: u64,
    /// Interrupts requested for the guest's TX queues (used buffers handed back).
    pub tx_interrupts: u64,
    /// Interrupts requested for the guest's RX queues (frames placed).
    pub rx_interrupts: u64,
    /// Guest TX frames the vring worker thread took at a kick, ahead of the reader
    /// (the rest were taken by the reader's own thread).
    pub tx_taken_at_kick: u64,
}
