//! An echo responder: the replies a small virtual host sends, so that code under test
//! (the kernel's own `ping`, for one) can reach an address that lives behind a TAP or TUN.
//!
//! For one configured MAC and IPv4 and/or IPv6 address, [`Responder::answer_batch`] turns
//! each frame of a batch into its reply, if it deserves one:
//!
//! | request | reply |
//! |---|---|
//! | ARP request for our IPv4 (ARP probes with sender 0.0.0.0 too) | ARP reply |
//! | IPv6 neighbour solicitation for our address (RFC 4861 §7.1.1 checks) | neighbour advertisement with our link-layer address; to the all-nodes group, unsolicited, when the solicitation came from `::` (duplicate address detection) |
//! | ICMP echo request to our IPv4 | ICMP echo reply (same identifier, sequence and data) |
//! | ICMPv6 echo request to our IPv6 | ICMPv6 echo reply |
//!
//! Ethernet frames (TAP) may carry up to two VLAN tags, which the reply repeats. Raw IP
//! packets (TUN) get echo replies only: there is no link layer to resolve. Every other
//! frame is counted: [`Counters::ignored`] (not for us, or nothing to answer) or
//! [`Counters::malformed`] (bad checksum, truncated, a field the protocol forbids).
//!
//! Contract, as for [`crate::wire`]: any bytes in, no panic, no out-of-bounds read; a
//! reply is written straight into the output batch's arena, with no allocation per frame.

use crate::batch::PacketBatch;
use crate::wire::checksum::{checksum, combine, finish, pseudo_header_v6, sum};
use crate::wire::Medium;
use crate::wire::{
    self, proto, Ip, Layout, WireError, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6,
};

/// Replies are at most this much longer than their request (a neighbour solicitation
/// from `::` has no link-layer option; the advertisement always has one).
pub const REPLY_GROWTH: usize = 8;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
const ICMPV6_NS: u8 = 135;
const ICMPV6_NA: u8 = 136;
/// Hop limit (IPv6) and TTL (IPv4) of echo replies.
const REPLY_TTL: u8 = 64;
/// ff02::1, all nodes on the link.
const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Who the responder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Its MAC address (used on Ethernet only).
    pub mac: [u8; 6],
    /// Its IPv4 address, if any.
    pub ipv4: Option<[u8; 4]>,
    /// Its IPv6 address, if any.
    pub ipv6: Option<[u8; 16]>,
}

/// What a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// An ARP request.
    Arp,
    /// An IPv6 neighbour solicitation.
    NeighborSolicitation,
    /// An ICMP echo request.
    Echo4,
    /// An ICMPv6 echo request.
    Echo6,
}

/// Why a frame got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Well-formed, but not a request for us (another address, another protocol, a reply).
    Ignored(&'static str),
    /// Invalid: truncated, a bad checksum, a field the protocol forbids.
    Malformed(&'static str),
}

impl From<WireError> for Skipped {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated(what) | WireError::Malformed(what) => Skipped::Malformed(what),
            WireError::NotIp => Skipped::Ignored("not IP or ARP"),
        }
    }
}

/// How many frames got which treatment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// ARP requests answered.
    pub arp: u64,
    /// Neighbour solicitations answered.
    pub ns: u64,
    /// ICMP echo requests answered.
    pub echo4: u64,
    /// ICMPv6 echo requests answered.
    pub echo6: u64,
    /// Frames that were not requests for us.
    pub ignored: u64,
    /// Frames that could not be parsed or failed a check.
    pub malformed: u64,
}

impl Counters {
    /// Count one outcome.
    pub fn count(&mut self, outcome: Result<Answered, Skipped>) {
        let slot = match outcome {
            Ok(Answered::Arp) => &mut self.arp,
            Ok(Answered::NeighborSolicitation) => &mut self.ns,
            Ok(Answered::Echo4) => &mut self.echo4,
            Ok(Answered::Echo6) => &mut self.echo6,
            Err(Skipped::Ignored(_)) => &mut self.ignored,
            Err(Skipped::Malformed(_)) => &mut self.malformed,
        };
        *slot += 1;
    }

