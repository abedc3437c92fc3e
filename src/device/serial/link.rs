//! [`SlipLink`]: IP over a serial line. RFC 1055 framing ([`super::slip`]) between a tty
//! and a packet device, in two Rust threads — what `slattach` plus the kernel's `slip`
//! driver do, without the kernel module.
//!
//! - `rx` reads the line, decodes frames, drops and counts what is not a whole IP packet
//!   with valid checksums ([`super::slip::check_packet`]), and writes the rest to the
//!   device as one batch per read.
//! - `tx` receives batches from the device, encodes every packet of a batch into one
//!   buffer and writes it to the line (waiting for the line as long as it takes: a slow
//!   line pushes back on the device, whose own queue then drops, as a kernel TUN does).
//!
//! The device is either a vnetio `Tun` ([`SlipLink::bridge`]: packets reach the kernel's
//! IP stack) or, without one, an in-memory loopback pair ([`SlipLink::adapter`]): the link
//! itself is then the adapter — its [`Device`] methods are the far loopback end's — so
//! receive filters, capture and asyncio work on it as on any adapter.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::pty::open_tty;
use super::slip::{self, Decoder, Reject};
use crate::batch::PacketBatch;
use crate::device::loopback::{self, LoopbackEnd, Overflow};
use crate::device::{now_ns, Device, Stats};
use crate::error::{Error, VnetResult};
use crate::filter::bpf::Program;
use crate::filter::Placement;
use crate::sys;
use crate::sys::tty;
use crate::wire::Medium;

/// How long a thread waits on the device before checking whether it should stop.
const SLICE: Duration = Duration::from_millis(50);
/// Pause after a line error (a hung-up pty reports it on every poll).
const BACKOFF_MS: libc::c_int = 100;
/// Packets taken from the device per batch.
const BATCH: usize = 256;

/// Options of a [`SlipLink`].
#[derive(Debug, Clone, Copy)]
pub struct LinkOptions {
    /// Largest IP packet carried, each way (the SLIP MTU).
    pub mtu: usize,
    /// Adapter mode: packets the receive queue holds before it drops.
    pub capacity: usize,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            mtu: slip::RFC1055_MTU,
            capacity: 1024,
        }
    }
}

/// What a [`SlipLink`] has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Bytes read from the line.
    pub line_bytes_in: u64,
    /// Bytes written to the line.
    pub line_bytes_out: u64,
    /// Packets from the line handed to the device.
    pub packets_in: u64,
    /// Packets from the device put on the line.
    pub packets_out: u64,
    /// Empty frames (`END END`), not an error.
    pub empty: u64,
    /// Frames dropped for a bad escape sequence.
    pub bad_escape: u64,
    /// Frames dropped for being longer than the MTU.
    pub over_mtu: u64,
    /// Frames dropped for not being an IP packet (framed line noise).
    pub noise: u64,
    /// Packets dropped because a checksum did not verify (damaged on the line).
    pub bad_checksum: u64,
    /// Packets the device refused (larger than its MTU, or its queue was full or closed).
    pub refused: u64,
    /// Packets from the device larger than the MTU, not sent.
    pub oversize: u64,
    /// Failed reads or writes on the line (e.g. its other end hung up).
    pub line_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    line_bytes_in: AtomicU64,
    line_bytes_out: AtomicU64,
    packets_in: AtomicU64,
    packets_out: AtomicU64,
    empty: AtomicU64,
    bad_escape: AtomicU64,
    over_mtu: AtomicU64,
    noise: AtomicU64,
    bad_checksum: AtomicU64,
    refused: AtomicU64,
    oversize: AtomicU64,
    line_errors: AtomicU64,
}

struct Shared {
    counters: Counters,
    stop: AtomicBool,
    wake: File,
}

/// IP over a serial line. See the module documentation.
pub struct SlipLink {
    mtu: usize,
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Adapter mode: the end the caller receives from and sends to, and the end the link's
    /// threads drive.
    ends: Option<(Arc<LoopbackEnd>, Arc<LoopbackEnd>)>,
    /// Bridge mode: the device's name, for messages.
    bridged_to: Option<String>,
    closed: AtomicBool,
}

