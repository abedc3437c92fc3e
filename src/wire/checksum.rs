//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! [`sum`] returns the *uncomplemented* one's-complement sum of a byte slice, folded to
//! 16 bits in network byte order; [`combine`] adds partial sums (e.g. a pseudo-header and
//! a payload); [`finish`] complements. The checksum of a header is
//! `finish(combine(&[pseudo, sum(segment)]))`, and a received segment verifies when
//! `combine(&[pseudo, sum(segment)]) == 0xffff`.
//!
//! Speed: RFC 1071's sum is independent of byte order, so the hot loop adds the data as
//! native-endian 32-bit words into 64-bit accumulators (2^32 words fit before an
//! accumulator could overflow, far beyond a 64 KiB packet) and swaps bytes once at the end.
//! Four independent accumulators over 32-byte blocks break the dependency chain, and the
//! loop is written so the compiler can vectorise it (`u32 → u64` widening adds).
//!
//! [`verify_frame`] and [`fix_frame`] apply this to whole frames (Ethernet with VLAN tags,
//! or raw IP): IPv4 header, TCP, UDP (with its zero-checksum rules), ICMPv4 and ICMPv6.

use crate::wire::Medium;
use crate::wire::{locate, proto, Ip, Layout, WireError};

/// Uncomplemented one's-complement sum of `data`, folded to 16 bits, network byte order.
/// An odd trailing byte is padded with zero, as RFC 1071 says.
pub fn sum(data: &[u8]) -> u16 {
    fold(raw_sum(data))
}

/// Combine partial sums from [`sum`] (and pseudo-headers). Each part must start at an
/// even offset of the checksummed span, which holds for headers and whole payloads.
pub fn combine(parts: &[u16]) -> u16 {
    fold(parts.iter().map(|&p| u64::from(p)).sum())
}

/// The checksum field value for a folded sum: its one's complement.
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// `finish(sum(data))`: the checksum of `data` on its own (IPv4 header, ICMPv4).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// RFC 1624 eqn. 3: the new checksum when a 16-bit field changes from `old` to `new`,
/// without summing the data again: `HC' = ~(~HC + ~m + m')`.
pub fn update(check: u16, old: u16, new: u16) -> u16 {
    !combine(&[!check, !old, new])
}

/// RFC 1624 for a changed 32-bit field (e.g. an IPv4 address).
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update(check, (old >> 16) as u16, (new >> 16) as u16);
    update(c, old as u16, new as u16)
}

/// IPv4 pseudo-header sum: source, destination, protocol and L4 length.
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u32) -> u16 {
    let mut s = u64::from(u16::from_be_bytes([src[0], src[1]]))
        + u64::from(u16::from_be_bytes([src[2], src[3]]))
        + u64::from(u16::from_be_bytes([dst[0], dst[1]]))
        + u64::from(u16::from_be_bytes([dst[2], dst[3]]));
    s += u64::from(protocol);
    s += u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff);
    fold(s)
}

/// IPv6 pseudo-header sum: source, destination, upper-layer length, next header.
pub fn pseudo_header_v6(src: [u8; 16], dst: [u8; 16], next_header: u8, l4_len: u32) -> u16 {
    let mut s = 0u64;
    for pair in src.chunks_exact(2).chain(dst.chunks_exact(2)) {
        s += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    s += u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff);
    s += u64::from(next_header);
    fold(s)
}

/// What checking one frame found. `None`: that checksum does not apply (not IPv4 for
/// `ip`; no transport checksum to check for `l4`: a fragment, another protocol, or an
/// IPv4 UDP datagram sent without a checksum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCheck {
    /// IPv4 header checksum correct.
    pub ip: Option<bool>,
    /// TCP/UDP/ICMP/ICMPv6 checksum correct.
    pub l4: Option<bool>,
}

impl FrameCheck {
    /// No checksum that applies is wrong.
    pub fn ok(&self) -> bool {
        self.ip != Some(false) && self.l4 != Some(false)
    }
}

/// Offset of the checksum field within the transport header, for protocols that have one.
fn l4_field(protocol: u8) -> Option<usize> {
    match protocol {
        proto::TCP => Some(16),
        proto::UDP => Some(6),
        proto::ICMP | proto::ICMPV6 => Some(2),
        _ => None,
    }
}

/// The pseudo-header sum of the packet `layout` describes in `frame`, for an L4 segment
/// of `l4_len` bytes (IPv4 or IPv6 addresses, protocol, length).
pub fn pseudo_for(frame: &[u8], l: &Layout, l4_len: usize) -> u16 {
    match l.ip {
        Ip::V4 => {
            let a = |at: usize| [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
            pseudo_header_v4(a(l.l3 + 12), a(l.l3 + 16), l.protocol, l4_len as u32)
        }
        Ip::V6 => {
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&frame[l.l3 + 8..l.l3 + 24]);
            dst.copy_from_slice(&frame[l.l3 + 24..l.l3 + 40]);
            pseudo_header_v6(src, dst, l.protocol, l4_len as u32)
        }
    }
}

