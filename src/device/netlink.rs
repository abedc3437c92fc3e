//! A minimal rtnetlink client: add, delete and list addresses, list, create (macvtap) and
//! delete links, and read a link's kernel counters. Messages are built and parsed as plain bytes (no `unsafe`); the socket comes
//! from `sys::socket` and is then just a `File` (netlink sockets take `write`/`read`).
//!
//! Using netlink rather than the address ioctls is deliberate: SIOCSIFADDR replaces the
//! one IPv4 address and has no IPv6 counterpart, while RTM_NEWADDR adds any number of
//! either family, as `ip addr add` does.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::IpAddr;

use crate::sys;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_TXQLEN: u16 = 13;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_STATS64: u16 = 23;
const IFLA_CARRIER: u16 = 33;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const NLA_TYPE_MASK: u16 = 0x3fff;
// IFLA_TUN_* (include/uapi/linux/if_link.h), filled in by the tun driver since Linux 4.20.
const IFLA_TUN_OWNER: u16 = 1;
const IFLA_TUN_GROUP: u16 = 2;
const IFLA_TUN_TYPE: u16 = 3;
const IFLA_TUN_PI: u16 = 4;
const IFLA_TUN_VNET_HDR: u16 = 5;
const IFLA_TUN_PERSIST: u16 = 6;
const IFLA_TUN_MULTI_QUEUE: u16 = 7;
const IFLA_TUN_NUM_QUEUES: u16 = 8;
const IFLA_TUN_NUM_DISABLED_QUEUES: u16 = 9;
// IFLA_MACVLAN_* (include/uapi/linux/if_link.h), shared by macvlan and macvtap links.
const IFLA_MACVLAN_MODE: u16 = 1;
const IFLA_MACVLAN_FLAGS: u16 = 2;

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

/// What the tun driver reports about a TUN/TAP link (`IFLA_INFO_DATA`). The flags
/// mirror the driver's own attributes one to one, hence the many bools.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunInfo {
    /// TAP (Ethernet) rather than TUN.
    pub tap: bool,
    /// User allowed to attach without CAP_NET_ADMIN.
    pub owner: Option<u32>,
    /// Group allowed to attach without CAP_NET_ADMIN.
    pub group: Option<u32>,
    /// Frames carry the 4-byte packet-information header (IFF_NO_PI not set).
    pub pi: bool,
    /// IFF_VNET_HDR is set (as of the last attach).
    pub vnet_hdr: bool,
    /// Outlives its last descriptor.
    pub persist: bool,
    /// Created with IFF_MULTI_QUEUE.
    pub multi_queue: bool,
    /// Descriptors attached now. The kernel reports it for multi-queue adapters only
    /// (`None` otherwise: use carrier or the holders of the descriptor instead).
    pub queues: Option<u32>,
    /// Queues detached with TUNSETQUEUE (multi-queue adapters only).
    pub disabled_queues: Option<u32>,
}

/// One network interface as rtnetlink describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub ifindex: u32,
    /// Name.
    pub name: String,
    /// `IFF_*` flags (IFF_UP, …).
    pub flags: u32,
    /// Link kind from IFLA_INFO_KIND ("tun", "bridge", "veth", …); `None` for plain devices.
    pub kind: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Transmit queue length.
    pub txqlen: u32,
    /// RFC 2863 operational state (IF_OPER_UP = 6, …).
    pub operstate: u8,
    /// Carrier present.
    pub carrier: Option<bool>,
    /// Index of the bridge (or bond) it is enslaved to.
    pub master: Option<u32>,
    /// Link-layer address.
    pub address: Vec<u8>,
    /// TUN/TAP details, for `kind == "tun"`.
    pub tun: Option<TunInfo>,
    /// The link this one sits on (IFLA_LINK): a macvtap's lower device, a veth's peer.
    pub link: Option<u32>,
    /// Set when `link` is an ifindex in another namespace (IFLA_LINK_NETNSID).
    pub link_netnsid: Option<i32>,
    /// macvtap details, for `kind == "macvtap"`.
    pub macvtap: Option<MacvtapInfo>,
}

