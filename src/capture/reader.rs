//! Reading pcap and pcapng files into batches.
//!
//! The block and record layouts are parsed by rusticata's `pcap-parser` (a maintained,
//! fuzzed parser of both formats and byte orders); this module streams the file through a
//! reusable buffer, bounds every length before anything is read for it, keeps the
//! per-interface state (link type, name, filter, timestamp resolution and offset) and turns
//! timestamps into nanoseconds. What it handles: pcap with microsecond and nanosecond
//! magic in both byte orders; pcapng in both byte orders, several sections and several
//! interfaces, Enhanced, Simple and obsolete Packet Blocks, unknown blocks skipped,
//! `if_tsresol` in its power-of-ten and power-of-two forms (the latter computed here:
//! `pcap-parser` 0.17's helper rejects it) and `if_tsoffset` (read here too: the crate
//! reads it little-endian in big-endian sections).
//!
//! Every problem (not a capture file, a cut-short record, a length that cannot be right,
//! a malformed block) is `Error::BadCapture` naming the byte offset where it starts.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use pcap_parser::nom;
use pcap_parser::{Block, PcapError};

use super::writer::{
    BYTE_ORDER_MAGIC, EPB_TYPE, IDB_TYPE, PCAP_MAGIC_NS, PCAP_MAGIC_US, SHB_TYPE, SPB_TYPE,
};
use super::Format;
use crate::batch::{PacketBatch, NO_TIMESTAMP};
use crate::error::{Error, VnetResult};

/// Largest block or record accepted (as Wireshark's pcapng reader: 16 MiB).
pub const MAX_BLOCK: usize = 16 << 20;
const READ_CHUNK: usize = 256 * 1024;
const LEGACY_PB_TYPE: u32 = 2;
const OPT_IF_FILTER: u16 = 11;
const OPT_IF_TSOFFSET: u16 = 14;
const NS: u128 = 1_000_000_000;

/// One interface of a pcapng file (a pcap file has exactly one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// LINKTYPE_* of its frames.
    pub linktype: u32,
    /// Its snaplen (0: none).
    pub snaplen: u32,
    /// `if_name`, when given.
    pub name: Option<String>,
    /// `if_filter` (libpcap string form), when given.
    pub filter: Option<String>,
    /// Timestamp units per second.
    units: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_s: i64,
}

impl Interface {
    fn ts_ns(&self, ts: u64) -> u64 {
        let units = u128::from(self.units);
        let ts = u128::from(ts);
        let ns = (ts / units) * NS + (ts % units) * NS / units;
        let ns = ns as i128 + i128::from(self.offset_s) * NS as i128;
        u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
    }
}

/// A capture file being read.
#[derive(Debug)]
pub struct CaptureReader<R: Read = File> {
    src: R,
    path: PathBuf,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    format: Format,
    big_endian: bool,
    interfaces: Vec<Interface>,
    /// Interfaces of earlier sections (reported by `interfaces_seen`).
    seen: Vec<Interface>,
    frames: u64,
    truncated: u64,
}

impl CaptureReader<File> {
    /// Open `path` and read its header.
    ///
    /// # Errors
    /// `CaptureIo` when the file cannot be opened or read, `BadCapture` when it is not a
    /// pcap/pcapng file.
    pub fn open(path: impl AsRef<Path>) -> VnetResult<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| Error::CaptureIo {
            step: "cannot open capture file",
            path: path.clone(),
            source,
            frames: None,
        })?;
        CaptureReader::new(file, path)
    }
}

fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

