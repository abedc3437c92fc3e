//! A buffered pcap/pcapng writer that never leaves a half-written record behind.
//!
//! Records are built in one reusable buffer and written to the file when it holds
//! [`BUFFER_BYTES`] (and on `flush`/`finish`). The writer remembers where each buffered
//! record ends, so when a write fails part-way (ENOSPC on a full disk, EIO) it truncates
//! the file back to the end of the last record that reached it complete: the file stays
//! readable by tshark, scapy and vnetio's own reader, and the error says how many frames
//! it holds. After a failure the writer refuses further frames with the same error.
//!
//! Why a small writer of our own rather than a crate: writing is a few fixed headers, and
//! the crates that write (`pcap-file`) take a generic `Write` that cannot tell how much of
//! a failed write reached the file, which is exactly what truncation back to a record
//! boundary needs; they also build a block object per frame where this copies the frame
//! once into the buffer.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Format, DEFAULT_SNAPLEN, LINKTYPE_ETHERNET};
use crate::device::now_ns;
use crate::error::{Error, VnetResult};

/// Bytes buffered before a write to the file.
pub const BUFFER_BYTES: usize = 1 << 20;

/// pcap magic for nanosecond timestamps.
pub const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
/// pcap magic for microsecond timestamps.
pub const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
/// pcapng block types and magic numbers.
pub const SHB_TYPE: u32 = 0x0a0d_0d0a;
/// Interface Description Block.
pub const IDB_TYPE: u32 = 1;
/// Enhanced Packet Block.
pub const EPB_TYPE: u32 = 6;
/// Byte-order magic of a Section Header Block.
pub const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

const OPT_ENDOFOPT: u16 = 0;
const OPT_SHB_USERAPPL: u16 = 4;
const OPT_IF_NAME: u16 = 2;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_FILTER: u16 = 11;

/// What to write in the file's header.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// pcap or pcapng.
    pub format: Format,
    /// Longest part of a frame kept (longer frames are cut, their original length kept).
    pub snaplen: u32,
    /// LINKTYPE_* of the frames.
    pub linktype: u32,
    /// Interface name (pcapng `if_name`).
    pub if_name: Option<String>,
    /// Capture filter expression (pcapng `if_filter`, libpcap string form).
    pub filter: Option<String>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            format: Format::PcapNg,
            snaplen: DEFAULT_SNAPLEN,
            linktype: LINKTYPE_ETHERNET,
            if_name: None,
            filter: None,
        }
    }
}

/// A capture file being written.
#[derive(Debug)]
pub struct CaptureWriter {
    file: Option<File>,
    path: PathBuf,
    opts: WriterOptions,
    buf: Vec<u8>,
    /// End offset in `buf` of each buffered record, and whether it is a frame.
    ends: Vec<(usize, bool)>,
    /// Bytes of the file written and complete (always at a record boundary).
    durable: u64,
    /// Frames in the file (complete) and frames buffered.
    durable_frames: u64,
    frames: u64,
    /// Frame bytes accepted (captured part, as stored).
    bytes: u64,
    /// Frames cut to the snaplen.
    truncated: u64,
    failed: Option<(io::ErrorKind, Option<i32>, String)>,
}

fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn put_option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    put_u16(buf, code);
    put_u16(buf, value.len() as u16);
    buf.extend_from_slice(value);
    buf.resize(buf.len() + pad4(value.len()), 0);
}

/// A pcapng option value must fit its 16-bit length field.
fn check_option(what: &str, value: &str) -> VnetResult<()> {
    if value.len() + 1 > usize::from(u16::MAX) {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes long; a pcapng option holds at most 65534",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "{what} contains a NUL character"
        )));
    }
    Ok(())
}