    /// Add `other`'s counts to these.
    pub fn add(&mut self, other: &Counters) {
        self.arp += other.arp;
        self.ns += other.ns;
        self.echo4 += other.echo4;
        self.echo6 += other.echo6;
        self.ignored += other.ignored;
        self.malformed += other.malformed;
    }

    /// Replies made.
    pub fn answered(&self) -> u64 {
        self.arp + self.ns + self.echo4 + self.echo6
    }
}

/// The echo responder for one [`Config`] on one medium.
#[derive(Debug, Clone, Copy)]
pub struct Responder {
    config: Config,
    medium: Medium,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn is_multicast_mac(mac: &[u8]) -> bool {
    mac.first().is_some_and(|b| b & 1 == 1)
}

fn ipv6_multicast_mac(ip: &[u8; 16]) -> [u8; 6] {
    [0x33, 0x33, ip[12], ip[13], ip[14], ip[15]]
}

fn solicited_node(ip: &[u8; 16]) -> [u8; 16] {
    let mut sn = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    sn[13..].copy_from_slice(&ip[13..]);
    sn
}

fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// Writes a reply into the arena slot, refusing (instead of panicking) to write past it.
struct Out<'a> {
    buf: &'a mut [u8],
}

impl Out<'_> {
    fn put(&mut self, at: usize, bytes: &[u8]) -> Result<(), Skipped> {
        self.buf
            .get_mut(at..at + bytes.len())
            .ok_or(Skipped::Malformed("reply larger than its room"))?
            .copy_from_slice(bytes);
        Ok(())
    }

    fn get(&self, range: std::ops::Range<usize>) -> Result<&[u8], Skipped> {
        self.buf
            .get(range)
            .ok_or(Skipped::Malformed("reply larger than its room"))
    }
}