/// What the macvlan driver reports about a macvtap link (`IFLA_INFO_DATA`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MacvtapInfo {
    /// IFLA_MACVLAN_MODE: MACVLAN_MODE_PRIVATE (1), VEPA (2), BRIDGE (4), PASSTHRU (8),
    /// SOURCE (16).
    pub mode: u32,
    /// IFLA_MACVLAN_FLAGS (MACVLAN_FLAG_NOPROMISC, …).
    pub flags: u16,
    /// Its character device's (major, minor), from sysfs: filled in by `links::list`,
    /// `None` when unknown.
    pub dev: Option<(u32, u32)>,
}

fn parse_macvtap(data: &[u8]) -> MacvtapInfo {
    let mut m = MacvtapInfo::default();
    for (ty, v) in attrs(data) {
        match ty & NLA_TYPE_MASK {
            IFLA_MACVLAN_MODE => m.mode = u32_at(v, 0).unwrap_or(0),
            IFLA_MACVLAN_FLAGS => m.flags = u16_at(v, 0).unwrap_or(0),
            _ => {}
        }
    }
    m
}

fn parse_tun(data: &[u8]) -> TunInfo {
    let mut t = TunInfo::default();
    for (ty, v) in attrs(data) {
        let byte = v.first().copied().unwrap_or(0) != 0;
        match ty & NLA_TYPE_MASK {
            IFLA_TUN_OWNER => t.owner = u32_at(v, 0),
            IFLA_TUN_GROUP => t.group = u32_at(v, 0),
            IFLA_TUN_TYPE => t.tap = v.first().copied() == Some(2), // IFF_TAP
            IFLA_TUN_PI => t.pi = byte,
            IFLA_TUN_VNET_HDR => t.vnet_hdr = byte,
            IFLA_TUN_PERSIST => t.persist = byte,
            IFLA_TUN_MULTI_QUEUE => t.multi_queue = byte,
            IFLA_TUN_NUM_QUEUES => t.queues = u32_at(v, 0),
            IFLA_TUN_NUM_DISABLED_QUEUES => t.disabled_queues = u32_at(v, 0),
            _ => {}
        }
    }
    t
}

