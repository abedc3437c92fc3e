//! The virtio-net header parser and the software GSO split (`vnet::segment`).
//!
//! Input: one selector byte, the 10-byte virtio-net header, then the frame. Selector bit 0
//! picks the medium (Ethernet / IP); bit 1 asks for the header and the IP lengths to be
//! made consistent with the frame first, so most inputs reach the split itself.
//!
//! Asserts: no panic; on error nothing is appended; on success, for a GSO super-frame,
//! every segment verifies (IPv4 header and transport checksums) and the segments'
//! payloads, in order, are the super-frame's payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vnetio::batch::PacketBatch;
use vnetio::offload::gso::segment;
use vnetio::wire::checksum::verify_frame;
use vnetio::wire::vnet::{gso, VnetHdr, F_NEEDS_CSUM, VNET_HDR_LEN};
use vnetio::wire::{locate, proto, Ip};
use vnetio::Medium;

/// Make the frame's IP lengths and the header's GSO fields agree with the frame.
fn make_consistent(frame: &mut [u8], hdr: &mut VnetHdr, medium: Medium) {
    let Ok(l3) = vnetio::wire::ip_offset(frame, medium) else {
        return;
    };
    let Some(&first) = frame.get(l3) else { return };
    let ip_len = frame.len() - l3;
    match first >> 4 {
        4 if frame.len() >= l3 + 20 => {
            let total = u16::try_from(ip_len).unwrap_or(u16::MAX);
            frame[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            frame[l3 + 6] &= 0x40; // no fragments (keep DF)
            frame[l3 + 7] = 0;
        }
        6 if frame.len() >= l3 + 40 => {
            let payload = u16::try_from(ip_len - 40).unwrap_or(u16::MAX);
            frame[l3 + 4..l3 + 6].copy_from_slice(&payload.to_be_bytes());
        }
        _ => return,
    }
    let Ok(l) = locate(frame, medium) else { return };
    let (kind, field) = match (l.ip, l.protocol) {
        (Ip::V4, proto::TCP) => (gso::TCPV4, 16),
        (Ip::V6, proto::TCP) => (gso::TCPV6, 16),
        (_, proto::UDP) => (gso::UDP_L4, 6),
        _ => return,
    };
    hdr.gso_type = kind | (hdr.gso_type & gso::ECN & if field == 16 { 0xff } else { 0 });
    hdr.flags = F_NEEDS_CSUM;
    hdr.csum_start = l.l4 as u16;
    hdr.csum_offset = field;
    hdr.hdr_len = (l.l4 + 20).min(frame.len()) as u16;
    if hdr.gso_size == 0 {
        hdr.gso_size = 1;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let medium = if sel & 1 == 0 {
        Medium::Ethernet
    } else {
        Medium::Ip
    };
    let Some(mut hdr) = VnetHdr::parse(rest) else {
        return;
    };
    assert_eq!(
        VnetHdr::parse(&hdr.to_bytes()),
        Some(hdr),
        "header round trip"
    );
    let mut frame = rest[VNET_HDR_LEN..].to_vec();
    if sel & 2 != 0 {
        make_consistent(&mut frame, &mut hdr, medium);
    }
    let mut out = PacketBatch::default();
    match segment(&frame, hdr, medium, &mut out, 7) {
        Err(_) => assert!(out.is_empty(), "an error appended frames"),
        Ok(n) => {
            assert_eq!(n, out.len());
            assert!(hdr.validate(frame.len()).is_ok());
            if !hdr.is_gso() {
                assert_eq!(n, 1);
                assert_eq!(out.get(0).map(<[u8]>::len), Some(frame.len()));
                return;
            }
            let l = locate(&frame, medium).expect("segmented, so it parses");
            let thl = if l.protocol == proto::TCP {
                usize::from(frame[l.l4 + 12] >> 4) * 4
            } else {
                8
            };
            let headers = l.l4 + thl;
            let mut payload = Vec::new();
            for (i, seg) in out.iter().enumerate() {
                let check = verify_frame(seg, medium)
                    .unwrap_or_else(|e| panic!("segment {i} of {n} does not parse: {e}"));
                assert!(check.ok(), "segment {i} of {n}: checksums {check:?}");
                assert!(
                    check.l4 == Some(true),
                    "segment {i}: transport checksum not checked"
                );
                assert!(seg.len() - headers <= usize::from(hdr.gso_size));
                assert_eq!(seg[..l.l3], frame[..l.l3], "link header changed");
                payload.extend_from_slice(&seg[headers..]);
            }
            assert_eq!(payload, frame[headers..l.end], "payload differs");
            assert_eq!(out.timestamps_ns().filter(|&t| t != 7).count(), 0);
        }
    }
});
