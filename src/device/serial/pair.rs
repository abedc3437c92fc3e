//! [`SerialPair`]: a virtual null-modem cable. Two pseudo-terminals whose slave ends are
//! the user-visible ttys (with stable symlink names), joined by a relay thread that moves
//! bytes master to master — optionally at a line rate, optionally with injected faults.
//!
//! The relay is one thread polling both masters and a wake-up eventfd. Each direction
//! holds at most one buffer of bytes in flight: it reads from its source only when the
//! previous read has been written out, so a reader that stops reading pushes back on the
//! writer through the kernel's pty queues, as hardware flow control would (the time spent
//! so is counted as `blocked`).
//!
//! Pacing (`baud`): a byte takes 10 bit times (start bit, 8 data bits, stop bit: 8N1), and
//! each direction keeps a line clock — the time its line is next free. Bytes are read in
//! quanta of about 5 ms of line time and written when the clock allows; the clock
//! advances by their line time from where it was (not from "now"), so timer lateness is
//! made up and the average rate is exact. An idle line does not bank credit beyond
//! [`CATCH_UP`].
//!
//! Faults: per byte, with probabilities `drop`, `corrupt` (XOR with a random non-zero
//! mask: the byte always changes) and `delay` (the line stalls for `delay_for` before the
//! byte), drawn from a seeded generator per direction (`fastrand`'s wyrand), so a seed
//! reproduces the same faults for the same byte sequence.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::pty::Pty;
use crate::error::{Error, VnetResult};
use crate::sys;
use crate::sys::tty::poll_many;

/// Bytes the relay moves per read without pacing.
const BUF: usize = 64 * 1024;
/// Line time read at once when pacing (the granularity of the line clock).
const QUANTUM: Duration = Duration::from_millis(5);
/// How far behind "now" a paced line's clock may be before it restarts at "now": the
/// timer lateness the relay makes up for bytes that arrived on an idle line.
const CATCH_UP: Duration = Duration::from_millis(20);
/// The same for bytes that were already waiting behind a full quantum (the sender is ahead
/// of the line): relay-thread lateness up to this much (a busy machine) is made up, so the
/// average rate stays exact. An idle line never banks credit beyond [`CATCH_UP`].
const MAX_CATCH_UP: Duration = Duration::from_secs(1);
/// How long a source that reported an error is left alone before it is read again.
const BACKOFF: Duration = Duration::from_millis(50);

/// Faults injected per byte, in both directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that a byte is dropped.
    pub drop: f64,
    /// Probability that a byte is corrupted (XORed with a random non-zero mask).
    pub corrupt: f64,
    /// Probability that the line stalls for `delay_for` before a byte.
    pub delay: f64,
    /// How long a stall lasts.
    pub delay_for: Duration,
    /// Seed of the generator (each direction derives its own from it).
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            drop: 0.0,
            corrupt: 0.0,
            delay: 0.0,
            delay_for: Duration::from_millis(10),
            seed: 0,
        }
    }
}

impl Faults {
    fn check(&self) -> VnetResult<()> {
        for (name, p) in [
            ("drop", self.drop),
            ("corrupt", self.corrupt),
            ("delay", self.delay),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::InvalidArgument(format!(
                    "fault rate {name} must be between 0 and 1, not {p}"
                )));
            }
        }
        if self.drop + self.corrupt + self.delay > 1.0 {
            return Err(Error::InvalidArgument(format!(
                "fault rates drop + corrupt + delay must not exceed 1 (they are {})",
                self.drop + self.corrupt + self.delay
            )));
        }
        if self.delay_for > Duration::from_secs(60) {
            return Err(Error::InvalidArgument(
                "a fault delay must be at most 60 s".into(),
            ));
        }
        Ok(())
    }

    fn any(&self) -> bool {
        self.drop > 0.0 || self.corrupt > 0.0 || self.delay > 0.0
    }
}

/// How to make a [`SerialPair`].
#[derive(Debug, Clone, Default)]
pub struct PairOptions {
    /// Symlink names for the two ends (`None`: no links; the ends are `/dev/pts/N`).
    pub links: Option<[String; 2]>,
    /// Where the symlinks go.
    pub link_dir: PathBuf,
    /// Pace each direction at this line rate in bit/s (10 bits per byte).
    pub baud: Option<u32>,
    /// Faults to inject.
    pub faults: Option<Faults>,
}

