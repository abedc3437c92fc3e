//! A pcap/pcapng writer that keeps up with a capture loop and never leaves a half-written
//! record behind.
//!
//! Records are built in a page-aligned buffer; when it holds [`BUFFER_BYTES`] its
//! page-aligned part is handed to a writer thread and the capture loop goes on filling a
//! second buffer, so it never waits for the disk unless [`BLOCKS`] buffers are all in
//! flight. The thread writes with `O_DIRECT` where the filesystem allows it.
//!
//! Why direct I/O: a capture file is written once and not read back soon, and at
//! 1514-byte frames a capture is ~700 MB/s. Through the page cache every one of those bytes
//! is copied by the CPU into a newly allocated page; measured on this project's 2-vCPU VMs
//! (whose free memory goes back to the hypervisor) that costs 6.9 s of CPU per 3 GB (`dd`,
//! 440 MB/s), while `O_DIRECT` writes the same 3 GB at 2 GB/s with 0.33 s of CPU, and the
//! capture loop lost 36% of 1514-byte frames with buffered writes (BENCHMARKS.md). High-rate
//! capture tools write capture files this way for the same reason (Arkime's default pcap
//! writer, ntop's n2disk); it also keeps a long capture from evicting everything else from
//! the page cache. Direct I/O needs aligned offsets, lengths and memory, so only whole
//! 4 KiB pages go that way: the unaligned tail of an explicit `flush`/`finish` goes through
//! a second, ordinary descriptor on the same file (and is rewritten by the next aligned
//! write). Filesystems that refuse `O_DIRECT` get ordinary writes
//! ([`CaptureWriter::direct_io`] tells which was used); `direct_io: false` asks for them.
//!
//! The writer remembers where every record not yet known to be in the file ends, so when a
//! write fails part-way (ENOSPC on a full disk, EIO) it truncates the file back to the end
//! of the last record that reached it complete: the file stays readable by tshark, scapy
//! and vnetio's own reader, and the error says how many frames it holds. After a failure
//! the writer refuses further frames with the same error. The same holds when the writer
//! thread ends without a word (killed on its own): waits for it notice that its task is
//! gone rather than block forever. The thread is started before the file is created, so a
//! thread that cannot start (EAGAIN: a process or thread limit) leaves no file behind.
//!
//! Why a small writer of our own rather than a crate: writing is a few fixed headers, and
//! the crates that write (`pcap-file`) take a generic `Write` that cannot tell how much of
//! a failed write reached the file, which is exactly what truncation back to a record
//! boundary needs; they also build a block object per frame where this copies the frame
//! once into the buffer.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{self};
use std::sync::Arc;

mod spool;

use super::{Format, DEFAULT_SNAPLEN, LINKTYPE_ETHERNET};
use crate::batch::NO_TIMESTAMP;
use crate::device::now_ns;
use crate::error::{Error, VnetResult};
use spool::{Block, Job, Sink, Spool};

/// Bytes buffered before the buffer's aligned part goes to the writer thread.
pub const BUFFER_BYTES: usize = 1 << 20;
/// Buffers per writer: one being filled, the others being written.
pub const BLOCKS: usize = 4;
/// Alignment of direct I/O offsets, lengths and memory (covers 512- and 4096-byte sectors).
const ALIGN: usize = 4096;
/// Largest snaplen: libpcap's MAXIMUM_SNAPLEN; tshark refuses longer records.
pub const MAX_SNAPLEN: u32 = 262_144;

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
/// pcapng Simple Packet Block type (frames without a timestamp).
pub const SPB_TYPE: u32 = 3;
/// Byte-order magic of a Section Header Block.
pub const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

const OPT_ENDOFOPT: u16 = 0;
const OPT_SHB_USERAPPL: u16 = 4;
const OPT_IF_NAME: u16 = 2;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_FILTER: u16 = 11;

/// What to write in the file's header, and how.
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
    /// Write whole pages with `O_DIRECT` when the filesystem allows it (see the module doc).
    pub direct_io: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            format: Format::PcapNg,
            snaplen: DEFAULT_SNAPLEN,
            linktype: LINKTYPE_ETHERNET,
            if_name: None,
            filter: None,
            direct_io: true,
        }
    }
}

