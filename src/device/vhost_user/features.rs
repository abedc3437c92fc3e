//! Virtio feature bits of the virtio-net device this backend offers, and what the
//! negotiated set means for the data path (header length, which offloads the guest takes).

use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_net as net;
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};

use crate::wire::vnet::{gso, VnetHdr, F_DATA_VALID, F_NEEDS_CSUM};

const fn bit(n: u32) -> u64 {
    1 << n
}

/// VIRTIO_NET_F_CSUM: the device takes partially checksummed frames from the guest.
pub const CSUM: u64 = bit(net::VIRTIO_NET_F_CSUM);
/// VIRTIO_NET_F_GUEST_CSUM: the guest takes partially checksummed frames.
pub const GUEST_CSUM: u64 = bit(net::VIRTIO_NET_F_GUEST_CSUM);
/// VIRTIO_NET_F_MTU: the config space carries the MTU.
pub const MTU: u64 = bit(net::VIRTIO_NET_F_MTU);
/// VIRTIO_NET_F_MAC: the config space carries the MAC address.
pub const MAC: u64 = bit(net::VIRTIO_NET_F_MAC);
/// VIRTIO_NET_F_GUEST_TSO4: the guest takes TCP/IPv4 super-frames.
pub const GUEST_TSO4: u64 = bit(net::VIRTIO_NET_F_GUEST_TSO4);
/// VIRTIO_NET_F_GUEST_TSO6: the guest takes TCP/IPv6 super-frames.
pub const GUEST_TSO6: u64 = bit(net::VIRTIO_NET_F_GUEST_TSO6);
/// VIRTIO_NET_F_GUEST_ECN: the guest takes TCP super-frames with the ECN flag.
pub const GUEST_ECN: u64 = bit(net::VIRTIO_NET_F_GUEST_ECN);
/// VIRTIO_NET_F_GUEST_UFO: the guest takes UDP fragmentation super-frames (never sent).
pub const GUEST_UFO: u64 = bit(net::VIRTIO_NET_F_GUEST_UFO);
/// VIRTIO_NET_F_HOST_TSO4: the device takes TCP/IPv4 super-frames from the guest.
pub const HOST_TSO4: u64 = bit(net::VIRTIO_NET_F_HOST_TSO4);
/// VIRTIO_NET_F_HOST_TSO6: the device takes TCP/IPv6 super-frames from the guest.
pub const HOST_TSO6: u64 = bit(net::VIRTIO_NET_F_HOST_TSO6);
/// VIRTIO_NET_F_HOST_ECN: the device takes TCP super-frames with the ECN flag.
pub const HOST_ECN: u64 = bit(net::VIRTIO_NET_F_HOST_ECN);
/// VIRTIO_NET_F_HOST_UFO: the device takes UDP fragmentation super-frames (not offered).
pub const HOST_UFO: u64 = bit(net::VIRTIO_NET_F_HOST_UFO);
/// VIRTIO_NET_F_MRG_RXBUF: a received frame may span several guest buffers.
pub const MRG_RXBUF: u64 = bit(net::VIRTIO_NET_F_MRG_RXBUF);
/// VIRTIO_NET_F_STATUS: the config space carries the link status.
pub const STATUS: u64 = bit(net::VIRTIO_NET_F_STATUS);
/// VIRTIO_NET_F_CTRL_VQ: a control queue (not offered: the frontend keeps its own).
pub const CTRL_VQ: u64 = bit(net::VIRTIO_NET_F_CTRL_VQ);
/// VIRTIO_NET_F_MQ: more than one queue pair.
pub const MQ: u64 = bit(net::VIRTIO_NET_F_MQ);
/// VIRTIO_RING_F_INDIRECT_DESC: descriptor chains may sit in indirect tables.
pub const RING_INDIRECT_DESC: u64 = bit(VIRTIO_RING_F_INDIRECT_DESC);
/// VIRTIO_RING_F_EVENT_IDX: notifications are suppressed by ring indexes.
pub const RING_EVENT_IDX: u64 = bit(VIRTIO_RING_F_EVENT_IDX);
/// VIRTIO_F_VERSION_1: a modern (virtio 1.0+) device.
pub const VERSION_1: u64 = bit(VIRTIO_F_VERSION_1);
/// VHOST_USER_F_PROTOCOL_FEATURES (bit 30): vhost-user protocol feature negotiation.
pub const PROTOCOL_FEATURES: u64 = 1 << 30;

/// Everything offered with `offload` on: checksum offload and TCP segmentation offload in
/// both directions (HOST_UFO is not offered, see [`offered`]).
pub const OFFLOADS: u64 = CSUM
    | GUEST_CSUM
    | GUEST_TSO4
    | GUEST_TSO6
    | GUEST_ECN
    | GUEST_UFO
    | HOST_TSO4
    | HOST_TSO6
    | HOST_ECN;

/// The feature set this backend offers.
///
/// Always: VERSION_1, MAC, MTU, STATUS, MRG_RXBUF, RING_INDIRECT_DESC, RING_EVENT_IDX and
/// vhost-user protocol features; with `offload`: [`OFFLOADS`]; with more than one queue
/// pair: MQ. Not offered: HOST_UFO (vnetio has no UDP fragmentation in software, and
/// Linux guests since 4.14 send no UFO frames, so offering it would only let a guest hand
/// over frames that must then be refused); CTRL_VQ (a vhost-user frontend such as QEMU
/// runs the control queue itself and never passes it to the backend).
pub fn offered(offload: bool, queue_pairs: usize) -> u64 {
    let mut f = VERSION_1
        | MAC
        | MTU
        | STATUS
        | MRG_RXBUF
        | RING_INDIRECT_DESC
        | RING_EVENT_IDX
        | PROTOCOL_FEATURES;
    if offload {
        f |= OFFLOADS;
    }
    if queue_pairs > 1 {
        f |= MQ;
    }
    f
}

