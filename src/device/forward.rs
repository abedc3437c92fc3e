//! [`Forwarder`]: two Rust threads moving frames between two devices, one per direction,
//! with no Python and no interpreter lock between a frame's arrival on one side and its
//! departure on the other.
//!
//! Each thread loops `src.recv_batch` → `dst.send_frames_meta`: a batch of up to
//! [`ForwardOptions::batch`] frames per call, one copy per frame (the source's buffer into
//! the thread's own batch arena; the destination copies it out). Offload metadata read
//! with a frame (a TSO super-frame, a partial checksum) goes with it: a destination that
//! takes metadata (a TAP with `offload=True`, a `VhostUserNet` whose guest negotiated it)
//! gets the super-frame whole; any other completes checksums and splits super-frames in
//! software ([`Device::send_frames_meta`]'s default).
//!
//! Every frame the forwarder took from a source and did not hand to the destination is
//! counted in its direction's `dropped`: refused by the destination's checks
//! (`refused`), lost when a write failed part-way (`send_errors` counts the failed calls),
//! or in hand when the destination closed. Drops the destination itself makes after
//! accepting a frame (a full guest ring, a full loopback queue) are in its own `stats()`.
//!
//! A closed device stops the forwarder: both threads end, [`Forwarder::state`] says which
//! side closed, and the other device is left open. [`Forwarder::close`] stops the threads
//! (within one wait slice, [`SLICE`]) and leaves both devices open.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::batch::PacketBatch;
use crate::device::Device;
use crate::error::{Error, VnetResult};
use crate::wire::vnet::VnetHdr;

/// How long a thread waits for frames before checking whether it should stop: the bound
/// on how long [`Forwarder::close`] takes.
pub const SLICE: Duration = Duration::from_millis(20);
/// Pause after a failed receive call, so a persistent error does not spin.
const BACKOFF: Duration = Duration::from_millis(10);

/// Options of a [`Forwarder`].
#[derive(Debug, Clone, Copy)]
pub struct ForwardOptions {
    /// Largest batch taken from a source per call.
    pub batch: usize,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        ForwardOptions { batch: 256 }
    }
}

/// One direction's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Frames taken from the source.
    pub frames: u64,
    /// Bytes taken from the source.
    pub bytes: u64,
    /// Batches taken from the source.
    pub batches: u64,
    /// Frames taken that carried segmentation-offload metadata (super-frames).
    pub superframes: u64,
    /// Frames handed to the destination.
    pub delivered: u64,
    /// Frames taken and not delivered (`refused`, lost to failed writes, or in hand when
    /// the destination closed). `frames == delivered + dropped` once the thread is idle.
    pub dropped: u64,
    /// Of `dropped`: frames the destination's checks refused (e.g. larger than its MTU).
    pub refused: u64,
    /// Failed receive calls on the source.
    pub recv_errors: u64,
    /// Failed send calls on the destination.
    pub send_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    frames: AtomicU64,
    bytes: AtomicU64,
    batches: AtomicU64,
    superframes: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
    recv_errors: AtomicU64,
    send_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DirectionStats {
        DirectionStats {
            frames: self.frames.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            batches: self.batches.load(Relaxed),
            superframes: self.superframes.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            refused: self.refused.load(Relaxed),
            recv_errors: self.recv_errors.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
        }
    }
}

/// Where a forwarder is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Both threads are moving frames.
    Running,
    /// [`Forwarder::close`] was called.
    Closed,
    /// A device was closed, so the forwarder stopped: the message names it.
    Stopped(String),
}

struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
    counters: [Counters; 2],
    /// The last error a thread met (receive or send), for messages.
    last_error: Mutex<Option<String>>,
}

impl Shared {
    /// Leave `Running` for `to` (the first reason wins) and tell both threads to stop.
    fn finish(&self, to: State) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *state == State::Running {
            *state = to;
        }
        self.stop.store(true, Relaxed);
        self.changed.notify_all();
    }

    fn note_error(&self, what: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(what);
    }
}

/// Forward frames both ways between two devices. See the module documentation.
pub struct Forwarder {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    names: [String; 2],
}