/// What one direction of the relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineStats {
    /// Bytes read from the sending end.
    pub bytes_in: u64,
    /// Bytes written to the receiving end.
    pub bytes_out: u64,
    /// Bytes dropped by fault injection.
    pub dropped: u64,
    /// Bytes corrupted by fault injection.
    pub corrupted: u64,
    /// Stalls injected.
    pub delays: u64,
    /// Time bytes waited because the receiving end's queue was full (nobody read).
    pub blocked: Duration,
}

#[derive(Debug, Default)]
struct DirCounters {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    dropped: AtomicU64,
    corrupted: AtomicU64,
    delays: AtomicU64,
    blocked_ns: AtomicU64,
    /// While blocked: when it started, in ns since `Counters::epoch` plus one (0: not
    /// blocked), so a snapshot taken meanwhile includes the block so far.
    blocked_since: AtomicU64,
}

/// Both directions' counters.
#[derive(Debug)]
struct Counters {
    epoch: Instant,
    dirs: [DirCounters; 2],
}

impl Counters {
    fn new() -> Self {
        Counters {
            epoch: Instant::now(),
            dirs: Default::default(),
        }
    }

    fn snapshot(&self, i: usize) -> LineStats {
        let mut s = self.dirs[i].snapshot();
        let since = self.dirs[i].blocked_since.load(Relaxed);
        if since != 0 {
            let now = self.epoch.elapsed().as_nanos() as u64 + 1;
            s.blocked += Duration::from_nanos(now.saturating_sub(since));
        }
        s
    }

    fn block(&self, i: usize, at: Instant) {
        let ns = at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1;
        self.dirs[i].blocked_since.store(ns, Relaxed);
    }

    fn unblock(&self, i: usize, since: Instant) {
        self.dirs[i].blocked_since.store(0, Relaxed);
        self.dirs[i]
            .blocked_ns
            .fetch_add(since.elapsed().as_nanos() as u64, Relaxed);
    }
}

impl DirCounters {
    fn snapshot(&self) -> LineStats {
        LineStats {
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            corrupted: self.corrupted.load(Relaxed),
            delays: self.delays.load(Relaxed),
            blocked: Duration::from_nanos(self.blocked_ns.load(Relaxed)),
        }
    }
}

/// A virtual null-modem cable: what is written to one end is read from the other.
pub struct SerialPair {
    paths: [PathBuf; 2],
    ptys: [PathBuf; 2],
    links: Vec<PathBuf>,
    baud: Option<u32>,
    faults: Option<Faults>,
    counters: Arc<Counters>,
    wake: File,
    thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for SerialPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialPair")
            .field("paths", &self.paths)
            .field("ptys", &self.ptys)
            .field("baud", &self.baud)
            .finish_non_exhaustive()
    }
}

fn check_link_name(name: &str) -> VnetResult<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(Error::InvalidArgument(format!(
            "a serial link name must be a plain file name (no '/', not empty, not \".\" or \
             \"..\"), not {name:?}"
        )));
    }
    Ok(())
}

/// Make `link` point to `target`, replacing a stale link (one whose target is gone, left by
/// a process that died) but nothing else.
fn make_link(link: &Path, target: &Path) -> VnetResult<()> {
    if let Ok(meta) = std::fs::symlink_metadata(link) {
        let stale = meta.file_type().is_symlink() && std::fs::metadata(link).is_err();
        if !stale {
            return Err(Error::os(
                format!("symlink {}", link.display()),
                io::Error::from_raw_os_error(libc::EEXIST),
            )
            .with_hint(
                "another serial pair (or another file) has that name; choose other names or \
                 another link_dir",
            ));
        }
        std::fs::remove_file(link)
            .map_err(|e| Error::os(format!("remove stale {}", link.display()), e))?;
    }
    std::os::unix::fs::symlink(target, link).map_err(|e| {
        Error::os(
            format!("symlink {} -> {}", link.display(), target.display()),
            e,
        )
    })
}

/// Remove `link` if it still points to `target`.
fn remove_link(link: &Path, target: &Path) {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        let _ = std::fs::remove_file(link);
    }
}

