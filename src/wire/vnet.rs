//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes) that IFF_VNET_HDR adapters
//! put before every frame, and what it asks for: completing a partial checksum
//! (`NEEDS_CSUM`) and splitting a segmentation-offload super-frame (GSO) into the frames
//! that would have crossed a wire.
//!
//! Same contract as `wire`: arbitrary input never panics or reads out of bounds; a header
//! or frame that does not make sense is an `Err` with the reason.

use crate::wire::checksum::{finish, sum};
use crate::wire::Medium;
use crate::wire::{locate, proto, Ip};

/// Size of `struct virtio_net_hdr` (no `num_buffers`): what TUNSETVNETHDRSZ is set to.
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the checksum from `csum_start` to the end must be completed by the receiver.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was verified by the sender.
pub const F_DATA_VALID: u8 = 2;

/// `gso_type` values.
pub mod gso {
    /// Not a super-frame.
    pub const NONE: u8 = 0;
    /// TCP over IPv4.
    pub const TCPV4: u8 = 1;
    /// UDP fragmentation offload (IP fragments; obsolete, refused here).
    pub const UDP: u8 = 3;
    /// TCP over IPv6.
    pub const TCPV6: u8 = 4;
    /// UDP segmentation (USO): each segment a whole UDP datagram.
    pub const UDP_L4: u8 = 5;
    /// Flag bit: the super-frame carries an ECN CE mark (TCP).
    pub const ECN: u8 = 0x80;

    /// The kinds vnetio passes on, with their names in the Python API: the one table
    /// both directions use.
    pub const NAMES: [(u8, &str); 4] = [
        (NONE, "none"),
        (TCPV4, "tcpv4"),
        (TCPV6, "tcpv6"),
        (UDP_L4, "udp_l4"),
    ];

    /// The name of `kind` (without the ECN bit); "none" for a kind not in [`NAMES`].
    pub fn name(kind: u8) -> &'static str {
        NAMES
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or("none", |(_, n)| n)
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<u8> {
        NAMES.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
    }
}

