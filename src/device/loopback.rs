//! An in-memory adapter pair: what one end sends, the other receives.
//!
//! Each direction is a bounded queue of fixed-size slots allocated once (no allocation
//! per frame). A full queue either drops the frame and counts it in the receiving end's
//! `rx_dropped` (like a kernel adapter whose reader falls behind) or refuses it with
//! `Error::QueueFull`, as the caller chose. Each end also owns an eventfd that is readable
//! while frames wait, so event loops can poll a loopback end like a real adapter.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{now_ns, Counters, Device, Stats};
use crate::batch::PacketBatch;
use crate::error::{Error, VnetResult};
use crate::filter::bpf::Program;
use crate::filter::{Placement, UserFilter};
use crate::sys;
use crate::wire::Medium;

/// What a full queue does with a frame that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop it and count it (in the receiver's `rx_dropped`).
    Drop,
    /// Refuse it: `send_frames` fails with `Error::QueueFull` (frames before it stay queued).
    Error,
}

struct Ring {
    slots: Vec<u8>,
    lens: Vec<u32>,
    head: usize,
    count: usize,
    closed: bool,
}

/// One direction: frames waiting for one end.
struct Queue {
    ring: Mutex<Ring>,
    nonempty: Condvar,
    slot_size: usize,
    capacity: usize,
    /// Readable while the ring holds frames (level-triggered by hand).
    ready: File,
}