/// Length of the virtio-net header in front of every frame on the rings: 12 bytes
/// (`virtio_net_hdr_v1`, with `num_buffers`) for a modern device or with MRG_RXBUF,
/// 10 bytes for a legacy device without it.
pub fn header_len(acked: u64) -> usize {
    if acked & (VERSION_1 | MRG_RXBUF) != 0 {
        12
    } else {
        10
    }
}

/// Whether a guest that negotiated `acked` takes a frame carrying `hdr` as it is. If not,
/// the frame is completed (checksum) and split (GSO) in software first.
pub fn guest_takes(acked: u64, hdr: VnetHdr) -> bool {
    if hdr.flags & F_NEEDS_CSUM != 0 && acked & GUEST_CSUM == 0 {
        return false;
    }
    if hdr.gso_type & gso::ECN != 0 && acked & GUEST_ECN == 0 {
        return false;
    }
    match hdr.kind() {
        gso::NONE => true,
        gso::TCPV4 => acked & GUEST_TSO4 != 0,
        gso::TCPV6 => acked & GUEST_TSO6 != 0,
        // USO (GUEST_USO4/6) is not offered (QEMU 7.2 does not know it); UFO is never sent.
        _ => false,
    }
}

/// The header a guest that negotiated `acked` is given for `hdr`: DATA_VALID is only
/// meaningful with GUEST_CSUM, so it is dropped otherwise (the guest then verifies).
pub fn for_guest(acked: u64, mut hdr: VnetHdr) -> VnetHdr {
    if acked & GUEST_CSUM == 0 {
        hdr.flags &= !F_DATA_VALID;
    }
    hdr
}

/// Names of the bits set in `features`, for messages and the Python API.
pub fn names(features: u64) -> Vec<&'static str> {
    const NAMES: [(u64, &str); 22] = [
        (CSUM, "csum"),
        (GUEST_CSUM, "guest_csum"),
        (MTU, "mtu"),
        (MAC, "mac"),
        (GUEST_TSO4, "guest_tso4"),
        (GUEST_TSO6, "guest_tso6"),
        (GUEST_ECN, "guest_ecn"),
        (GUEST_UFO, "guest_ufo"),
        (HOST_TSO4, "host_tso4"),
        (HOST_TSO6, "host_tso6"),
        (HOST_ECN, "host_ecn"),
        (HOST_UFO, "host_ufo"),
        (MRG_RXBUF, "mrg_rxbuf"),
        (STATUS, "status"),
        (CTRL_VQ, "ctrl_vq"),
        (MQ, "mq"),
        (RING_INDIRECT_DESC, "indirect_desc"),
        (RING_EVENT_IDX, "event_idx"),
        (PROTOCOL_FEATURES, "protocol_features"),
        (VERSION_1, "version_1"),
        (bit(net::VIRTIO_NET_F_GUEST_ANNOUNCE), "guest_announce"),
        (
            bit(net::VIRTIO_NET_F_CTRL_GUEST_OFFLOADS),
            "ctrl_guest_offloads",
        ),
    ];
    NAMES
        .iter()
        .filter(|(b, _)| features & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_sets() {
        let plain = offered(false, 1);
        assert_eq!(plain & OFFLOADS, 0);
        assert_eq!(plain & MQ, 0);
        assert_ne!(plain & VERSION_1, 0);
        let full = offered(true, 2);
        assert_eq!(full & OFFLOADS, OFFLOADS);
        assert_ne!(full & MQ, 0);
        assert_eq!(full & (HOST_UFO | CTRL_VQ), 0);
        assert!(names(full).contains(&"host_tso4"));
        assert!(!names(full).contains(&"host_ufo"));
    }

    #[test]
    fn header_lengths() {
        assert_eq!(header_len(VERSION_1), 12);
        assert_eq!(header_len(MRG_RXBUF), 12);
        assert_eq!(header_len(0), 10);
    }

    #[test]
    fn what_a_guest_takes() {
        let tso4 = crate::wire::testing::tso4();
        assert!(guest_takes(GUEST_CSUM | GUEST_TSO4, tso4));
        assert!(!guest_takes(GUEST_TSO4, tso4), "needs GUEST_CSUM too");
        assert!(!guest_takes(GUEST_CSUM | GUEST_TSO6, tso4));
        let ecn = VnetHdr {
            gso_type: gso::TCPV4 | gso::ECN,
            ..tso4
        };
        assert!(!guest_takes(GUEST_CSUM | GUEST_TSO4, ecn));
        assert!(guest_takes(GUEST_CSUM | GUEST_TSO4 | GUEST_ECN, ecn));
        let uso = VnetHdr {
            gso_type: gso::UDP_L4,
            ..tso4
        };
        assert!(!guest_takes(OFFLOADS, uso));
        assert!(guest_takes(0, VnetHdr::default()));
        let valid = VnetHdr {
            flags: F_DATA_VALID,
            ..VnetHdr::default()
        };
        assert_eq!(for_guest(0, valid).flags, 0);
        assert_eq!(for_guest(GUEST_CSUM, valid).flags, F_DATA_VALID);
    }
}