/// A capture file being written.
pub struct CaptureWriter {
    /// The file, for unaligned tails and cutting back (None once finished).
    tail: Option<Sink>,
    direct_used: Arc<AtomicBool>,
    /// Whole-buffer granularity of the writer thread: 4096 (direct I/O), 1 for a stream.
    align: usize,
    spool: Spool,
    path: PathBuf,
    opts: WriterOptions,
    /// The buffer being filled; its bytes before `len` are the file from `base` on.
    cur: Block,
    free: Vec<Block>,
    /// End offset in the file of each record not yet known to be written, and whether it
    /// is a frame.
    records: VecDeque<(u64, bool)>,
    /// Bytes of the file written and complete (always at a record boundary).
    durable: u64,
    /// Frames in the file (complete) and frames accepted.
    durable_frames: u64,
    frames: u64,
    /// Frame bytes accepted (captured part, as stored).
    bytes: u64,
    /// Frames cut to the snaplen.
    truncated: u64,
    failed: Option<(io::ErrorKind, Option<i32>, String)>,
}

impl std::fmt::Debug for CaptureWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureWriter")
            .field("path", &self.path)
            .field("frames", &self.frames)
            .field("direct_io", &self.direct_io())
            .finish_non_exhaustive()
    }
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
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

/// Open `file` again with `O_DIRECT` (through /proc/self/fd, so it is the same file even if
/// the path changed); None when the filesystem or the system refuses.
fn reopen_direct(file: &File, path: &Path) -> Option<File> {
    let mut opts = OpenOptions::new();
    opts.write(true)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC);
    opts.open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .or_else(|_| opts.open(path))
        .ok()
}

