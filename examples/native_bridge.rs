//! Native baseline for the bridge-loop benchmark: plain `write()` / `read()`, one frame per
//! system call, on TAPs attached through the `tun-tap` crate (`common/tuntap.rs`).
//!
//! Run it inside the namespace that holds the bridge loop (see `python/vnetio/_topology.py`
//! and `benches/bridge_loop.py`):
//!
//! ```text
//! ip netns exec NS target/release/examples/native_bridge --size 64 --seconds 3
//! ```
//!
//! Without `--control` it attaches to both TAPs, waits until both bridge ports forward, runs
//! an unpaced writer thread (TAP A) and a reader thread (TAP B) for `--seconds`, and prints
//! one JSON line. With `--control` it prints `{"event":"ready",...}` once attached and then
//! obeys one command per stdin line, answering each with one JSON line (the protocol all the
//! benchmark's implementations share):
//!
//! * `noise SECONDS`: read with the writer idle; count every frame and our own frames.
//! * `run SECONDS`: the timed loop (writer + reader threads).
//! * `write COUNT`: write COUNT frames as fast as possible (writer side only).
//! * `drain COUNT`: time reading COUNT of our frames that are already queued (reader side).
//! * `capture FILE`: read every frame into a pcap file through a 1 MiB `BufWriter` until the
//!   next input line, then answer (the "native read + buffered write" row of
//!   `benches/capture_loop.py`; reader side).
//! * `quit` (or end of input).
//!
//! `--reader-only` attaches to TAP B only and `--writer-only` to TAP A only; both imply
//! `--control`. They serve the "reader-only ceiling": frames are queued in B's ring first,
//! then only the draining is timed.
//!
//! `--keep N` makes the reader keep its frames as a batch API must: N frames back to back in
//! an arena, two arenas in turn, instead of one reused buffer (the fair native counterpart
//! of a caller that holds one `recv_batch` result while it reads the next; see
//! BENCHMARKS.md, "Reader-only ceiling at 1514 B"). The benchmark's native rows do not use it.
//!
//! A frame counts as delivered only if it has the benchmark's size and starts with our
//! source MAC and `EtherType` (bytes `6..14`); anything else on the port is noise.

// A command-line tool reports on stdout by design.
#![allow(clippy::print_stdout)]
// Frame counts stay far below 2^52, so f64 rates are exact enough.
#![allow(clippy::cast_precision_loss)]

#[path = "common/tuntap.rs"]
mod tuntap;

use std::fs::File;
use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// Source MAC of every test frame (locally administered, ours); same as `_topology.SRC_MAC`.
const SRC_MAC: [u8; 6] = [0x02, 0x76, 0x6e, 0x10, 0x00, 0x01];
/// Unowned unicast destination (the bridge floods it); same as `_topology.DST_MAC`.
const DST_MAC: [u8; 6] = [0x02, 0x76, 0x6e, 0x10, 0x00, 0x02];
/// IEEE 802 local experimental `EtherType` 1.
const ETHERTYPE: u16 = 0x88B5;
/// Receive buffer: any frame the TAP can deliver at MTU 1500, plus headroom.
const RX_BUF: usize = 65_536;
/// How long a blocked reader waits before it rechecks its stop flags.
const POLL_MS: i32 = 100;

struct Options {
    tap_a: String,
    tap_b: String,
    size: usize,
    seconds: f64,
    control: bool,
    reader: bool,
    writer: bool,
    /// 0: read every frame into one reused buffer. N: keep N frames per batch, back to
    /// back in an arena, two arenas in turn (as a batch API whose caller holds one batch
    /// while the next is read).
    keep: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: native_bridge [--tap-a vnA] [--tap-b vnB] [--size 64] [--seconds 3] \
         [--control] [--reader-only | --writer-only] [--keep N]"
    );
    std::process::exit(2);
}

fn parse_options() -> Options {
    let mut opts = Options {
        tap_a: "vnA".into(),
        tap_b: "vnB".into(),
        size: 64,
        seconds: 3.0,
        control: false,
        reader: true,
        writer: true,
        keep: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--tap-a" => opts.tap_a = value(),
            "--tap-b" => opts.tap_b = value(),
            "--size" => opts.size = value().parse().unwrap_or_else(|_| usage()),
            "--seconds" => opts.seconds = value().parse().unwrap_or_else(|_| usage()),
            "--control" => opts.control = true,
            "--keep" => opts.keep = value().parse().unwrap_or_else(|_| usage()),
            "--reader-only" => {
                opts.writer = false;
                opts.control = true;
            }
            "--writer-only" => {
                opts.reader = false;
                opts.control = true;
            }
            _ => usage(),
        }
    }
    if !(60..=RX_BUF).contains(&opts.size) || !opts.reader && !opts.writer {
        usage();
    }
    opts
}

