//! Coalescing ordinary frames into segmentation-offload super-frames before they are
//! written to an offload adapter (the reverse of `vnet::segment`, as the kernel's GRO
//! does): one write of a 64 KiB super-frame instead of ~45 writes of 1.5 KiB frames.
//!
//! The rules are GRO's, kept conservative so a merged super-frame, once segmented again by
//! the kernel, gives back exactly the frames that went in (except the IPv4 IDs, which
//! GSO renumbers from the first one, as GRO would):
//! - same flow: identical link header, IP addresses, TOS/traffic class, TTL/hop limit,
//!   DF flag, ports; no IPv4 options or IPv6 extension headers; no fragments;
//! - TCP: consecutive sequence numbers, the same acknowledgement, window and option bytes;
//!   only ACK (and ECE) set, except that the last frame may carry PSH or FIN, which ends
//!   the run; no SYN, RST, URG or CWR;
//! - UDP (only with USO on): the same source and destination ports;
//! - every payload but the last has the same length (the segment size); the last is not
//!   longer; at most 64 KiB of IP packet;
//! - every checksum verifies (a corrupted frame is written alone, for the receiver to drop).

use crate::wire::checksum::{pseudo_for, verify_frame};
use crate::wire::vnet::{gso, VnetHdr, F_NEEDS_CSUM};
use crate::wire::Medium;
use crate::wire::{locate, proto, Ip, Layout};

/// Which protocols may be merged (what the adapter's offload mask accepts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    /// TCP over IPv4 (TUN_F_TSO4).
    pub tcp4: bool,
    /// TCP over IPv6 (TUN_F_TSO6).
    pub tcp6: bool,
    /// UDP (TUN_F_USO4 / TUN_F_USO6).
    pub udp: bool,
}

/// A run of input frames to write as one: `start..end`, merged when longer than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First frame.
    pub start: usize,
    /// One past the last frame.
    pub end: usize,
}

struct Flow {
    layout: Layout,
    headers: usize,
    payload: usize,
}