impl CaptureWriter {
    /// Create (or truncate) `path` and write the file header.
    ///
    /// # Errors
    /// `InvalidArgument` for a snaplen of 0 or above [`MAX_SNAPLEN`], or options that do
    /// not fit the format (before the file is touched); `CaptureIo` when the file cannot
    /// be created or written.
    pub fn create(path: impl AsRef<Path>, opts: WriterOptions) -> VnetResult<Self> {
        let path = path.as_ref().to_path_buf();
        if opts.snaplen == 0 || opts.snaplen > MAX_SNAPLEN {
            return Err(Error::InvalidArgument(format!(
                "snaplen must be 1 to {MAX_SNAPLEN} (libpcap's maximum; tshark refuses longer \
                 records), not {}; {MAX_SNAPLEN} keeps whole frames",
                opts.snaplen
            )));
        }
        if opts.format == Format::PcapNg {
            if let Some(name) = &opts.if_name {
                check_option("the interface name", name)?;
            }
            if let Some(filter) = &opts.filter {
                check_option("the filter expression", filter)?;
            }
        }
        // The writer thread first: when it cannot start, no file has been touched.
        let mut spool = Spool::start().map_err(|source| Error::CaptureIo {
            step: "cannot start the capture writer thread",
            path: path.clone(),
            source,
            frames: None,
        })?;
        let file = File::create(&path).map_err(|source| Error::CaptureIo {
            step: "cannot create capture file",
            path: path.clone(),
            source,
            frames: None,
        })?;
        let stream = !file.metadata().is_ok_and(|m| m.file_type().is_file());
        let direct = if opts.direct_io && !stream {
            reopen_direct(&file, &path)
        } else {
            None
        };
        let direct_used = Arc::new(AtomicBool::new(direct.is_some()));
        let sink = Sink {
            file: Arc::new(file),
            direct,
            direct_used: Arc::clone(&direct_used),
            stream,
        };
        let tail = sink.cached();
        spool.begin(sink);
        let cap = BUFFER_BYTES + opts.snaplen as usize + 64;
        let mut w = CaptureWriter {
            tail: Some(tail),
            direct_used,
            align: if stream { 1 } else { ALIGN },
            spool,
            path,
            opts,
            cur: Block::new(cap),
            free: Vec::new(),
            records: VecDeque::new(),
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
        let opts = &self.opts;
        let buf = &mut self.cur;
        match opts.format {
            Format::Pcap => {
                buf.put_u32(PCAP_MAGIC_NS);
                buf.put_u16(2);
                buf.put_u16(4);
                buf.put_u32(0); // thiszone
                buf.put_u32(0); // sigfigs
                buf.put_u32(opts.snaplen);
                buf.put_u32(opts.linktype);
            }
            Format::PcapNg => {
                // Section Header Block.
                let start = buf.len;
                buf.put_u32(SHB_TYPE);
                buf.put_u32(0); // length, patched below
                buf.put_u32(BYTE_ORDER_MAGIC);
                buf.put_u16(1);
                buf.put_u16(0);
                buf.put(&(-1i64).to_le_bytes()); // section length: unknown
                let appl = format!("vnetio {}", crate::VERSION);
                buf.put_option(OPT_SHB_USERAPPL, appl.as_bytes());
                buf.put_option(OPT_ENDOFOPT, &[]);
                buf.finish_pcapng_block(start);
                self.records.push_back((buf.end(), false));
                // Interface Description Block.
                let start = buf.len;
                buf.put_u32(IDB_TYPE);
                buf.put_u32(0);
                buf.put_u16(opts.linktype as u16);
                buf.put_u16(0);
                buf.put_u32(opts.snaplen);
                if let Some(name) = &opts.if_name {
                    buf.put_option(OPT_IF_NAME, name.as_bytes());
                }
                if let Some(filter) = &opts.filter {
                    // libpcap's form: a first byte of 0 says "filter expression string".
                    let mut value = Vec::with_capacity(filter.len() + 1);
                    value.push(0);
                    value.extend_from_slice(filter.as_bytes());
                    buf.put_option(OPT_IF_FILTER, &value);
                }
                buf.put_option(OPT_IF_TSRESOL, &[9]);
                buf.put_option(OPT_ENDOFOPT, &[]);
                buf.finish_pcapng_block(start);
            }
        }
        self.records.push_back((self.cur.end(), false));
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header options.
    pub fn options(&self) -> &WriterOptions {
        &self.opts
    }

    /// Whether whole pages are written with `O_DIRECT` (false: the filesystem refused it,
    /// or `direct_io` was off).
    pub fn direct_io(&self) -> bool {
        self.direct_used.load(Relaxed)
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
        if self.failed.is_some() {
            self.durable
        } else {
            self.cur.end()
        }
    }

    /// Whether `finish` was called.
    pub fn is_closed(&self) -> bool {
        self.tail.is_none()
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
        if self.tail.is_none() {
            return Err(Error::InvalidArgument(format!(
                "capture file {} is closed; open a new Writer",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Append one frame received at `timestamp_ns` (0: now). Hands a full buffer to the
    /// writer thread.
    ///
    /// # Errors
    /// `CaptureIo` when a file write failed (see the module doc), or the writer is
    /// closed or failed earlier.
    pub fn write_frame(&mut self, frame: &[u8], timestamp_ns: u64) -> VnetResult<()> {
        self.write_frames([(frame, timestamp_ns)])
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
            if self.cur.len >= BUFFER_BYTES {
                self.spill()?;
            }
        }
        Ok(())
    }

    fn put_frame(&mut self, frame: &[u8], ts: u64) {
        let orig = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let caplen = orig.min(self.opts.snaplen);
        let data = &frame[..caplen as usize];
        let buf = &mut self.cur;
        match self.opts.format {
            Format::Pcap => {
                // pcap has no way to say "no time": such a frame gets the epoch.
                let ts = if ts == NO_TIMESTAMP { 0 } else { ts };
                buf.put_u32((ts / 1_000_000_000) as u32);
                buf.put_u32((ts % 1_000_000_000) as u32);
                buf.put_u32(caplen);
                buf.put_u32(orig);
                buf.put(data);
            }
            Format::PcapNg if ts == NO_TIMESTAMP => {
                // A Simple Packet Block: no time, interface 0, snaplen from its IDB.
                let pad = pad4(data.len());
                let total = (16 + data.len() + pad) as u32;
                buf.put_u32(SPB_TYPE);
                buf.put_u32(total);
                buf.put_u32(orig);
                buf.put(data);
                buf.put_zeros(pad);
                buf.put_u32(total);
            }
            Format::PcapNg => {
                let pad = pad4(data.len());
                let total = (32 + data.len() + pad) as u32;
                buf.put_u32(EPB_TYPE);
                buf.put_u32(total);
                buf.put_u32(0); // interface 0
                buf.put_u32((ts >> 32) as u32);
                buf.put_u32(ts as u32);
                buf.put_u32(caplen);
                buf.put_u32(orig);
                buf.put(data);
                buf.put_zeros(pad);
                buf.put_u32(total);
            }
        }
        self.records.push_back((self.cur.end(), true));
        self.frames += 1;
        self.bytes += u64::from(caplen);
        if caplen < orig {
            self.truncated += 1;
        }
    }

    /// Records up to file offset `upto` are in the file.
    fn advance(&mut self, upto: u64) {
        while let Some(&(end, frame)) = self.records.front() {
            if end > upto {
                break;
            }
            self.records.pop_front();
            self.durable = end;
            self.durable_frames += u64::from(frame);
        }
    }

    /// Take back one buffer the thread finished (waiting for it when `wait`), and its
    /// error. `Ok(false)` when none was ready.
    fn reap_one(&mut self, wait: bool) -> VnetResult<bool> {
        if self.spool.in_flight == 0 {
            return Ok(false);
        }
        let done = if wait {
            self.spool.wait_done()
        } else {
            match self.spool.done.try_recv() {
                Ok(d) => Some(d),
                Err(mpsc::TryRecvError::Empty) => return Ok(false),
                Err(mpsc::TryRecvError::Disconnected) => None,
            }
        };
        let Some(done) = done else {
            let lost = io::Error::other("the capture writer thread ended unexpectedly");
            return Err(self.fail(lost));
        };
        self.spool.in_flight -= 1;
        self.advance(done.upto);
        self.free.push(done.block);
        if let Some(e) = done.error {
            // The thread skips the buffers after a failed one: wait for them, then cut back.
            while self.spool.in_flight > 0 && self.spool.wait_done().is_some() {
                self.spool.in_flight -= 1;
            }
            return Err(self.fail(e));
        }
        Ok(true)
    }

    /// Take back the buffers the thread finished (all of them when `wait`).
    fn reap(&mut self, wait: bool) -> VnetResult<()> {
        while self.reap_one(wait)? {}
        Ok(())
    }

    /// Hand the buffer's whole pages to the writer thread; the rest (less than a page)
    /// starts the next buffer.
    fn spill(&mut self) -> VnetResult<()> {
        self.reap(false)?;
        let cut = self.cur.len / self.align * self.align;
        if cut == 0 {
            return Ok(());
        }
        let mut next = loop {
            if let Some(b) = self.free.pop() {
                break b;
            }
            if self.spool.in_flight + 1 < BLOCKS {
                break Block::new(self.cur.cap);
            }
            // Every buffer is being written: the disk is slower than the traffic.
            self.reap_one(true)?;
        };
        next.base = self.cur.base + cut as u64;
        next.len = 0;
        next.put(&self.cur.bytes()[cut..]);
        let full = std::mem::replace(&mut self.cur, next);
        let job = Job {
            block: full,
            len: cut,
        };
        let sent = self.spool.jobs.as_ref().map(|tx| tx.send(job));
        if !matches!(sent, Some(Ok(()))) {
            let lost = io::Error::other("the capture writer thread ended unexpectedly");
            return Err(self.fail(lost));
        }
        self.spool.in_flight += 1;
        Ok(())
    }

    /// Write the buffered records to the file and wait until they are there.
    ///
    /// # Errors
    /// `CaptureIo` when the write fails; the file is then cut back to its last complete
    /// record and the writer refuses further use.
    pub fn flush(&mut self) -> VnetResult<()> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        if self.tail.is_none() {
            return Ok(());
        }
        self.spill()?;
        self.reap(true)?;
        // The unaligned tail, through the ordinary descriptor; it stays in the buffer and
        // goes out again with the next whole page.
        let Some(mut sink) = self.tail.take() else {
            return Ok(());
        };
        let (base, tail) = (self.cur.base, self.cur.bytes());
        let result = sink.write_all_at(tail, base);
        self.tail = Some(sink);
        match result {
            Ok(()) => {
                self.advance(self.cur.end());
                Ok(())
            }
            Err((n, source)) => {
                self.advance(base + n);
                Err(self.fail(source))
            }
        }
    }

    /// Cut the file back to the last complete record that reached it, and remember the
    /// failure.
    fn fail(&mut self, source: io::Error) -> Error {
        let mut source = source;
        // (A pipe cannot be cut back: its reader saw what it saw.)
        if let Some(sink) = self.tail.as_ref().filter(|s| !s.stream) {
            if let Err(e) = sink.file.set_len(self.durable) {
                source = io::Error::new(
                    source.kind(),
                    format!("{source}; cutting the file back to its last complete record also failed: {e}"),
                );
            }
        }
        self.frames = self.durable_frames;
        self.records.clear();
        self.cur.len = 0;
        self.failed = Some((source.kind(), source.raw_os_error(), source.to_string()));
        Error::CaptureIo {
            step: "cannot write capture file",
            path: self.path.clone(),
            source,
            frames: Some(self.durable_frames),
        }
    }

    /// Write what is buffered, stop the writer thread and close the file. Idempotent; a
    /// writer that failed earlier closes without writing.
    ///
    /// # Errors
    /// As [`CaptureWriter::flush`].
    pub fn finish(&mut self) -> VnetResult<()> {
        let result = if self.failed.is_some() || self.tail.is_none() {
            Ok(())
        } else {
            self.flush()
        };
        self.spool.stop();
        self.tail = None;
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

#[cfg(test)]
mod tests;
