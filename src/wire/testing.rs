//! Packets the crate's unit tests build, every byte in view (compiled for tests only).

use super::checksum::{checksum, fix_frame, pseudo_header_v4};
use super::vnet::{gso, VnetHdr, F_NEEDS_CSUM};
use super::Medium;

/// An IPv4 UDP packet, 192.0.2.1:12345 → 192.0.2.2:`dport`, IP identification `ident`,
/// TTL 64, both checksums right.
pub(crate) fn udp4(ident: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&[0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    p.extend_from_slice(&12345u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    fix_frame(&mut p, Medium::Ip).unwrap();
    p
}

/// `packet` (IPv4) in an Ethernet frame, 02:00:00:00:00:02 → 02:00:00:00:00:01.
pub(crate) fn ethernet(packet: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(packet);
    f
}

/// The virtio-net header of a TCP/IPv4 super-frame in Ethernet ([`tcp4_superframe`]):
/// partial checksum, segments of 1448 payload bytes.
pub(crate) fn tso4() -> VnetHdr {
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: gso::TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    }
}

/// An Ethernet/IPv4/TCP super-frame (as [`ethernet`] frames it), 192.0.2.1:12345 →
/// 192.0.2.2:80, IP identification 0x1234 with DF, TCP sequence number `seq` and `flags`,
/// `payload` bytes counting up (mod 251); the TCP checksum partial (the pseudo-header sum,
/// as a sender with offload leaves it). With its header, [`tso4`].
pub(crate) fn tcp4_superframe(payload: usize, seq: u32, flags: u8) -> (Vec<u8>, VnetHdr) {
    let total = 40 + payload;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    p.extend_from_slice(&12345u16.to_be_bytes());
    p.extend_from_slice(&80u16.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend((0..payload).map(|i| (i % 251) as u8));
    let pseudo = pseudo_header_v4([192, 0, 2, 1], [192, 0, 2, 2], 6, (20 + payload) as u32);
    p[36..38].copy_from_slice(&pseudo.to_be_bytes());
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    (ethernet(&p), tso4())
}