fn flow(frame: &[u8], medium: Medium, allow: Allow) -> Option<Flow> {
    let l = locate(frame, medium).ok()?;
    if l.fragment || l.partial || l.end != frame.len() {
        return None; // fragments, or Ethernet padding after the packet
    }
    // Like the kernel's GRO, merge only frames whose checksums verify: a merged super-frame
    // gets a fresh partial checksum that the kernel trusts, so a corrupted frame must be
    // written on its own, for the receiver to drop.
    let check = verify_frame(frame, medium).ok()?;
    if check.l4 != Some(true) || check.ip == Some(false) {
        return None;
    }
    let ok = match (l.ip, l.protocol) {
        (Ip::V4, proto::TCP) => allow.tcp4,
        (Ip::V6, proto::TCP) => allow.tcp6,
        (_, proto::UDP) => allow.udp,
        _ => false,
    };
    if !ok || (l.ip == Ip::V4 && l.l4 - l.l3 != 20) || (l.ip == Ip::V6 && l.l4 - l.l3 != 40) {
        return None;
    }
    let thl = if l.protocol == proto::TCP {
        let off = usize::from(*frame.get(l.l4 + 12)? >> 4) * 4;
        let flags = *frame.get(l.l4 + 13)?;
        // Only ACK/ECE, plus PSH/FIN (which end a run, checked by the caller).
        if off < 20 || flags & !(0x10 | 0x40 | 0x08 | 0x01) != 0 || flags & 0x10 == 0 {
            return None;
        }
        off
    } else {
        // The UDP length must be the IP payload's, as GRO requires: merging rewrites it,
        // which would turn a datagram the receiver drops into one it accepts.
        let udp_len = u16::from_be_bytes([*frame.get(l.l4 + 4)?, *frame.get(l.l4 + 5)?]);
        if usize::from(udp_len) != l.end - l.l4 {
            return None;
        }
        8
    };
    let headers = l.l4 + thl;
    if headers >= l.end {
        return None; // nothing to merge in a pure ACK
    }
    Some(Flow {
        layout: l,
        headers,
        payload: l.end - headers,
    })
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Whether `next` continues the run whose first frame is `first` and last frame `prev`.
fn continues(first: &[u8], f: &Flow, prev: &[u8], pf: &Flow, next: &[u8], nf: &Flow) -> bool {
    let (l, nl) = (&f.layout, &nf.layout);
    if nl.l3 != l.l3 || nl.l4 != l.l4 || nf.headers != f.headers || nl.protocol != l.protocol {
        return false;
    }
    // Link header and addresses identical; IP fields that must not change between segments.
    if next[..l.l3] != first[..l.l3] {
        return false;
    }
    let same = |a: usize, b: usize| next.get(a..b) == first.get(a..b);
    let ip_ok = match l.ip {
        // TOS, flags (DF) byte, TTL, protocol, addresses.
        Ip::V4 => {
            same(l.l3 + 1, l.l3 + 2)
                && (next[l.l3 + 6] & 0xe0) == (first[l.l3 + 6] & 0xe0)
                && same(l.l3 + 8, l.l3 + 10)
                && same(l.l3 + 12, l.l3 + 20)
        }
        // Version/class/flow label, next header, hop limit, addresses.
        Ip::V6 => same(l.l3, l.l3 + 4) && same(l.l3 + 6, l.l3 + 40),
    };
    if !ip_ok || !same(l.l4, l.l4 + 4) {
        return false; // ports differ
    }
    // Every segment but the last carries exactly the segment size.
    if pf.payload != f.payload || nf.payload > f.payload {
        return false;
    }
    if l.protocol == proto::TCP {
        let t = l.l4;
        // prev must not have ended the run (PSH/FIN); seq must follow on.
        if prev[t + 13] & (0x08 | 0x01) != 0 {
            return false;
        }
        if be32(next, t + 4) != be32(prev, t + 4).wrapping_add(pf.payload as u32) {
            return false;
        }
        // Same ack, data offset/flags apart from PSH/FIN, window, urgent, options.
        let flags_ok = next[t + 13] & !(0x08 | 0x01) == first[t + 13] & !(0x08 | 0x01);
        if !(same(t + 8, t + 13) && flags_ok && same(t + 14, t + 16) && same(t + 18, f.headers)) {
            return false;
        }
    }
    true
}

/// Split `frames` into runs to write: merged super-frames where the rules allow, single
/// frames elsewhere. Runs cover every frame, in order.
pub fn plan(frames: &[&[u8]], medium: Medium, allow: Allow) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < frames.len() {
        let mut end = i + 1;
        if let Some(f) = flow(frames[i], medium, allow) {
            let mut total = frames[i].len() - f.layout.l3;
            let mut pf = Flow {
                layout: f.layout,
                headers: f.headers,
                payload: f.payload,
            };
            while end < frames.len() {
                let Some(nf) = flow(frames[end], medium, allow) else {
                    break;
                };
                if total + nf.payload > 65_535 - 60
                    || !continues(frames[i], &f, frames[end - 1], &pf, frames[end], &nf)
                {
                    break;
                }
                total += nf.payload;
                pf = nf;
                end += 1;
            }
        }
        runs.push(Run { start: i, end });
        i = end;
    }
    runs
}