fn build_frame(size: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(size);
    frame.extend_from_slice(&DST_MAC);
    frame.extend_from_slice(&SRC_MAC);
    frame.extend_from_slice(&ETHERTYPE.to_be_bytes());
    frame.extend_from_slice(&0u64.to_be_bytes()); // sequence number, as the Python builder
    let pattern = (0..size - frame.len()).map(|i| (i & 0xFF) as u8);
    frame.extend(pattern);
    frame
}

fn signature() -> [u8; 8] {
    let mut sig = [0u8; 8];
    sig[..6].copy_from_slice(&SRC_MAC);
    sig[6..].copy_from_slice(&ETHERTYPE.to_be_bytes());
    sig
}

/// Reader state shared by the `noise`, `run` and `drain` phases.
struct Reader {
    tap: File,
    buf: Vec<u8>,
    size: usize,
    sig: [u8; 8],
    /// `--keep`: frames per batch (0: one reused buffer), the two arenas, which one is
    /// being filled, where the next frame goes and how many frames it holds.
    keep: usize,
    arenas: [Vec<u8>; 2],
    current: usize,
    offset: usize,
    kept: usize,
}

#[derive(Default)]
struct ReadCount {
    own: u64,
    other: u64,
    /// Reader-side time from the phase start until it stopped (drained or timed out).
    seconds: f64,
}

impl Reader {
    fn open(name: &str, size: usize, keep: usize) -> io::Result<Self> {
        let tap = tuntap::attach(name, tuntap::Kind::Tap, false)?;
        tuntap::set_nonblocking(&tap)?;
        // Untouched arena pages are never faulted in: only what frames use is ever mapped.
        let arena = || vec![0; if keep > 0 { keep * RX_BUF } else { 0 }];
        Ok(Self {
            tap,
            buf: vec![0; RX_BUF],
            size,
            sig: signature(),
            keep,
            arenas: [arena(), arena()],
            current: 0,
            offset: 0,
            kept: 0,
        })
    }

