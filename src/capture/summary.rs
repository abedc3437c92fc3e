//! One line per frame in tcpdump's style (`tcpdump -n`): time of day, addresses and
//! ports, protocol, length. Decodes Ethernet (with up to two VLAN tags), ARP, IPv4, IPv6,
//! TCP, UDP, ICMP and ICMPv6; anything else is named by its EtherType or protocol number.
//!
//! Contract: arbitrary bytes never panic; what cannot be decoded says so on its line.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::batch::PacketBatch;
use crate::wire::Medium;
use crate::wire::{self, proto, Ip, WireError};

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn v4(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

fn v6(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let o: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(o))
}

fn mac(b: &[u8]) -> String {
    let mut s = String::with_capacity(17);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Append `HH:MM:SS.nnnnnnnnn ` for `ts_ns` shifted by `utc_offset_s` (local time).
fn time_of_day(out: &mut String, ts_ns: u64, utc_offset_s: i64) {
    if ts_ns == crate::batch::NO_TIMESTAMP {
        out.push_str("--:--:--.--------- ");
        return;
    }
    let secs = (ts_ns / 1_000_000_000) as i64 + utc_offset_s;
    let day = secs.rem_euclid(86_400);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{:09} ",
        day / 3600,
        day / 60 % 60,
        day % 60,
        ts_ns % 1_000_000_000
    );
}

/// Append one summary line (with its newline) per frame of `batch`.
pub fn summarize(batch: &PacketBatch, medium: Medium, utc_offset_s: i64, out: &mut String) {
    for i in 0..batch.len() {
        let frame = batch.get(i).unwrap_or_default();
        time_of_day(out, batch.timestamp_ns(i).unwrap_or(0), utc_offset_s);
        describe(out, frame, medium);
        out.push('\n');
    }
}

/// Append the description of one frame (no time, no newline).
pub fn describe(out: &mut String, frame: &[u8], medium: Medium) {
    if medium == Medium::Ethernet {
        let Some(mut ethertype) = be16(frame, 12) else {
            let _ = write!(out, "truncated Ethernet frame, length {}", frame.len());
            return;
        };
        let mut at = 14;
        while ethertype == 0x8100 || ethertype == 0x88a8 {
            let (Some(tci), Some(next)) = (be16(frame, at), be16(frame, at + 2)) else {
                let _ = write!(out, "truncated VLAN tag, length {}", frame.len());
                return;
            };
            let _ = write!(out, "vlan {}, ", tci & 0x0fff);
            ethertype = next;
            at += 4;
        }
        match ethertype {
            0x0800 | 0x86dd => {}
            0x0806 => return arp(out, frame, at),
            other => {
                let _ = write!(
                    out,
                    "{} > {}, ethertype 0x{other:04x}, length {}",
                    mac(&frame[6..12]),
                    mac(&frame[0..6]),
                    frame.len()
                );
                return;
            }
        }
    }
    ip(out, frame, medium);
}

fn arp(out: &mut String, f: &[u8], at: usize) {
    let len = f.len() - at;
    // Ethernet/IPv4 ARP only (hardware type 1, protocol 0x0800, sizes 6 and 4).
    let ok = be16(f, at) == Some(1)
        && be16(f, at + 2) == Some(0x0800)
        && f.get(at + 4) == Some(&6)
        && f.get(at + 5) == Some(&4)
        && f.len() >= at + 28;
    if !ok {
        let _ = write!(out, "ARP, length {len}");
        return;
    }
    let sha = mac(&f[at + 8..at + 14]);
    let spa = v4(f, at + 14).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let tpa = v4(f, at + 24).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let _ = match be16(f, at + 6) {
        Some(1) => write!(out, "ARP, Request who-has {tpa} tell {spa}, length {len}"),
        Some(2) => write!(out, "ARP, Reply {spa} is-at {sha}, length {len}"),
        Some(op) => write!(out, "ARP, op {op}, length {len}"),
        None => Ok(()),
    };
}

fn ip(out: &mut String, f: &[u8], medium: Medium) {
    let l = match wire::locate(f, medium) {
        Ok(l) => l,
        Err(WireError::NotIp) => {
            let _ = write!(out, "not IPv4/IPv6, length {}", f.len());
            return;
        }
        Err(e) => {
            let _ = write!(out, "{e}, length {}", f.len());
            return;
        }
    };
    let (tag, src, dst) = match l.ip {
        Ip::V4 => (
            "IP",
            v4(f, l.l3 + 12).map(|a| a.to_string()),
            v4(f, l.l3 + 16).map(|a| a.to_string()),
        ),
        Ip::V6 => (
            "IP6",
            v6(f, l.l3 + 8).map(|a| a.to_string()),
            v6(f, l.l3 + 24).map(|a| a.to_string()),
        ),
    };
    let (src, dst) = (src.unwrap_or_default(), dst.unwrap_or_default());
    let seg = &f[l.l4..l.end];
    if l.fragment {
        let _ = write!(
            out,
            "{tag} {src} > {dst}: ip-proto-{} (fragment), length {}",
            l.protocol,
            seg.len()
        );
        return;
    }
    match l.protocol {
        proto::TCP if seg.len() >= 20 => tcp(out, tag, &src, &dst, seg),
        proto::UDP if seg.len() >= 8 => {
            let _ = write!(
                out,
                "{tag} {src}.{} > {dst}.{}: UDP, length {}",
                be16(seg, 0).unwrap_or(0),
                be16(seg, 2).unwrap_or(0),
                seg.len() - 8
            );
        }
        proto::ICMP if seg.len() >= 8 => icmp(out, tag, &src, &dst, seg),
        proto::ICMPV6 if seg.len() >= 4 => icmp6(out, tag, &src, &dst, seg),
        p @ (proto::TCP | proto::UDP | proto::ICMP | proto::ICMPV6) => {
            let _ = write!(
                out,
                "{tag} {src} > {dst}: truncated ip-proto-{p}, length {}",
                seg.len()
            );
        }
        p => {
            let _ = write!(
                out,
                "{tag} {src} > {dst}: ip-proto-{p}, length {}",
                seg.len()
            );
        }
    }
}