/// Build the super-frame for a run of two or more frames into `out` (cleared first) and
/// return its virtio-net header. The L4 checksum field holds the pseudo-header sum
/// (NEEDS_CSUM), as the kernel expects of a frame it will segment.
pub fn merge(frames: &[&[u8]], run: Run, medium: Medium, out: &mut Vec<u8>) -> Option<VnetHdr> {
    let first = frames[run.start];
    let f = flow(
        first,
        medium,
        Allow {
            tcp4: true,
            tcp6: true,
            udp: true,
        },
    )?;
    let l = f.layout;
    out.clear();
    out.extend_from_slice(&first[..f.headers]);
    for frame in &frames[run.start..run.end] {
        out.extend_from_slice(&frame[f.headers..]);
    }
    let l4_len = out.len() - l.l4;
    match l.ip {
        Ip::V4 => {
            let total = (out.len() - l.l3) as u16;
            out[l.l3 + 2..l.l3 + 4].copy_from_slice(&total.to_be_bytes());
            out[l.l3 + 10..l.l3 + 12].copy_from_slice(&[0, 0]);
            let c = crate::wire::checksum::checksum(&out[l.l3..l.l4]);
            out[l.l3 + 10..l.l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        Ip::V6 => {
            let payload = (out.len() - l.l3 - 40) as u16;
            out[l.l3 + 4..l.l3 + 6].copy_from_slice(&payload.to_be_bytes());
        }
    }
    let (field, kind) = if l.protocol == proto::TCP {
        // The merged frame carries the last frame's PSH/FIN.
        let last = frames[run.end - 1];
        out[l.l4 + 13] = last[l.l4 + 13];
        (
            16,
            if l.ip == Ip::V4 {
                gso::TCPV4
            } else {
                gso::TCPV6
            },
        )
    } else {
        out[l.l4 + 4..l.l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        (6, gso::UDP_L4)
    };
    let pseudo = pseudo_for(out, &l, l4_len);
    out[l.l4 + field..l.l4 + field + 2].copy_from_slice(&pseudo.to_be_bytes());
    Some(VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: kind,
        hdr_len: f.headers as u16,
        gso_size: f.payload as u16,
        csum_start: l.l4 as u16,
        csum_offset: field as u16,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::PacketBatch;
    use crate::offload::gso::segment;
    use crate::wire::checksum::{fix_frame, verify_frame};

    /// TAP frame: IPv4 TCP, `seq`, `payload` bytes, flags, DF set, ID `id`.
    fn tcp4(seq: u32, payload: usize, flags: u8, id: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (40 + payload) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&[
            0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2, 0x30, 0x39, 0x00, 0x50,
        ]);
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0x50, flags, 0x10, 0x00, 0, 0, 0, 0]);
        f.extend((0..payload).map(|i| (seq as usize + i) as u8));
        fix_frame(&mut f, Medium::Ethernet).unwrap();
        f
    }

    const ALL: Allow = Allow {
        tcp4: true,
        tcp6: true,
        udp: true,
    };

    #[test]
    fn merges_a_stream_and_segmenting_gives_it_back() {
        let frames: Vec<Vec<u8>> = (0..5u32)
            .map(|i| {
                tcp4(
                    1000 + i * 1448,
                    if i == 4 { 500 } else { 1448 },
                    if i == 4 { 0x18 } else { 0x10 },
                    7 + i as u16,
                )
            })
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let runs = plan(&refs, Medium::Ethernet, ALL);
        assert_eq!(runs, vec![Run { start: 0, end: 5 }]);
        let mut sf = Vec::new();
        let hdr = merge(&refs, runs[0], Medium::Ethernet, &mut sf).unwrap();
        assert_eq!((hdr.gso_size, hdr.hdr_len, hdr.csum_start), (1448, 54, 34));
        let mut out = PacketBatch::default();
        assert_eq!(segment(&sf, hdr, Medium::Ethernet, &mut out, 0).unwrap(), 5);
        for (seg, orig) in out.iter().zip(&refs) {
            assert!(verify_frame(seg, Medium::Ethernet).unwrap().ok());
            assert_eq!(seg, *orig, "a segment equals the frame that went in");
        }
    }

    #[test]
    fn breaks_runs_where_the_rules_say() {
        let a = tcp4(0, 100, 0x10, 1);
        let gap = tcp4(200, 100, 0x10, 2); // seq jumps
        let psh = tcp4(300, 100, 0x18, 3);
        let after = tcp4(400, 100, 0x10, 4);
        let syn = tcp4(500, 100, 0x12, 5);
        let bigger = tcp4(600, 101, 0x10, 6);
        let refs: Vec<&[u8]> = vec![&a, &gap, &psh, &after, &syn, &bigger];
        let runs = plan(&refs, Medium::Ethernet, ALL);
        // gap+psh merge (seq 200→300, PSH ends it); after alone (syn breaks); syn alone;
        // bigger alone.
        assert_eq!(
            runs,
            vec![
                Run { start: 0, end: 1 },
                Run { start: 1, end: 3 },
                Run { start: 3, end: 4 },
                Run { start: 4, end: 5 },
                Run { start: 5, end: 6 }
            ]
        );
        assert_eq!(
            plan(&refs, Medium::Ethernet, Allow::default()).len(),
            6,
            "nothing merges when TSO is off"
        );
    }

    #[test]
    fn a_corrupted_frame_is_not_merged() {
        let a = tcp4(0, 100, 0x10, 1);
        let mut bad = tcp4(100, 100, 0x10, 2);
        *bad.last_mut().unwrap() ^= 0xff; // payload changed, checksum now wrong
        let c = tcp4(200, 100, 0x10, 3);
        let refs: Vec<&[u8]> = vec![&a, &bad, &c];
        let runs = plan(&refs, Medium::Ethernet, ALL);
        assert!(runs.iter().all(|r| r.end - r.start == 1), "{runs:?}");
    }

    #[test]
    fn never_panics_on_junk() {
        let good = tcp4(0, 100, 0x10, 1);
        for i in 0..good.len() {
            for v in [0u8, 0xff, 0x45, 0x10] {
                let mut bad = good.clone();
                bad[i] = v;
                let refs: Vec<&[u8]> = vec![&good, &bad, &good[..i], &bad];
                for run in plan(&refs, Medium::Ethernet, ALL) {
                    if run.end - run.start > 1 {
                        let mut out = Vec::new();
                        let _ = merge(&refs, run, Medium::Ethernet, &mut out);
                    }
                }
            }
        }
    }
}
