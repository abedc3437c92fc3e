//! A vhost-user virtio-net backend: vnetio as the other end of a virtual machine's
//! virtio-net NIC.
//!
//! [`VhostUserNet`] serves the vhost-user protocol on a Unix socket (QEMU's
//! `-chardev socket,path=SOCK -netdev vhost-user,chardev=…`): it listens and QEMU connects
//! (server mode), or it connects to a socket QEMU listens on and reconnects whenever QEMU
//! restarts (client mode). Like a TAP adapter it is a [`Device`]: `recv_batch` returns the
//! frames the guest transmitted (the guest's TX queue), `send_frames`/`send_frames_meta`
//! put frames into the buffers the guest posted on its RX queue. With `queues=N` each
//! queue pair is a [`VhostQueue`]; the adapter itself works on pair 0, as a TAP adapter
//! works on its first queue.
//!
//! Built on rust-vmm's crates: `vhost` and `vhost-user-backend` speak the protocol and
//! map the guest's memory, `virtio-queue` walks the rings, `vm-memory` bounds every guest
//! memory access. The protocol runs on the crates' threads (one for the socket, one for
//! vring events); the frames are moved by the caller's own thread, between guest memory
//! and the caller's [`PacketBatch`], with one copy per frame each way (see `ring`).
//!
//! A guest that disconnects, reboots or reloads its driver leaves the adapter usable: the
//! backend accepts (or makes) the next connection. Frames the guest had queued but the
//! adapter had not taken when that happened are counted as lost (`rx_dropped`, and
//! [`VhostStats::lost`]); frames sent while no guest is there, or while it has no
//! buffers posted, are counted as dropped. Descriptor chains that make no sense are
//! refused and counted ([`VhostStats::guest_tx_faults`], [`VhostStats::guest_rx_faults`]).

mod backend;
pub mod features;
pub mod ring;
mod server;
mod shim;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vhost_user_backend::{ShutdownHandle, VringT};
use virtio_queue::QueueT;
use vm_memory::GuestAddressSpace;

use self::backend::Conn;
use self::ring::{FaultCounts, Pushed, RingFault, RxConfig, RxTally, TxConfig, TxTally};
use super::loopback::Overflow;
use super::tuntap::RxMode;
use super::{now_ns, Counters, Device, Stats};
use crate::batch::PacketBatch;
use crate::error::{Error, VnetResult};
use crate::filter::bpf::Program;
use crate::filter::{Placement, UserFilter};
use crate::offload::gso::segment;
use crate::sys;
use crate::wire::vnet::VnetHdr;
use crate::wire::Medium;

/// How often a waiting receiver looks at the guest's ring without being signalled.
const RECHECK: Duration = Duration::from_millis(100);

/// Most queue pairs a backend serves (the backend crate maps vrings to its worker
/// thread with a 32-bit mask: 16 pairs).
pub const MAX_QUEUE_PAIRS: usize = 16;

/// Who opens the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SocketMode {
    /// vnetio listens on the socket; QEMU connects (`-chardev socket,path=SOCK`). After a
    /// disconnect the next connection is accepted.
    #[default]
    Server,
    /// QEMU listens (`-chardev socket,path=SOCK,server=on,wait=off`); vnetio connects, and
    /// connects again whenever the connection ends.
    Client,
}

/// How to create a [`VhostUserNet`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The vhost-user socket.
    pub socket: PathBuf,
    /// Listen (server) or connect (client).
    pub mode: SocketMode,
    /// Queue pairs offered (MQ when more than one).
    pub queues: usize,
    /// The MAC address in the device's config space (QEMU shows the guest its own
    /// `-device …,mac=` instead).
    pub mac: [u8; 6],
    /// The MTU frames are checked against (and offered in the config space; QEMU shows the
    /// guest its own `host_mtu=`).
    pub mtu: usize,
    /// Offer checksum and segmentation offload (CSUM, GUEST_CSUM, TSO4/6, ECN).
    pub offload: bool,
    /// Receive super-frames with their metadata, or split and completed.
    pub rx_mode: RxMode,
    /// How long a send waits for the guest to post receive buffers before dropping.
    pub send_timeout: Duration,
    /// What a send does with frames it cannot place (no guest, no buffers after
    /// `send_timeout`): drop and count them, or fail with how many were placed.
    pub overflow: Overflow,
}

impl Options {
    /// Defaults: server mode, one queue pair, MTU 1500, offload on, segments mode, a 100 ms
    /// send timeout, drop on overflow.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Options {
            socket: socket.into(),
            mode: SocketMode::Server,
            queues: 1,
            mac: [0x02, 0x76, 0x6e, 0x00, 0x00, 0x01],
            mtu: 1500,
            offload: true,
            rx_mode: RxMode::Segments,
            send_timeout: Duration::from_millis(100),
            overflow: Overflow::Drop,
        }
    }
}