fn tcp(out: &mut String, tag: &str, src: &str, dst: &str, seg: &[u8]) {
    let sport = be16(seg, 0).unwrap_or(0);
    let dport = be16(seg, 2).unwrap_or(0);
    let flags = seg[13];
    let off = usize::from(seg[12] >> 4) * 4;
    let mut names = String::new();
    for (bit, c) in [
        (0x01, 'F'),
        (0x02, 'S'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x10, '.'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
    ] {
        if flags & bit != 0 {
            names.push(c);
        }
    }
    if names.is_empty() {
        names.push_str("none");
    }
    let _ = write!(
        out,
        "{tag} {src}.{sport} > {dst}.{dport}: Flags [{names}], seq {}",
        be32(seg, 4).unwrap_or(0)
    );
    if flags & 0x10 != 0 {
        let _ = write!(out, ", ack {}", be32(seg, 8).unwrap_or(0));
    }
    let _ = write!(
        out,
        ", win {}, length {}",
        be16(seg, 14).unwrap_or(0),
        seg.len().saturating_sub(off)
    );
}

fn icmp(out: &mut String, tag: &str, src: &str, dst: &str, seg: &[u8]) {
    let name = match seg[0] {
        0 => "echo reply",
        3 => "unreachable",
        5 => "redirect",
        8 => "echo request",
        11 => "time exceeded",
        _ => "",
    };
    let _ = write!(out, "{tag} {src} > {dst}: ICMP ");
    if name.is_empty() {
        let _ = write!(out, "type {}", seg[0]);
    } else {
        out.push_str(name);
    }
    if seg[0] == 0 || seg[0] == 8 {
        let _ = write!(
            out,
            ", id {}, seq {}",
            be16(seg, 4).unwrap_or(0),
            be16(seg, 6).unwrap_or(0)
        );
    }
    let _ = write!(out, ", length {}", seg.len());
}

fn icmp6(out: &mut String, tag: &str, src: &str, dst: &str, seg: &[u8]) {
    let name = match seg[0] {
        1 => "destination unreachable",
        2 => "packet too big",
        3 => "time exceeded",
        128 => "echo request",
        129 => "echo reply",
        133 => "router solicitation",
        134 => "router advertisement",
        135 => "neighbor solicitation",
        136 => "neighbor advertisement",
        143 => "multicast listener report v2",
        _ => "",
    };
    let _ = write!(out, "{tag} {src} > {dst}: ICMP6, ");
    if name.is_empty() {
        let _ = write!(out, "type {}", seg[0]);
    } else {
        out.push_str(name);
    }
    if (seg[0] == 128 || seg[0] == 129) && seg.len() >= 8 {
        let _ = write!(
            out,
            ", id {}, seq {}",
            be16(seg, 4).unwrap_or(0),
            be16(seg, 6).unwrap_or(0)
        );
    }
    if (seg[0] == 135 || seg[0] == 136) && seg.len() >= 24 {
        if let Some(target) = v6(seg, 8) {
            let _ = write!(out, ", who has {target}");
        }
    }
    let _ = write!(out, ", length {}", seg.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(frame: &[u8], medium: Medium) -> String {
        let mut s = String::new();
        describe(&mut s, frame, medium);
        s
    }

    #[test]
    fn udp_over_ipv4_in_ethernet() {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 12, 0, 0]);
        f.extend_from_slice(b"abcd");
        assert_eq!(
            line(&f, Medium::Ethernet),
            "IP 192.0.2.1.40000 > 192.0.2.2.53: UDP, length 4"
        );
    }

    #[test]
    fn time_of_day_with_offset() {
        let mut b = PacketBatch::default();
        b.push(&[0x60, 0, 0, 0], 3_600 * 1_000_000_000 + 5);
        let mut s = String::new();
        summarize(&b, Medium::Ip, 1800, &mut s);
        assert!(s.starts_with("01:30:00.000000005 "), "{s}");
        assert!(s.ends_with('\n'));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..200 {
            let f: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (seed >> 16) as u8
                })
                .collect();
            for m in [Medium::Ethernet, Medium::Ip] {
                let _ = line(&f, m);
            }
        }
    }
}
