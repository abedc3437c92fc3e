//! One queue of an adapter: reading and writing frames in batches (readv/writev over
//! one descriptor), with the virtio-net header on offload adapters: GRO coalescing on
//! write, super-frames split or kept on read.

use super::config::Link;
use super::RxMode;
use crate::batch::{PacketBatch, MAX_FRAME};
use crate::device::{check_meta, send_in_software, BurstClock, Counters, Device, Stats};
use crate::error::{Error, VnetResult};
use crate::offload::gro;
use crate::offload::gso::segment;
use crate::sys;
use crate::wire::vnet::{complete_csum, gso, VnetHdr, F_NEEDS_CSUM, VNET_HDR_LEN};
use crate::wire::Medium;
use std::fs::File;
use std::io;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// One queue: one descriptor of an adapter.
pub struct Queue {
    pub(super) file: RwLock<Option<File>>,
    pub(super) raw: RawFd,
    pub(super) wake: File,
    pub(super) closed: AtomicBool,
    pub(super) counters: Counters,
    pub(super) medium: Medium,
    pub(super) link: Arc<Link>,
    pub(super) index: usize,
    pub(super) name: String,
    /// `Some` on offload adapters: frames carry a virtio-net header.
    pub(super) vnet: Option<VnetState>,
    /// Set once the kernel refused a merged super-frame write (EINVAL).
    pub(super) coalesce_off: AtomicBool,
    pub(super) coalesced: AtomicU64,
    pub(super) coalesce_fallbacks: AtomicU64,
}

/// Per-queue state of an offload (IFF_VNET_HDR) adapter.
pub(super) struct VnetState {
    pub(super) rx_mode: RxMode,
    /// TUN_F_* offloads the kernel accepted (what our writes may use).
    pub(super) offloads: u32,
    /// Where a received super-frame is held while it is split (segments mode).
    pub(super) scratch: Mutex<Vec<u8>>,
    /// Where a super-frame is merged before it is written.
    pub(super) tx_scratch: Mutex<Vec<u8>>,
}

impl Queue {
    /// Position of this queue in its adapter.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The adapter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn close_fd(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake pollers first (the eventfd stays readable), then wait for running calls
        // to leave before the descriptor is released.
        let _ = (&self.wake).write(&1u64.to_ne_bytes());
        let mut file = self
            .file
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *file = None;
    }

    /// Wait up to `wait` for `events` on the descriptor. `Ok(false)` on timeout.
    fn wait_for(&self, file: &File, events: libc::c_short, wait: Duration) -> VnetResult<bool> {
        let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
        // Round sub-millisecond waits up so a tiny timeout still polls once.
        let ms = if ms == 0 && !wait.is_zero() { 1 } else { ms };
        let (ready, woke) = sys::poll2(file.as_fd(), events, self.wake.as_fd(), ms)
            .map_err(|e| Error::os(format!("poll {}", self.name), e))?;
        if woke || self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(ready.readable || ready.writable || ready.error)
    }
}

impl Device for Queue {
    fn medium(&self) -> Medium {
        self.medium
    }

    fn mtu(&self) -> usize {
        self.link.current_mtu()
    }

    fn check_frames(&self, frames: &[&[u8]]) -> VnetResult<()> {
        self.link.check_frames(self.medium, frames)
    }

    fn recv_batch(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        let raw = |b: &mut PacketBatch, m, w| self.recv_raw(b, m, w);
        self.counters
            .recv_through(&self.link.filter, self.index, batch, max, wait, raw)
    }

    fn send_frames(&self, frames: &[&[u8]]) -> VnetResult<usize> {
        self.write_frames(frames, None)
    }

    fn send_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<usize> {
        match &self.vnet {
            // The kernel takes the metadata as it is, when it accepts every offload used.
            Some(v)
                if hdrs
                    .iter()
                    .flatten()
                    .all(|h| offload_accepted(v.offloads, *h)) =>
            {
                self.write_frames(frames, Some(hdrs))
            }
            _ => send_in_software(self, frames, hdrs),
        }
    }