impl SerialPair {
    /// Open two pseudo-terminals, make the links, start the relay.
    pub fn open(opts: &PairOptions) -> VnetResult<SerialPair> {
        if let Some(names) = &opts.links {
            for n in names {
                check_link_name(n)?;
            }
            if names[0] == names[1] {
                return Err(Error::InvalidArgument(format!(
                    "the two link names must differ (both are {:?})",
                    names[0]
                )));
            }
        }
        if let Some(b) = opts.baud {
            if !(50..=100_000_000).contains(&b) {
                return Err(Error::InvalidArgument(format!(
                    "baud must be between 50 and 100000000 bit/s, not {b}"
                )));
            }
        }
        let faults = opts.faults.filter(Faults::any);
        if let Some(f) = &faults {
            f.check()?;
        }
        let ttys = [Pty::open()?, Pty::open()?];
        let pts = [ttys[0].path().to_owned(), ttys[1].path().to_owned()];
        let mut links: Vec<PathBuf> = Vec::new();
        let paths = match &opts.links {
            None => pts.clone(),
            Some(names) => {
                for (name, target) in names.iter().zip(&pts) {
                    let link = opts.link_dir.join(name);
                    if let Err(e) = make_link(&link, target) {
                        for (made, t) in links.iter().zip(&pts) {
                            remove_link(made, t);
                        }
                        return Err(e);
                    }
                    links.push(link);
                }
                [links[0].clone(), links[1].clone()]
            }
        };
        let counters = Arc::new(Counters::new());
        let wake_fd = sys::eventfd().map_err(|e| Error::os("eventfd", e))?;
        let wake = File::from(wake_fd);
        let thread =
            Relay::new(ttys, &wake, opts.baud, faults, Arc::clone(&counters)).and_then(|relay| {
                std::thread::Builder::new()
                    .name("vnetio-serial".into())
                    .spawn(move || relay.run())
                    .map_err(|e| Error::os("spawn the serial relay thread", e))
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                for (l, t) in links.iter().zip(&pts) {
                    remove_link(l, t);
                }
                return Err(e);
            }
        };
        Ok(SerialPair {
            paths,
            ptys: pts,
            links,
            baud: opts.baud,
            faults,
            counters,
            wake,
            thread: Mutex::new(Some(thread)),
            closed: AtomicBool::new(false),
        })
    }

    /// The two ends as users open them: the symlinks, or the ptys when there are none.
    pub fn paths(&self) -> &[PathBuf; 2] {
        &self.paths
    }

    /// The two ends' pseudo-terminals, `/dev/pts/N`.
    pub fn ptys(&self) -> &[PathBuf; 2] {
        &self.ptys
    }

    /// The line rate, if paced.
    pub fn baud(&self) -> Option<u32> {
        self.baud
    }

    /// The faults injected, if any.
    pub fn faults(&self) -> Option<Faults> {
        self.faults
    }

    /// Counters of each direction: `[end 0 -> end 1, end 1 -> end 0]`.
    pub fn stats(&self) -> [LineStats; 2] {
        [self.counters.snapshot(0), self.counters.snapshot(1)]
    }

    /// Whether [`SerialPair::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Stop the relay, close both ptys (users see a hang-up), remove the links.
    /// Idempotent; bytes still in flight are lost, as on a cable pulled out.
    pub fn close(&self) {
        if self.closed.swap(true, Relaxed) {
            return;
        }
        let _ = (&self.wake).write(&1u64.to_ne_bytes());
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        for (link, target) in self.links.iter().zip(&self.ptys) {
            remove_link(link, target);
        }
    }
}

impl Drop for SerialPair {
    fn drop(&mut self) {
        self.close();
    }
}

/// One direction of the relay.
struct Dir {
    src: usize,
    dst: usize,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stalls before the byte at these buffer positions (ascending).
    stalls: VecDeque<usize>,
    hold_until: Option<Instant>,
    /// Paced lines: when the line is free for the next byte.
    line_free: Instant,
    blocked_since: Option<Instant>,
    src_idle_until: Option<Instant>,
    rng: Option<fastrand::Rng>,
    /// The last read filled a whole buffer: the sender has more waiting.
    last_full: bool,
    /// The bytes pending were waiting behind the previous ones (a backlog, not an idle line).
    continues: bool,
}

impl Dir {
    fn pending(&self) -> bool {
        self.start < self.end
    }
}

struct Relay {
    ptys: [Pty; 2],
    wake: File,
    byte_time: Option<Duration>,
    quantum: usize,
    faults: Option<Faults>,
    counters: Arc<Counters>,
    dirs: [Dir; 2],
}

