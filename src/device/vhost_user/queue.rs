//! One queue pair of a vhost-user adapter: frames the guest transmitted into a batch,
//! batches into the buffers the guest posted, one copy per frame each way.

use super::backend::Conn;
use super::ring::{Pushed, RingFault, RxConfig, RxTally, TxConfig, TxTally};
use super::{features, lock, ring, PairSignals, Shared, Staged, RECHECK, STAGE_FRAMES};
use crate::batch::PacketBatch;
use crate::device::loopback::Overflow;
use crate::device::{now_ns, Counters, Device, Stats};
use crate::error::{Error, VnetResult};
use crate::filter::bpf::Program;
use crate::filter::Placement;
use crate::offload::gso::segment;
use crate::wire::vnet::VnetHdr;
use crate::wire::Medium;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vhost_user_backend::VringT;
use virtio_queue::QueueT;
use vm_memory::GuestAddressSpace;

/// Scratch space of a queue's send path, reused across calls.
#[derive(Default)]
pub(super) struct SendLocal {
    used: Vec<(u16, u32)>,
    soft: PacketBatch,
}

/// One queue pair of a [`VhostUserNet`]: receives what the guest sends on its TX queue
/// `2i+1`, sends into its RX queue `2i`.
pub struct VhostQueue {
    pub(super) index: usize,
    pub(super) shared: Arc<Shared>,
    pub(super) counters: Counters,
    pub(super) send_local: Mutex<SendLocal>,
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
            let n = self.take(batch, max);
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

    /// Take up to `max` guest-transmitted frames: first those the vring worker thread
    /// took at the guest's kick, then what the ring holds. Returns frames appended.
    fn take(&self, batch: &mut PacketBatch, max: usize) -> usize {
        let sig = self.signals();
        let mut staged = lock(&sig.staged);
        let mut n = staged.move_into(batch, max);
        let mut refused = std::mem::take(&mut staged.refused);
        // Lowered before the ring is looked at, under the lock the worker thread raises
        // it under: a kick from now on raises it again.
        sig.set_tx_pending(!staged.batch.is_empty());
        if n < max {
            let scratch = &mut staged.scratch;
            let drained = self.shared.current().and_then(|conn| {
                drain_tx(&self.shared, &conn, self.index, batch, max - n, scratch)
            });
            if let Some(d) = drained {
                n += d.frames;
                refused += d.refused;
                if d.more {
                    sig.set_tx_pending(true);
                }
            }
        }
        drop(staged);
        for _ in 0..refused {
            self.counters.rx_error();
        }
        n
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
            let signal = ring::used_needs_notification(st.get_queue(), &*mem, used_before);
            if signal {
                let _ = st.signal_used_queue();
            }
            self.shared.stat(|s| {
                s.guest_rx_faults.add(&tally.faults);
                s.rx_interrupts += u64::from(signal);
            });
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

    pub(super) fn stats_snapshot(&self) -> Stats {
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
        let raw = |b: &mut PacketBatch, m, w| self.recv_raw(b, m, w);
        self.counters
            .recv_through(&self.shared.filter, self.index, batch, max, wait, raw)
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

pub(super) fn set_user_filter(
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

/// What one walk of a guest TX ring did.
pub(super) struct Drained {
    /// Frames appended to the batch.
    pub frames: usize,
    /// Frames refused (faulty chains, bad headers).
    pub refused: u64,
    /// Frames left in the ring because `max` was reached.
    pub more: bool,
}

/// Take up to `max` frames from the guest TX ring of queue pair `pair` into `batch`, hand
/// their buffers back, and interrupt the guest if it asked to be. `None` when the ring
/// is not set up and enabled. Called by the reader and, at a kick, by the vring worker
/// thread (see `Staged`).
pub(super) fn drain_tx(
    shared: &Shared,
    conn: &Conn,
    pair: usize,
    batch: &mut PacketBatch,
    max: usize,
    scratch: &mut Vec<u8>,
) -> Option<Drained> {
    let vring = conn.vring(2 * pair + 1)?;
    let mut st = vring.get_mut();
    if !st.get_queue().ready() || !st.is_enabled() {
        return None;
    }
    let mem = conn.mem.memory();
    let cfg = TxConfig {
        hdr_len: features::header_len(conn.acked()),
        rx_mode: shared.cfg.rx_mode,
        medium: Medium::Ethernet,
        timestamp_ns: now_ns(),
    };
    let mut tally = TxTally::default();
    let used_before = st.get_queue().next_used();
    let result = ring::pop_tx(
        st.get_queue_mut(),
        &*mem,
        &cfg,
        batch,
        max,
        scratch,
        &mut tally,
    );
    // The chains are handed back with one index update (see ring::pop_tx), which the
    // ring's own needs_notification does not count: decide here.
    let signal = ring::used_needs_notification(st.get_queue(), &*mem, used_before);
    if signal {
        let _ = st.signal_used_queue();
    }
    drop(st);
    shared.stat(|s| {
        s.guest_tx_faults.add(&tally.faults);
        s.bad_frames += tally.bad_frames;
        s.superframes += tally.superframes;
        s.ring_faults += u64::from(matches!(
            result,
            Err(RingFault::AvailIndex | RingFault::Memory)
        ));
        s.tx_interrupts += u64::from(signal);
    });
    Some(Drained {
        frames: tally.frames,
        refused: tally.faults.total() + tally.bad_frames,
        more: tally.more,
    })
}

/// The vring worker thread, at a guest TX kick on pair `pair`: take what the ring holds
/// into the pair's staging batch (up to `STAGE_FRAMES`), so the guest gets its buffers
/// back without waiting for the reader, and wake the reader.
pub(super) fn stage_tx(shared: &Shared, conn: &Conn, pair: usize) {
    let Some(sig) = shared.pairs.get(pair) else {
        return;
    };
    let mut staged = match sig.staged.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        // The reader is taking frames right now: it looks at the ring again when woken.
        Err(std::sync::TryLockError::WouldBlock) => {
            sig.raise_tx();
            return;
        }
    };
    let room = STAGE_FRAMES.saturating_sub(staged.batch.len());
    let mut wake = room == 0;
    if room > 0 {
        let Staged {
            batch,
            scratch,
            refused,
        } = &mut *staged;
        match drain_tx(shared, conn, pair, batch, room, scratch) {
            Some(d) => {
                *refused += d.refused;
                wake |= d.more || d.refused > 0;
                if d.frames > 0 {
                    shared.stat(|s| s.tx_taken_at_kick += d.frames as u64);
                }
            }
            None => wake = true, // as before: the reader finds out
        }
    }
    // Raised under the staging lock (see `VhostQueue::take`).
    if wake || !staged.batch.is_empty() {
        sig.raise_tx();
    }
}