/// The pseudo-header sum for `layout` (0 for ICMPv4, which has none).
fn pseudo(frame: &[u8], l: &Layout) -> u16 {
    if l.ip == Ip::V4 && l.protocol == proto::ICMP {
        0
    } else {
        pseudo_for(frame, l, l.l4_len())
    }
}

/// Verify the IPv4 header and transport checksums of one frame.
pub fn verify_frame(frame: &[u8], medium: Medium) -> Result<FrameCheck, WireError> {
    let l = match locate(frame, medium) {
        Ok(l) => l,
        Err(WireError::NotIp) => return Ok(FrameCheck { ip: None, l4: None }),
        Err(e) => return Err(e),
    };
    let ip = match l.ip {
        Ip::V4 => Some(sum(&frame[l.l3..l.l4]) == 0xffff),
        Ip::V6 => None,
    };
    let Some(field) = l4_field(l.protocol).filter(|_| !l.fragment && !l.partial) else {
        return Ok(FrameCheck { ip, l4: None });
    };
    let seg = &frame[l.l4..l.end];
    if seg.len() < field + 2 {
        return Err(WireError::Truncated("transport header"));
    }
    let stored = u16::from_be_bytes([seg[field], seg[field + 1]]);
    let l4 = match (l.ip, l.protocol, stored) {
        (Ip::V4, proto::UDP, 0) => None, // sent without a checksum (RFC 768)
        (Ip::V6, proto::UDP, 0) => Some(false), // mandatory over IPv6 (RFC 8200 §8.1)
        _ => Some(combine(&[pseudo(frame, &l), sum(seg)]) == 0xffff),
    };
    Ok(FrameCheck { ip, l4 })
}

/// Recompute the IPv4 header checksum and the transport checksum of one frame in place
/// (an IPv4 UDP datagram sent without a checksum gets one). Fragments keep their
/// transport checksum, which covers bytes that are not in the frame.
pub fn fix_frame(frame: &mut [u8], medium: Medium) -> Result<FrameCheck, WireError> {
    match locate(frame, medium) {
        Ok(l) => fix_located(frame, &l, false),
        Err(WireError::NotIp) => Ok(FrameCheck { ip: None, l4: None }),
        Err(e) => Err(e),
    }
}

/// For a frame whose transport checksum is *partial* (virtio-net `NEEDS_CSUM`: the field
/// holds the pseudo-header sum, completed later by whoever segments or sends it): fix the
/// IPv4 header checksum and set the partial sum (as [`fix_frame`] does for full ones).
pub fn fix_frame_partial(frame: &mut [u8], medium: Medium) -> Result<FrameCheck, WireError> {
    let l = locate(frame, medium)?;
    fix_located(frame, &l, true)
}

/// Shared by [`fix_frame`] and [`fix_frame_partial`]: the IPv4 header checksum, then the
/// transport field, full or (`partial`) the pseudo-header sum alone.
fn fix_located(frame: &mut [u8], l: &Layout, partial: bool) -> Result<FrameCheck, WireError> {
    let mut done = FrameCheck { ip: None, l4: None };
    if l.ip == Ip::V4 {
        frame[l.l3 + 10..l.l3 + 12].copy_from_slice(&[0, 0]);
        let c = checksum(&frame[l.l3..l.l4]);
        frame[l.l3 + 10..l.l3 + 12].copy_from_slice(&c.to_be_bytes());
        done.ip = Some(true);
    }
    if let Some(field) = l4_field(l.protocol).filter(|_| !l.fragment && !l.partial) {
        if l.l4_len() < field + 2 {
            return Err(WireError::Truncated("transport header"));
        }
        let at = l.l4 + field;
        let value = if partial {
            pseudo_for(frame, l, l.l4_len())
        } else {
            frame[at..at + 2].copy_from_slice(&[0, 0]);
            let c = finish(combine(&[pseudo(frame, l), sum(&frame[l.l4..l.end])]));
            // 0 means "no checksum" for UDP; its one's-complement twin is sent instead.
            if c == 0 && l.protocol == proto::UDP {
                0xffff
            } else {
                c
            }
        };
        frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
        done.l4 = Some(true);
    }
    Ok(done)
}

/// Verify a frame with a partial transport checksum: the IPv4 header checksum, and the
/// transport field holding exactly the pseudo-header sum.
pub fn verify_frame_partial(frame: &[u8], medium: Medium) -> Result<FrameCheck, WireError> {
    let l = locate(frame, medium)?;
    let ip = (l.ip == Ip::V4).then(|| sum(&frame[l.l3..l.l4]) == 0xffff);
    let Some(field) = l4_field(l.protocol).filter(|_| !l.fragment && !l.partial) else {
        return Ok(FrameCheck { ip, l4: None });
    };
    let at = l.l4 + field;
    let stored = frame
        .get(at..at + 2)
        .ok_or(WireError::Truncated("transport header"))?;
    let want = pseudo_for(frame, &l, l.l4_len()).to_be_bytes();
    Ok(FrameCheck {
        ip,
        l4: Some(stored == want),
    })
}