/// A parsed virtio-net header (little-endian on the wire: vnetio sets TUNSETVNETLE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// One of `gso::*`, possibly with `gso::ECN`.
    pub gso_type: u8,
    /// Bytes of headers (link + IP + transport) in each segment.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the transport header), from the frame start.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Parse the first 10 bytes of `b`.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let h = b.get(..VNET_HDR_LEN)?;
        let le = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        Some(VnetHdr {
            flags: h[0],
            gso_type: h[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    /// The 10 header bytes.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// The GSO type without the ECN bit.
    pub fn kind(self) -> u8 {
        self.gso_type & !gso::ECN
    }

    /// Whether this is a segmentation-offload super-frame.
    pub fn is_gso(self) -> bool {
        self.kind() != gso::NONE
    }

    /// Check the header against the frame it describes, so a bad one is never passed to
    /// the kernel or trusted when received.
    pub fn validate(self, frame_len: usize) -> Result<(), String> {
        if self.flags & !(F_NEEDS_CSUM | F_DATA_VALID) != 0 {
            return Err(format!("unknown virtio-net flags {:#04x}", self.flags));
        }
        match self.kind() {
            gso::NONE | gso::TCPV4 | gso::TCPV6 | gso::UDP_L4 => {}
            gso::UDP => return Err("gso_type UDP (UFO, IP fragmentation) is not supported".into()),
            other => return Err(format!("unknown gso_type {other}")),
        }
        if self.gso_type & gso::ECN != 0 && !matches!(self.kind(), gso::TCPV4 | gso::TCPV6) {
            return Err("the ECN gso flag applies only to TCP".into());
        }
        if self.is_gso() && self.gso_size == 0 {
            return Err("gso_size is 0 for a GSO super-frame".into());
        }
        if self.flags & F_NEEDS_CSUM != 0 {
            let field = usize::from(self.csum_start) + usize::from(self.csum_offset) + 2;
            if usize::from(self.csum_start) >= frame_len || field > frame_len {
                return Err(format!(
                    "csum_start {} + csum_offset {} is beyond the frame ({frame_len} bytes)",
                    self.csum_start, self.csum_offset
                ));
            }
        }
        if usize::from(self.hdr_len) > frame_len {
            return Err(format!(
                "hdr_len {} is beyond the frame ({frame_len} bytes)",
                self.hdr_len
            ));
        }
        Ok(())
    }
}

impl VnetHdr {
    /// Check the header against the frame's contents (after [`VnetHdr::validate`]): a GSO
    /// type must match the frame's IP version and transport protocol, and a partial
    /// checksum of a super-frame must start at its transport header and name its checksum
    /// field. This is what keeps a wrong header from ever reaching the kernel.
    pub fn check_frame(self, frame: &[u8], medium: Medium) -> Result<(), String> {
        self.validate(frame.len())?;
        if !self.is_gso() {
            return Ok(());
        }
        let l = locate(frame, medium).map_err(|e| format!("GSO super-frame: {e}"))?;
        let (ip, protocol, field) = match self.kind() {
            gso::TCPV4 => (Some(Ip::V4), proto::TCP, 16),
            gso::TCPV6 => (Some(Ip::V6), proto::TCP, 16),
            _ => (None, proto::UDP, 6),
        };
        if ip.is_some_and(|v| v != l.ip) || l.protocol != protocol || l.fragment || l.partial {
            return Err(format!(
                "gso_type {} does not match the frame (IPv{} protocol {})",
                self.kind(),
                if l.ip == Ip::V4 { 4 } else { 6 },
                l.protocol
            ));
        }
        if self.flags & F_NEEDS_CSUM != 0
            && (usize::from(self.csum_start) != l.l4 || usize::from(self.csum_offset) != field)
        {
            return Err(format!(
                "csum_start {} / csum_offset {} do not point at the {} checksum (expected {} / {field})",
                self.csum_start,
                self.csum_offset,
                if protocol == proto::TCP { "TCP" } else { "UDP" },
                l.l4
            ));
        }
        Ok(())
    }
}

/// The IP length of the largest segment a GSO super-frame splits into (its IP and
/// transport headers plus `gso_size`), or `None` when it is not a parsable super-frame.
pub fn segment_ip_len(frame: &[u8], hdr: VnetHdr, medium: Medium) -> Option<usize> {
    if !hdr.is_gso() {
        return None;
    }
    let l = locate(frame, medium).ok()?;
    let thl = if l.protocol == proto::TCP {
        usize::from(*frame.get(l.l4 + 12)? >> 4) * 4
    } else {
        8
    };
    Some(l.l4 - l.l3 + thl + usize::from(hdr.gso_size))
}

/// Complete a partial checksum in place (`F_NEEDS_CSUM`): the field at
/// `csum_start + csum_offset` holds the pseudo-header sum; the result covers everything
/// from `csum_start` to the end of the frame.
pub fn complete_csum(frame: &mut [u8], hdr: VnetHdr) -> Result<(), String> {
    hdr.validate(frame.len())?;
    if hdr.flags & F_NEEDS_CSUM == 0 {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    let mut c = finish(sum(&frame[start..]));
    if c == 0 && at - start == 6 {
        c = 0xffff; // a UDP checksum of 0 means "none": send its one's-complement twin
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_validation() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 1,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), Some(h));
        assert!(h.validate(100).is_ok());
        assert!(VnetHdr { gso_size: 0, ..h }
            .validate(100)
            .unwrap_err()
            .contains("gso_size"));
        assert!(VnetHdr { gso_type: 9, ..h }
            .validate(100)
            .unwrap_err()
            .contains("gso_type"));
        assert!(VnetHdr {
            csum_start: 99,
            ..h
        }
        .validate(100)
        .unwrap_err()
        .contains("beyond"));
        assert!(VnetHdr { flags: 4, ..h }.validate(100).is_err());
        assert!(VnetHdr::parse(&[0; 9]).is_none());
    }
}