impl Responder {
    /// A responder for `config`: Ethernet frames (TAP) or raw IP packets (TUN).
    pub fn new(config: Config, medium: Medium) -> Self {
        Responder { config, medium }
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The medium it answers on.
    pub fn medium(&self) -> Medium {
        self.medium
    }

    /// Append the reply to each frame of `input` that deserves one to `out`, counting
    /// every frame in `counters`.
    pub fn answer_batch(
        &self,
        input: &PacketBatch,
        out: &mut PacketBatch,
        counters: &mut Counters,
    ) {
        for frame in input.iter() {
            let slot = out.recv_slot(frame.len() + REPLY_GROWTH);
            let outcome = self.reply_into(frame, slot).map(|(len, what)| {
                out.commit(len, 0);
                what
            });
            counters.count(outcome);
        }
    }

    /// The reply to one frame, as a new vector (for tests and single frames).
    pub fn answer(&self, frame: &[u8]) -> Result<(Vec<u8>, Answered), Skipped> {
        let mut buf = vec![0; frame.len() + REPLY_GROWTH];
        let (len, what) = self.reply_into(frame, &mut buf)?;
        buf.truncate(len);
        Ok((buf, what))
    }

    /// Write the reply to `frame` into `buf` (at least `frame.len() + REPLY_GROWTH`
    /// bytes); returns its length and what it answers.
    pub fn reply_into(&self, frame: &[u8], buf: &mut [u8]) -> Result<(usize, Answered), Skipped> {
        let mut out = Out { buf };
        match self.medium {
            Medium::Ip => {
                let l = wire::locate(frame, Medium::Ip)?;
                self.ip(frame, &l, &mut out, 0, None)
            }
            Medium::Ethernet => self.ethernet(frame, &mut out),
        }
    }

    fn ethernet(&self, frame: &[u8], out: &mut Out<'_>) -> Result<(usize, Answered), Skipped> {
        let eth = wire::ethernet(frame)?;
        let (dst, src) = (&frame[..6], &frame[6..12]);
        if is_multicast_mac(src) {
            return Err(Skipped::Malformed("Ethernet source is a multicast address"));
        }
        if src == self.config.mac {
            return Err(Skipped::Ignored("sent from our own MAC address"));
        }
        if dst != self.config.mac && !is_multicast_mac(dst) {
            return Err(Skipped::Ignored("Ethernet destination is another host"));
        }
        // Link header of the reply: to the sender, from us, the same tags and EtherType.
        out.put(6, &self.config.mac)?;
        out.put(0, src)?;
        out.put(12, &frame[12..eth.payload])?;
        let l2 = eth.payload;
        let version = frame.get(l2).map(|b| b >> 4);
        match eth.ethertype {
            ETHERTYPE_ARP => self.arp(frame, l2, out),
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => {
                let want = if eth.ethertype == ETHERTYPE_IPV4 {
                    4
                } else {
                    6
                };
                if version.is_some() && version != Some(want) {
                    return Err(Skipped::Malformed("IP version differs from the EtherType"));
                }
                let l = wire::locate(frame, Medium::Ethernet)?;
                let src_mac = array::<6>(frame, 6);
                self.ip(frame, &l, out, l2, src_mac)
            }
            _ => Err(Skipped::Ignored("neither IP nor ARP")),
        }
    }

    fn arp(
        &self,
        frame: &[u8],
        at: usize,
        out: &mut Out<'_>,
    ) -> Result<(usize, Answered), Skipped> {
        let arp = frame
            .get(at..at + 28)
            .ok_or(Skipped::Malformed("ARP packet (shorter than 28 bytes)"))?;
        if arp[..6] != [0, 1, 8, 0, 6, 4] {
            return Err(Skipped::Ignored(
                "ARP for another hardware or protocol type",
            ));
        }
        let Some(ours) = self.config.ipv4 else {
            return Err(Skipped::Ignored("ARP, and no IPv4 address configured"));
        };
        if be16(arp, 6) != Some(1) {
            return Err(Skipped::Ignored("ARP, not a request"));
        }
        let (sha, spa, tpa) = (&arp[8..14], &arp[14..18], &arp[24..28]);
        if tpa != ours {
            return Err(Skipped::Ignored("ARP request for another address"));
        }
        if spa == ours {
            return Err(Skipped::Ignored(
                "ARP announcement of our address by another host",
            ));
        }
        if is_multicast_mac(sha) {
            return Err(Skipped::Malformed(
                "ARP sender hardware address is multicast",
            ));
        }
        out.put(at, &[0, 1, 8, 0, 6, 4, 0, 2])?;
        out.put(at + 8, &self.config.mac)?;
        out.put(at + 14, &ours)?;
        out.put(at + 18, sha)?;
        out.put(at + 24, spa)?; // 0.0.0.0 for a probe (RFC 5227): answered as Linux does
        Ok((at + 28, Answered::Arp))
    }

    fn ip(
        &self,
        frame: &[u8],
        l: &Layout,
        out: &mut Out<'_>,
        at: usize,
        src_mac: Option<[u8; 6]>,
    ) -> Result<(usize, Answered), Skipped> {
        match l.ip {
            Ip::V4 => self.echo4(frame, l, out, at),
            Ip::V6 => self.icmp6(frame, l, out, at, src_mac),
        }
    }

    fn echo4(
        &self,
        frame: &[u8],
        l: &Layout,
        out: &mut Out<'_>,
        at: usize,
    ) -> Result<(usize, Answered), Skipped> {
        if sum(&frame[l.l3..l.l4]) != 0xffff {
            return Err(Skipped::Malformed("IPv4 header checksum"));
        }
        let Some(ours) = self.config.ipv4 else {
            return Err(Skipped::Ignored("IPv4, and no IPv4 address configured"));
        };
        let dst = array::<4>(frame, l.l3 + 16).unwrap_or_default();
        let src = array::<4>(frame, l.l3 + 12).unwrap_or_default();
        if dst != ours {
            return Err(Skipped::Ignored("IPv4 packet for another address"));
        }
        if l.protocol != proto::ICMP {
            return Err(Skipped::Ignored("IPv4, not ICMP"));
        }
        if l.fragment || l.partial {
            return Err(Skipped::Ignored("fragmented ICMP (not reassembled)"));
        }
        let icmp = &frame[l.l4..l.end];
        if icmp.len() < 8 {
            return Err(Skipped::Malformed("ICMP header (shorter than 8 bytes)"));
        }
        if icmp[0] != ICMP_ECHO_REQUEST {
            return Err(Skipped::Ignored("ICMP, not an echo request"));
        }
        if icmp[1] != 0 {
            return Err(Skipped::Malformed("ICMP echo request with a nonzero code"));
        }
        if sum(icmp) != 0xffff {
            return Err(Skipped::Malformed("ICMP checksum"));
        }
        if src == [0; 4] || src[0] >= 224 || src == ours {
            return Err(Skipped::Ignored(
                "ICMP echo from an unspecified, multicast or broadcast source",
            ));
        }
        let total = 20 + icmp.len();
        let total16 = u16::try_from(total).map_err(|_| Skipped::Malformed("IPv4 length"))?;
        let mut header = [0u8; 20];
        header[0] = 0x45;
        header[1] = frame[l.l3 + 1]; // DSCP/ECN as received
        header[2..4].copy_from_slice(&total16.to_be_bytes());
        header[4..6].copy_from_slice(&frame[l.l3 + 4..l.l3 + 6]); // the request's ID
        header[8] = REPLY_TTL;
        header[9] = proto::ICMP;
        header[12..16].copy_from_slice(&ours);
        header[16..20].copy_from_slice(&src);
        let c = checksum(&header);
        header[10..12].copy_from_slice(&c.to_be_bytes());
        out.put(at, &header)?;
        let l4 = at + 20;
        out.put(l4, icmp)?;
        out.put(l4, &[ICMP_ECHO_REPLY, 0, 0, 0])?;
        let c = checksum(out.get(l4..l4 + icmp.len())?);
        out.put(l4 + 2, &c.to_be_bytes())?;
        Ok((at + total, Answered::Echo4))
    }

    fn icmp6(
        &self,
        frame: &[u8],
        l: &Layout,
        out: &mut Out<'_>,
        at: usize,
        src_mac: Option<[u8; 6]>,
    ) -> Result<(usize, Answered), Skipped> {
        let Some(ours) = self.config.ipv6 else {
            return Err(Skipped::Ignored("IPv6, and no IPv6 address configured"));
        };
        if l.protocol != proto::ICMPV6 {
            return Err(Skipped::Ignored("IPv6, not ICMPv6"));
        }
        if l.fragment || l.partial {
            return Err(Skipped::Ignored("fragmented ICMPv6 (not reassembled)"));
        }
        let src = array::<16>(frame, l.l3 + 8).unwrap_or_default();
        let dst = array::<16>(frame, l.l3 + 24).unwrap_or_default();
        let icmp = &frame[l.l4..l.end];
        if icmp.len() < 8 {
            return Err(Skipped::Malformed("ICMPv6 header (shorter than 8 bytes)"));
        }
        let pseudo = pseudo_header_v6(src, dst, proto::ICMPV6, icmp.len() as u32);
        if combine(&[pseudo, sum(icmp)]) != 0xffff {
            return Err(Skipped::Malformed("ICMPv6 checksum"));
        }
        match icmp[0] {
            ICMPV6_ECHO_REQUEST => {
                if dst != ours {
                    return Err(Skipped::Ignored("ICMPv6 echo for another address"));
                }
                if icmp[1] != 0 {
                    return Err(Skipped::Malformed(
                        "ICMPv6 echo request with a nonzero code",
                    ));
                }
                if src == [0; 16] || src[0] == 0xff || src == ours {
                    return Err(Skipped::Ignored(
                        "ICMPv6 echo from an unspecified or multicast source",
                    ));
                }
                let len = self.ipv6_header(out, at, &ours, &src, icmp.len(), REPLY_TTL)?;
                let l4 = at + 40;
                out.put(l4, icmp)?;
                out.put(l4, &[ICMPV6_ECHO_REPLY, 0, 0, 0])?;
                self.icmp6_checksum(out, l4, &ours, &src, icmp.len())?;
                Ok((len, Answered::Echo6))
            }
            ICMPV6_NS if self.medium == Medium::Ethernet => {
                self.neighbor_advert(frame, l, out, at, (&src, &dst), src_mac, &ours)
            }
            _ => Err(Skipped::Ignored(
                "ICMPv6, neither echo request nor solicitation",
            )),
        }
    }

    /// RFC 4861 §7.1.1 validation of a solicitation, then §7.2.4 advertisement.
    #[allow(clippy::too_many_arguments)]
    fn neighbor_advert(
        &self,
        frame: &[u8],
        l: &Layout,
        out: &mut Out<'_>,
        at: usize,
        (src, dst): (&[u8; 16], &[u8; 16]),
        src_mac: Option<[u8; 6]>,
        ours: &[u8; 16],
    ) -> Result<(usize, Answered), Skipped> {
        let icmp = &frame[l.l4..l.end];
        if frame[l.l3 + 7] != 255 {
            return Err(Skipped::Malformed(
                "neighbour solicitation with hop limit below 255",
            ));
        }
        if icmp[1] != 0 || icmp.len() < 24 {
            return Err(Skipped::Malformed(
                "neighbour solicitation (code or length)",
            ));
        }
        let target = array::<16>(icmp, 8).unwrap_or_default();
        if target[0] == 0xff {
            return Err(Skipped::Malformed(
                "neighbour solicitation for a multicast target",
            ));
        }
        let mut sllao = None;
        let mut opts = &icmp[24..];
        while !opts.is_empty() {
            let len = usize::from(*opts.get(1).unwrap_or(&0)) * 8;
            if len == 0 || len > opts.len() {
                return Err(Skipped::Malformed("neighbour discovery option length"));
            }
            if opts[0] == 1 && len == 8 {
                sllao = array::<6>(opts, 2);
            }
            opts = &opts[len..];
        }
        let dad = *src == [0; 16];
        if dad && (*dst != solicited_node(&target) || sllao.is_some()) {
            return Err(Skipped::Malformed(
                "solicitation from :: not to the solicited-node group, or with a link-layer option",
            ));
        }
        if target != *ours {
            return Err(Skipped::Ignored(
                "neighbour solicitation for another address",
            ));
        }
        if *dst != *ours && *dst != solicited_node(ours) {
            return Err(Skipped::Ignored(
                "neighbour solicitation to another destination",
            ));
        }
        // DAD probe: defend the address to all nodes, not solicited; else to the sender.
        let (to_ip, to_mac, flags) = if dad {
            (ALL_NODES, ipv6_multicast_mac(&ALL_NODES), 0x20)
        } else {
            let mac = sllao
                .or(src_mac)
                .ok_or(Skipped::Malformed("no source MAC"))?;
            (*src, mac, 0x60)
        };
        out.put(0, &to_mac)?;
        let len = self.ipv6_header(out, at, ours, &to_ip, 32, 255)?;
        let l4 = at + 40;
        let mut na = [0u8; 32];
        na[0] = ICMPV6_NA;
        na[4] = flags; // Router 0, Solicited, Override
        na[8..24].copy_from_slice(ours);
        na[24] = 2; // target link-layer address option, 1 × 8 bytes
        na[25] = 1;
        na[26..32].copy_from_slice(&self.config.mac);
        out.put(l4, &na)?;
        self.icmp6_checksum(out, l4, ours, &to_ip, 32)?;
        Ok((len, Answered::NeighborSolicitation))
    }

    /// An IPv6 header at `at` for `payload` bytes of ICMPv6; returns the reply's length.
    #[allow(clippy::unused_self)]
    fn ipv6_header(
        &self,
        out: &mut Out<'_>,
        at: usize,
        src: &[u8; 16],
        dst: &[u8; 16],
        payload: usize,
        hop_limit: u8,
    ) -> Result<usize, Skipped> {
        let len = u16::try_from(payload).map_err(|_| Skipped::Malformed("IPv6 length"))?;
        let mut h = [0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&len.to_be_bytes());
        h[6] = proto::ICMPV6;
        h[7] = hop_limit;
        h[8..24].copy_from_slice(src);
        h[24..40].copy_from_slice(dst);
        out.put(at, &h)?;
        Ok(at + 40 + payload)
    }

    #[allow(clippy::unused_self)]
    fn icmp6_checksum(
        &self,
        out: &mut Out<'_>,
        l4: usize,
        src: &[u8; 16],
        dst: &[u8; 16],
        len: usize,
    ) -> Result<(), Skipped> {
        let pseudo = pseudo_header_v6(*src, *dst, proto::ICMPV6, len as u32);
        let c = finish(combine(&[pseudo, sum(out.get(l4..l4 + len)?)]));
        out.put(l4 + 2, &c.to_be_bytes())
    }
}

#[cfg(test)]
mod tests;
