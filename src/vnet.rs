//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes) that IFF_VNET_HDR adapters
//! put before every frame, and what it asks for: completing a partial checksum
//! (`NEEDS_CSUM`) and splitting a segmentation-offload super-frame (GSO) into the frames
//! that would have crossed a wire.
//!
//! Same contract as `wire`: arbitrary input never panics or reads out of bounds; a header
//! or frame that does not make sense is an `Err` with the reason.

use crate::batch::PacketBatch;
use crate::checksum::{combine, finish, pseudo_for, sum};
use crate::device::Medium;
use crate::wire::{locate, proto, Ip, Layout};

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
}

/// A parsed virtio-net header (little-endian on the wire: vnetio sets TUNSETVNETLE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

fn put16(frame: &mut [u8], at: usize, v: u16) {
    frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn get16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// Fill in the IP lengths, IPv4 header checksum and transport checksum of one segment
/// built from `layout`'s headers, whose IP packet ends at `seg.len()`.
fn finish_segment(seg: &mut [u8], l: &Layout) {
    let ip_len = seg.len() - l.l3;
    let l4_len = seg.len() - l.l4;
    match l.ip {
        Ip::V4 => {
            put16(seg, l.l3 + 2, ip_len as u16);
            put16(seg, l.l3 + 10, 0);
            let c = finish(sum(&seg[l.l3..l.l4]));
            put16(seg, l.l3 + 10, c);
        }
        Ip::V6 => put16(seg, l.l3 + 4, (ip_len - 40) as u16),
    }
    let field = if l.protocol == proto::TCP { 16 } else { 6 };
    if l.protocol == proto::UDP {
        put16(seg, l.l4 + 4, l4_len as u16);
    }
    put16(seg, l.l4 + field, 0);
    let pseudo = pseudo_for(seg, l, l4_len);
    let mut c = finish(combine(&[pseudo, sum(&seg[l.l4..])]));
    if c == 0 && l.protocol == proto::UDP {
        c = 0xffff;
    }
    put16(seg, l.l4 + field, c);
}

/// Split a GSO super-frame into wire-sized frames appended to `out` (each stamped
/// `timestamp_ns`), as the kernel's own segmentation would: per segment the IP lengths,
/// IPv4 ID (+1 per segment), TCP sequence number, TCP flags (FIN and PSH only on the last
/// segment, CWR only on the first), UDP length and every checksum are set. A frame that
/// is not GSO is appended with its partial checksum completed. Returns the frame count.
pub fn segment(
    frame: &[u8],
    hdr: VnetHdr,
    medium: Medium,
    out: &mut PacketBatch,
    timestamp_ns: u64,
) -> Result<usize, String> {
    hdr.validate(frame.len())?;
    if !hdr.is_gso() {
        let slot = out.recv_slot(frame.len());
        slot[..frame.len()].copy_from_slice(frame);
        complete_csum(&mut slot[..frame.len()], hdr)?; // on error nothing is committed
        out.commit(frame.len(), timestamp_ns);
        return Ok(1);
    }
    let l = locate(frame, medium).map_err(|e| format!("GSO super-frame: {e}"))?;
    let want = match hdr.kind() {
        gso::TCPV4 => (Ip::V4, proto::TCP),
        gso::TCPV6 => (Ip::V6, proto::TCP),
        _ => (l.ip, proto::UDP),
    };
    if (l.ip, l.protocol) != want || l.fragment || l.partial {
        return Err(format!(
            "gso_type {} does not match the frame (IPv{} protocol {})",
            hdr.kind(),
            if l.ip == Ip::V4 { 4 } else { 6 },
            l.protocol
        ));
    }
    let thl = if l.protocol == proto::TCP {
        let off = usize::from(frame.get(l.l4 + 12).copied().unwrap_or(0) >> 4) * 4;
        if off < 20 {
            return Err("TCP data offset below 5".into());
        }
        off
    } else {
        8
    };
    let headers = l.l4 + thl;
    if headers > l.end {
        return Err("transport header beyond the packet".into());
    }
    let payload = &frame[headers..l.end];
    let mss = usize::from(hdr.gso_size);
    let count = payload.len().div_ceil(mss).max(1);
    let ip_id = if l.ip == Ip::V4 {
        get16(frame, l.l3 + 4)
    } else {
        0
    };
    let seq = if l.protocol == proto::TCP {
        u32::from_be_bytes([
            frame[l.l4 + 4],
            frame[l.l4 + 5],
            frame[l.l4 + 6],
            frame[l.l4 + 7],
        ])
    } else {
        0
    };
    for (i, chunk) in payload
        .chunks(mss)
        .chain(std::iter::repeat_n(
            &[][..],
            usize::from(payload.is_empty()),
        ))
        .enumerate()
    {
        let len = headers + chunk.len();
        let slot = out.recv_slot(len);
        slot[..headers].copy_from_slice(&frame[..headers]);
        slot[headers..len].copy_from_slice(chunk);
        let seg = &mut slot[..len];
        if l.ip == Ip::V4 {
            put16(seg, l.l3 + 4, ip_id.wrapping_add(i as u16));
        }
        if l.protocol == proto::TCP {
            let s = seq.wrapping_add((i * mss) as u32);
            seg[l.l4 + 4..l.l4 + 8].copy_from_slice(&s.to_be_bytes());
            let last = i + 1 == count;
            let first = i == 0;
            let mut flags = seg[l.l4 + 13];
            if !last {
                flags &= !(0x01 | 0x08); // FIN, PSH only on the last segment
            }
            if !first {
                flags &= !0x80; // CWR only on the first
            }
            seg[l.l4 + 13] = flags;
        }
        finish_segment(seg, &l);
        out.commit(len, timestamp_ns);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::{pseudo_header_v4, verify_frame};

    /// An Ethernet + IPv4 + TCP super-frame with `payload` bytes, PSH|ACK|FIN, partial
    /// checksum (pseudo-header sum in the TCP checksum field), as the kernel hands it out.
    fn tcp4_superframe(payload: usize) -> (Vec<u8>, VnetHdr) {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = 20 + 20 + payload;
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0x12,
            0x34,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ]);
        f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x50]); // ports
        f.extend_from_slice(&0xffff_fff0u32.to_be_bytes()); // seq (wraps)
        f.extend_from_slice(&[0, 0, 0, 1, 0x50, 0x19, 0xff, 0xff, 0, 0, 0, 0]); // FIN|PSH|ACK
        f.extend((0..payload).map(|i| (i % 251) as u8));
        let pseudo = pseudo_header_v4([192, 0, 2, 1], [192, 0, 2, 2], 6, (20 + payload) as u32);
        put16(&mut f, 14 + 20 + 16, pseudo);
        let c = finish(sum(&f[14..34]));
        put16(&mut f, 24, c);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: gso::TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        (f, hdr)
    }

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

    #[test]
    fn splits_tcp4_like_the_kernel() {
        let (f, hdr) = tcp4_superframe(4000);
        let mut out = PacketBatch::default();
        assert_eq!(segment(&f, hdr, Medium::Ethernet, &mut out, 5).unwrap(), 3);
        let lens: Vec<usize> = out.lengths().collect();
        assert_eq!(lens, vec![54 + 1448, 54 + 1448, 54 + 1104]);
        let mut payload = Vec::new();
        for (i, s) in out.iter().enumerate() {
            assert!(
                verify_frame(s, Medium::Ethernet).unwrap().ok(),
                "segment {i} checksums"
            );
            assert_eq!(get16(s, 18), 0x1234 + i as u16, "IPv4 ID");
            assert_eq!(usize::from(get16(s, 16)), s.len() - 14, "IPv4 total length");
            let seq = u32::from_be_bytes([s[38], s[39], s[40], s[41]]);
            assert_eq!(seq, 0xffff_fff0u32.wrapping_add(1448 * i as u32));
            let flags = s[47];
            assert_eq!(flags & 0x09 != 0, i == 2, "FIN/PSH only on the last");
            assert_eq!(flags & 0x10, 0x10, "ACK on all");
            payload.extend_from_slice(&s[54..]);
        }
        assert_eq!(payload, f[54..].to_vec());
    }

    #[test]
    fn completes_a_partial_checksum() {
        let (f, mut hdr) = tcp4_superframe(100);
        hdr.gso_type = gso::NONE;
        hdr.gso_size = 0;
        let mut out = PacketBatch::default();
        assert_eq!(segment(&f, hdr, Medium::Ethernet, &mut out, 0).unwrap(), 1);
        assert!(verify_frame(out.get(0).unwrap(), Medium::Ethernet)
            .unwrap()
            .ok());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let (f, hdr) = tcp4_superframe(3000);
        let mut out = PacketBatch::default();
        for cut in 0..f.len() {
            let _ = segment(&f[..cut], hdr, Medium::Ethernet, &mut out, 0);
        }
        let wrong = VnetHdr {
            gso_type: gso::TCPV6,
            ..hdr
        };
        assert!(segment(&f, wrong, Medium::Ethernet, &mut out, 0)
            .unwrap_err()
            .contains("does not match"));
        for i in 0..60 {
            let mut g = f.clone();
            g[i] ^= 0xff;
            let _ = segment(&g, hdr, Medium::Ethernet, &mut out, 0);
        }
    }
}