/// Open a tty device for a link: read-write, non-blocking, raw mode, at `baud` if given
/// (a pty ignores the speed; a real serial port needs it).
pub fn open_line(path: &Path, baud: Option<u32>) -> VnetResult<File> {
    let file = open_tty(path)?;
    tty::make_raw(file.as_fd(), baud).map_err(|e| {
        let err = Error::os(format!("raw mode on {}", path.display()), e);
        if baud.is_some() {
            err.with_hint("is it a terminal, and is the speed a standard rate (9600, 115200…)?")
        } else {
            err.with_hint("is it a terminal (a serial port or a pty)?")
        }
    })?;
    Ok(file)
}

/// A link's own descriptor for the open terminal `fd` (a duplicate: the caller keeps
/// `fd`). The shared file description is made non-blocking and, for a terminal, raw.
pub fn line_from_fd(fd: RawFd, baud: Option<u32>) -> VnetResult<File> {
    let dup = tty::dup_cloexec(fd).map_err(|e| Error::os("dup the line's descriptor", e))?;
    tty::set_nonblocking(dup.as_fd()).map_err(|e| Error::os("O_NONBLOCK on the line", e))?;
    if tty::is_tty(dup.as_fd()) {
        tty::make_raw(dup.as_fd(), baud).map_err(|e| Error::os("raw mode on the line", e))?;
    }
    Ok(File::from(dup))
}

impl SlipLink {
    fn start(
        line: File,
        dev: Arc<dyn Device>,
        opts: LinkOptions,
        ends: Option<(Arc<LoopbackEnd>, Arc<LoopbackEnd>)>,
        bridged_to: Option<String>,
    ) -> VnetResult<SlipLink> {
        if !(68..=65_535).contains(&opts.mtu) {
            return Err(Error::InvalidArgument(format!(
                "mtu must be between 68 and 65535, not {}",
                opts.mtu
            )));
        }
        let wake = File::from(sys::eventfd().map_err(|e| Error::os("eventfd", e))?);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            wake,
        });
        let this = SlipLink {
            mtu: opts.mtu,
            shared: Arc::clone(&shared),
            threads: Mutex::new(Vec::new()),
            ends,
            bridged_to,
            closed: AtomicBool::new(false),
        };
        let line2 = line
            .try_clone()
            .map_err(|e| Error::os("dup the line's descriptor", e))?;
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(body)
                .map_err(|e| Error::os("spawn a SLIP thread", e))
        };
        let (s, d, mtu) = (Arc::clone(&shared), Arc::clone(&dev), opts.mtu);
        let rx = spawn(
            "vnetio-slip-rx",
            Box::new(move || rx_loop(&line, &*d, &s, mtu)),
        )?;
        this.threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(rx);
        let s = Arc::clone(&shared);
        // On failure `this` is dropped, which stops the thread already started.
        let tx = spawn(
            "vnetio-slip-tx",
            Box::new(move || tx_loop(&line2, &*dev, &s, mtu)),
        )?;
        this.threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(tx);
        Ok(this)
    }

    /// Bridge `line` and the packet device `dev` (a TUN: IP packets). `name` is the
    /// device's, for messages. Closing the link leaves the device open.
    pub fn bridge(
        line: File,
        dev: Arc<dyn Device>,
        name: &str,
        opts: LinkOptions,
    ) -> VnetResult<SlipLink> {
        if dev.medium() != Medium::Ip {
            return Err(Error::InvalidArgument(format!(
                "SLIP carries IP packets: bridge it to a Tun, not to the {} adapter {name}",
                dev.medium().as_str()
            )));
        }
        Self::start(line, dev, opts, None, Some(name.to_owned()))
    }

    /// The link as an adapter of its own: packets from the line are received from it,
    /// packets sent to it go on the line.
    pub fn adapter(line: File, opts: LinkOptions) -> VnetResult<SlipLink> {
        if !(68..=65_535).contains(&opts.mtu) {
            return Err(Error::InvalidArgument(format!(
                "mtu must be between 68 and 65535, not {}",
                opts.mtu
            )));
        }
        let (outer, inner) = loopback::pair(opts.capacity, Medium::Ip, opts.mtu, Overflow::Drop)?;
        let (outer, inner) = (Arc::new(outer), Arc::new(inner));
        let dev: Arc<dyn Device> = Arc::clone(&inner) as Arc<dyn Device>;
        Self::start(line, dev, opts, Some((outer, inner)), None)
    }

    /// The SLIP MTU.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The device this link bridges to (`None`: the link is the adapter).
    pub fn bridged_to(&self) -> Option<&str> {
        self.bridged_to.as_deref()
    }

    /// The link's counters.
    pub fn link_stats(&self) -> LinkStats {
        let c = &self.shared.counters;
        LinkStats {
            line_bytes_in: c.line_bytes_in.load(Relaxed),
            line_bytes_out: c.line_bytes_out.load(Relaxed),
            packets_in: c.packets_in.load(Relaxed),
            packets_out: c.packets_out.load(Relaxed),
            empty: c.empty.load(Relaxed),
            bad_escape: c.bad_escape.load(Relaxed),
            over_mtu: c.over_mtu.load(Relaxed),
            noise: c.noise.load(Relaxed),
            bad_checksum: c.bad_checksum.load(Relaxed),
            refused: c.refused.load(Relaxed),
            oversize: c.oversize.load(Relaxed),
            line_errors: c.line_errors.load(Relaxed),
        }
    }

    fn outer(&self) -> VnetResult<&LoopbackEnd> {
        match (&self.ends, &self.bridged_to) {
            (Some((outer, _)), _) => Ok(outer),
            (None, name) => Err(Error::InvalidArgument(format!(
                "this SlipLink bridges the line to the adapter {}: packets from the line go \
                 there, so receive and send on that adapter",
                name.as_deref().unwrap_or("?")
            ))),
        }
    }
}