impl Relay {
    fn new(
        ptys: [Pty; 2],
        wake: &File,
        baud: Option<u32>,
        faults: Option<Faults>,
        counters: Arc<Counters>,
    ) -> VnetResult<Relay> {
        let wake = wake.try_clone().map_err(|e| Error::os("dup eventfd", e))?;
        let byte_time = baud.map(|b| Duration::from_nanos(10_000_000_000 / u64::from(b)));
        let quantum = byte_time.map_or(BUF, |bt| {
            (QUANTUM.as_nanos() / bt.as_nanos().max(1)).clamp(1, BUF as u128) as usize
        });
        let now = Instant::now();
        let dir = |src: usize| Dir {
            src,
            dst: 1 - src,
            buf: vec![0; quantum],
            start: 0,
            end: 0,
            stalls: VecDeque::new(),
            hold_until: None,
            line_free: now,
            blocked_since: None,
            src_idle_until: None,
            last_full: false,
            continues: false,
            rng: faults.map(|f| {
                fastrand::Rng::with_seed(
                    f.seed ^ (src as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                )
            }),
        };
        Ok(Relay {
            ptys,
            wake,
            byte_time,
            quantum,
            faults,
            counters,
            dirs: [dir(0), dir(1)],
        })
    }

    fn run(mut self) {
        loop {
            let now = Instant::now();
            let mut wake_at: Option<Instant> = None;
            let mut events: [libc::c_short; 2] = [0, 0];
            for i in 0..2 {
                if let Some(t) = self.flush(i, now) {
                    wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
                }
                let d = &self.dirs[i];
                if d.pending() {
                    if d.blocked_since.is_some() {
                        events[d.dst] |= libc::POLLOUT;
                    }
                } else if let Some(idle) = d.src_idle_until.filter(|t| *t > now) {
                    wake_at = Some(wake_at.map_or(idle, |w| w.min(idle)));
                } else if self.byte_time.is_some() && d.line_free > now {
                    wake_at = Some(wake_at.map_or(d.line_free, |w| w.min(d.line_free)));
                } else {
                    events[d.src] |= libc::POLLIN;
                }
            }
            let timeout = wake_at.map_or(-1, |t| {
                let ns = t.saturating_duration_since(Instant::now()).as_nanos();
                ns.div_ceil(1_000_000).min(60_000) as libc::c_int
            });
            let fds = [
                (self.ptys[0].master().as_fd(), events[0]),
                (self.ptys[1].master().as_fd(), events[1]),
                (self.wake.as_fd(), libc::POLLIN),
            ];
            let Ok(revents) = poll_many(&fds, timeout) else {
                std::thread::sleep(BACKOFF);
                continue;
            };
            if revents[2] != 0 {
                for (i, d) in self.dirs.iter_mut().enumerate() {
                    if let Some(since) = d.blocked_since.take() {
                        self.counters.unblock(i, since);
                    }
                }
                return;
            }
            for i in 0..2 {
                let src = self.dirs[i].src;
                if events[src] & libc::POLLIN != 0 && revents[src] != 0 {
                    self.fill(i);
                }
            }
        }
    }

    /// Read what the source has (up to a buffer, or a quantum when paced) and inject faults.
    fn fill(&mut self, dir: usize) {
        let (faults, counters) = (self.faults, &self.counters.dirs[dir]);
        let d = &mut self.dirs[dir];
        let mut master = self.ptys[d.src].master();
        let n = match master.read(&mut d.buf[..self.quantum]) {
            Ok(0) => {
                d.src_idle_until = Some(Instant::now() + BACKOFF);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => {
                // EIO: the slave side went away for a moment; try again a little later.
                d.src_idle_until = Some(Instant::now() + BACKOFF);
                return;
            }
        };
        d.start = 0;
        d.end = n;
        d.continues = d.last_full;
        d.last_full = n == self.quantum;
        if let (Some(f), Some(rng)) = (faults, d.rng.as_mut()) {
            let (mut kept, mut dropped, mut corrupted) = (0usize, 0u64, 0u64);
            let (p_drop, p_corrupt) = (f.drop, f.drop + f.corrupt);
            let p_delay = p_corrupt + f.delay;
            for r in 0..n {
                let mut b = d.buf[r];
                let x = rng.f64();
                if x < p_drop {
                    dropped += 1;
                    continue;
                }
                if x < p_corrupt {
                    b ^= rng.u8(1..=255);
                    corrupted += 1;
                } else if x < p_delay {
                    d.stalls.push_back(kept);
                }
                d.buf[kept] = b;
                kept += 1;
            }
            d.end = kept;
            counters.dropped.fetch_add(dropped, Relaxed);
            counters.corrupted.fetch_add(corrupted, Relaxed);
        }
        // Counted last, so a snapshot that sees these bytes read also sees their faults.
        counters.bytes_in.fetch_add(n as u64, Relaxed);
    }

    /// Write what is pending, as far as the receiver, the stalls and the line clock allow.
    /// Returns when to try again if a timer (stall, pacing) is what stops it.
    fn flush(&mut self, i: usize, now: Instant) -> Option<Instant> {
        let (all, byte_time) = (&*self.counters, self.byte_time);
        let counters = &all.dirs[i];
        let delay_for = self.faults.map_or(Duration::ZERO, |f| f.delay_for);
        let d = &mut self.dirs[i];
        let mut dst = self.ptys[d.dst].master();
        loop {
            if !d.pending() {
                if let Some(since) = d.blocked_since.take() {
                    all.unblock(i, since);
                }
                return None;
            }
            if let Some(h) = d.hold_until {
                if h > now {
                    return Some(h);
                }
                d.hold_until = None;
            }
            if d.stalls.front() == Some(&d.start) {
                d.stalls.pop_front();
                counters.delays.fetch_add(1, Relaxed);
                let until = now + delay_for;
                d.hold_until = Some(until);
                return Some(until);
            }
            if byte_time.is_some() && d.line_free > now {
                return Some(d.line_free);
            }
            let limit = d.stalls.front().map_or(d.end, |&s| s.min(d.end));
            match dst.write(&d.buf[d.start..limit]) {
                Ok(n) => {
                    d.start += n;
                    counters.bytes_out.fetch_add(n as u64, Relaxed);
                    if let Some(since) = d.blocked_since.take() {
                        all.unblock(i, since);
                    }
                    if let Some(bt) = byte_time {
                        let late_ok = if d.continues { MAX_CATCH_UP } else { CATCH_UP };
                        let base = if d.line_free + late_ok < now {
                            now
                        } else {
                            d.line_free
                        };
                        d.line_free = base + bt * n as u32;
                    }
                    if n == 0 {
                        d.blocked_since = Some(now);
                        all.block(i, now);
                        return None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if d.blocked_since.is_none() {
                        d.blocked_since = Some(now);
                        all.block(i, now);
                    }
                    return None;
                }
                Err(_) => {
                    // The receiving pty failed (it should not while the relay holds its
                    // slave): the bytes are lost, and counted as dropped.
                    counters
                        .dropped
                        .fetch_add((d.end - d.start) as u64, Relaxed);
                    d.start = d.end;
                    d.stalls.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::serial::pty::open_tty;
    use std::os::fd::AsFd;

    fn read_exact_within(f: &File, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while out.len() < n && Instant::now() < deadline {
            let _ = poll_many(&[(f.as_fd(), libc::POLLIN)], 50);
            match (&*f).read(&mut buf) {
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        out
    }

    fn write_all_nb(f: &File, mut data: &[u8]) {
        while !data.is_empty() {
            match (&*f).write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = poll_many(&[(f.as_fd(), libc::POLLOUT)], 50);
                }
                Err(e) => panic!("write: {e}"),
            }
        }
    }

    /// `read()` until `done` holds of it or 10 s pass; the last value read (the caller
    /// asserts on it). The relay counts a write just after making it: a fixed wait for
    /// that is a bet on a loaded machine.
    fn settled<T>(mut read: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = read();
            if done(&value) || Instant::now() >= deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn pair(opts: &PairOptions) -> (SerialPair, File, File) {
        let p = SerialPair::open(opts).unwrap();
        let a = open_tty(&p.paths()[0]).unwrap();
        let b = open_tty(&p.paths()[1]).unwrap();
        (p, a, b)
    }

    #[test]
    fn bytes_cross_both_ways_and_are_counted() {
        let (p, a, b) = pair(&PairOptions::default());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let writer = {
            let a = a.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || write_all_nb(&a, &data))
        };
        assert_eq!(
            read_exact_within(&b, data.len(), Duration::from_secs(20)),
            data
        );
        writer.join().unwrap();
        write_all_nb(&b, b"back");
        assert_eq!(read_exact_within(&a, 4, Duration::from_secs(5)), b"back");
        let [ab, ba] = settled(
            || p.stats(),
            |[ab, ba]| (ab.bytes_out, ba.bytes_out) == (200_000, 4),
        );
        assert_eq!((ab.bytes_in, ab.bytes_out), (200_000, 200_000));
        assert_eq!((ba.bytes_in, ba.bytes_out), (4, 4));
    }

    #[test]
    fn links_are_made_and_removed() {
        let dir = std::env::temp_dir().join(format!("vnetio-serial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let opts = PairOptions {
            links: Some(["a0".into(), "a1".into()]),
            link_dir: dir.clone(),
            ..PairOptions::default()
        };
        let p = SerialPair::open(&opts).unwrap();
        assert_eq!(std::fs::read_link(dir.join("a0")).unwrap(), p.ptys()[0]);
        // The names are taken while the pair lives.
        assert!(SerialPair::open(&opts).is_err());
        p.close();
        assert!(std::fs::symlink_metadata(dir.join("a0")).is_err());
        // A stale link (its pty gone) is replaced.
        std::os::unix::fs::symlink("/dev/pts/999999", dir.join("a0")).unwrap();
        let p = SerialPair::open(&opts).unwrap();
        assert_eq!(std::fs::read_link(dir.join("a0")).unwrap(), p.ptys()[0]);
        drop(p);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_options_are_refused() {
        for links in [
            ["a".into(), "a".into()],
            ["a/b".into(), "c".into()],
            [String::new(), "c".into()],
        ] {
            let opts = PairOptions {
                links: Some(links),
                ..PairOptions::default()
            };
            assert!(matches!(
                SerialPair::open(&opts),
                Err(Error::InvalidArgument(_))
            ));
        }
        let opts = PairOptions {
            faults: Some(Faults {
                drop: 0.7,
                corrupt: 0.7,
                ..Faults::default()
            }),
            ..PairOptions::default()
        };
        assert!(matches!(
            SerialPair::open(&opts),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn pacing_holds_the_line_rate() {
        // 2400 B at 19200 bit/s (1920 B/s): 1.25 s.
        let (p, a, b) = pair(&PairOptions {
            baud: Some(19_200),
            ..PairOptions::default()
        });
        let data = vec![0x55u8; 2400];
        let t = Instant::now();
        write_all_nb(&a, &data);
        assert_eq!(
            read_exact_within(&b, data.len(), Duration::from_secs(10)),
            data
        );
        let took = t.elapsed().as_secs_f64();
        assert!((1.15..1.45).contains(&took), "took {took} s");
        drop(p);
    }

    #[test]
    fn faults_are_seeded_and_counted() {
        let run = |seed| {
            let (p, a, b) = pair(&PairOptions {
                faults: Some(Faults {
                    drop: 0.01,
                    corrupt: 0.01,
                    seed,
                    ..Faults::default()
                }),
                ..PairOptions::default()
            });
            let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
            // How many bytes the relay passed on, once it has handled every byte written.
            let expected = Arc::new(AtomicU64::new(u64::MAX));
            let reader = {
                let expected = Arc::clone(&expected);
                std::thread::spawn(move || {
                    // Everything that arrives, until the relay's count of it has come (not
                    // "until the line is quiet": the relay may pause on a loaded machine).
                    let mut got = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while (got.len() as u64) < expected.load(Relaxed) && Instant::now() < deadline {
                        got.extend(read_exact_within(&b, 1 << 20, Duration::from_millis(50)));
                    }
                    got
                })
            };
            write_all_nb(&a, &data);
            let s = settled(
                || p.stats()[0],
                |s| s.bytes_in == data.len() as u64 && s.bytes_out + s.dropped == s.bytes_in,
            );
            expected.store(s.bytes_out, Relaxed);
            let got = reader.join().unwrap();
            let s = p.stats()[0];
            assert_eq!(s.bytes_in, data.len() as u64);
            assert_eq!(got.len() as u64, s.bytes_out);
            assert_eq!(s.bytes_out + s.dropped, s.bytes_in);
            assert!(s.dropped > 100 && s.corrupted > 100, "{s:?}");
            (got, s)
        };
        let (one, s1) = run(7);
        let (two, s2) = run(7);
        assert_eq!(
            (one, s1.dropped, s1.corrupted),
            (two, s2.dropped, s2.corrupted)
        );
    }

    #[test]
    fn nobody_reading_is_blocked_time() {
        let (p, a, _b) = pair(&PairOptions::default());
        // Far more than the receiving pty queues; nobody reads end 1.
        let a2 = a.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let chunk = vec![1u8; 4096];
            let deadline = Instant::now() + Duration::from_millis(300);
            while Instant::now() < deadline {
                match (&a2).write(&chunk) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        });
        writer.join().unwrap();
        // Blocked time includes a block still going on: it grows while nobody reads.
        settled(|| p.stats()[0], |s| s.blocked >= Duration::from_millis(100));
        p.close();
        let s = p.stats()[0];
        assert!(s.blocked >= Duration::from_millis(100), "{s:?}");
    }
}