impl CaptureWriter {
    /// Create (or truncate) `path` and write the file header.
    ///
    /// # Errors
    /// `InvalidArgument` for a snaplen of 0 or options that do not fit the format (before
    /// the file is touched); `CaptureIo` when the file cannot be created or written.
    pub fn create(path: impl AsRef<Path>, opts: WriterOptions) -> VnetResult<Self> {
        let path = path.as_ref().to_path_buf();
        if opts.snaplen == 0 {
            return Err(Error::InvalidArgument(
                "snaplen must be at least 1 (262144 keeps whole frames)".into(),
            ));
        }
        if opts.format == Format::PcapNg {
            if let Some(name) = &opts.if_name {
                check_option("the interface name", name)?;
            }
            if let Some(filter) = &opts.filter {
                check_option("the filter expression", filter)?;
            }
        }
        let file = File::create(&path).map_err(|source| Error::CaptureIo {
            step: "cannot create capture file",
            path: path.clone(),
            source,
            frames: None,
        })?;
        let mut w = CaptureWriter {
            file: Some(file),
            path,
            opts,
            buf: Vec::with_capacity(BUFFER_BYTES + 64 * 1024),
            ends: Vec::new(),
            durable: 0,
            durable_frames: 0,
            frames: 0,
            bytes: 0,
            truncated: 0,
            failed: None,
        };
        w.put_header();
        w.flush()?;
        Ok(w)
    }

