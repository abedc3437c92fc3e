//! Segmentation offload in software: splitting a GSO super-frame into the frames that
//! would have crossed a wire, with every length, ID, sequence number and checksum set as
//! the kernel's own segmentation sets them. Used where the other side cannot take
//! super-frames (a peer without offload, `rx_mode="segments"`).

use crate::batch::PacketBatch;
use crate::wire::checksum::{combine, finish, pseudo_for, sum};
use crate::wire::layout::{locate, proto, Ip, Layout};
/// Resolve the metadata of every frame, in order: super-frames split, partial checksums
/// completed, plain frames copied; each input frame's pieces are appended to `out` with
/// the input's timestamp. After input `i`, `ends` (when given) gets the number of frames
/// `out` then holds, so a caller can map output frames back to inputs. A frame whose
/// metadata does not fit it is `Err((i, reason))`.
pub fn segment_all<'a>(
    frames: impl IntoIterator<Item = (&'a [u8], Option<VnetHdr>, u64)>,
    medium: Medium,
    out: &mut PacketBatch,
    mut ends: Option<&mut Vec<usize>>,
) -> Result<(), (usize, String)> {
    for (i, (frame, hdr, ts)) in frames.into_iter().enumerate() {
        match hdr {
            None => out.push(frame, ts),
            Some(h) => {
                segment(frame, h, medium, out, ts).map_err(|reason| (i, reason))?;
            }
        }
        if let Some(ends) = ends.as_deref_mut() {
            ends.push(out.len());
        }
    }
    Ok(())
}

use crate::wire::vnet::{complete_csum, gso, VnetHdr};
use crate::wire::Medium;

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
    use crate::wire::checksum::verify_frame;

    /// An Ethernet + IPv4 + TCP super-frame with `payload` bytes, PSH|ACK|FIN, partial
    /// checksum (pseudo-header sum in the TCP checksum field), as the kernel hands it out;
    /// its sequence number wraps within the first segments.
    fn tcp4_superframe(payload: usize) -> (Vec<u8>, VnetHdr) {
        crate::wire::testing::tcp4_superframe(payload, 0xffff_fff0, 0x19)
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