/// Counters of a vhost-user adapter, beyond the frame counts of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VhostStats {
    /// Frontend connections made (accepted, or connected in client mode).
    pub connections: u64,
    /// Connections that ended.
    pub disconnects: u64,
    /// Frames the guest had queued for transmission that were lost: still on its TX ring
    /// when the connection ended or the driver reset the ring. Also in `rx_dropped`.
    pub lost: u64,
    /// Chains refused on guest TX queues, by fault (also in `rx_errors`).
    pub guest_tx_faults: FaultCounts,
    /// Chains refused on guest RX queues, by fault.
    pub guest_rx_faults: FaultCounts,
    /// Frames from the guest whose virtio-net header did not describe them, or shorter
    /// than an Ethernet header: refused (also in `rx_errors`).
    pub bad_frames: u64,
    /// Times a ring's indexes or structures made no sense (it then waits for a reset).
    pub ring_faults: u64,
    /// Segmentation-offload super-frames received from the guest (before any split).
    pub superframes: u64,
    /// Frames to the guest completed or split in software (the guest did not negotiate
    /// the offload they carry).
    pub sent_in_software: u64,
    /// Frames dropped because no guest was connected (also in `tx_dropped`).
    pub dropped_no_guest: u64,
    /// Frames dropped because the guest posted no buffers in time (also in `tx_dropped`).
    pub dropped_no_buffers: u64,
    /// Frames dropped because they exceed the guest's buffers (also in `tx_dropped`).
    pub dropped_too_big: u64,
}

/// Fixed settings shared by the data path and the protocol side.
struct Config {
    offered: u64,
    mac: [u8; 6],
    mtu: usize,
    pairs: usize,
    rx_mode: RxMode,
    send_timeout: Duration,
    overflow: Overflow,
}

