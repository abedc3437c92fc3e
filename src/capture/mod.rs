//! Packet capture files: a pcap/pcapng writer (`writer`), a reader (`reader`) and
//! tcpdump-style one-line summaries of frames (`summary`).
//!
//! Formats, as the specifications and libpcap define them:
//! - pcap: the nanosecond variant (magic 0xa1b23c4d, version 2.4), little-endian, one
//!   16-byte record header per frame.
//! - pcapng (IETF draft-ietf-opsawg-pcapng): one Section Header Block naming vnetio, one
//!   Interface Description Block per capture (link type, snaplen, `if_name`, `if_filter`
//!   as libpcap writes it, `if_tsresol` = 9 for nanoseconds), then one Enhanced Packet
//!   Block per frame.
//!
//! Link types: 1 (LINKTYPE_ETHERNET) for TAP frames, 101 (LINKTYPE_RAW, IPv4 or IPv6
//! without a link header) for TUN packets.

pub mod reader;
pub mod summary;
pub mod writer;

pub use reader::{CaptureReader, Interface};
pub use writer::{CaptureWriter, WriterOptions};

use crate::wire::Medium;

/// LINKTYPE_ETHERNET: Ethernet frames (TAP).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// LINKTYPE_RAW: bare IPv4/IPv6 packets (TUN).
pub const LINKTYPE_RAW: u32 = 101;
/// The snaplen tcpdump uses by default (and the largest most readers accept).
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap format (nanosecond variant when written by vnetio).
    Pcap,
    /// pcapng.
    PcapNg,
}

impl Format {
    /// "pcap" or "pcapng".
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
        }
    }
}

/// The link type that carries frames of `medium`.
pub fn linktype_for(medium: Medium) -> u32 {
    match medium {
        Medium::Ethernet => LINKTYPE_ETHERNET,
        Medium::Ip => LINKTYPE_RAW,
    }
}

/// The medium whose frames a link type carries, when vnetio adapters can carry them.
pub fn medium_for(linktype: u32) -> Option<Medium> {
    match linktype {
        LINKTYPE_ETHERNET => Some(Medium::Ethernet),
        LINKTYPE_RAW => Some(Medium::Ip),
        _ => None,
    }
}