/// Fold a 64-bit accumulator of big-endian 16-bit words to 16 bits.
fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Sum of `data` as big-endian 16-bit words, in a 64-bit accumulator (not folded).
fn raw_sum(data: &[u8]) -> u64 {
    let mut acc = [0u64; 4];
    let mut blocks = data.chunks_exact(32);
    for block in &mut blocks {
        for (i, word) in block.chunks_exact(4).enumerate() {
            acc[i % 4] += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
        }
    }
    let mut total = acc.iter().sum::<u64>();
    let rest = blocks.remainder();
    let mut words = rest.chunks_exact(4);
    for word in &mut words {
        total += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
    }
    // Fold the native-endian 32-bit-word sum to 16 bits, then put it in network order
    // (one's-complement sums commute with byte swapping: RFC 1071 §2(B)).
    let mut folded = u64::from(fold(total));
    if cfg!(target_endian = "little") {
        folded = u64::from((folded as u16).swap_bytes());
    }
    let tail = words.remainder();
    let mut pairs = tail.chunks_exact(2);
    for pair in &mut pairs {
        folded += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = pairs.remainder() {
        folded += u64::from(u16::from_be_bytes([*last, 0]));
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition: big-endian 16-bit words, one at a time.
    fn reference(data: &[u8]) -> u16 {
        let mut s = 0u64;
        for pair in data.chunks(2) {
            s += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
        fold(s)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn ipv4_header_known_answer() {
        // A real IPv4 header with checksum 0xb861 (a classic worked example).
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(sum(&h), 0xffff);
    }

    #[test]
    fn matches_reference_for_every_length_and_alignment() {
        let data: Vec<u8> = (0..2000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..4 {
            for len in 0..300 {
                let d = &data[start..start + len];
                assert_eq!(sum(d), reference(d), "start {start} len {len}");
            }
        }
        assert_eq!(sum(&data), reference(&data));
        let big = vec![0xffu8; 65_535];
        assert_eq!(sum(&big), reference(&big));
    }

    #[test]
    fn combine_splits_at_even_offsets() {
        let data: Vec<u8> = (0..999u32).map(|i| (i * 7 + 3) as u8).collect();
        for cut in (0..data.len()).step_by(2) {
            assert_eq!(combine(&[sum(&data[..cut]), sum(&data[cut..])]), sum(&data));
        }
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        // Decrement the TTL (byte 8) as a router does.
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] -= 1;
        let new = u16::from_be_bytes([h[8], h[9]]);
        let updated = update(0xb861, old, new);
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(updated, checksum(&h));
        // Rewrite the source address.
        h[10..12].copy_from_slice(&updated.to_be_bytes());
        let old_src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        h[12..16].copy_from_slice(&[198, 51, 100, 7]);
        let updated = update32(updated, old_src, u32::from_be_bytes([198, 51, 100, 7]));
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(updated, checksum(&h));
    }

    #[test]
    fn udp4_frame_verifies_and_fixes() {
        use crate::wire::layout::tests::UDP4_FRAME;
        let ok = verify_frame(&UDP4_FRAME, Medium::Ethernet).unwrap();
        assert_eq!(
            ok,
            FrameCheck {
                ip: Some(true),
                l4: Some(true)
            }
        );
        let mut f = UDP4_FRAME;
        f[44] ^= 1; // payload changed: UDP checksum now wrong, IPv4 header still right
        assert_eq!(
            verify_frame(&f, Medium::Ethernet).unwrap(),
            FrameCheck {
                ip: Some(true),
                l4: Some(false)
            }
        );
        f[24] ^= 1; // IPv4 header checksum byte
        assert!(!verify_frame(&f, Medium::Ethernet).unwrap().ok());
        fix_frame(&mut f, Medium::Ethernet).unwrap();
        assert!(verify_frame(&f, Medium::Ethernet).unwrap().ok());
        f[44] ^= 1;
        f[24] ^= 1;
        fix_frame(&mut f, Medium::Ethernet).unwrap();
        assert_eq!(f, UDP4_FRAME, "fixing restores scapy's checksums");
        let mut none = UDP4_FRAME;
        none[40..42].copy_from_slice(&[0, 0]);
        assert_eq!(verify_frame(&none, Medium::Ethernet).unwrap().l4, None);
        assert_eq!(
            verify_frame(&UDP4_FRAME[14..], Medium::Ip).unwrap().l4,
            Some(true)
        );
    }

    #[test]
    fn pseudo_headers() {
        // The pseudo-header sum equals the sum of its bytes laid out as RFC 768/8200 say.
        let (src, dst) = ([192, 0, 2, 1], [198, 51, 100, 2]);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src);
        bytes.extend_from_slice(&dst);
        bytes.extend_from_slice(&[0, 17, 0, 28]);
        assert_eq!(pseudo_header_v4(src, dst, 17, 28), sum(&bytes));
        let (s6, d6) = (
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20; 16],
        );
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&s6);
        bytes.extend_from_slice(&d6);
        bytes.extend_from_slice(&[0, 1, 0, 8, 0, 0, 0, 58]);
        assert_eq!(pseudo_header_v6(s6, d6, 58, 65_544), sum(&bytes));
    }
}