    fn check_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<()> {
        check_meta(
            self.medium,
            self.link.current_mtu(),
            frames,
            hdrs,
            |plain| self.link.check_frames(self.medium, plain),
        )
    }

    fn stats(&self) -> VnetResult<Stats> {
        let mut s = self.counters.snapshot();
        (s.tx_coalesced, s.coalesce_fallbacks) = self.coalesce_counts();
        Ok(s)
    }

    fn close(&self) {
        self.close_fd();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn raw_fd(&self) -> VnetResult<RawFd> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(self.raw)
    }
}

/// What one `recv_raw` call carries from frame to frame: the burst's clock, and the length
/// of the last frame read, taken as the length of the next one, whose destination in the
/// arena is prefetched before the `read()` ([`sys::cache`] says why).
#[derive(Debug, Default)]
struct Burst {
    clock: BurstClock,
    last_len: usize,
}

/// Whether an adapter with TUN_F_* `offloads` on takes a frame with `hdr` as it is.
fn offload_accepted(offloads: u32, hdr: VnetHdr) -> bool {
    let need = match hdr.kind() {
        gso::TCPV4 => libc::TUN_F_TSO4,
        gso::TCPV6 => libc::TUN_F_TSO6,
        gso::UDP_L4 => libc::TUN_F_USO4 | libc::TUN_F_USO6,
        _ => 0,
    };
    let csum = if hdr.flags & F_NEEDS_CSUM != 0 {
        libc::TUN_F_CSUM
    } else {
        0
    };
    offloads & need == need && offloads & csum == csum
}