impl Queue {
    fn new(capacity: usize, slot_size: usize) -> VnetResult<Self> {
        let ready = File::from(sys::eventfd().map_err(|e| Error::os("eventfd", e))?);
        Ok(Queue {
            ring: Mutex::new(Ring {
                slots: vec![0; capacity * slot_size],
                lens: vec![0; capacity],
                head: 0,
                count: 0,
                closed: false,
            }),
            nonempty: Condvar::new(),
            slot_size,
            capacity,
            ready,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding this lock cannot leave the ring inconsistent (all updates
        // are plain stores after bounds checks), so a poisoned lock is still usable.
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_ready(&self, ready: bool) {
        if ready {
            let _ = (&self.ready).write(&1u64.to_ne_bytes());
        } else {
            let mut buf = [0u8; 8];
            let _ = (&self.ready).read(&mut buf);
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.nonempty.notify_all();
        self.set_ready(true);
    }
}

/// One end of a loopback pair. Receives from `rx`, sends into `tx` (the peer's `rx`).
pub struct LoopbackEnd {
    rx: Arc<Queue>,
    tx: Arc<Queue>,
    peer_counters: Arc<Counters>,
    counters: Arc<Counters>,
    medium: Medium,
    mtu: usize,
    overflow: Overflow,
    closed: AtomicBool,
    filter: UserFilter,
}

/// Make a connected pair of in-memory ends, each with a queue of `capacity` frames.
///
/// # Errors
/// `InvalidArgument` for a zero capacity or an MTU outside 68..=65535; `Os` if an eventfd
/// cannot be made.
pub fn pair(
    capacity: usize,
    medium: Medium,
    mtu: usize,
    overflow: Overflow,
) -> VnetResult<(LoopbackEnd, LoopbackEnd)> {
    if capacity == 0 || capacity > 1 << 20 {
        return Err(Error::InvalidArgument(format!(
            "capacity must be between 1 and {} frames, not {capacity}",
            1 << 20
        )));
    }
    if !(68..=65_535).contains(&mtu) {
        return Err(Error::InvalidArgument(format!(
            "mtu must be between 68 and 65535, not {mtu}"
        )));
    }
    let slot = mtu + medium.link_overhead();
    let (q1, q2) = (
        Arc::new(Queue::new(capacity, slot)?),
        Arc::new(Queue::new(capacity, slot)?),
    );
    let (c1, c2) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
    let end = |rx: &Arc<Queue>, tx: &Arc<Queue>, mine: &Arc<Counters>, peer: &Arc<Counters>| {
        LoopbackEnd {
            rx: Arc::clone(rx),
            tx: Arc::clone(tx),
            counters: Arc::clone(mine),
            peer_counters: Arc::clone(peer),
            medium,
            mtu,
            overflow,
            closed: AtomicBool::new(false),
            filter: UserFilter::default(),
        }
    };
    Ok((end(&q1, &q2, &c1, &c2), end(&q2, &q1, &c2, &c1)))
}

impl LoopbackEnd {
    /// Frames waiting to be received by this end.
    pub fn pending(&self) -> usize {
        self.rx.lock().count
    }

    /// The queue capacity in frames.
    pub fn capacity(&self) -> usize {
        self.rx.capacity
    }

    /// Receive without filtering or counting.
    fn recv_raw(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let deadline = Instant::now() + wait;
        let mut ring = self.rx.lock();
        loop {
            if ring.count > 0 {
                let n = Self::take_ready(&mut ring, &self.rx, batch, max);
                if ring.count == 0 {
                    self.rx.set_ready(false);
                }
                return Ok(n);
            }
            if ring.closed || self.is_closed() {
                return Err(Error::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(0);
            }
            ring = self
                .rx
                .nonempty
                .wait_timeout(ring, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    fn take_ready(ring: &mut Ring, q: &Queue, batch: &mut PacketBatch, max: usize) -> usize {
        let n = ring.count.min(max);
        let ts = now_ns();
        for _ in 0..n {
            let len = ring.lens[ring.head] as usize;
            let start = ring.head * q.slot_size;
            batch.push(&ring.slots[start..start + len], ts);
            ring.head = (ring.head + 1) % q.capacity;
            ring.count -= 1;
        }
        n
    }
}

impl Device for LoopbackEnd {
    fn medium(&self) -> Medium {
        self.medium
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn recv_batch(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        let raw = |b: &mut PacketBatch, m, w| self.recv_raw(b, m, w);
        self.counters
            .recv_through(&self.filter, 0, batch, max, wait, raw)
    }

    fn set_filter(
        &self,
        program: Option<Program>,
        placement: Option<Placement>,
    ) -> VnetResult<Option<Placement>> {
        if let Some(p @ (Placement::Kernel | Placement::Classic)) = placement {
            return Err(Error::InvalidArgument(format!(
                "a loopback adapter has no kernel side; its filter runs in userspace \
                 (asked for {:?})",
                p.as_str()
            )));
        }
        let placement = program.as_ref().map(|_| Placement::Userspace);
        self.filter.set(program.map(Arc::new));
        Ok(placement)
    }

    fn filter_placement(&self) -> Option<Placement> {
        self.filter.is_set().then_some(Placement::Userspace)
    }

    fn send_frames(&self, frames: &[&[u8]]) -> VnetResult<usize> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let q = &self.tx;
        let mut ring = q.lock();
        if ring.closed {
            let source = Error::os(
                "send on loopback",
                std::io::Error::from_raw_os_error(libc::EPIPE),
            )
            .with_hint("the other end is closed");
            return Err(Error::Partial {
                sent: 0,
                total: frames.len(),
                source: Box::new(source),
            });
        }
        let (mut queued, mut bytes, mut dropped) = (0, 0, 0);
        for frame in frames {
            if ring.count == q.capacity {
                match self.overflow {
                    Overflow::Drop => {
                        dropped += 1;
                        bytes += frame.len();
                        continue;
                    }
                    Overflow::Error => break,
                }
            }
            let tail = (ring.head + ring.count) % q.capacity;
            let start = tail * q.slot_size;
            ring.slots[start..start + frame.len()].copy_from_slice(frame);
            ring.lens[tail] = frame.len() as u32;
            ring.count += 1;
            queued += 1;
            bytes += frame.len();
        }
        if queued > 0 {
            q.set_ready(true);
        }
        drop(ring);
        if queued > 0 {
            q.nonempty.notify_all();
        }
        // Dropped frames were sent (the loss is the receiver's, as with a kernel ring).
        self.counters.tx(queued + dropped, bytes);
        self.peer_counters.rx_drop(dropped);
        if queued + dropped < frames.len() {
            return Err(Error::QueueFull {
                sent: queued,
                total: frames.len(),
                capacity: q.capacity,
            });
        }
        Ok(frames.len())
    }

    fn stats(&self) -> VnetResult<Stats> {
        let mut s = self.counters.snapshot();
        s.rx_filtered = Some(self.filter.rejected());
        Ok(s)
    }

    fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            // Wake our own blocked receivers, and tell the peer no more frames will come.
            self.rx.close();
            self.tx.close();
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn raw_fd(&self) -> VnetResult<RawFd> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(self.rx.ready.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Vec<u8> {
        let mut f = vec![n; 60];
        f[12] = 0x88;
        f
    }

    #[test]
    fn send_then_receive_in_order() {
        let (a, b) = pair(8, Medium::Ethernet, 1500, Overflow::Drop).unwrap();
        let frames: Vec<Vec<u8>> = (0..5).map(frame).collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(a.send_frames(&refs).unwrap(), 5);
        assert_eq!(b.pending(), 5);
        let mut batch = PacketBatch::default();
        assert_eq!(b.recv_batch(&mut batch, 3, Duration::ZERO).unwrap(), 3);
        assert_eq!(b.recv_batch(&mut batch, 10, Duration::ZERO).unwrap(), 2);
        assert_eq!(batch.iter().collect::<Vec<_>>(), refs);
        assert_eq!(a.stats().unwrap().tx_frames, 5);
        assert_eq!(b.stats().unwrap().rx_frames, 5);
        assert_eq!(b.stats().unwrap().rx_bytes, 300);
    }

    #[test]
    fn timeout_returns_zero() {
        let (_a, b) = pair(2, Medium::Ethernet, 1500, Overflow::Drop).unwrap();
        let mut batch = PacketBatch::default();
        let t = Instant::now();
        assert_eq!(
            b.recv_batch(&mut batch, 1, Duration::from_millis(20))
                .unwrap(),
            0
        );
        assert!(t.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn full_queue_drops_are_counted() {
        let (a, b) = pair(2, Medium::Ethernet, 1500, Overflow::Drop).unwrap();
        let f = frame(1);
        assert_eq!(a.send_frames(&[&f, &f, &f, &f]).unwrap(), 4);
        assert_eq!(b.pending(), 2);
        assert_eq!(b.stats().unwrap().rx_dropped, 2);
    }

    #[test]
    fn full_queue_error_reports_how_many_were_queued() {
        let (a, b) = pair(2, Medium::Ethernet, 1500, Overflow::Error).unwrap();
        let f = frame(1);
        match a.send_frames(&[&f, &f, &f]) {
            Err(Error::QueueFull {
                sent: 2,
                total: 3,
                capacity: 2,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(b.pending(), 2);
        assert_eq!(b.stats().unwrap().rx_dropped, 0);
    }

    #[test]
    fn close_wakes_a_blocked_receiver() {
        let (a, b) = pair(2, Medium::Ethernet, 1500, Overflow::Drop).unwrap();
        let b = Arc::new(b);
        let b2 = Arc::clone(&b);
        let t = std::thread::spawn(move || {
            let mut batch = PacketBatch::default();
            b2.recv_batch(&mut batch, 1, Duration::from_secs(10))
        });
        std::thread::sleep(Duration::from_millis(20));
        b.close();
        assert!(matches!(t.join().unwrap(), Err(Error::Closed)));
        drop(a);
    }
}
