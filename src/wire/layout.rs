//! Locating the layers of a frame: Ethernet (with up to two 802.1Q/802.1ad tags), IPv4
//! (options, fragments), IPv6 (extension headers) and the transport header.
//!
//! Contract (as in smoltcp's wire module): every function here takes arbitrary bytes and
//! never panics or reads out of bounds; malformed input is an `Err` naming what is wrong.
//! Nothing is copied or allocated: a [`Layout`] is a handful of offsets into the frame.

use crate::wire::Medium;

/// IP protocol numbers used here.
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
}

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

/// Why a frame could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the header at `layer` claims or needs.
    Truncated(&'static str),
    /// A field holds a value the protocol does not allow.
    Malformed(&'static str),
    /// Not IPv4 or IPv6 (e.g. ARP): nothing to checksum beyond the link layer.
    NotIp,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Truncated(what) => write!(f, "truncated {what}"),
            WireError::Malformed(what) => write!(f, "malformed {what}"),
            WireError::NotIp => f.write_str("not an IPv4 or IPv6 packet"),
        }
    }
}

/// IP version of a located packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Where the layers of a frame start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the IP header.
    pub l3: usize,
    /// IP version.
    pub ip: Ip,
    /// Offset of the transport header (after IPv4 options / IPv6 extension headers).
    pub l4: usize,
    /// Transport protocol (IPv4 protocol / final IPv6 next header).
    pub protocol: u8,
    /// End of the IP packet within the frame (Ethernet padding excluded).
    pub end: usize,
    /// True when the transport header is not in this packet: a non-first fragment.
    pub fragment: bool,
    /// True for the first fragment of a fragmented packet (its L4 checksum covers data
    /// that is not here, so it can be neither verified nor computed).
    pub partial: bool,
}