impl Config {
    /// `struct virtio_net_config`: mac, status (link up), max_virtqueue_pairs, mtu,
    /// speed (unknown), duplex (unknown).
    fn config_space(&self) -> [u8; 17] {
        let mut c = [0u8; 17];
        c[..6].copy_from_slice(&self.mac);
        c[6..8].copy_from_slice(&1u16.to_le_bytes());
        c[8..10].copy_from_slice(&(self.pairs as u16).to_le_bytes());
        c[10..12].copy_from_slice(&(self.mtu as u16).to_le_bytes());
        c[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        c[16] = 0xff;
        c
    }
}

#[derive(Debug, Default)]
struct PairFlags {
    /// The guest kicked its TX queue (or frames were left there): frames may be waiting.
    tx_pending: bool,
    /// Bumped on every guest RX kick (buffers posted).
    refills: u64,
    /// This pair's [`VhostQueue`] was closed.
    closed: bool,
}

/// Signals of one queue pair, raised by the vring worker thread.
struct PairSignals {
    flags: Mutex<PairFlags>,
    cond: Condvar,
    /// Readable while guest TX frames may be waiting (level-triggered by hand).
    ready: File,
}

impl PairSignals {
    fn new() -> VnetResult<Self> {
        Ok(PairSignals {
            flags: Mutex::new(PairFlags::default()),
            cond: Condvar::new(),
            ready: File::from(sys::eventfd().map_err(|e| Error::os("eventfd", e))?),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PairFlags> {
        self.flags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_tx_pending(&self, pending: bool) {
        let mut f = self.lock();
        if f.tx_pending == pending {
            return;
        }
        f.tx_pending = pending;
        if pending {
            let _ = (&self.ready).write(&1u64.to_ne_bytes());
            self.cond.notify_all();
        } else {
            let mut buf = [0u8; 8];
            let _ = (&self.ready).read(&mut buf);
        }
    }

    fn raise_tx(&self) {
        self.set_tx_pending(true);
    }

    fn raise_refill(&self) {
        self.lock().refills += 1;
        self.cond.notify_all();
    }

    /// Wake everyone waiting on this pair (close, disconnect).
    fn wake_all(&self) {
        let _ = (&self.ready).write(&1u64.to_ne_bytes());
        let _guard = self.lock();
        self.cond.notify_all();
    }
}

/// What the adapter, its queues and the protocol threads share.
pub(crate) struct Shared {
    cfg: Config,
    pairs: Vec<PairSignals>,
    conn: RwLock<Option<Arc<Conn>>>,
    shutdown: Mutex<Option<ShutdownHandle>>,
    /// Bumped on every connection state change; `wait_connected` waits on it.
    state: Mutex<u64>,
    state_cond: Condvar,
    closed: AtomicBool,
    /// Wakes the supervisor thread out of its poll on close.
    wake: File,
    stats: Mutex<VhostStats>,
    /// The last error the protocol side met (for diagnostics).
    last_error: Mutex<Option<String>>,
    filter: UserFilter,
    /// Frames lost per pair (counted in that queue's `rx_dropped`).
    lost: Vec<Counters>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn current(&self) -> Option<Arc<Conn>> {
        self.conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn state_changed(&self) {
        *lock(&self.state) += 1;
        self.state_cond.notify_all();
    }

    fn stat(&self, f: impl FnOnce(&mut VhostStats)) {
        f(&mut lock(&self.stats));
    }

    fn count_lost(&self, pair: usize, frames: u64) {
        self.stat(|s| s.lost += frames);
        if let Some(c) = self.lost.get(pair) {
            c.rx_drop(frames as usize);
        }
    }

    fn record_error(&self, what: String) {
        *lock(&self.last_error) = Some(what);
    }

    /// A connection started.
    fn attach(&self, conn: &Arc<Conn>, handle: Option<ShutdownHandle>) {
        *self
            .conn
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(conn));
        *lock(&self.shutdown) = handle;
        self.stat(|s| s.connections += 1);
        self.state_changed();
    }

    /// A connection ended: count what it leaves behind and wake everyone waiting.
    fn detach(&self, conn: &Arc<Conn>) {
        *self
            .conn
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        *lock(&self.shutdown) = None;
        for pair in 0..self.pairs.len() {
            // Lost frames are only known per ring; count them on their pair.
            let lost = conn.lost_at_end(2 * pair + 1);
            if lost > 0 {
                self.count_lost(pair, lost);
            }
        }
        self.stat(|s| s.disconnects += 1);
        for p in &self.pairs {
            let _guard = p.lock();
            p.cond.notify_all();
        }
        self.state_changed();
    }

    /// Whether a guest driver has queue pair `pair` running.
    fn pair_live(&self, pair: usize) -> bool {
        self.current()
            .is_some_and(|c| c.live(2 * pair) && c.live(2 * pair + 1))
    }
}

/// Scratch space of a queue's send path, reused across calls.
#[derive(Default)]
struct SendLocal {
    used: Vec<(u16, u32)>,
    soft: PacketBatch,
}

/// One queue pair of a [`VhostUserNet`]: receives what the guest sends on its TX queue
/// `2i+1`, sends into its RX queue `2i`.
pub struct VhostQueue {
    index: usize,
    shared: Arc<Shared>,
    counters: Counters,
    recv_scratch: Mutex<Vec<u8>>,
    send_local: Mutex<SendLocal>,
}

impl VhostQueue {
    /// Position of this queue pair.
    pub fn index(&self) -> usize {
        self.index
    }

    fn signals(&self) -> &PairSignals {
        &self.shared.pairs[self.index]
    }

    fn closed(&self) -> bool {
        self.shared.is_closed() || self.signals().lock().closed
    }

    /// Receive without filtering or counting frames (errors and faults are counted).
    fn recv_raw(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        let deadline = Instant::now() + wait;
        loop {
            if self.closed() {
                return Err(Error::Closed);
            }
            let n = self.drain(batch, max);
            if n > 0 {
                return Ok(n);
            }
            let sig = self.signals();
            let mut f = sig.lock();
            loop {
                if f.tx_pending || f.closed || self.shared.is_closed() {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(0);
                }
                // Bounded slices: a frame left on the ring without a signal (one raced
                // with a ring restart) is still found within RECHECK.
                let (g, timeout) = sig
                    .cond
                    .wait_timeout(f, (deadline - now).min(RECHECK))
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                f = g;
                if timeout.timed_out() {
                    break;
                }
            }
        }
    }

    /// Take what the guest's TX ring holds, up to `max` frames. Returns frames appended.
    fn drain(&self, batch: &mut PacketBatch, max: usize) -> usize {
        // With no ring to read, a raised signal (a kick before a stop or a disconnect)
        // means nothing: lower it, or a waiting receiver would spin on it. The ring
        // raises it again when it is set up.
        let idle = || {
            self.signals().set_tx_pending(false);
            0
        };
        let Some(conn) = self.shared.current() else {
            return idle();
        };
        let Some(vring) = conn.vring(2 * self.index + 1) else {
            return idle();
        };
        let mut scratch = lock(&self.recv_scratch);
        let mut st = vring.get_mut();
        if !st.get_queue().ready() || !st.is_enabled() {
            drop(st);
            return idle();
        }
        // Cleared before the ring is looked at: a kick from now on raises it again.
        self.signals().set_tx_pending(false);
        let mem = conn.mem.memory();
        let cfg = TxConfig {
            hdr_len: features::header_len(conn.acked()),
            rx_mode: self.shared.cfg.rx_mode,
            medium: Medium::Ethernet,
            timestamp_ns: now_ns(),
        };
        let mut tally = TxTally::default();
        let result = ring::pop_tx(
            st.get_queue_mut(),
            &*mem,
            &cfg,
            batch,
            max,
            &mut scratch,
            &mut tally,
        );
        if tally.chains > 0 && st.needs_notification().unwrap_or(true) {
            let _ = st.signal_used_queue();
        }
        drop(st);
        if tally.more {
            self.signals().set_tx_pending(true);
        }
        let refused = tally.faults.total() + tally.bad_frames;
        for _ in 0..refused {
            self.counters.rx_error();
        }
        self.shared.stat(|s| {
            s.guest_tx_faults.add(&tally.faults);
            s.bad_frames += tally.bad_frames;
            s.superframes += tally.superframes;
            s.ring_faults += u64::from(matches!(
                result,
                Err(RingFault::AvailIndex | RingFault::Memory)
            ));
        });
        tally.frames
    }

    /// Place frames (with optional offload metadata) into the guest's RX ring, waiting up
    /// to the send timeout for buffers when the guest has none posted.
    fn send_inner(&self, frames: &[&[u8]], hdrs: Option<&[Option<VnetHdr>]>) -> VnetResult<usize> {
        if self.closed() {
            return Err(Error::Closed);
        }
        let mut local = lock(&self.send_local);
        let deadline = Instant::now() + self.shared.cfg.send_timeout;
        let mut cur = Cursor::default();
        let stop = loop {
            if cur.next == frames.len() {
                break None;
            }
            if self.closed() {
                break Some(Stop::NoGuest); // finish_send reports the close
            }
            let Some(conn) = self.shared.current().filter(|c| c.live(2 * self.index)) else {
                break Some(Stop::NoGuest);
            };
            let Some(vring) = conn.vring(2 * self.index) else {
                break Some(Stop::NoGuest);
            };
            let mut st = vring.get_mut();
            let mem = conn.mem.memory();
            let mut tally = RxTally::default();
            let used_before = st.get_queue().next_used();
            let round = self.fill(
                st.get_queue_mut(),
                &*mem,
                conn.acked(),
                (frames, hdrs),
                &mut cur,
                &mut local,
                &mut tally,
            );
            // Merged frames are published with one index update (see ring::push_rx), so
            // the ring's own needs_notification would not count them: decide here.
            if ring::used_needs_notification(st.get_queue(), &*mem, used_before) {
                let _ = st.signal_used_queue();
            }
            self.shared.stat(|s| s.guest_rx_faults.add(&tally.faults));
            match round {
                Round::AllPlaced => break None,
                Round::RingFault => break Some(Stop::NoGuest),
                Round::OutOfBuffers => {}
            }
            // Out of buffers: ask the guest to kick when it posts more, then check once
            // more (buffers posted before notifications were on raise no kick).
            let seen = self.signals().lock().refills;
            if st.enable_notification().unwrap_or(false) {
                continue;
            }
            drop(st);
            drop(mem);
            if !self.wait_refill(seen, deadline) {
                break Some(Stop::NoBuffers);
            }
        };
        self.counters.tx(cur.sent, cur.bytes);
        self.finish_send(frames.len(), &cur, stop)
    }

    /// Place frames from `cur` on until all are placed, the guest runs out of buffers or
    /// the ring fails.
    #[allow(clippy::too_many_arguments)] // one call site; the pieces are what it holds
    fn fill<M: vm_memory::GuestMemory>(
        &self,
        queue: &mut virtio_queue::Queue,
        mem: &M,
        acked: u64,
        (frames, hdrs): (&[&[u8]], Option<&[Option<VnetHdr>]>),
        cur: &mut Cursor,
        local: &mut SendLocal,
        tally: &mut RxTally,
    ) -> Round {
        let rx_cfg = RxConfig {
            hdr_len: features::header_len(acked),
            mergeable: acked & features::MRG_RXBUF != 0,
        };
        while let Some(&frame) = frames.get(cur.next) {
            let hdr = hdrs.and_then(|h| h.get(cur.next).copied().flatten());
            let outcome = match hdr {
                Some(h) if !features::guest_takes(acked, h) => {
                    self.push_in_software(queue, mem, &rx_cfg, frame, h, cur, local, tally)
                }
                h => ring::push_rx(
                    queue,
                    mem,
                    &rx_cfg,
                    features::for_guest(acked, h.unwrap_or_default()),
                    frame,
                    &mut local.used,
                    tally,
                ),
            };
            match outcome {
                Ok(Pushed::Done) => {
                    cur.sent += 1;
                    cur.bytes += frame.len();
                    cur.advance();
                }
                Ok(Pushed::TooBig) => {
                    self.counters.tx_drop(1);
                    self.shared.stat(|s| s.dropped_too_big += 1);
                    cur.advance();
                }
                Ok(Pushed::NoBuffers) => return Round::OutOfBuffers,
                Err(fault) => {
                    self.shared.stat(|s| {
                        s.ring_faults += u64::from(fault != RingFault::NotReady);
                    });
                    return Round::RingFault;
                }
            }
        }
        Round::AllPlaced
    }

    /// Complete and split a frame whose offload the guest did not negotiate, and place
    /// its segments; resumes at the segment a previous round stopped at.
    #[allow(clippy::too_many_arguments)] // as `fill`, its only caller
    fn push_in_software<M: vm_memory::GuestMemory>(
        &self,
        queue: &mut virtio_queue::Queue,
        mem: &M,
        rx_cfg: &RxConfig,
        frame: &[u8],
        hdr: VnetHdr,
        cur: &mut Cursor,
        local: &mut SendLocal,
        tally: &mut RxTally,
    ) -> Result<Pushed, RingFault> {
        let SendLocal { used, soft } = local;
        if cur.segment == 0 {
            soft.clear();
            if segment(frame, hdr, Medium::Ethernet, soft, 0).is_err() {
                // Frames are checked before they are sent: count and skip.
                self.counters.tx_error();
                return Ok(Pushed::TooBig);
            }
            self.shared.stat(|s| s.sent_in_software += 1);
        }
        while let Some(seg) = soft.get(cur.segment) {
            match ring::push_rx(queue, mem, rx_cfg, VnetHdr::default(), seg, used, tally)? {
                Pushed::Done => cur.segment += 1,
                Pushed::TooBig => {
                    // One segment larger than the guest's buffers: dropped alone.
                    self.shared.stat(|s| s.dropped_too_big += 1);
                    cur.segment += 1;
                }
                Pushed::NoBuffers => return Ok(Pushed::NoBuffers),
            }
        }
        Ok(Pushed::Done)
    }

    /// The result of a send that stopped at `cur` for `stop` (if it stopped early).
    fn finish_send(&self, total: usize, cur: &Cursor, stop: Option<Stop>) -> VnetResult<usize> {
        let Some(stop) = stop else {
            return Ok(total);
        };
        let left = total - cur.next;
        if self.closed() && left > 0 {
            return Err(if cur.sent == 0 {
                Error::Closed
            } else {
                Error::Partial {
                    sent: cur.next,
                    total,
                    source: Box::new(Error::Closed),
                }
            });
        }
        if self.shared.cfg.overflow == Overflow::Error {
            return Err(match stop {
                Stop::NoBuffers => Error::QueueFull {
                    sent: cur.next,
                    total,
                    capacity: self.queue_size(),
                },
                Stop::NoGuest => Error::Partial {
                    sent: cur.next,
                    total,
                    source: Box::new(
                        Error::os(
                            "send to the vhost-user guest",
                            std::io::Error::from_raw_os_error(libc::ENOTCONN),
                        )
                        .with_hint("no guest driver is running; wait_connected() first"),
                    ),
                },
            });
        }
        self.counters.tx_drop(left);
        self.shared.stat(|s| match stop {
            Stop::NoGuest => s.dropped_no_guest += left as u64,
            Stop::NoBuffers => s.dropped_no_buffers += left as u64,
        });
        Ok(total)
    }

    /// Wait until the guest posts receive buffers (a kick after `seen`), the deadline
    /// passes (false), or the queue closes.
    fn wait_refill(&self, seen: u64, deadline: Instant) -> bool {
        let sig = self.signals();
        let mut f = sig.lock();
        loop {
            if f.refills != seen || f.closed || self.shared.is_closed() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            f = sig
                .cond
                .wait_timeout(f, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// The guest RX ring's size (0 when no guest is there).
    fn queue_size(&self) -> usize {
        self.shared
            .current()
            .and_then(|c| {
                c.vring(2 * self.index)
                    .map(|v| v.get_ref().get_queue().size())
            })
            .map_or(0, usize::from)
    }

    fn stats_snapshot(&self) -> Stats {
        let mut s = self.counters.snapshot();
        s.rx_dropped += self.shared.lost[self.index].snapshot().rx_dropped;
        s.rx_filtered = Some(self.shared.filter.rejected());
        s
    }
}

/// Why a send stopped before placing every frame.
#[derive(Debug, Clone, Copy)]
enum Stop {
    NoGuest,
    NoBuffers,
}

/// How far a send got.
#[derive(Debug, Default)]
struct Cursor {
    /// The next frame to place.
    next: usize,
    /// The next segment of that frame, when it is split in software.
    segment: usize,
    /// Frames placed, and their bytes.
    sent: usize,
    bytes: usize,
}

impl Cursor {
    fn advance(&mut self) {
        self.next += 1;
        self.segment = 0;
    }
}

/// How one pass over the guest's RX ring ended.
enum Round {
    AllPlaced,
    OutOfBuffers,
    RingFault,
}

impl Device for VhostQueue {
    fn medium(&self) -> Medium {
        Medium::Ethernet
    }

    fn mtu(&self) -> usize {
        self.shared.cfg.mtu
    }

    fn recv_batch(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        let (n, bytes) = self
            .shared
            .filter
            .recv(self.index, batch, max, wait, |b, m, w| {
                self.recv_raw(b, m, w)
            })?;
        self.counters.rx(n, bytes);
        Ok(n)
    }

    fn send_frames(&self, frames: &[&[u8]]) -> VnetResult<usize> {
        self.send_inner(frames, None)
    }

    fn send_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<usize> {
        if hdrs.len() != frames.len() {
            return Err(Error::InvalidArgument(format!(
                "{} frames but {} offload headers",
                frames.len(),
                hdrs.len()
            )));
        }
        self.send_inner(frames, Some(hdrs))
    }

    fn set_filter(
        &self,
        program: Option<Program>,
        placement: Option<Placement>,
    ) -> VnetResult<Option<Placement>> {
        set_user_filter(&self.shared, program, placement)
    }

    fn filter_placement(&self) -> Option<Placement> {
        self.shared.filter.is_set().then_some(Placement::Userspace)
    }

    fn stats(&self) -> VnetResult<Stats> {
        Ok(self.stats_snapshot())
    }

    fn close(&self) {
        let sig = self.signals();
        sig.lock().closed = true;
        sig.wake_all();
    }

    fn is_closed(&self) -> bool {
        self.closed()
    }

    fn raw_fd(&self) -> VnetResult<RawFd> {
        if self.closed() {
            return Err(Error::Closed);
        }
        Ok(self.signals().ready.as_raw_fd())
    }
}

fn set_user_filter(
    shared: &Shared,
    program: Option<Program>,
    placement: Option<Placement>,
) -> VnetResult<Option<Placement>> {
    if let Some(p @ (Placement::Kernel | Placement::Classic)) = placement {
        return Err(Error::InvalidArgument(format!(
            "a vhost-user adapter has no kernel side; its filter runs in userspace \
             (asked for {:?})",
            p.as_str()
        )));
    }
    let placement = program.as_ref().map(|_| Placement::Userspace);
    shared.filter.set(program.map(Arc::new));
    Ok(placement)
}

/// A vhost-user virtio-net backend (see the module documentation).
pub struct VhostUserNet {
    shared: Arc<Shared>,
    queues: Vec<Arc<VhostQueue>>,
    socket: PathBuf,
    mode: SocketMode,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl VhostUserNet {
    /// Create the backend and start serving `opts.socket` (server mode: the socket exists
    /// when this returns, so QEMU can be started right after).
    ///
    /// # Errors
    /// `InvalidArgument` for options out of range; `Os` when the socket cannot be bound
    /// (another backend listening on it is `EADDRINUSE`) or a thread cannot be started.
    pub fn new(opts: &Options) -> VnetResult<Self> {
        if !(1..=MAX_QUEUE_PAIRS).contains(&opts.queues) {
            return Err(Error::InvalidArgument(format!(
                "queues must be between 1 and {MAX_QUEUE_PAIRS}, not {}",
                opts.queues
            )));
        }
        if !(68..=65_535).contains(&opts.mtu) {
            return Err(Error::InvalidArgument(format!(
                "mtu must be between 68 and 65535, not {}",
                opts.mtu
            )));
        }
        if opts.mac[0] & 1 == 1 {
            return Err(Error::InvalidArgument(
                "mac must be a unicast address (lowest bit of the first byte clear)".into(),
            ));
        }
        if opts.mode == SocketMode::Client && opts.socket.to_str().is_none() {
            return Err(Error::InvalidArgument(
                "in client mode the socket path must be valid UTF-8".into(),
            ));
        }
        let endpoint = match opts.mode {
            SocketMode::Server => server::Endpoint::Server(bind(&opts.socket)?),
            SocketMode::Client => server::Endpoint::Client(opts.socket.clone()),
        };
        let pairs = (0..opts.queues)
            .map(|_| PairSignals::new())
            .collect::<VnetResult<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            cfg: Config {
                offered: features::offered(opts.offload, opts.queues),
                mac: opts.mac,
                mtu: opts.mtu,
                pairs: opts.queues,
                rx_mode: opts.rx_mode,
                send_timeout: opts.send_timeout,
                overflow: opts.overflow,
            },
            pairs,
            conn: RwLock::new(None),
            shutdown: Mutex::new(None),
            state: Mutex::new(0),
            state_cond: Condvar::new(),
            closed: AtomicBool::new(false),
            wake: File::from(sys::eventfd().map_err(|e| Error::os("eventfd", e))?),
            stats: Mutex::new(VhostStats::default()),
            last_error: Mutex::new(None),
            filter: UserFilter::default(),
            lost: (0..opts.queues).map(|_| Counters::default()).collect(),
        });
        let queues = (0..opts.queues)
            .map(|index| {
                Arc::new(VhostQueue {
                    index,
                    shared: Arc::clone(&shared),
                    counters: Counters::default(),
                    recv_scratch: Mutex::new(Vec::new()),
                    send_local: Mutex::new(SendLocal::default()),
                })
            })
            .collect();
        let thread_shared = Arc::clone(&shared);
        let supervisor = std::thread::Builder::new()
            .name("vnetio-vhost".into())
            .spawn(move || server::run(&thread_shared, &endpoint))
            .map_err(|e| Error::os("start the vhost-user thread", e))?;
        Ok(VhostUserNet {
            shared,
            queues,
            socket: opts.socket.clone(),
            mode: opts.mode,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }

    /// The queue pairs.
    pub fn queues(&self) -> &[Arc<VhostQueue>] {
        &self.queues
    }

    /// The vhost-user socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The feature bits offered to the frontend.
    pub fn offered_features(&self) -> u64 {
        self.shared.cfg.offered
    }

    /// The feature bits the guest driver negotiated (0 while no driver is there).
    pub fn features(&self) -> u64 {
        self.shared.current().map_or(0, |c| c.acked())
    }

    /// Whether a guest driver is running queue pair 0 (frames can flow).
    pub fn connected(&self) -> bool {
        self.shared.pair_live(0)
    }

    /// Wait up to `timeout` for [`VhostUserNet::connected`]. Returns whether it is.
    ///
    /// # Errors
    /// `Closed` if the adapter is closed before or while waiting.
    pub fn wait_connected(&self, timeout: Duration) -> VnetResult<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.is_closed() {
                return Err(Error::Closed);
            }
            if self.connected() {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // A short slice: a ring becoming ready is signalled, but checking again now
            // and then costs nothing and covers any transition that is not.
            let slice = (deadline - now).min(Duration::from_millis(50));
            let guard = lock(&self.shared.state);
            let _ = self
                .shared
                .state_cond
                .wait_timeout(guard, slice)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Counters beyond [`Stats`].
    pub fn vhost_stats(&self) -> VhostStats {
        *lock(&self.shared.stats)
    }

    /// The last error the protocol side met (a frontend that sent something invalid, a
    /// connection that could not be made), if any.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }
}

/// Bind the server socket. A stale socket file (nobody listening) is replaced; a live
/// one is an error.
fn bind(path: &Path) -> VnetResult<UnixListener> {
    let step = || format!("bind the vhost-user socket {}", path.display());
    match UnixListener::bind(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let stale = matches!(
                UnixStream::connect(path),
                Err(ref c) if c.kind() == std::io::ErrorKind::ConnectionRefused
            );
            let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_socket()
            });
            if !(stale && is_socket) {
                return Err(Error::os(step(), e).with_hint(
                    "another backend is listening on this socket, or it is not a socket",
                ));
            }
            std::fs::remove_file(path).map_err(|e| Error::os(step(), e))?;
            UnixListener::bind(path).map_err(|e| Error::os(step(), e))
        }
        Err(e) => Err(Error::os(step(), e)),
    }
}

impl Device for VhostUserNet {
    fn medium(&self) -> Medium {
        Medium::Ethernet
    }

    fn mtu(&self) -> usize {
        self.shared.cfg.mtu
    }

    fn recv_batch(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        self.queues[0].recv_batch(batch, max, wait)
    }

    fn send_frames(&self, frames: &[&[u8]]) -> VnetResult<usize> {
        self.queues[0].send_frames(frames)
    }

    fn send_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<usize> {
        self.queues[0].send_frames_meta(frames, hdrs)
    }

    fn set_filter(
        &self,
        program: Option<Program>,
        placement: Option<Placement>,
    ) -> VnetResult<Option<Placement>> {
        set_user_filter(&self.shared, program, placement)
    }

    fn filter_placement(&self) -> Option<Placement> {
        self.shared.filter.is_set().then_some(Placement::Userspace)
    }

    /// The sum over all queue pairs.
    fn stats(&self) -> VnetResult<Stats> {
        let mut total = Stats {
            rx_filtered: Some(self.shared.filter.rejected()),
            ..Stats::default()
        };
        for q in &self.queues {
            let s = q.stats_snapshot();
            total.rx_frames += s.rx_frames;
            total.rx_bytes += s.rx_bytes;
            total.tx_frames += s.tx_frames;
            total.tx_bytes += s.tx_bytes;
            total.rx_errors += s.rx_errors;
            total.tx_errors += s.tx_errors;
            total.rx_dropped += s.rx_dropped;
            total.tx_dropped += s.tx_dropped;
        }
        Ok(total)
    }

    fn close(&self) {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(h) = lock(&self.shared.shutdown).take() {
            h.shutdown();
        }
        let _ = (&self.shared.wake).write(&1u64.to_ne_bytes());
        for p in &self.shared.pairs {
            p.wake_all();
        }
        self.shared.state_changed();
        let handle = lock(&self.supervisor).take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        if self.mode == SocketMode::Server {
            let _ = std::fs::remove_file(&self.socket);
        }
    }

    fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    fn raw_fd(&self) -> VnetResult<RawFd> {
        self.queues[0].raw_fd()
    }
}

impl Drop for VhostUserNet {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vnetio-vhost-{name}-{}.sock", std::process::id()))
    }

    #[test]
    fn options_are_checked() {
        let mut o = Options::new(socket("opts"));
        o.queues = 0;
        assert!(matches!(
            VhostUserNet::new(&o),
            Err(Error::InvalidArgument(_))
        ));
        o.queues = MAX_QUEUE_PAIRS + 1;
        assert!(matches!(
            VhostUserNet::new(&o),
            Err(Error::InvalidArgument(_))
        ));
        o.queues = 1;
        o.mtu = 67;
        assert!(matches!(
            VhostUserNet::new(&o),
            Err(Error::InvalidArgument(_))
        ));
        o.mtu = 1500;
        o.mac = [1, 0, 0, 0, 0, 1];
        assert!(matches!(
            VhostUserNet::new(&o),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn without_a_guest() {
        let path = socket("noguest");
        let mut o = Options::new(&path);
        o.send_timeout = Duration::from_millis(10);
        let dev = VhostUserNet::new(&o).unwrap();
        assert!(path.exists(), "the socket is there when new() returns");
        assert!(!dev.connected());
        assert_eq!(dev.features(), 0);
        assert!(!dev.wait_connected(Duration::from_millis(30)).unwrap());
        // A second backend on the same live socket is refused.
        assert!(matches!(
            VhostUserNet::new(&Options::new(&path)),
            Err(Error::Os { .. })
        ));
        // Receiving times out; sending drops and counts.
        let mut batch = PacketBatch::default();
        let t = Instant::now();
        assert_eq!(
            dev.recv_batch(&mut batch, 8, Duration::from_millis(30))
                .unwrap(),
            0
        );
        assert!(t.elapsed() >= Duration::from_millis(30));
        let frame = [0u8; 60];
        assert_eq!(dev.send_frames(&[&frame, &frame]).unwrap(), 2);
        let s = dev.stats().unwrap();
        assert_eq!((s.tx_frames, s.tx_dropped), (0, 2));
        assert_eq!(dev.vhost_stats().dropped_no_guest, 2);
        dev.close();
        assert!(!path.exists(), "close removes the socket");
        assert!(matches!(
            dev.recv_batch(&mut batch, 1, Duration::ZERO),
            Err(Error::Closed)
        ));
        assert!(matches!(
            dev.wait_connected(Duration::ZERO),
            Err(Error::Closed)
        ));
    }

    #[test]
    fn overflow_error_reports_no_guest() {
        let mut o = Options::new(socket("overflow"));
        o.overflow = Overflow::Error;
        let dev = VhostUserNet::new(&o).unwrap();
        let frame = [0u8; 60];
        match dev.send_frames(&[&frame]) {
            Err(Error::Partial {
                sent: 0,
                total: 1,
                source,
            }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOTCONN));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn stale_socket_is_replaced() {
        let path = socket("stale");
        drop(UnixListener::bind(&path).unwrap()); // leaves the file, nobody listening
        assert!(path.exists());
        let dev = VhostUserNet::new(&Options::new(&path)).unwrap();
        assert!(
            UnixStream::connect(&path).is_ok(),
            "the new backend listens"
        );
        drop(dev);
        assert!(!path.exists());
    }

    #[test]
    fn close_wakes_a_blocked_receiver_and_a_poller() {
        let dev = Arc::new(VhostUserNet::new(&Options::new(socket("wake"))).unwrap());
        let fd = dev.raw_fd().unwrap();
        let d2 = Arc::clone(&dev);
        let t = std::thread::spawn(move || {
            let mut batch = PacketBatch::default();
            d2.recv_batch(&mut batch, 1, Duration::from_secs(10))
        });
        std::thread::sleep(Duration::from_millis(30));
        let start = Instant::now();
        dev.close();
        assert!(matches!(t.join().unwrap(), Err(Error::Closed)));
        assert!(start.elapsed() < Duration::from_secs(2));
        // The eventfd a poller waits on (raw_fd) became readable.
        assert_eq!(fd, dev.shared.pairs[0].ready.as_raw_fd());
        let file = std::os::fd::AsFd::as_fd(&dev.shared.pairs[0].ready);
        let (ready, _) = sys::poll2(file, libc::POLLIN, file, 0).unwrap();
        assert!(ready.readable);
    }

    #[test]
    fn closing_a_queue_closes_only_that_queue() {
        let mut o = Options::new(socket("qclose"));
        o.queues = 2;
        let dev = VhostUserNet::new(&o).unwrap();
        let frame = [0u8; 60];
        dev.queues()[1].close();
        assert!(dev.queues()[1].is_closed());
        assert!(matches!(
            dev.queues()[1].send_frames(&[&frame]),
            Err(Error::Closed)
        ));
        assert!(matches!(dev.queues()[1].raw_fd(), Err(Error::Closed)));
        assert!(!dev.is_closed());
        assert_eq!(dev.queues()[0].send_frames(&[&frame]).unwrap(), 1);
    }

    #[test]
    fn client_mode_keeps_trying() {
        let path = socket("client");
        let mut o = Options::new(&path);
        o.mode = SocketMode::Client;
        let dev = VhostUserNet::new(&o).unwrap();
        // Nobody listens: no connection, no error surfaced to the caller.
        assert!(!dev.wait_connected(Duration::from_millis(50)).unwrap());
        // A listener appears: the backend connects (the session then waits for a
        // frontend that never speaks; dropping our end ends it).
        let l = UnixListener::bind(&path).unwrap();
        l.set_nonblocking(false).unwrap();
        let (conn, _) = l.accept().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while dev.vhost_stats().connections == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(dev.vhost_stats().connections, 1);
        drop(conn);
        while dev.vhost_stats().disconnects == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(dev.vhost_stats().disconnects, 1);
        dev.close();
        let _ = std::fs::remove_file(&path);
    }
}