impl Queue {
    /// Receive without filtering; counts only errors. Reads until `max` frames, the
    /// kernel has no more, or the batch's byte budget is spent (`PacketBatch::
    /// recv_budget_spent`: a batch of 64 KiB super-frames stops at 8, so it stays in the
    /// cache); the first frame is always read.
    fn recv_raw(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        let guard = self
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = guard.as_ref().ok_or(Error::Closed)?;
        let deadline = Instant::now() + wait;
        let mut n = 0;
        let mut burst = Burst::default();
        while n < max && (n == 0 || !batch.recv_budget_spent()) {
            match self.read_one(file, batch, &mut burst) {
                Ok((frames, _)) => n += frames,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A malformed frame from the kernel: counted in rx_errors, skipped.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.link.filter.ring_empty(self.index);
                    if n > 0 {
                        break;
                    }
                    burst.clock = BurstClock::default(); // a new burst after the wait
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || !self.wait_for(file, libc::POLLIN, left)? {
                        break;
                    }
                }
                Err(e) => {
                    self.counters.rx_error();
                    if n > 0 {
                        break; // deliver what we have; the error repeats on the next call
                    }
                    let hint = self.gone_hint(&e);
                    let err = Error::os(format!("read from {}", self.name), e);
                    return Err(match hint {
                        Some(h) => err.with_hint(h),
                        None => err,
                    });
                }
            }
        }
        Ok(n)
    }

    /// Read one frame into `batch`: (frames appended, bytes appended). On an offload
    /// adapter in segments mode one read may append many frames.
    fn read_one(
        &self,
        file: &File,
        batch: &mut PacketBatch,
        burst: &mut Burst,
    ) -> io::Result<(usize, usize)> {
        let Some(v) = &self.vnet else {
            let slot = batch.recv_slot(MAX_FRAME);
            sys::cache::prefetch(&slot[..burst.last_len]);
            let len = (&*file).read(slot)?;
            burst.last_len = len;
            batch.commit(len, burst.clock.stamp());
            return Ok((1, len));
        };
        let mut raw_hdr = [0u8; VNET_HDR_LEN];
        let before = batch.nbytes();
        let slot = batch.recv_slot(MAX_FRAME);
        sys::cache::prefetch(&slot[..burst.last_len]);
        let n =
            (&*file).read_vectored(&mut [IoSliceMut::new(&mut raw_hdr), IoSliceMut::new(slot)])?;
        let ts = burst.clock.stamp();
        let len = n.saturating_sub(VNET_HDR_LEN);
        burst.last_len = len;
        let hdr = VnetHdr::parse(&raw_hdr).unwrap_or_default();
        let invalid = |why: String| {
            self.counters.rx_error();
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: bad frame from the kernel: {why}", self.name),
            )
        };
        if n < VNET_HDR_LEN {
            return Err(invalid("shorter than its virtio-net header".into()));
        }
        let plain = hdr.flags & F_NEEDS_CSUM == 0 && !hdr.is_gso();
        if plain || v.rx_mode == RxMode::Superframes {
            if let Err(why) = hdr.validate(len) {
                return Err(invalid(why));
            }
            batch.commit_with(len, ts, if plain { None } else { Some(hdr) });
            return Ok((1, len));
        }
        if !hdr.is_gso() {
            if let Err(why) = complete_csum(&mut slot[..len], hdr) {
                return Err(invalid(why));
            }
            batch.commit(len, ts);
            return Ok((1, len));
        }
        // A super-frame to split: move it aside, then append its segments.
        let mut scratch = v
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        scratch.clear();
        scratch.extend_from_slice(&slot[..len]);
        match segment(&scratch, hdr, self.medium, batch, ts) {
            Ok(count) => Ok((count, batch.nbytes() - before)),
            Err(why) => Err(invalid(why)),
        }
    }

    /// Write frames in order (with their virtio-net headers on offload adapters).
    /// Write one frame (behind `hdr` on offload adapters), waiting for room when the
    /// socket buffer is full. The error is returned raw, for the caller to classify.
    fn write_one(&self, file: &File, hdr: Option<VnetHdr>, frame: &[u8]) -> Result<(), WriteError> {
        loop {
            let result = if self.vnet.is_some() {
                let raw_hdr = hdr.unwrap_or_default().to_bytes();
                (&*file).write_vectored(&[IoSlice::new(&raw_hdr), IoSlice::new(frame)])
            } else {
                (&*file).write(frame)
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The socket send buffer is full: wait for room (wakes on close).
                    self.wait_for(file, libc::POLLOUT, Duration::from_millis(100))
                        .map_err(WriteError::Vnet)?;
                }
                Err(e) => return Err(WriteError::Io(e)),
            }
        }
    }

    /// The hint for an I/O error that means the adapter was deleted underneath us: EBADFD
    /// (the descriptor is attached to no adapter any more) or, while the kernel is still
    /// taking the adapter down, EIO with no interface of its name left. The name is looked
    /// up under the kernel's RTNL lock, which the deletion holds from taking the device
    /// down to releasing its name: a plain lookup in between (the writer saw EIO, the name
    /// is still there) would call a deleted adapter "down" (seen on a loaded machine).
    fn gone_hint(&self, e: &io::Error) -> Option<&'static str> {
        let gone = match e.raw_os_error() {
            Some(libc::EBADFD) => true,
            Some(libc::EIO) => !sys::if_exists_settled(self.link.ctl.as_fd(), &self.link.ifname),
            _ => false,
        };
        gone.then_some(
            "the adapter no longer exists: it was deleted while open (`ip link del`, \
             `vnetio delete --force`); close this one and open it again once it is back",
        )
    }

    fn write_error(&self, e: io::Error) -> Error {
        self.counters.tx_error();
        let hint = self.gone_hint(&e).or(match e.raw_os_error() {
            Some(libc::EIO) => {
                Some("the adapter is down: call up() (or `ip link set NAME up`) before sending")
            }
            Some(libc::EINVAL) => Some("the kernel rejected the frame's format"),
            _ => None,
        });
        let err = Error::os(format!("write to {}", self.name), e);
        match hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    }

    /// Write frames in order (with their virtio-net headers on offload adapters). On an
    /// offload adapter whose kernel takes TSO/USO, runs of plain frames of one flow are
    /// merged into super-frames first (see `gro`); if the kernel refuses a merged write
    /// (EINVAL, as some kernel versions do), merging is turned off for this queue, the
    /// fallback is counted, and the frames of that run are written one by one.
    fn write_frames(
        &self,
        frames: &[&[u8]],
        hdrs: Option<&[Option<VnetHdr>]>,
    ) -> VnetResult<usize> {
        let guard = self
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = guard.as_ref().ok_or(Error::Closed)?;
        let allow = match (&self.vnet, hdrs) {
            (Some(v), None) if !self.coalesce_off.load(Ordering::Relaxed) => gro_allow(v.offloads),
            _ => gro::Allow::default(),
        };
        let runs = if allow == gro::Allow::default() {
            (0..frames.len())
                .map(|i| gro::Run {
                    start: i,
                    end: i + 1,
                })
                .collect()
        } else {
            gro::plan(frames, self.medium, allow)
        };
        let (mut sent, mut bytes) = (0, 0);
        let mut failure = None;
        'runs: for run in runs {
            if run.end - run.start > 1 {
                let mut scratch = self.vnet.as_ref().map(|v| {
                    v.tx_scratch
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                });
                if let Some(buf) = scratch.as_deref_mut() {
                    if let Some(hdr) = gro::merge(frames, run, self.medium, buf) {
                        match self.write_one(file, Some(hdr), buf) {
                            Ok(()) => {
                                self.coalesced
                                    .fetch_add((run.end - run.start) as u64, Ordering::Relaxed);
                                sent = run.end;
                                bytes += frames[run.start..run.end]
                                    .iter()
                                    .map(|f| f.len())
                                    .sum::<usize>();
                                continue 'runs;
                            }
                            Err(WriteError::Io(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                                // This kernel refuses merged writes: stop merging, lose nothing.
                                self.coalesce_off.store(true, Ordering::Relaxed);
                                self.coalesce_fallbacks.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failure = Some(e.into_error(self));
                                break 'runs;
                            }
                        }
                    }
                }
            }
            for (i, frame) in frames.iter().enumerate().take(run.end).skip(run.start) {
                let hdr = hdrs.and_then(|h| h.get(i).copied().flatten());
                match self.write_one(file, hdr, frame) {
                    Ok(()) => {
                        sent = i + 1;
                        bytes += frame.len();
                    }
                    Err(e) => {
                        failure = Some(e.into_error(self));
                        break 'runs;
                    }
                }
            }
        }
        self.counters.tx(sent, bytes);
        match failure {
            None => Ok(sent),
            Some(Error::Closed) if sent == 0 => Err(Error::Closed),
            Some(e) => Err(Error::Partial {
                sent,
                total: frames.len(),
                source: Box::new(e),
            }),
        }
    }

    /// Frames written as part of merged super-frames, and merged writes the kernel
    /// refused (after which this queue writes frames one by one).
    pub fn coalesce_counts(&self) -> (u64, u64) {
        (
            self.coalesced.load(Ordering::Relaxed),
            self.coalesce_fallbacks.load(Ordering::Relaxed),
        )
    }
}

/// How a single write failed: the OS said no, or waiting for room ended (closed).
enum WriteError {
    Io(io::Error),
    Vnet(Error),
}

impl WriteError {
    /// The error to report (an OS failure is counted in `tx_errors` and given a hint).
    fn into_error(self, queue: &Queue) -> Error {
        match self {
            WriteError::Io(e) => queue.write_error(e),
            WriteError::Vnet(e) => e,
        }
    }
}

/// What may be merged on an adapter with TUN_F_* `offloads`.
fn gro_allow(offloads: u32) -> gro::Allow {
    gro::Allow {
        tcp4: offloads & libc::TUN_F_TSO4 != 0 && offloads & libc::TUN_F_CSUM != 0,
        tcp6: offloads & libc::TUN_F_TSO6 != 0 && offloads & libc::TUN_F_CSUM != 0,
        udp: offloads & (libc::TUN_F_USO4 | libc::TUN_F_USO6)
            == (libc::TUN_F_USO4 | libc::TUN_F_USO6)
            && offloads & libc::TUN_F_CSUM != 0,
    }
}