fn units_per_second(tsresol: u8) -> Option<u64> {
    let v = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(v)
    } else {
        1u64.checked_shl(v)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Read a capture from `src` (`path` names it in errors).
    ///
    /// # Errors
    /// As [`CaptureReader::open`].
    pub fn new(src: R, path: PathBuf) -> VnetResult<Self> {
        let mut r = CaptureReader {
            src,
            path,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            end: 0,
            base: 0,
            eof: false,
            format: Format::Pcap,
            big_endian: false,
            interfaces: Vec::new(),
            seen: Vec::new(),
            frames: 0,
            truncated: 0,
        };
        r.read_header()?;
        Ok(r)
    }

    fn bad(&self, at: u64, reason: impl Into<String>) -> Error {
        Error::BadCapture {
            path: self.path.clone(),
            offset: at,
            reason: reason.into(),
        }
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn available(&self) -> usize {
        self.end - self.pos
    }

    /// Make at least `need` bytes available at `pos`, unless the file ends first.
    /// Returns whether they are there.
    fn fill(&mut self, need: usize) -> VnetResult<bool> {
        if self.available() >= need {
            return Ok(true);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() < need {
            self.buf.resize(need.max(READ_CHUNK), 0);
        }
        while self.end < need && !self.eof {
            if self.end == self.buf.len() {
                let grown = self.buf.len() + READ_CHUNK;
                self.buf.resize(grown, 0);
            }
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::CaptureIo {
                        step: "cannot read capture file",
                        path: self.path.clone(),
                        source,
                        frames: None,
                    })
                }
            }
        }
        Ok(self.available() >= need)
    }

    fn cut_short(&self, what: &str, need: usize) -> Error {
        self.bad(
            self.offset(),
            format!(
                "the file ends inside {what} ({need} bytes needed, {} left): it was cut short",
                self.available()
            ),
        )
    }

    fn read_header(&mut self) -> VnetResult<()> {
        if !self.fill(4)? {
            return Err(self.bad(
                0,
                format!(
                    "{} bytes is too short to be a pcap or pcapng file",
                    self.available()
                ),
            ));
        }
        let magic = u32_at(&self.buf, self.pos, false);
        match magic {
            SHB_TYPE => {
                self.format = Format::PcapNg;
                Ok(())
            }
            PCAP_MAGIC_US | PCAP_MAGIC_NS => self.read_pcap_header(false),
            m if m.swap_bytes() == PCAP_MAGIC_US || m.swap_bytes() == PCAP_MAGIC_NS => {
                self.read_pcap_header(true)
            }
            0xa1b2_cd34 | 0x34cd_b2a1 => Err(self.bad(
                0,
                "this is the \"modified\" pcap format (Alexey Kuznetsov's patches), which vnetio \
                 does not read; convert it with `editcap -F pcap IN OUT`",
            )),
            m => Err(self.bad(
                0,
                format!("not a pcap or pcapng file (first 4 bytes 0x{m:08x} are no known magic)"),
            )),
        }
    }

    fn read_pcap_header(&mut self, big: bool) -> VnetResult<()> {
        if !self.fill(24)? {
            return Err(self.cut_short("the pcap file header", 24));
        }
        let (_, header) = pcap_parser::parse_pcap_header(&self.buf[self.pos..self.pos + 24])
            .map_err(|_| self.bad(0, "malformed pcap file header"))?;
        self.big_endian = big;
        self.format = Format::Pcap;
        self.interfaces.push(Interface {
            linktype: header.network.0 as u32,
            snaplen: header.snaplen,
            name: None,
            filter: None,
            units: if header.is_nanosecond_precision() {
                1_000_000_000
            } else {
                1_000_000
            },
            offset_s: i64::from(header.thiszone),
        });
        self.pos += 24;
        Ok(())
    }

    /// pcap or pcapng.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Interfaces described so far (in a pcapng file, those of the current section; the
    /// first packet of a section comes after its interfaces, so after one frame is read
    /// they are all known).
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Interfaces of earlier sections followed by the current ones.
    pub fn all_interfaces(&self) -> Vec<Interface> {
        let mut all = self.seen.clone();
        all.extend(self.interfaces.iter().cloned());
        all
    }

    /// Read blocks until the first interface is described (pcapng), so `interfaces()` is
    /// not empty for a file that has one. Frames are not consumed.
    ///
    /// # Errors
    /// As [`CaptureReader::next_frame`].
    pub fn read_interfaces(&mut self) -> VnetResult<()> {
        while self.format == Format::PcapNg && self.interfaces.is_empty() {
            match self.peek_block_type()? {
                Some(t) if t == SHB_TYPE || t == IDB_TYPE => {
                    let mut scratch = PacketBatch::default();
                    self.next_block(&mut scratch)?;
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn peek_block_type(&mut self) -> VnetResult<Option<u32>> {
        if !self.fill(4)? {
            return Ok(None);
        }
        Ok(Some(u32_at(&self.buf, self.pos, self.big_endian)))
    }

    /// Frames read so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames stored shorter than they were on the wire (cut to a snaplen).
    pub fn truncated_frames(&self) -> u64 {
        self.truncated
    }

    /// Append up to `max` frames to `out` (with their timestamps). Returns how many; 0 at
    /// the end of the file.
    ///
    /// # Errors
    /// `BadCapture` naming the byte offset of a malformed or cut-short record.
    pub fn read_batch(&mut self, out: &mut PacketBatch, max: usize) -> VnetResult<usize> {
        let mut n = 0;
        while n < max && self.next_frame(out)? {
            n += 1;
        }
        Ok(n)
    }

    /// Append the next frame to `out`. Returns false at the end of the file.
    ///
    /// # Errors
    /// As [`CaptureReader::read_batch`].
    pub fn next_frame(&mut self, out: &mut PacketBatch) -> VnetResult<bool> {
        match self.format {
            Format::Pcap => self.next_pcap(out),
            Format::PcapNg => loop {
                match self.next_block(out)? {
                    None => return Ok(false),
                    Some(true) => return Ok(true),
                    Some(false) => {}
                }
            },
        }
    }

    fn next_pcap(&mut self, out: &mut PacketBatch) -> VnetResult<bool> {
        if !self.fill(16)? {
            if self.available() == 0 {
                return Ok(false);
            }
            return Err(self.cut_short("a record header", 16));
        }
        let caplen = u32_at(&self.buf, self.pos + 8, self.big_endian) as usize;
        if caplen > MAX_BLOCK {
            return Err(self.bad(
                self.offset(),
                format!(
                    "a record claims {caplen} captured bytes, more than any frame (file damaged?)"
                ),
            ));
        }
        if !self.fill(16 + caplen)? {
            return Err(self.cut_short("a record", 16 + caplen));
        }
        let slice = &self.buf[self.pos..self.pos + 16 + caplen];
        let parsed = if self.big_endian {
            pcap_parser::parse_pcap_frame_be(slice)
        } else {
            pcap_parser::parse_pcap_frame(slice)
        };
        let (_, rec) = parsed.map_err(|_| self.bad(self.offset(), "malformed pcap record"))?;
        let iface = &self.interfaces[0];
        // A fraction of a second at or above one second is carried into the seconds, as
        // Wireshark does: scapy's PcapWriter rounds 0.9999995 s up to 1000000 µs.
        let ts = iface.ts_ns(u64::from(rec.ts_sec) * iface.units + u64::from(rec.ts_usec));
        if rec.origlen as usize > rec.data.len() {
            self.truncated += 1;
        }
        out.push(rec.data, ts);
        self.frames += 1;
        self.pos += 16 + caplen;
        Ok(true)
    }

    /// Check the next block's header and buffer the whole block: (offset, type, length),
    /// or `None` at the end of the file.
    fn block_start(&mut self) -> VnetResult<Option<(u64, u32, usize)>> {
        if !self.fill(8)? {
            if self.available() == 0 {
                return Ok(None);
            }
            return Err(self.cut_short("a block header", 8));
        }
        let at = self.offset();
        let raw_type = u32_at(&self.buf, self.pos, false);
        if raw_type == SHB_TYPE {
            // A new section may change the byte order: its byte-order magic says which.
            if !self.fill(12)? {
                return Err(self.cut_short("a section header", 12));
            }
            let bom = u32_at(&self.buf, self.pos + 8, false);
            self.big_endian = match bom {
                BYTE_ORDER_MAGIC => false,
                m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
                m => {
                    return Err(self.bad(
                        at,
                        format!("section header with a bad byte-order magic 0x{m:08x}"),
                    ))
                }
            };
        }
        let block_type = u32_at(&self.buf, self.pos, self.big_endian);
        let len = u32_at(&self.buf, self.pos + 4, self.big_endian) as usize;
        if len < 12 || len % 4 != 0 || len > MAX_BLOCK {
            return Err(self.bad(
                at,
                format!(
                    "block of type 0x{block_type:08x} claims a length of {len} bytes (must be a \
                     multiple of 4 from 12 to {MAX_BLOCK})"
                ),
            ));
        }
        if !self.fill(len)? {
            return Err(self.cut_short("a block", len));
        }
        Ok(Some((at, block_type, len)))
    }

    /// Process one pcapng block: `Some(true)` when it appended a frame, `Some(false)` for
    /// any other block, `None` at the end of the file.
    fn next_block(&mut self, out: &mut PacketBatch) -> VnetResult<Option<bool>> {
        let Some((at, block_type, len)) = self.block_start()? else {
            return Ok(None);
        };
        let slice = &self.buf[self.pos..self.pos + len];
        let parsed = if self.big_endian {
            pcap_parser::parse_block_be(slice)
        } else {
            pcap_parser::parse_block_le(slice)
        };
        let block = match parsed {
            Ok((_, block)) => block,
            Err(e) => {
                let why = match e {
                    nom::Err::Incomplete(_) => "its fields run past its length".to_owned(),
                    nom::Err::Error(e) | nom::Err::Failure(e) => describe(&e),
                };
                return Err(self.bad(
                    at,
                    format!("malformed block of type 0x{block_type:08x}: {why}"),
                ));
            }
        };
        let mut frame = None;
        let mut new_section = false;
        let mut new_iface = None;
        let mut problem = None;
        match block {
            Block::SectionHeader(_) => new_section = true,
            Block::InterfaceDescription(idb) => match interface_of(&idb, self.big_endian) {
                Ok(i) => new_iface = Some(i),
                Err(p) => problem = Some(p),
            },
            Block::EnhancedPacket(epb) => {
                let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                let data = epb.data;
                let caplen = (epb.caplen as usize).min(data.len());
                frame = Some((epb.if_id, Some(ts), &data[..caplen], epb.origlen));
            }
            Block::SimplePacket(spb) => {
                let data = spb.data;
                let caplen = (spb.origlen as usize).min(data.len());
                frame = Some((0, None, &data[..caplen], spb.origlen));
            }
            Block::Unknown(ub)
                if ub.block_type == LEGACY_PB_TYPE || block_type == LEGACY_PB_TYPE =>
            {
                match legacy_packet(ub.data, self.big_endian) {
                    Some((if_id, ts, data, orig)) => frame = Some((if_id, Some(ts), data, orig)),
                    None => problem = Some("malformed (obsolete) packet block".to_owned()),
                }
            }
            _ => {}
        }
        if let Some(p) = problem {
            return Err(self.bad(at, p));
        }
        if new_section {
            let old = std::mem::take(&mut self.interfaces);
            self.seen.extend(old);
        }
        if let Some(i) = new_iface {
            self.interfaces.push(i);
        }
        let Some((if_id, ts, data, orig)) = frame else {
            self.pos += len;
            return Ok(Some(false));
        };
        let Some(iface) = self.interfaces.get(if_id as usize) else {
            return Err(self.bad(
                at,
                format!(
                    "packet block for interface {if_id}, but the section describes {}",
                    self.interfaces.len()
                ),
            ));
        };
        // A Simple Packet Block holds min(original length, snaplen) bytes; its data
        // as parsed includes the padding.
        let data = if block_type == SPB_TYPE && iface.snaplen > 0 {
            &data[..data.len().min(iface.snaplen as usize)]
        } else {
            data
        };
        let ts_ns = ts.map_or(NO_TIMESTAMP, |t| iface.ts_ns(t));
        if orig as usize > data.len() {
            self.truncated += 1;
        }
        out.push(data, ts_ns);
        self.frames += 1;
        self.pos += len;
        Ok(Some(true))
    }
}

/// The state kept for an Interface Description Block.
fn interface_of(
    idb: &pcap_parser::InterfaceDescriptionBlock<'_>,
    big_endian: bool,
) -> Result<Interface, String> {
    // if_tsoffset is read here in the section's byte order (pcap-parser 0.17 reads it as
    // little-endian in every section).
    let offset_s = idb
        .options
        .iter()
        .find(|o| o.code.0 == OPT_IF_TSOFFSET)
        .and_then(|o| <[u8; 8]>::try_from(o.value().get(..8)?).ok())
        .map_or(0, |b| {
            if big_endian {
                i64::from_be_bytes(b)
            } else {
                i64::from_le_bytes(b)
            }
        });
    let filter = idb
        .options
        .iter()
        .find(|o| o.code.0 == OPT_IF_FILTER)
        .and_then(|o| match o.value() {
            [0, text @ ..] => Some(
                String::from_utf8_lossy(text)
                    .trim_end_matches('\0')
                    .to_owned(),
            ),
            _ => None,
        });
    match units_per_second(idb.if_tsresol) {
        Some(units) if units > 0 => Ok(Interface {
            linktype: u32::from(idb.linktype.0 as u16),
            snaplen: idb.snaplen,
            name: idb.if_name().and_then(Result::ok).map(str::to_owned),
            filter,
            units,
            offset_s,
        }),
        _ => Err(format!(
            "interface description with an unusable if_tsresol 0x{:02x}",
            idb.if_tsresol
        )),
    }
}

fn describe(e: &PcapError<&[u8]>) -> String {
    match e {
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("{kind:?} check failed")
        }
        other => format!("{other:?}"),
    }
}

/// The obsolete Packet Block (type 2): interface id (u16), drops (u16), timestamp
/// high/low, captured and original lengths, data.
fn legacy_packet(body: &[u8], big: bool) -> Option<(u32, u64, &[u8], u32)> {
    if body.len() < 20 {
        return None;
    }
    let if_id = if big {
        u16::from_be_bytes([body[0], body[1]])
    } else {
        u16::from_le_bytes([body[0], body[1]])
    };
    let ts = (u64::from(u32_at(body, 4, big)) << 32) | u64::from(u32_at(body, 8, big));
    let caplen = u32_at(body, 12, big) as usize;
    let orig = u32_at(body, 16, big);
    let data = body.get(20..20 + caplen)?;
    Some((u32::from(if_id), ts, data, orig))
}

// Keep the block-type constants in one place: the writer's.
const _: () = assert!(EPB_TYPE == 6 && IDB_TYPE == 1);

#[cfg(test)]
mod tests {
    use super::super::writer::{CaptureWriter, WriterOptions};
    use super::*;
    use std::io::Cursor;

    fn read_all(bytes: Vec<u8>) -> VnetResult<(CaptureReader<Cursor<Vec<u8>>>, PacketBatch)> {
        let mut r = CaptureReader::new(Cursor::new(bytes), PathBuf::from("<memory>"))?;
        let mut out = PacketBatch::default();
        while r.read_batch(&mut out, 7)? > 0 {}
        Ok((r, out))
    }

    fn written(format: Format, frames: &[(&[u8], u64)]) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("vnetio-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-{}", format.as_str(), frames.len()));
        let mut w = CaptureWriter::create(
            &path,
            WriterOptions {
                format,
                if_name: Some("vn0".into()),
                filter: Some("icmp or udp".into()),
                ..WriterOptions::default()
            },
        )
        .unwrap();
        w.write_frames(frames.iter().copied()).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(path).unwrap();
        bytes
    }

    #[test]
    fn round_trip_both_formats() {
        let frames: Vec<(&[u8], u64)> = vec![
            (b"\x02\x00\x00\x00\x00\x01", 1_700_000_000_000_000_001),
            (b"", 1_700_000_000_999_999_999),
            (&[7u8; 1514], 5),
        ];
        for format in [Format::Pcap, Format::PcapNg] {
            let (r, out) = read_all(written(format, &frames)).unwrap();
            assert_eq!(r.format(), format);
            assert_eq!(out.len(), 3);
            for (i, (data, ts)) in frames.iter().enumerate() {
                assert_eq!(out.get(i).unwrap(), *data);
                assert_eq!(out.timestamp_ns(i).unwrap(), *ts);
            }
            let iface = &r.interfaces()[0];
            assert_eq!(iface.linktype, 1);
            if format == Format::PcapNg {
                assert_eq!(iface.name.as_deref(), Some("vn0"));
                assert_eq!(iface.filter.as_deref(), Some("icmp or udp"));
            }
        }
    }

    #[test]
    fn every_cut_is_an_error_naming_an_offset_or_a_clean_end() {
        let bytes = written(Format::PcapNg, &[(b"abcdef", 1), (b"gh", 2)]);
        // Block boundaries: the file read to any of these ends cleanly.
        let mut ok_cuts = vec![];
        for cut in 0..bytes.len() {
            match read_all(bytes[..cut].to_vec()) {
                Ok((_, out)) => ok_cuts.push((cut, out.len())),
                Err(Error::BadCapture { offset, .. }) => assert!(offset <= cut as u64),
                Err(e) => panic!("unexpected {e}"),
            }
        }
        // After the SHB, after the IDB, after the first EPB (never inside a block).
        let counts: Vec<usize> = ok_cuts.iter().map(|c| c.1).collect();
        assert_eq!(counts, vec![0, 0, 1], "{ok_cuts:?}");
    }

    #[test]
    fn big_endian_pcap_microseconds() {
        let mut b = vec![];
        b.extend_from_slice(&PCAP_MAGIC_US.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65535u32.to_be_bytes());
        b.extend_from_slice(&101u32.to_be_bytes());
        b.extend_from_slice(&10u32.to_be_bytes());
        b.extend_from_slice(&999_999u32.to_be_bytes());
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&60u32.to_be_bytes());
        b.extend_from_slice(b"\x45\x00");
        let (r, out) = read_all(b).unwrap();
        assert_eq!(r.interfaces()[0].linktype, 101);
        assert_eq!(out.timestamp_ns(0), Some(10_999_999_000));
        assert_eq!(r.truncated_frames(), 1);
    }

    #[test]
    fn resolutions() {
        assert_eq!(units_per_second(6), Some(1_000_000));
        assert_eq!(units_per_second(9), Some(1_000_000_000));
        assert_eq!(units_per_second(0x80 | 0x0a), Some(1024));
        assert_eq!(units_per_second(20), None);
        let i = Interface {
            linktype: 1,
            snaplen: 0,
            name: None,
            filter: None,
            units: 1024,
            offset_s: 1,
        };
        assert_eq!(i.ts_ns(1024 + 512), 2_500_000_000);
    }

    #[test]
    fn garbage_is_refused_with_an_offset() {
        let e = read_all(b"hello world".to_vec()).unwrap_err();
        assert!(e.to_string().contains("not a pcap or pcapng file"), "{e}");
        let e = read_all(vec![1, 2]).unwrap_err();
        assert!(e.to_string().contains("too short"), "{e}");
        let mut bytes = written(Format::PcapNg, &[(b"abcdef", 1)]);
        let n = bytes.len();
        bytes[n - 4] ^= 0xff; // trailing length no longer matches
        let e = read_all(bytes).unwrap_err();
        assert!(e.to_string().contains("byte offset"), "{e}");
    }
}