fn parse_link(body: &[u8]) -> Option<LinkInfo> {
    // struct ifinfomsg { u8 family, pad; u16 type; i32 index; u32 flags, change; }
    let mut link = LinkInfo {
        ifindex: u32_at(body, 4)?,
        flags: u32_at(body, 8)?,
        ..LinkInfo::default()
    };
    let mut kind_data = None;
    for (ty, v) in attrs(body.get(16..)?) {
        match ty & NLA_TYPE_MASK {
            IFLA_IFNAME => {
                let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
                link.name = String::from_utf8_lossy(&v[..end]).into_owned();
            }
            IFLA_MTU => link.mtu = u32_at(v, 0).unwrap_or(0),
            IFLA_TXQLEN => link.txqlen = u32_at(v, 0).unwrap_or(0),
            IFLA_OPERSTATE => link.operstate = v.first().copied().unwrap_or(0),
            IFLA_CARRIER => link.carrier = v.first().map(|&c| c != 0),
            IFLA_MASTER => link.master = u32_at(v, 0),
            IFLA_ADDRESS => link.address = v.to_vec(),
            IFLA_LINK => link.link = u32_at(v, 0),
            IFLA_LINK_NETNSID => link.link_netnsid = u32_at(v, 0).map(|n| n as i32),
            IFLA_LINKINFO => {
                for (ity, iv) in attrs(v) {
                    match ity & NLA_TYPE_MASK {
                        IFLA_INFO_KIND => {
                            let end = iv.iter().position(|&b| b == 0).unwrap_or(iv.len());
                            link.kind = Some(String::from_utf8_lossy(&iv[..end]).into_owned());
                        }
                        IFLA_INFO_DATA => kind_data = Some(iv),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    match link.kind.as_deref() {
        Some("tun") => link.tun = Some(kind_data.map(parse_tun).unwrap_or_default()),
        Some("macvtap") => link.macvtap = Some(kind_data.map(parse_macvtap).unwrap_or_default()),
        _ => {}
    }
    Some(link)
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

/// One rtattr (header, payload, padding), for building nested attributes.
fn rtattr(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(align4(4 + data.len()));
    v.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(data);
    v.resize(align4(v.len()), 0);
    v
}

/// A new macvtap link, as [`Netlink::new_macvtap`] creates it.
#[derive(Debug, Clone)]
pub struct NewMacvtap<'a> {
    /// Its name (no pattern: the caller resolves `%d`).
    pub name: &'a str,
    /// The lower device's ifindex.
    pub lower: u32,
    /// MACVLAN_MODE_* (IFLA_MACVLAN_MODE).
    pub mode: u32,
    /// Its MAC address (`None`: a random one from the kernel).
    pub mac: Option<[u8; 6]>,
    /// Its MTU (`None`: the lower device's).
    pub mtu: Option<u32>,
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

    /// RTM_NEWROUTE: route `dst/prefix` through link `ifindex` in the main table, link
    /// scope (`ip route add DST/PREFIX dev LINK`; EEXIST if that route is there).
    pub fn add_route(&mut self, ifindex: u32, dst: IpAddr, prefix: u8) -> io::Result<()> {
        self.change_route(
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_EXCL,
            ifindex,
            dst,
            prefix,
        )
    }

    /// RTM_DELROUTE: remove that route (ESRCH if absent).
    pub fn del_route(&mut self, ifindex: u32, dst: IpAddr, prefix: u8) -> io::Result<()> {
        self.change_route(RTM_DELROUTE, 0, ifindex, dst, prefix)
    }

    fn change_route(
        &mut self,
        ty: u16,
        flags: u16,
        ifindex: u32,
        dst: IpAddr,
        prefix: u8,
    ) -> io::Result<()> {
        let (family, octets) = match dst {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; flags.
        let mut rtmsg = [0u8; 12];
        rtmsg[0] = family;
        rtmsg[1] = prefix;
        rtmsg[4] = libc::RT_TABLE_MAIN;
        rtmsg[5] = libc::RTPROT_BOOT;
        rtmsg[6] = if ty == RTM_NEWROUTE {
            libc::RT_SCOPE_LINK
        } else {
            libc::RT_SCOPE_NOWHERE
        };
        rtmsg[7] = if ty == RTM_NEWROUTE {
            libc::RTN_UNICAST
        } else {
            0
        };
        let msg = Msg::new(ty, NLM_F_REQUEST | NLM_F_ACK | flags, 0)
            .bytes(&rtmsg)
            .attr(RTA_DST, &octets)
            .attr(RTA_OIF, &ifindex.to_ne_bytes());
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

    /// RTM_GETLINK dump: every interface of this namespace.
    pub fn links(&mut self) -> io::Result<Vec<LinkInfo>> {
        let msg = Msg::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 0).bytes(&[0u8; 16]);
        Ok(self
            .request(msg)?
            .iter()
            .filter(|(ty, _)| *ty == RTM_NEWLINK)
            .filter_map(|(_, body)| parse_link(body))
            .collect())
    }

    /// RTM_NEWLINK: create a macvtap link (`ip link add link LOWER name NAME type macvtap
    /// mode MODE`); EEXIST when the name is taken.
    pub fn new_macvtap(&mut self, link: &NewMacvtap<'_>) -> io::Result<()> {
        let mut name = link.name.as_bytes().to_vec();
        name.push(0);
        let info = [
            rtattr(IFLA_INFO_KIND, b"macvtap\0"),
            rtattr(
                IFLA_INFO_DATA,
                &rtattr(IFLA_MACVLAN_MODE, &link.mode.to_ne_bytes()),
            ),
        ]
        .concat();
        let mut msg = Msg::new(
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            0,
        )
        .bytes(&[0u8; 16])
        .attr(IFLA_IFNAME, &name)
        .attr(IFLA_LINK, &link.lower.to_ne_bytes());
        if let Some(mac) = link.mac {
            msg = msg.attr(IFLA_ADDRESS, &mac);
        }
        if let Some(mtu) = link.mtu {
            msg = msg.attr(IFLA_MTU, &mtu.to_ne_bytes());
        }
        self.request(msg.attr(IFLA_LINKINFO, &info)).map(drop)
    }

    /// RTM_DELLINK: delete interface `ifindex` (`ip link del`).
    pub fn del_link(&mut self, ifindex: u32) -> io::Result<()> {
        let mut ifinfo = [0u8; 16];
        ifinfo[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        let msg = Msg::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, 0).bytes(&ifinfo);
        self.request(msg).map(drop)
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
    fn parses_macvtap_link() {
        let info = [
            rtattr(IFLA_INFO_KIND, b"macvtap\0"),
            rtattr(
                IFLA_INFO_DATA,
                &rtattr(IFLA_MACVLAN_MODE, &4u32.to_ne_bytes()),
            ),
        ]
        .concat();
        let mut ifinfo = [0u8; 16];
        ifinfo[4..8].copy_from_slice(&9u32.to_ne_bytes());
        let m = Msg::new(RTM_NEWLINK, 0, 0)
            .bytes(&ifinfo)
            .attr(IFLA_IFNAME, b"mvt0\0")
            .attr(IFLA_LINK, &3u32.to_ne_bytes())
            .attr(IFLA_LINKINFO, &info)
            .finish();
        let link = parse_link(&m[NLMSG_HDRLEN..]).unwrap();
        assert_eq!((link.ifindex, link.name.as_str()), (9, "mvt0"));
        assert_eq!(link.kind.as_deref(), Some("macvtap"));
        assert_eq!((link.link, link.link_netnsid), (Some(3), None));
        assert_eq!(
            link.macvtap,
            Some(MacvtapInfo {
                mode: 4,
                ..MacvtapInfo::default()
            })
        );
        assert!(link.tun.is_none());
    }

    #[test]
    fn malformed_attrs_stop_parsing() {
        assert_eq!(attrs(&[3, 0, 1, 0]).count(), 0);
        assert_eq!(attrs(&[200, 0, 1, 0, 0, 0]).count(), 0);
        assert_eq!(attrs(&[]).count(), 0);
    }

    #[test]
    fn lists_the_loopback_link() {
        let links = Netlink::open().unwrap().links().unwrap();
        let lo = links
            .iter()
            .find(|l| l.ifindex == 1)
            .expect("lo is always ifindex 1");
        assert_eq!(lo.name, "lo");
        assert!(lo.tun.is_none());
    }

    #[test]
    fn parses_tun_info() {
        let data = Msg::new(0, 0, 0)
            .attr(IFLA_TUN_TYPE, &[2])
            .attr(IFLA_TUN_OWNER, &1000u32.to_ne_bytes())
            .attr(IFLA_TUN_PERSIST, &[1])
            .attr(IFLA_TUN_MULTI_QUEUE, &[0])
            .attr(IFLA_TUN_NUM_QUEUES, &3u32.to_ne_bytes())
            .finish();
        let t = parse_tun(&data[NLMSG_HDRLEN..]);
        assert!(t.tap && t.persist && !t.multi_queue);
        assert_eq!((t.owner, t.group, t.queues), (Some(1000), None, Some(3)));
    }

    #[test]
    fn loopback_link_stats_in_this_namespace() {
        // `lo` is ifindex 1 in every network namespace; reading its counters needs no
        // privilege.
        let mut nl = Netlink::open().unwrap();
        nl.link_stats(1).unwrap();
    }
}