impl Forwarder {
    /// Start forwarding between `a` and `b` (named `names` in messages).
    ///
    /// # Errors
    /// `InvalidArgument` when `a` and `b` are the same device, carry different media
    /// (Ethernet and IP), when either is closed, or when `opts.batch` is 0 or over 65536.
    pub fn start(
        a: Arc<dyn Device>,
        b: Arc<dyn Device>,
        names: [String; 2],
        opts: ForwardOptions,
    ) -> VnetResult<Forwarder> {
        if !(1..=65_536).contains(&opts.batch) {
            return Err(Error::InvalidArgument(format!(
                "batch must be between 1 and 65536 frames, not {}",
                opts.batch
            )));
        }
        if std::ptr::addr_eq(Arc::as_ptr(&a), Arc::as_ptr(&b)) {
            return Err(Error::InvalidArgument(format!(
                "a and b are the same adapter ({}): forward between two different adapters",
                names[0]
            )));
        }
        if a.medium() != b.medium() {
            return Err(Error::InvalidArgument(format!(
                "{} carries {} frames and {} carries {} frames: forward between two adapters \
                 of the same kind (two TAP-like or two TUN-like)",
                names[0],
                a.medium().as_str(),
                names[1],
                b.medium().as_str()
            )));
        }
        for (dev, name) in [(&a, &names[0]), (&b, &names[1])] {
            if dev.is_closed() {
                return Err(Error::InvalidArgument(format!(
                    "{name} is closed: forward between open adapters"
                )));
            }
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(State::Running),
            changed: Condvar::new(),
            counters: [Counters::default(), Counters::default()],
            last_error: Mutex::new(None),
        });
        let this = Forwarder {
            shared: Arc::clone(&shared),
            threads: Mutex::new(Vec::new()),
            names,
        };
        for (dir, (src, dst)) in [(Arc::clone(&a), Arc::clone(&b)), (b, a)]
            .into_iter()
            .enumerate()
        {
            let s = Arc::clone(&shared);
            let names = this.names.clone();
            let handle = std::thread::Builder::new()
                .name(format!("vnetio-fwd-{}", ["ab", "ba"][dir]))
                .spawn(move || {
                    let (src_name, dst_name) = (&names[dir], &names[1 - dir]);
                    pump(&*src, &*dst, src_name, dst_name, &s, dir, opts.batch);
                })
                .map_err(|e| Error::os("spawn a forwarding thread", e));
            match handle {
                Ok(h) => this
                    .threads
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(h),
                // `this` is dropped on return, which stops the thread already started.
                Err(e) => return Err(e),
            }
        }
        Ok(this)
    }

    /// The names given at start, `[a, b]`.
    pub fn names(&self) -> &[String; 2] {
        &self.names
    }

    /// Counters of `a → b` (`[0]`) and `b → a` (`[1]`).
    pub fn stats(&self) -> [DirectionStats; 2] {
        [
            self.shared.counters[0].snapshot(),
            self.shared.counters[1].snapshot(),
        ]
    }

    /// Where the forwarder is.
    pub fn state(&self) -> State {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last receive or send error a thread met (`None`: none yet).
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Wait until the forwarder is no longer running, at most `timeout`. Returns whether
    /// it stopped.
    pub fn wait(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *state == State::Running {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Stop both threads and wait for them (at most about one [`SLICE`] plus the batch
    /// in hand). Both devices stay open. Idempotent.
    pub fn close(&self) {
        self.shared.finish(State::Closed);
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.close();
    }
}

/// One direction: `src` → `dst`, until told to stop or a device closes.
fn pump(
    src: &dyn Device,
    dst: &dyn Device,
    src_name: &str,
    dst_name: &str,
    shared: &Shared,
    dir: usize,
    max: usize,
) {
    let c = &shared.counters[dir];
    let mut batch = PacketBatch::default();
    let closed = |name: &str| State::Stopped(format!("{name} was closed"));
    while !shared.stop.load(Relaxed) {
        batch.clear();
        match src.recv_batch(&mut batch, max, SLICE) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(Error::Closed) => {
                shared.finish(closed(src_name));
                return;
            }
            Err(e) => {
                c.recv_errors.fetch_add(1, Relaxed);
                shared.note_error(format!("receive from {src_name}: {e}"));
                if src.is_closed() {
                    shared.finish(closed(src_name));
                    return;
                }
                std::thread::sleep(BACKOFF);
                continue;
            }
        }
        let n = batch.len();
        c.batches.fetch_add(1, Relaxed);
        c.frames.fetch_add(n as u64, Relaxed);
        c.bytes.fetch_add(batch.nbytes() as u64, Relaxed);
        let slices: Vec<&[u8]> = batch.iter().collect();
        let hdrs: Vec<Option<VnetHdr>> = if batch.has_offload() {
            let h: Vec<_> = (0..n).map(|i| batch.hdr(i)).collect();
            let supers = h.iter().filter(|h| h.is_some_and(VnetHdr::is_gso)).count();
            c.superframes.fetch_add(supers as u64, Relaxed);
            h
        } else {
            Vec::new()
        };
        if let Err(stop) = deliver(dst, dst_name, &slices, &hdrs, shared, c) {
            shared.finish(stop);
            return;
        }
    }
}

/// Send `frames` (with `hdrs`, or none when empty) to `dst`, skipping and counting frames
/// its checks refuse. `Err` carries the state to stop in (the destination closed).
fn deliver(
    dst: &dyn Device,
    dst_name: &str,
    frames: &[&[u8]],
    hdrs: &[Option<VnetHdr>],
    shared: &Shared,
    c: &Counters,
) -> Result<(), State> {
    let meta = !hdrs.is_empty();
    let mut at = 0;
    while at < frames.len() {
        let (f, h) = (&frames[at..], if meta { &hdrs[at..] } else { hdrs });
        let checked = if meta {
            dst.check_frames_meta(f, h)
        } else {
            dst.check_frames(f)
        };
        // Frames before a refused one are valid: send them, skip it, check the rest.
        let (good, refused) = match checked {
            Ok(()) => (f.len(), false),
            Err(Error::BadFrame { index, reason }) => {
                shared.note_error(format!("{dst_name} refused a frame: {reason}"));
                (index, true)
            }
            Err(e) => {
                // Not about one frame (e.g. the device cannot take metadata): drop the rest.
                shared.note_error(format!("send to {dst_name}: {e}"));
                c.dropped.fetch_add(f.len() as u64, Relaxed);
                c.refused.fetch_add(f.len() as u64, Relaxed);
                return Ok(());
            }
        };
        if good > 0 {
            let result = if meta {
                dst.send_frames_meta(&f[..good], &h[..good])
            } else {
                dst.send_frames(&f[..good])
            };
            let sent = match result {
                Ok(k) => k.min(good),
                Err(Error::Partial { sent, source, .. }) => {
                    c.send_errors.fetch_add(1, Relaxed);
                    shared.note_error(format!("send to {dst_name}: {source}"));
                    sent.min(good)
                }
                Err(Error::QueueFull { sent, .. }) => {
                    c.send_errors.fetch_add(1, Relaxed);
                    shared.note_error(format!("send to {dst_name}: its queue is full"));
                    sent.min(good)
                }
                Err(Error::Closed) => 0,
                Err(e) => {
                    c.send_errors.fetch_add(1, Relaxed);
                    shared.note_error(format!("send to {dst_name}: {e}"));
                    0
                }
            };
            c.delivered.fetch_add(sent as u64, Relaxed);
            c.dropped.fetch_add((good - sent) as u64, Relaxed);
            if sent < good && dst.is_closed() {
                // In hand when the destination closed: lost, counted.
                let rest = (f.len() - good) as u64;
                c.dropped.fetch_add(rest, Relaxed);
                return Err(State::Stopped(format!("{dst_name} was closed")));
            }
        }
        if refused {
            c.dropped.fetch_add(1, Relaxed);
            c.refused.fetch_add(1, Relaxed);
            at += good + 1;
        } else {
            at += good;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::loopback::{pair, LoopbackEnd, Overflow};
    use crate::wire::Medium;

    fn frame(i: u8, len: usize) -> Vec<u8> {
        let mut f = vec![i; len];
        f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental EtherType
        f
    }

    /// outer_a ⇄ [a ⇄ fwd ⇄ b] ⇄ outer_b
    type Rig = (
        Arc<LoopbackEnd>,
        Arc<LoopbackEnd>,
        Forwarder,
        [Arc<dyn Device>; 2],
    );

    fn rig(mtu_b: usize) -> Rig {
        let (oa, a) = pair(4096, Medium::Ethernet, 1500, Overflow::Drop).unwrap();
        let (ob, b) = pair(4096, Medium::Ethernet, mtu_b, Overflow::Drop).unwrap();
        let (a, b): (Arc<dyn Device>, Arc<dyn Device>) = (Arc::new(a), Arc::new(b));
        let fwd = Forwarder::start(
            Arc::clone(&a),
            Arc::clone(&b),
            ["a".into(), "b".into()],
            ForwardOptions::default(),
        )
        .unwrap();
        (Arc::new(oa), Arc::new(ob), fwd, [a, b])
    }

    fn drain(end: &LoopbackEnd, want: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let end_at = Instant::now() + Duration::from_secs(5);
        let mut batch = PacketBatch::default();
        while out.len() < want && Instant::now() < end_at {
            batch.clear();
            end.recv_batch(&mut batch, 256, Duration::from_millis(50))
                .unwrap();
            out.extend(batch.iter().map(<[u8]>::to_vec));
        }
        out
    }

    #[test]
    fn both_ways_in_order_and_counted() {
        let (oa, ob, fwd, _devs) = rig(1500);
        let there: Vec<Vec<u8>> = (0..100).map(|i| frame(i, 60 + usize::from(i))).collect();
        let back: Vec<Vec<u8>> = (0..50).map(|i| frame(200 - i, 1000)).collect();
        let s: Vec<&[u8]> = there.iter().map(Vec::as_slice).collect();
        oa.send_frames(&s).unwrap();
        let s: Vec<&[u8]> = back.iter().map(Vec::as_slice).collect();
        ob.send_frames(&s).unwrap();
        assert_eq!(drain(&ob, 100), there);
        assert_eq!(drain(&oa, 50), back);
        assert_eq!(fwd.state(), State::Running);
        fwd.close(); // joins the threads: the counters are final
        let [ab, ba] = fwd.stats();
        assert_eq!((ab.frames, ab.delivered, ab.dropped), (100, 100, 0));
        assert_eq!((ba.frames, ba.delivered, ba.dropped), (50, 50, 0));
        let bytes: usize = there.iter().map(Vec::len).sum();
        assert_eq!(ab.bytes, bytes as u64);
    }

    #[test]
    fn refused_frames_are_counted_and_the_rest_delivered() {
        let (oa, ob, fwd, _devs) = rig(576);
        let frames = [frame(1, 100), frame(2, 1400), frame(3, 200)];
        let s: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        oa.send_frames(&s).unwrap();
        let got = drain(&ob, 2);
        assert_eq!(got, vec![frames[0].clone(), frames[2].clone()]);
        fwd.close();
        let ab = fwd.stats()[0];
        assert_eq!(
            (ab.frames, ab.delivered, ab.dropped, ab.refused),
            (3, 2, 1, 1)
        );
        assert!(fwd.last_error().unwrap().contains("b refused"));
    }

    #[test]
    fn close_is_prompt_and_leaves_devices_open() {
        let (_oa, _ob, fwd, [a, b]) = rig(1500);
        let t = Instant::now();
        fwd.close();
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(fwd.state(), State::Closed);
        assert!(!a.is_closed() && !b.is_closed());
        fwd.close(); // idempotent
    }

    #[test]
    fn a_closed_side_stops_it() {
        let (_oa, _ob, fwd, [a, b]) = rig(1500);
        b.close();
        assert!(fwd.wait(Duration::from_secs(2)));
        assert_eq!(fwd.state(), State::Stopped("b was closed".into()));
        assert!(!a.is_closed());
        fwd.close();
        assert_eq!(fwd.state(), State::Stopped("b was closed".into()));
    }

    #[test]
    fn bad_pairs_are_refused() {
        let (_x, a) = pair(4, Medium::Ethernet, 1500, Overflow::Drop).unwrap();
        let (_y, t) = pair(4, Medium::Ip, 1500, Overflow::Drop).unwrap();
        let (a, t): (Arc<dyn Device>, Arc<dyn Device>) = (Arc::new(a), Arc::new(t));
        let names = || ["a".to_owned(), "t".to_owned()];
        let o = ForwardOptions::default();
        let err = Forwarder::start(Arc::clone(&a), Arc::clone(&t), names(), o).err();
        assert!(err.unwrap().to_string().contains("same kind"));
        let err = Forwarder::start(Arc::clone(&a), Arc::clone(&a), names(), o).err();
        assert!(err.unwrap().to_string().contains("same adapter"));
        let (_z, c) = pair(4, Medium::Ethernet, 1500, Overflow::Drop).unwrap();
        let c: Arc<dyn Device> = Arc::new(c);
        let err = Forwarder::start(a, c, names(), ForwardOptions { batch: 0 }).err();
        assert!(err.unwrap().to_string().contains("batch"));
    }
}
