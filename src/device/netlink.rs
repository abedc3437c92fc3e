//! A minimal rtnetlink client: add, delete and list addresses, and read a link's kernel
//! counters. Messages are built and parsed as plain bytes (no `unsafe`); the socket comes
//! from `sys::socket` and is then just a `File` (netlink sockets take `write`/`read`).
//!
//! Using netlink rather than the address ioctls is deliberate: SIOCSIFADDR replaces the
//! one IPv4 address and has no IPv6 counterpart, while RTM_NEWADDR adds any number of
//! either family, as `ip addr add` does.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::IpAddr;

use super::sys;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFLA_STATS64: u16 = 23;

/// The kernel's per-link counters we use (from `struct rtnl_link_stats64`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames the kernel received from the adapter's writers.
    pub rx_packets: u64,
    /// Frames the kernel queued to the adapter's readers.
    pub tx_packets: u64,
    /// Frames written by us that the kernel dropped.
    pub rx_dropped: u64,
    /// Frames for our readers dropped because the queue (txqueuelen) was full.
    pub tx_dropped: u64,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

struct Msg(Vec<u8>);

impl Msg {
    fn new(ty: u16, flags: u16, seq: u32) -> Self {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in finish()
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        Msg(v)
    }

    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }

    fn attr(mut self, ty: u16, data: &[u8]) -> Self {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(align4(self.0.len()), 0);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn ifaddrmsg(family: u8, prefix: u8, ifindex: u32) -> [u8; 8] {
    let mut m = [0u8; 8];
    m[0] = family;
    m[1] = prefix;
    m[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Iterate over (type, payload) of the rtattrs in `b`; stops at the first malformed one.
fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, at)?);
        let ty = u16_at(b, at + 2)?;
        if len < 4 || at + len > b.len() {
            return None;
        }
        let payload = &b[at + 4..at + len];
        at += align4(len);
        Some((ty, payload))
    })
}