impl Drop for SlipLink {
    fn drop(&mut self) {
        self.close();
    }
}

impl Device for SlipLink {
    fn medium(&self) -> Medium {
        Medium::Ip
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn recv_batch(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        self.outer()?.recv_batch(batch, max, wait)
    }

    fn send_frames(&self, frames: &[&[u8]]) -> VnetResult<usize> {
        self.outer()?.send_frames(frames)
    }

    fn check_frames(&self, frames: &[&[u8]]) -> VnetResult<()> {
        self.outer()?.check_frames(frames)
    }

    fn stats(&self) -> VnetResult<Stats> {
        if let Some((outer, _)) = &self.ends {
            return outer.stats();
        }
        let s = self.link_stats();
        Ok(Stats {
            rx_frames: s.packets_in,
            tx_frames: s.packets_out,
            rx_errors: s.bad_escape + s.over_mtu + s.noise + s.bad_checksum,
            rx_dropped: s.refused,
            tx_dropped: s.oversize,
            rx_filtered: Some(0),
            ..Stats::default()
        })
    }

    fn close(&self) {
        if self.closed.swap(true, Relaxed) {
            return;
        }
        self.shared.stop.store(true, Relaxed);
        let _ = (&self.shared.wake).write(&1u64.to_ne_bytes());
        if let Some((outer, inner)) = &self.ends {
            outer.close();
            inner.close();
        }
        let threads = std::mem::take(
            &mut *self
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for t in threads {
            let _ = t.join();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    fn raw_fd(&self) -> VnetResult<RawFd> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.outer()?.raw_fd()
    }

    fn set_filter(
        &self,
        program: Option<Program>,
        placement: Option<Placement>,
    ) -> VnetResult<Option<Placement>> {
        self.outer()?.set_filter(program, placement)
    }

    fn filter_placement(&self) -> Option<Placement> {
        self.ends.as_ref()?.0.filter_placement()
    }
}

/// Wait up to `timeout_ms` for `events` on the line or the stop signal. Returns
/// `None` when the link is stopping.
fn wait_line(
    line: &File,
    events: libc::c_short,
    shared: &Shared,
    timeout_ms: libc::c_int,
) -> Option<sys::Ready> {
    if shared.stop.load(Relaxed) {
        return None;
    }
    match sys::poll2(line.as_fd(), events, shared.wake.as_fd(), timeout_ms) {
        Ok((_, true)) => None,
        Ok((ready, false)) => Some(ready),
        Err(_) => {
            std::thread::sleep(Duration::from_millis(BACKOFF_MS as u64));
            Some(sys::Ready::default())
        }
    }
}

/// Pause after a line error, unless the link stops meanwhile.
fn backoff(line: &File, shared: &Shared) -> bool {
    shared.counters.line_errors.fetch_add(1, Relaxed);
    // Poll for nothing on the line: only the stop signal ends the pause early.
    wait_line(line, 0, shared, BACKOFF_MS).is_some()
}

fn rx_loop(line: &File, dev: &dyn Device, shared: &Shared, mtu: usize) {
    let c = &shared.counters;
    let mut decoder = Decoder::new(mtu);
    let mut buf = vec![0u8; 64 * 1024];
    let mut batch = PacketBatch::default();
    loop {
        let Some(ready) = wait_line(line, libc::POLLIN, shared, -1) else {
            return;
        };
        if !(ready.readable || ready.error) {
            continue;
        }
        let n = match (&*line).read(&mut buf) {
            Ok(0) => {
                if backoff(line, shared) {
                    continue;
                }
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                if backoff(line, shared) {
                    continue;
                }
                return;
            }
        };
        c.line_bytes_in.fetch_add(n as u64, Relaxed);
        batch.clear();
        let ts = now_ns();
        decoder.feed(&buf[..n], |frame| match slip::check_packet(frame) {
            Ok(()) if dev.check_frames(&[frame]).is_ok() => batch.push(frame, ts),
            Ok(()) => {
                c.refused.fetch_add(1, Relaxed);
            }
            Err(Reject::Noise) => {
                c.noise.fetch_add(1, Relaxed);
            }
            Err(Reject::BadChecksum) => {
                c.bad_checksum.fetch_add(1, Relaxed);
            }
        });
        let ds = decoder.stats();
        c.empty.store(ds.empty, Relaxed);
        c.bad_escape.store(ds.bad_escape, Relaxed);
        c.over_mtu.store(ds.over_mtu, Relaxed);
        if batch.is_empty() {
            continue;
        }
        let frames: Vec<&[u8]> = batch.iter().collect();
        match dev.send_frames(&frames) {
            Ok(k) => {
                c.packets_in.fetch_add(k as u64, Relaxed);
            }
            Err(Error::Partial { sent, total, .. } | Error::QueueFull { sent, total, .. }) => {
                c.packets_in.fetch_add(sent as u64, Relaxed);
                c.refused.fetch_add((total - sent) as u64, Relaxed);
            }
            Err(Error::Closed) => return,
            Err(_) => {
                c.refused.fetch_add(frames.len() as u64, Relaxed);
            }
        }
    }
}

fn tx_loop(line: &File, dev: &dyn Device, shared: &Shared, mtu: usize) {
    let c = &shared.counters;
    let mut batch = PacketBatch::default();
    let mut out = Vec::with_capacity(64 * 1024);
    while !shared.stop.load(Relaxed) {
        batch.clear();
        match dev.recv_batch(&mut batch, BATCH, SLICE) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(Error::Closed) => return,
            Err(_) => {
                if backoff(line, shared) {
                    continue;
                }
                return;
            }
        }
        out.clear();
        let mut packets = 0;
        for frame in batch.iter() {
            if frame.len() > mtu {
                c.oversize.fetch_add(1, Relaxed);
                continue;
            }
            slip::encode_into(frame, &mut out);
            packets += 1;
        }
        let mut rest = &out[..];
        while !rest.is_empty() {
            match (&*line).write(rest) {
                Ok(n) => {
                    c.line_bytes_out.fetch_add(n as u64, Relaxed);
                    rest = &rest[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if wait_line(line, libc::POLLOUT, shared, -1).is_none() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The line is gone (hung up): these packets are lost.
                    if !backoff(line, shared) {
                        return;
                    }
                    break;
                }
            }
        }
        if rest.is_empty() {
            c.packets_out.fetch_add(packets, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::serial::pair::{PairOptions, SerialPair};
    use crate::wire::testing::udp4;
    use std::time::Instant;

    /// `read()` until `done` holds of it or 10 s pass; the last value read (the caller
    /// asserts on it). The link's threads count a batch just after handing it on: a fixed
    /// wait for that is a bet on a loaded machine.
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

    fn recv_n(dev: &dyn Device, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut batch = PacketBatch::default();
        while out.len() < n && Instant::now() < deadline {
            batch.clear();
            dev.recv_batch(&mut batch, 256, Duration::from_millis(50))
                .unwrap();
            out.extend(batch.iter().map(<[u8]>::to_vec));
        }
        out
    }

    #[test]
    fn two_links_on_a_pair_exchange_packets() {
        let pair = SerialPair::open(&PairOptions::default()).unwrap();
        let opts = LinkOptions::default();
        let a = SlipLink::adapter(open_line(&pair.paths()[0], None).unwrap(), opts).unwrap();
        let b = SlipLink::adapter(open_line(&pair.paths()[1], None).unwrap(), opts).unwrap();
        // END/ESC-heavy payloads, up to the MTU.
        let packets: Vec<Vec<u8>> = (0..50u16)
            .map(|i| {
                udp4(
                    i,
                    9,
                    &vec![[slip::END, slip::ESC, i as u8][usize::from(i % 3)]; usize::from(i) * 19],
                )
            })
            .collect();
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        assert_eq!(a.send_frames(&refs).unwrap(), 50);
        assert_eq!(recv_n(&b, 50), packets);
        assert_eq!(b.send_frames(&refs[..3]).unwrap(), 3);
        assert_eq!(recv_n(&a, 3), packets[..3]);
        let (sa, sb) = settled(
            || (a.link_stats(), b.link_stats()),
            |(sa, sb)| (sa.packets_out, sb.packets_in) == (50, 50),
        );
        assert_eq!((sa.packets_out, sb.packets_in), (50, 50));
        assert_eq!(sb.line_bytes_in, sa.line_bytes_out);
        assert_eq!(sb.bad_escape + sb.noise + sb.bad_checksum + sb.over_mtu, 0);
        assert_eq!(b.stats().unwrap().rx_frames, 50);
        a.close();
        b.close();
        assert!(matches!(
            b.recv_batch(&mut PacketBatch::default(), 1, Duration::ZERO),
            Err(Error::Closed)
        ));
    }

    #[test]
    fn junk_on_the_line_is_counted_not_passed_on() {
        let pair = SerialPair::open(&PairOptions::default()).unwrap();
        let link = SlipLink::adapter(
            open_line(&pair.paths()[1], None).unwrap(),
            LinkOptions {
                mtu: 100,
                ..LinkOptions::default()
            },
        )
        .unwrap();
        let far = open_line(&pair.paths()[0], None).unwrap();
        let good = udp4(1, 9, b"good");
        let mut damaged = udp4(2, 9, b"damaged");
        damaged[30] ^= 0x20;
        let mut bytes = b"line noise".to_vec();
        bytes.push(slip::END);
        bytes.extend(slip::encode(&damaged));
        bytes.extend([slip::END, 1, slip::ESC, 2, slip::END]);
        bytes.extend(slip::encode(&udp4(3, 9, &[0; 100])));
        bytes.extend(slip::encode(&good));
        (&far).write_all(&bytes).unwrap();
        assert_eq!(recv_n(&link, 1), vec![good]);
        let s = settled(|| link.link_stats(), |s| s.packets_in == 1);
        assert_eq!(
            (
                s.noise,
                s.bad_checksum,
                s.bad_escape,
                s.over_mtu,
                s.packets_in
            ),
            (1, 1, 1, 1, 1),
            "{s:?}"
        );
    }
}