impl Layout {
    /// Length of the transport segment (header and payload).
    pub fn l4_len(&self) -> usize {
        self.end - self.l4
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The Ethernet header of a frame: where its payload starts and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ethernet {
    /// EtherType of the payload (after any 802.1Q/802.1ad tags).
    pub ethertype: u16,
    /// Offset of the payload; bytes `12..payload` are the tags and the EtherType.
    pub payload: usize,
}

/// Parse an Ethernet header with up to two VLAN tags (802.1Q / 802.1ad).
pub fn ethernet(frame: &[u8]) -> Result<Ethernet, WireError> {
    let mut at = 12;
    let mut ethertype = be16(frame, at).ok_or(WireError::Truncated("Ethernet header"))?;
    let mut tags = 0;
    while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        tags += 1;
        if tags > 2 {
            return Err(WireError::Malformed("VLAN stack (more than two tags)"));
        }
        at += 4;
        ethertype = be16(frame, at).ok_or(WireError::Truncated("VLAN tag"))?;
    }
    Ok(Ethernet {
        ethertype,
        payload: at + 2,
    })
}

/// Find the IP header of a frame: after the Ethernet header and VLAN tags for TAP frames,
/// at 0 for TUN frames.
pub fn ip_offset(frame: &[u8], medium: Medium) -> Result<usize, WireError> {
    match medium {
        Medium::Ip => Ok(0),
        Medium::Ethernet => {
            let eth = ethernet(frame)?;
            match eth.ethertype {
                ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(eth.payload),
                _ => Err(WireError::NotIp),
            }
        }
    }
}

/// Locate the IP and transport headers of `frame`.
pub fn locate(frame: &[u8], medium: Medium) -> Result<Layout, WireError> {
    let l3 = ip_offset(frame, medium)?;
    let version = frame.get(l3).ok_or(WireError::Truncated("IP header"))? >> 4;
    match version {
        4 => locate_v4(frame, l3),
        6 => locate_v6(frame, l3),
        _ => Err(WireError::NotIp),
    }
}

fn locate_v4(frame: &[u8], l3: usize) -> Result<Layout, WireError> {
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    if ihl < 20 {
        return Err(WireError::Malformed("IPv4 header length (IHL < 5)"));
    }
    let total = usize::from(be16(frame, l3 + 2).ok_or(WireError::Truncated("IPv4 header"))?);
    if total < ihl {
        return Err(WireError::Malformed(
            "IPv4 total length (shorter than its header)",
        ));
    }
    let end = l3 + total;
    if frame.len() < end || frame.len() < l3 + ihl {
        return Err(WireError::Truncated(
            "IPv4 packet (total length beyond the frame)",
        ));
    }
    let frag = be16(frame, l3 + 6).ok_or(WireError::Truncated("IPv4 header"))?;
    let offset = frag & 0x1fff;
    let more = frag & 0x2000 != 0;
    Ok(Layout {
        l3,
        ip: Ip::V4,
        l4: l3 + ihl,
        protocol: frame[l3 + 9],
        end,
        fragment: offset != 0,
        partial: offset == 0 && more,
    })
}

fn locate_v6(frame: &[u8], l3: usize) -> Result<Layout, WireError> {
    let payload = usize::from(be16(frame, l3 + 4).ok_or(WireError::Truncated("IPv6 header"))?);
    let end = l3 + 40 + payload;
    if frame.len() < end {
        return Err(WireError::Truncated(
            "IPv6 packet (payload length beyond the frame)",
        ));
    }
    let mut next = frame[l3 + 6];
    let mut at = l3 + 40;
    let (mut fragment, mut partial) = (false, false);
    // Walk the extension headers that may precede the transport header (RFC 8200 §4).
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let len = 8 + usize::from(
                    *frame
                        .get(at + 1)
                        .ok_or(WireError::Truncated("IPv6 extension header"))?,
                ) * 8;
                next = frame[at];
                at += len;
            }
            44 => {
                let frag =
                    be16(frame, at + 2).ok_or(WireError::Truncated("IPv6 fragment header"))?;
                next = frame[at];
                at += 8;
                fragment = frag & 0xfff8 != 0;
                partial = !fragment && frag & 1 != 0;
            }
            _ => break,
        }
        if at > end {
            return Err(WireError::Truncated(
                "IPv6 extension headers (beyond the payload)",
            ));
        }
    }
    Ok(Layout {
        l3,
        ip: Ip::V6,
        l4: at,
        protocol: next,
        end,
        fragment,
        partial,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Ethernet + IPv4 + UDP (192.0.2.1:1234 → 198.51.100.2:53), 4-byte payload. The
    /// IPv4 checksum 0x8e95 and UDP checksum 0x49d1 are what scapy 2.8 computes for the
    /// same fields (`raw(Ether()/IP(id=1)/UDP(sport=1234, dport=53)/b"abcd")`).
    pub(crate) const UDP4_FRAME: [u8; 46] = [
        0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0x8e, 0x95, 192, 0, 2, 1, 198,
        51, 100, 2, // IPv4
        0x04, 0xd2, 0x00, 0x35, 0x00, 0x0c, 0x49, 0xd1, // UDP
        b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn locates_udp_in_ethernet() {
        let l = locate(&UDP4_FRAME, Medium::Ethernet).unwrap();
        assert_eq!(
            (l.l3, l.l4, l.protocol, l.end, l.ip),
            (14, 34, proto::UDP, 46, Ip::V4)
        );
        assert!(!l.fragment && !l.partial);
        assert_eq!(l.l4_len(), 12);
        let l = locate(&UDP4_FRAME[14..], Medium::Ip).unwrap();
        assert_eq!((l.l3, l.l4), (0, 20));
    }

    #[test]
    fn vlan_tags_are_skipped() {
        let mut f = UDP4_FRAME[..12].to_vec();
        f.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2]);
        f.extend_from_slice(&UDP4_FRAME[12..]);
        let l = locate(&f, Medium::Ethernet).unwrap();
        assert_eq!((l.l3, l.l4), (22, 42));
    }

    #[test]
    fn errors_instead_of_panics() {
        assert_eq!(
            locate(&[], Medium::Ethernet),
            Err(WireError::Truncated("Ethernet header"))
        );
        assert_eq!(
            locate(&[], Medium::Ip),
            Err(WireError::Truncated("IP header"))
        );
        let mut arp = UDP4_FRAME;
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(locate(&arp, Medium::Ethernet), Err(WireError::NotIp));
        for cut in 0..UDP4_FRAME.len() {
            let _ = locate(&UDP4_FRAME[..cut], Medium::Ethernet);
            let _ = locate(&UDP4_FRAME[14..14 + cut.min(32)], Medium::Ip);
        }
        let mut bad = UDP4_FRAME;
        bad[14] = 0x44; // IHL 4
        assert!(matches!(
            locate(&bad, Medium::Ethernet),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn every_byte_pattern_is_safe() {
        // Cheap exhaustive-ish sweep: mutate each byte of a valid frame to a few values.
        for i in 0..UDP4_FRAME.len() {
            for v in [0u8, 0x45, 0x60, 0x81, 0xff] {
                let mut f = UDP4_FRAME;
                f[i] = v;
                let _ = locate(&f, Medium::Ethernet);
                let _ = locate(&f[14..], Medium::Ip);
            }
        }
    }
}