    fn put_header(&mut self) {
        let buf = &mut self.buf;
        match self.opts.format {
            Format::Pcap => {
                put_u32(buf, PCAP_MAGIC_NS);
                put_u16(buf, 2);
                put_u16(buf, 4);
                put_u32(buf, 0); // thiszone
                put_u32(buf, 0); // sigfigs
                put_u32(buf, self.opts.snaplen);
                put_u32(buf, self.opts.linktype);
            }
            Format::PcapNg => {
                // Section Header Block.
                let start = buf.len();
                put_u32(buf, SHB_TYPE);
                put_u32(buf, 0); // length, patched below
                put_u32(buf, BYTE_ORDER_MAGIC);
                put_u16(buf, 1);
                put_u16(buf, 0);
                buf.extend_from_slice(&(-1i64).to_le_bytes()); // section length: unknown
                let appl = format!("vnetio {}", crate::VERSION);
                put_option(buf, OPT_SHB_USERAPPL, appl.as_bytes());
                put_option(buf, OPT_ENDOFOPT, &[]);
                finish_block(buf, start);
                self.ends.push((buf.len(), false));
                // Interface Description Block.
                let start = buf.len();
                put_u32(buf, IDB_TYPE);
                put_u32(buf, 0);
                put_u16(buf, self.opts.linktype as u16);
                put_u16(buf, 0);
                put_u32(buf, self.opts.snaplen);
                if let Some(name) = &self.opts.if_name {
                    put_option(buf, OPT_IF_NAME, name.as_bytes());
                }
                if let Some(filter) = &self.opts.filter {
                    // libpcap's form: a first byte of 0 says "filter expression string".
                    let mut value = Vec::with_capacity(filter.len() + 1);
                    value.push(0);
                    value.extend_from_slice(filter.as_bytes());
                    put_option(buf, OPT_IF_FILTER, &value);
                }
                put_option(buf, OPT_IF_TSRESOL, &[9]);
                put_option(buf, OPT_ENDOFOPT, &[]);
                finish_block(buf, start);
            }
        }
        self.ends.push((self.buf.len(), false));
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header options.
    pub fn options(&self) -> &WriterOptions {
        &self.opts
    }

    /// Frames accepted so far (buffered ones included; after a write failure, only those
    /// in the file).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frame bytes accepted so far (as stored: cut to the snaplen).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Frames cut to the snaplen.
    pub fn truncated_frames(&self) -> u64 {
        self.truncated
    }

    /// Size of the file once the buffer is written (header included).
    pub fn file_bytes(&self) -> u64 {
        self.durable + self.buf.len() as u64
    }

    /// Whether `finish` was called.
    pub fn is_closed(&self) -> bool {
        self.file.is_none()
    }

    fn failed_error(&self) -> Option<Error> {
        self.failed
            .as_ref()
            .map(|(kind, errno, text)| Error::CaptureIo {
                step: "capture file is unusable after an earlier write error",
                path: self.path.clone(),
                source: errno.map_or_else(
                    || io::Error::new(*kind, text.clone()),
                    io::Error::from_raw_os_error,
                ),
                frames: Some(self.durable_frames),
            })
    }

    fn check_usable(&self) -> VnetResult<()> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        if self.file.is_none() {
            return Err(Error::InvalidArgument(format!(
                "capture file {} is closed; open a new Writer",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Append one frame received at `timestamp_ns` (0: now). Writes the buffer to the
    /// file when it is full.
    ///
    /// # Errors
    /// `CaptureIo` when the file write fails (see the module doc), or the writer is
    /// closed or failed earlier.
    pub fn write_frame(&mut self, frame: &[u8], timestamp_ns: u64) -> VnetResult<()> {
        self.check_usable()?;
        let ts = if timestamp_ns == 0 {
            now_ns()
        } else {
            timestamp_ns
        };
        self.put_frame(frame, ts);
        if self.buf.len() >= BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Append several frames with their timestamps (0: now, taken once for the call).
    ///
    /// # Errors
    /// As [`CaptureWriter::write_frame`].
    pub fn write_frames<'a>(
        &mut self,
        frames: impl IntoIterator<Item = (&'a [u8], u64)>,
    ) -> VnetResult<()> {
        self.check_usable()?;
        let mut now = 0;
        for (frame, ts) in frames {
            let ts = if ts != 0 {
                ts
            } else {
                if now == 0 {
                    now = now_ns();
                }
                now
            };
            self.put_frame(frame, ts);
            if self.buf.len() >= BUFFER_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn put_frame(&mut self, frame: &[u8], ts: u64) {
        let orig = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let caplen = orig.min(self.opts.snaplen);
        let data = &frame[..caplen as usize];
        let buf = &mut self.buf;
        match self.opts.format {
            Format::Pcap => {
                put_u32(buf, (ts / 1_000_000_000) as u32);
                put_u32(buf, (ts % 1_000_000_000) as u32);
                put_u32(buf, caplen);
                put_u32(buf, orig);
                buf.extend_from_slice(data);
            }
            Format::PcapNg => {
                let pad = pad4(data.len());
                let total = (32 + data.len() + pad) as u32;
                put_u32(buf, EPB_TYPE);
                put_u32(buf, total);
                put_u32(buf, 0); // interface 0
                put_u32(buf, (ts >> 32) as u32);
                put_u32(buf, ts as u32);
                put_u32(buf, caplen);
                put_u32(buf, orig);
                buf.extend_from_slice(data);
                buf.resize(buf.len() + pad, 0);
                put_u32(buf, total);
            }
        }
        self.ends.push((buf.len(), true));
        self.frames += 1;
        self.bytes += u64::from(caplen);
        if caplen < orig {
            self.truncated += 1;
        }
    }

    /// Write the buffered records to the file.
    ///
    /// # Errors
    /// `CaptureIo` when the write fails; the file is then cut back to its last complete
    /// record and the writer refuses further use.
    pub fn flush(&mut self) -> VnetResult<()> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut done = 0;
        let result = loop {
            if done == self.buf.len() {
                break Ok(());
            }
            match file.write(&self.buf[done..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => {
                self.durable += self.buf.len() as u64;
                self.durable_frames += self.ends.iter().filter(|(_, f)| *f).count() as u64;
                self.buf.clear();
                self.ends.clear();
                Ok(())
            }
            Err(source) => Err(self.fail(source, done)),
        }
    }

    /// Cut the file back to the last complete record within the `done` bytes that
    /// reached it, and remember the failure.
    fn fail(&mut self, source: io::Error, done: usize) -> Error {
        let complete = self.ends.partition_point(|(end, _)| *end <= done);
        let good_end = if complete == 0 {
            0
        } else {
            self.ends[complete - 1].0
        };
        self.durable_frames += self.ends[..complete].iter().filter(|(_, f)| *f).count() as u64;
        self.durable += good_end as u64;
        let mut source = source;
        if let Some(file) = self.file.as_mut() {
            if let Err(e) = file.set_len(self.durable) {
                source = io::Error::new(
                    source.kind(),
                    format!("{source}; cutting the file back to its last complete record also failed: {e}"),
                );
            }
        }
        self.frames = self.durable_frames;
        self.buf.clear();
        self.ends.clear();
        self.failed = Some((source.kind(), source.raw_os_error(), source.to_string()));
        Error::CaptureIo {
            step: "cannot write capture file",
            path: self.path.clone(),
            source,
            frames: Some(self.durable_frames),
        }
    }

    /// Write what is buffered and close the file. Idempotent; a writer that failed
    /// earlier closes without writing.
    ///
    /// # Errors
    /// As [`CaptureWriter::flush`].
    pub fn finish(&mut self) -> VnetResult<()> {
        let result = if self.failed.is_some() || self.file.is_none() {
            Ok(())
        } else {
            self.flush()
        };
        self.file = None;
        result
    }
}

impl Drop for CaptureWriter {
    fn drop(&mut self) {
        // Best effort: the bindings call finish() and report errors; a dropped writer
        // still leaves a complete file.
        let _ = self.finish();
    }
}

/// Patch a pcapng block's two length fields once its body is in place.
fn finish_block(buf: &mut Vec<u8>, start: usize) {
    let total = (buf.len() - start + 4) as u32;
    buf[start + 4..start + 8].copy_from_slice(&total.to_le_bytes());
    put_u32(buf, total);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vnetio-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn pcap_layout() {
        let path = tmp("a.pcap");
        let mut w = CaptureWriter::create(
            &path,
            WriterOptions {
                format: Format::Pcap,
                snaplen: 4,
                linktype: 101,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        w.write_frame(b"abcdef", 1_500_000_000_123_456_789).unwrap();
        w.finish().unwrap();
        let b = std::fs::read(&path).unwrap();
        assert_eq!(&b[0..4], &PCAP_MAGIC_NS.to_le_bytes());
        assert_eq!(&b[16..20], &4u32.to_le_bytes());
        assert_eq!(&b[20..24], &101u32.to_le_bytes());
        assert_eq!(&b[24..28], &1_500_000_000u32.to_le_bytes());
        assert_eq!(&b[28..32], &123_456_789u32.to_le_bytes());
        assert_eq!(&b[32..36], &4u32.to_le_bytes());
        assert_eq!(&b[36..40], &6u32.to_le_bytes());
        assert_eq!(&b[40..], b"abcd");
        assert_eq!(w.truncated_frames(), 1);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn pcapng_blocks_are_aligned_and_self_consistent() {
        let path = tmp("a.pcapng");
        let mut w = CaptureWriter::create(
            &path,
            WriterOptions {
                if_name: Some("vn0".into()),
                filter: Some("udp".into()),
                ..WriterOptions::default()
            },
        )
        .unwrap();
        w.write_frames([(&b"12345"[..], 7), (&b""[..], 8)]).unwrap();
        w.finish().unwrap();
        let b = std::fs::read(&path).unwrap();
        let mut at = 0;
        let mut types = vec![];
        while at < b.len() {
            let ty = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            let trailer = u32::from_le_bytes(b[at + len - 4..at + len].try_into().unwrap());
            assert_eq!(trailer as usize, len);
            types.push(ty);
            at += len;
        }
        assert_eq!(at, b.len());
        assert_eq!(types, vec![SHB_TYPE, IDB_TYPE, EPB_TYPE, EPB_TYPE]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn failure_cuts_back_to_a_record_boundary() {
        let path = tmp("fail.pcap");
        let mut w = CaptureWriter::create(
            &path,
            WriterOptions {
                format: Format::Pcap,
                ..WriterOptions::default()
            },
        )
        .unwrap();
        w.write_frames((0..3).map(|_| (&[0u8; 10][..], 1))).unwrap();
        // A write that stopped 30 bytes in: the first record (16 + 10 bytes) is complete.
        let partial = w.buf[..30].to_vec();
        w.file.as_mut().unwrap().write_all(&partial).unwrap();
        let err = w.fail(io::Error::from_raw_os_error(libc::ENOSPC), 30);
        assert_eq!(w.frames(), 1);
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(err.to_string().contains("1 frames"), "{err}");
        assert!(w.write_frame(b"x", 1).is_err());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 26);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn bad_options_are_refused_before_the_file_is_made() {
        let path = tmp("never.pcapng");
        let opts = WriterOptions {
            filter: Some("a\0b".into()),
            ..WriterOptions::default()
        };
        assert!(CaptureWriter::create(&path, opts).is_err());
        assert!(!path.exists());
        let zero = WriterOptions {
            snaplen: 0,
            ..WriterOptions::default()
        };
        assert!(CaptureWriter::create(&path, zero).is_err());
        assert!(!path.exists());
    }
}