/// A NETLINK_ROUTE socket, bound to the network namespace it was opened in.
pub struct Netlink {
    sock: File,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Open a route netlink socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let fd = sys::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
        Ok(Netlink {
            sock: File::from(fd),
            seq: 1,
            buf: vec![0; 32 * 1024],
        })
    }

    /// Send one request and collect the payloads of the replies (type, body) until the
    /// kernel's ACK or NLMSG_DONE. A negative ACK becomes the matching `io::Error`.
    fn request(&mut self, msg: Msg) -> io::Result<Vec<(u16, Vec<u8>)>> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut bytes = msg.finish();
        bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.sock.write_all(&bytes)?;
        let mut out = Vec::new();
        loop {
            let n = self.sock.read(&mut self.buf)?;
            let mut at = 0;
            while at + NLMSG_HDRLEN <= n {
                let b = &self.buf[..n];
                let len = u32_at(b, at).unwrap_or(0) as usize;
                let ty = u16_at(b, at + 4).unwrap_or(0);
                let mseq = u32_at(b, at + 8).unwrap_or(0);
                if len < NLMSG_HDRLEN || at + len > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink reply",
                    ));
                }
                let body = &b[at + NLMSG_HDRLEN..at + len];
                at += align4(len);
                if mseq != seq {
                    continue; // a stale reply to an earlier request
                }
                match ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = u32_at(body, 0).unwrap_or(0) as i32;
                        return if code == 0 {
                            Ok(out)
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    _ => out.push((ty, body.to_vec())),
                }
            }
        }
    }

    /// RTM_NEWADDR: add `addr/prefix` to link `ifindex` (EEXIST if already there).
    pub fn add_address(&mut self, ifindex: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        self.change_address(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            ifindex,
            addr,
            prefix,
        )
    }

    /// RTM_DELADDR: remove `addr/prefix` from link `ifindex` (EADDRNOTAVAIL if absent).
    pub fn del_address(&mut self, ifindex: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        self.change_address(RTM_DELADDR, 0, ifindex, addr, prefix)
    }

    fn change_address(
        &mut self,
        ty: u16,
        flags: u16,
        ifindex: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> io::Result<()> {
        let (family, octets) = match addr {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        let msg = Msg::new(ty, NLM_F_REQUEST | NLM_F_ACK | flags, 0)
            .bytes(&ifaddrmsg(family, prefix, ifindex))
            .attr(IFA_LOCAL, &octets)
            .attr(IFA_ADDRESS, &octets);
        self.request(msg).map(drop)
    }

    /// RTM_GETADDR dump, filtered to link `ifindex`: every address with its prefix length.
    pub fn addresses(&mut self, ifindex: u32) -> io::Result<Vec<(IpAddr, u8)>> {
        let msg = Msg::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 0).bytes(&ifaddrmsg(0, 0, 0));
        let mut out = Vec::new();
        for (ty, body) in self.request(msg)? {
            if ty != RTM_NEWADDR || body.len() < 8 || u32_at(&body, 4) != Some(ifindex) {
                continue;
            }
            let (family, prefix) = (body[0], body[1]);
            let (mut local, mut address) = (None, None);
            for (aty, data) in attrs(&body[8..]) {
                let ip = match (i32::from(family), data.len()) {
                    (libc::AF_INET, 4) => {
                        IpAddr::from(<[u8; 4]>::try_from(data).ok().unwrap_or_default())
                    }
                    (libc::AF_INET6, 16) => {
                        IpAddr::from(<[u8; 16]>::try_from(data).ok().unwrap_or_default())
                    }
                    _ => continue,
                };
                match aty {
                    IFA_LOCAL => local = Some(ip),
                    IFA_ADDRESS => address = Some(ip),
                    _ => {}
                }
            }
            if let Some(ip) = local.or(address) {
                out.push((ip, prefix));
            }
        }
        Ok(out)
    }

    /// RTM_GETLINK for `ifindex`: the kernel's packet and drop counters.
    pub fn link_stats(&mut self, ifindex: u32) -> io::Result<LinkStats> {
        let mut ifinfo = [0u8; 16];
        ifinfo[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        // NLM_F_ACK: a non-dump GET gets one reply and no NLMSG_DONE; the ACK ends it.
        let msg = Msg::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, 0).bytes(&ifinfo);
        for (ty, body) in self.request(msg)? {
            if ty != RTM_NEWLINK || body.len() < 16 {
                continue;
            }
            for (aty, s) in attrs(&body[16..]) {
                // rtnl_link_stats64: rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors,
                // tx_errors, rx_dropped, tx_dropped, ... (u64 each).
                if aty == IFLA_STATS64 && s.len() >= 64 {
                    return Ok(LinkStats {
                        rx_packets: u64_at(s, 0).unwrap_or(0),
                        tx_packets: u64_at(s, 8).unwrap_or(0),
                        rx_dropped: u64_at(s, 48).unwrap_or(0),
                        tx_dropped: u64_at(s, 56).unwrap_or(0),
                    });
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no IFLA_STATS64 in the kernel's reply",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_layout() {
        let m = Msg::new(RTM_NEWADDR, NLM_F_REQUEST, 0)
            .bytes(&ifaddrmsg(2, 24, 7))
            .attr(IFA_LOCAL, &[192, 0, 2, 1])
            .attr(7, &[1, 2, 3])
            .finish();
        assert_eq!(m.len(), 16 + 8 + 8 + 8);
        assert_eq!(u32_at(&m, 0), Some(m.len() as u32));
        assert_eq!(u16_at(&m, 4), Some(RTM_NEWADDR));
        let parsed: Vec<_> = attrs(&m[24..]).collect();
        assert_eq!(
            parsed,
            vec![(IFA_LOCAL, &[192, 0, 2, 1][..]), (7, &[1, 2, 3][..])]
        );
    }

    #[test]
    fn malformed_attrs_stop_parsing() {
        assert_eq!(attrs(&[3, 0, 1, 0]).count(), 0);
        assert_eq!(attrs(&[200, 0, 1, 0, 0, 0]).count(), 0);
        assert_eq!(attrs(&[]).count(), 0);
    }

    #[test]
    fn loopback_link_stats_in_this_namespace() {
        // `lo` is ifindex 1 in every network namespace; reading its counters needs no
        // privilege.
        let mut nl = Netlink::open().unwrap();
        nl.link_stats(1).unwrap();
    }
}