    /// Read one frame if one is queued; `None` when the ring is empty.
    #[inline]
    fn read_one(&mut self) -> io::Result<Option<bool>> {
        if self.keep > 0 {
            return self.read_one_kept();
        }
        match (&self.tap).read(&mut self.buf) {
            Ok(n) => Ok(Some(n == self.size && self.buf[6..14] == self.sig)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(Some(false)),
            Err(e) => Err(e),
        }
    }

    /// `read_one` into the next slot of the current arena (`--keep`).
    fn read_one_kept(&mut self) -> io::Result<Option<bool>> {
        let arena = &mut self.arenas[self.current];
        let at = self.offset;
        match (&self.tap).read(&mut arena[at..at + RX_BUF]) {
            Ok(n) => {
                let own = n == self.size && arena[at + 6..at + 14] == self.sig;
                self.offset += n;
                self.kept += 1;
                if self.kept == self.keep {
                    (self.current, self.offset, self.kept) = (1 - self.current, 0, 0);
                }
                Ok(Some(own))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(Some(false)),
            Err(e) => Err(e),
        }
    }

    /// Read until `done` is set *and* the ring is empty. The seconds end when the reader
    /// first found the ring empty after its last frame, so a final idle wait is not timed.
    fn read_until(&mut self, start: Instant, done: &AtomicBool) -> io::Result<ReadCount> {
        let mut count = ReadCount::default();
        let mut fresh = true;
        let mut end = start;
        loop {
            if let Some(own) = self.read_one()? {
                fresh = true;
                if own {
                    count.own += 1;
                } else {
                    count.other += 1;
                }
            } else {
                if fresh {
                    fresh = false;
                    end = Instant::now();
                }
                if done.load(Ordering::Acquire) {
                    break;
                }
                tuntap::wait_readable(&self.tap, POLL_MS);
            }
        }
        count.seconds = (end - start).as_secs_f64();
        Ok(count)
    }

    /// Read until `done` is set and the ring is empty, appending every frame to a pcap
    /// file (microsecond timestamps, Ethernet) through a 1 MiB buffered writer.
    fn capture_until(&mut self, path: &str, done: &AtomicBool) -> io::Result<ReadCount> {
        let start = Instant::now();
        let mut out = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        for field in [0xa1b2_c3d4_u32, 0x0004_0002, 0, 0, 262_144, 1] {
            out.write_all(&field.to_le_bytes())?; // magic, version 2.4, zone, sigfigs, snaplen, linktype
        }
        let mut count = ReadCount::default();
        loop {
            match (&self.tap).read(&mut self.buf) {
                Ok(n) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    let len = n as u32;
                    for field in [now.as_secs() as u32, now.subsec_micros(), len, len] {
                        out.write_all(&field.to_le_bytes())?;
                    }
                    out.write_all(&self.buf[..n])?;
                    if n == self.size && self.buf[6..14] == self.sig {
                        count.own += 1;
                    } else {
                        count.other += 1;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if done.load(Ordering::Acquire) {
                        break;
                    }
                    tuntap::wait_readable(&self.tap, POLL_MS);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        out.flush()?;
        count.seconds = start.elapsed().as_secs_f64();
        Ok(count)
    }

    /// Time reading `want` of our frames (already queued); gives up after 1 s of silence.
    fn drain(&mut self, want: u64) -> io::Result<ReadCount> {
        let start = Instant::now();
        let mut count = ReadCount::default();
        let mut idle_since: Option<Instant> = None;
        while count.own < want {
            match self.read_one()? {
                Some(true) => count.own += 1,
                Some(false) => count.other += 1,
                None => {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(1) {
                        break;
                    }
                    tuntap::wait_readable(&self.tap, POLL_MS);
                    continue;
                }
            }
            idle_since = None;
        }
        count.seconds = start.elapsed().as_secs_f64();
        Ok(count)
    }
}

struct Writer {
    tap: File,
    frame: Vec<u8>,
}

#[derive(Default)]
struct WriteCount {
    written: u64,
    errors: u64,
    seconds: f64,
}

impl Writer {
    fn open(name: &str, size: usize) -> io::Result<Self> {
        Ok(Self {
            tap: tuntap::attach(name, tuntap::Kind::Tap, false)?,
            frame: build_frame(size),
        })
    }

    fn write_until(&self, stop: &AtomicBool) -> WriteCount {
        let start = Instant::now();
        let mut count = WriteCount::default();
        while !stop.load(Ordering::Relaxed) {
            // A TAP takes a frame whole or not at all: Ok is one frame written.
            if (&self.tap).write(&self.frame).is_ok() {
                count.written += 1;
            } else {
                count.errors += 1;
            }
        }
        count.seconds = start.elapsed().as_secs_f64();
        count
    }

    fn write_count(&self, n: u64) -> WriteCount {
        let start = Instant::now();
        let mut count = WriteCount::default();
        while count.written < n {
            if (&self.tap).write(&self.frame).is_ok() {
                count.written += 1;
            } else {
                count.errors += 1;
                if count.errors > n {
                    break;
                }
            }
        }
        count.seconds = start.elapsed().as_secs_f64();
        count
    }
}

/// The timed loop: writer thread on A, reader thread on B, for `seconds`.
fn run_loop(writer: &Writer, reader: &mut Reader, seconds: f64) -> io::Result<String> {
    let stop = AtomicBool::new(false);
    let writer_done = AtomicBool::new(false);
    let barrier = Barrier::new(3);
    let (w, r) = thread::scope(|s| {
        let wh = s.spawn(|| {
            barrier.wait();
            let count = writer.write_until(&stop);
            writer_done.store(true, Ordering::Release);
            count
        });
        let rh = s.spawn(|| {
            barrier.wait();
            reader.read_until(Instant::now(), &writer_done)
        });
        barrier.wait();
        thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        let w = wh.join().expect("writer thread panicked");
        let r = rh.join().expect("reader thread panicked");
        (w, r)
    });
    let r = r?;
    Ok(format!(
        "{{\"event\":\"run\",\"impl\":\"native\",\"size\":{},\"written\":{},\"write_errors\":{},\
         \"write_seconds\":{:.6},\"delivered\":{},\"noise\":{},\"seconds\":{:.6},\
         \"delivered_per_s\":{:.1}}}",
        reader.size,
        w.written,
        w.errors,
        w.seconds,
        r.own,
        r.other,
        r.seconds,
        r.own as f64 / r.seconds,
    ))
}

fn noise(reader: &mut Reader, seconds: f64) -> io::Result<String> {
    let start = Instant::now();
    let done = AtomicBool::new(false);
    let r = thread::scope(|s| {
        let h = s.spawn(|| reader.read_until(Instant::now(), &done));
        thread::sleep(Duration::from_secs_f64(seconds));
        done.store(true, Ordering::Release);
        h.join().expect("reader thread panicked")
    })?;
    Ok(format!(
        "{{\"event\":\"noise\",\"own\":{},\"frames\":{},\"seconds\":{:.6}}}",
        r.own,
        r.own + r.other,
        start.elapsed().as_secs_f64()
    ))
}

/// Wait (inside the namespace) until both TAPs' bridge ports forward; for standalone runs.
fn wait_forwarding(names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for name in names {
        let path = format!("/sys/class/net/{name}/brport/state");
        while std::fs::read_to_string(&path).map_or(true, |s| s.trim() != "3") {
            if Instant::now() > deadline {
                eprintln!("warning: {name} is not forwarding after 5 s");
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn reply(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let opts = parse_options();
    if let Err(e) = real_main(&opts) {
        reply(&format!(
            "{{\"event\":\"error\",\"error\":\"{}\"}}",
            e.to_string().replace('"', "'")
        ));
        std::process::exit(1);
    }
}

fn real_main(opts: &Options) -> io::Result<()> {
    // Reader first: B must have an fd attached (carrier) before anything is written to A.
    let mut reader = if opts.reader {
        Some(Reader::open(&opts.tap_b, opts.size, opts.keep)?)
    } else {
        None
    };
    let writer = if opts.writer {
        Some(Writer::open(&opts.tap_a, opts.size)?)
    } else {
        None
    };

    if !opts.control {
        wait_forwarding(&[&opts.tap_a, &opts.tap_b]);
        let (Some(w), Some(r)) = (writer.as_ref(), reader.as_mut()) else {
            unreachable!("standalone mode opens both sides");
        };
        reply(&run_loop(w, r, opts.seconds)?);
        return Ok(());
    }

    reply(&format!(
        "{{\"event\":\"ready\",\"impl\":\"native\",\"pid\":{},\"reader\":{},\"writer\":{}}}",
        std::process::id(),
        opts.reader,
        opts.writer
    ));
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    while let Some(line) = lines.next() {
        let line = line?;
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let arg = words.next().unwrap_or("0");
        let seconds: f64 = arg.parse().unwrap_or(0.0);
        let count: u64 = arg.parse().unwrap_or(0);
        let answer = match (cmd, writer.as_ref(), reader.as_mut()) {
            ("run", Some(w), Some(r)) => run_loop(w, r, seconds)?,
            ("noise", _, Some(r)) => noise(r, seconds)?,
            ("write", Some(w), _) => {
                let c = w.write_count(count);
                format!(
                    "{{\"event\":\"write\",\"written\":{},\"write_errors\":{},\"seconds\":{:.6}}}",
                    c.written, c.errors, c.seconds
                )
            }
            ("drain", _, Some(r)) => {
                let c = r.drain(count)?;
                format!(
                    "{{\"event\":\"drain\",\"delivered\":{},\"noise\":{},\"seconds\":{:.6}}}",
                    c.own, c.other, c.seconds
                )
            }
            ("capture", _, Some(r)) => {
                let done = AtomicBool::new(false);
                let c = thread::scope(|s| {
                    let h = s.spawn(|| r.capture_until(arg, &done));
                    let _ = lines.next(); // any line (or the end of input) stops the capture
                    done.store(true, Ordering::Release);
                    h.join().expect("capture thread panicked")
                })?;
                format!(
                    "{{\"event\":\"done\",\"delivered\":{},\"noise\":{},\"seconds\":{:.6}}}",
                    c.own, c.other, c.seconds
                )
            }
            ("quit" | "", _, _) => break,
            _ => format!("{{\"event\":\"error\",\"error\":\"cannot {cmd} in this mode\"}}"),
        };
        reply(&answer);
    }
    Ok(())
}
