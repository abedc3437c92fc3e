//! Devices: TUN and TAP adapters (`tuntap`), macvtap links (`macvtap`, whose adapters
//! are `tuntap` adapters with another backend) and the in-memory loopback pair
//! (`loopback`), all behind one [`Device`] trait so every layer above, and most tests,
//! can run on either.

pub mod forward;
pub mod links;
pub mod loopback;
pub mod macvtap;
mod netlink;
mod netns;
pub mod serial;

pub mod tuntap;
pub mod vhost_user;
pub mod wireguard;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::batch::PacketBatch;
use crate::error::{Error, VnetResult};
use crate::filter::bpf::Program;
use crate::filter::{Placement, UserFilter};
use crate::offload::gso::segment_all;
use crate::wire::vnet::VnetHdr;
use crate::wire::Medium;

pub use crate::sys::IFNAMSIZ;

/// A snapshot of an adapter's counters.
///
/// `rx_*`/`tx_*` frames and bytes count what passed through vnetio. `rx_dropped` counts
/// frames that were on their way to this adapter's reader but were dropped because its
/// queue was full; `tx_dropped` counts frames written that the other side dropped. For
/// kernel adapters both come from the kernel (counted since this open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Failed receive calls.
    pub rx_errors: u64,
    /// Frames whose write failed.
    pub tx_errors: u64,
    /// Frames dropped before this end could read them (its queue was full).
    pub rx_dropped: u64,
    /// Frames sent but dropped on the way.
    pub tx_dropped: u64,
    /// Frames sent merged into segmentation-offload super-frames (offload adapters).
    pub tx_coalesced: u64,
    /// Merged writes the kernel refused; the frames were then sent one by one.
    pub coalesce_fallbacks: u64,
    /// Frames a filter rejected (never delivered, not counted in `rx_frames` or
    /// `rx_dropped`). `None` while a classic kernel filter is attached: the kernel then
    /// counts its rejects in `rx_dropped`, inseparably from ring-full drops.
    pub rx_filtered: Option<u64>,
}

impl std::ops::AddAssign<&Stats> for Stats {
    /// Add another snapshot's traffic (frames, bytes, errors, coalescing): how an
    /// adapter's counters are the sum of its queues'. Drop and filter counts come from
    /// the kernel per adapter, so they are left alone.
    fn add_assign(&mut self, other: &Stats) {
        for (total, part) in [
            (&mut self.rx_frames, other.rx_frames),
            (&mut self.rx_bytes, other.rx_bytes),
            (&mut self.tx_frames, other.tx_frames),
            (&mut self.tx_bytes, other.tx_bytes),
            (&mut self.rx_errors, other.rx_errors),
            (&mut self.tx_errors, other.tx_errors),
            (&mut self.tx_coalesced, other.tx_coalesced),
            (&mut self.coalesce_fallbacks, other.coalesce_fallbacks),
        ] {
            *total += part;
        }
    }
}

/// Lock-free counters behind [`Stats`].
#[derive(Debug, Default)]
pub struct Counters {
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    rx_errors: AtomicU64,
    tx_errors: AtomicU64,
    rx_dropped: AtomicU64,
    tx_dropped: AtomicU64,
}

impl Counters {
    /// Count `frames` frames of `bytes` bytes received.
    pub fn rx(&self, frames: usize, bytes: usize) {
        self.rx_frames.fetch_add(frames as u64, Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Relaxed);
    }
    /// Count `frames` frames of `bytes` bytes sent.
    pub fn tx(&self, frames: usize, bytes: usize) {
        self.tx_frames.fetch_add(frames as u64, Relaxed);
        self.tx_bytes.fetch_add(bytes as u64, Relaxed);
    }
    /// [`Device::recv_batch`] of a device whose receive filter is a [`UserFilter`]: receive
    /// through `filter` (`raw`: queue `queue`'s unfiltered receive, as [`UserFilter::recv`]
    /// takes it) and count here the frames it kept. Returns their number.
    pub(crate) fn recv_through(
        &self,
        filter: &UserFilter,
        queue: usize,
        batch: &mut PacketBatch,
        max: usize,
        wait: Duration,
        raw: impl FnMut(&mut PacketBatch, usize, Duration) -> VnetResult<usize>,
    ) -> VnetResult<usize> {
        let (frames, bytes) = filter.recv(queue, batch, max, wait, raw)?;
        self.rx(frames, bytes);
        Ok(frames)
    }
    /// Count a failed receive call.
    pub fn rx_error(&self) {
        self.rx_errors.fetch_add(1, Relaxed);
    }
    /// Count a failed frame write.
    pub fn tx_error(&self) {
        self.tx_errors.fetch_add(1, Relaxed);
    }
    /// Count frames dropped before they could be read.
    pub fn rx_drop(&self, frames: usize) {
        self.rx_dropped.fetch_add(frames as u64, Relaxed);
    }
    /// Count frames dropped after being sent.
    pub fn tx_drop(&self, frames: usize) {
        self.tx_dropped.fetch_add(frames as u64, Relaxed);
    }
    /// Current values.
    pub fn snapshot(&self) -> Stats {
        Stats {
            rx_frames: self.rx_frames.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_frames: self.tx_frames.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            rx_errors: self.rx_errors.load(Relaxed),
            tx_errors: self.tx_errors.load(Relaxed),
            rx_dropped: self.rx_dropped.load(Relaxed),
            tx_dropped: self.tx_dropped.load(Relaxed),
            tx_coalesced: 0,
            coalesce_fallbacks: 0,
            rx_filtered: Some(0),
        }
    }
}

/// One packet port: something frames can be read from and written to.
///
/// Blocking is bounded: `recv_batch` waits at most `wait` for the first frame, so callers
/// (the Python bindings) can wait in short slices and check for signals between them.
pub trait Device: Send + Sync {
    /// Ethernet (TAP) or IP (TUN) frames.
    fn medium(&self) -> Medium;
    /// The MTU frames are checked against.
    fn mtu(&self) -> usize;
    /// Append up to `max` frames to `batch`: waits up to `wait` for the first one, then
    /// takes only what is already queued. Returns how many were appended (0 on timeout).
    fn recv_batch(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize>;
    /// Write every frame, in order; frames must have passed [`Device::check_frames`].
    /// An OS failure after `k` frames (`k` may be 0) is `Error::Partial { sent: k, .. }`,
    /// so the caller always learns how many frames left.
    fn send_frames(&self, frames: &[&[u8]]) -> VnetResult<usize>;
    /// Counters since this device was opened.
    fn stats(&self) -> VnetResult<Stats>;
    /// Close: wakes blocked receivers (they return `Error::Closed`) and releases the
    /// descriptor once no call is using it. Idempotent.
    fn close(&self);
    /// Whether [`Device::close`] was called.
    fn is_closed(&self) -> bool;
    /// A descriptor that polls readable when frames are waiting (for event loops).
    fn raw_fd(&self) -> VnetResult<RawFd>;

    /// Filter received frames with `program` (`None`: remove the filter), running it
    /// where `placement` says (`None`: where it is cheapest and still counted). Returns
    /// where it runs. On error the previous filter stays in place.
    fn set_filter(
        &self,
        program: Option<Program>,
        placement: Option<Placement>,
    ) -> VnetResult<Option<Placement>> {
        let _ = (program, placement);
        Err(Error::InvalidArgument(
            "filters are set on the adapter and apply to all its queues; call set_filter \
             on the adapter"
                .into(),
        ))
    }

    /// Where the current filter runs (`None`: no filter).
    fn filter_placement(&self) -> Option<Placement> {
        None
    }

    /// Write frames that may carry offload metadata (super-frames, partial checksums).
    /// The default resolves the metadata in software (completes checksums, splits
    /// super-frames) and writes plain frames; offload adapters pass it to the kernel.
    /// Returns how many of `frames` were sent.
    fn send_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<usize> {
        send_in_software(self, frames, hdrs)
    }

    /// Validate frames with metadata: the header must describe its frame; a super-frame is
    /// exempt from the MTU (up to 64 KiB), everything else is checked as usual.
    fn check_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<()> {
        check_meta(self.medium(), self.mtu(), frames, hdrs, |plain| {
            self.check_frames(plain)
        })
    }

    /// Validate every frame before any is written, so a bad frame in the middle of a
    /// batch never leaves the batch half sent.
    fn check_frames(&self, frames: &[&[u8]]) -> VnetResult<()> {
        let (medium, mtu) = (self.medium(), self.mtu());
        for (index, frame) in frames.iter().enumerate() {
            medium
                .check_frame(frame, mtu)
                .map_err(|reason| Error::BadFrame { index, reason })?;
        }
        Ok(())
    }
}

/// Shared by [`Device::check_frames_meta`] implementations: headers against frames, the
/// super-frame size limit, then `check_plain` on the frames without a GSO header.
pub(crate) fn check_meta(
    medium: Medium,
    mtu: usize,
    frames: &[&[u8]],
    hdrs: &[Option<VnetHdr>],
    check_plain: impl Fn(&[&[u8]]) -> VnetResult<()>,
) -> VnetResult<()> {
    if hdrs.len() != frames.len() {
        return Err(Error::InvalidArgument(format!(
            "{} frames but {} offload headers",
            frames.len(),
            hdrs.len()
        )));
    }
    let max_super = 65_535 + medium.link_overhead();
    for (index, (frame, hdr)) in frames.iter().zip(hdrs).enumerate() {
        if let Some(h) = hdr {
            h.check_frame(frame, medium)
                .map_err(|reason| Error::BadFrame { index, reason })?;
            if let Some(seg) =
                crate::wire::vnet::segment_ip_len(frame, *h, medium).filter(|&s| s > mtu)
            {
                return Err(Error::BadFrame {
                    index,
                    reason: format!(
                        "its segments would be {seg}-byte IP packets, larger than the MTU ({mtu}); \
                         lower gso_size or raise the MTU"
                    ),
                });
            }
            if h.is_gso() && frame.len() > max_super {
                return Err(Error::BadFrame {
                    index,
                    reason: format!(
                        "{} bytes is larger than a super-frame can be ({max_super})",
                        frame.len()
                    ),
                });
            }
        }
    }
    for (index, frame) in frames.iter().enumerate() {
        if !hdrs[index].is_some_and(VnetHdr::is_gso) {
            check_plain(std::slice::from_ref(frame)).map_err(|e| match e {
                Error::BadFrame { reason, .. } => Error::BadFrame { index, reason },
                other => other,
            })?;
        }
    }
    Ok(())
}

/// The default of [`Device::send_frames_meta`]: complete checksums and split super-frames
/// here, then send plain frames. Counts in input frames: `Partial { sent }` says how many
/// input frames went out whole.
pub(crate) fn send_in_software<D: Device + ?Sized>(
    dev: &D,
    frames: &[&[u8]],
    hdrs: &[Option<VnetHdr>],
) -> VnetResult<usize> {
    if hdrs.iter().all(Option::is_none) {
        return dev.send_frames(frames);
    }
    let mut plain = PacketBatch::default();
    let mut ends = Vec::with_capacity(frames.len()); // segments produced up to each input
    let inputs = frames.iter().zip(hdrs).map(|(f, h)| (*f, *h, 0));
    segment_all(inputs, dev.medium(), &mut plain, Some(&mut ends))
        .map_err(|(index, reason)| Error::BadFrame { index, reason })?;
    let slices: Vec<&[u8]> = plain.iter().collect();
    match dev.send_frames(&slices) {
        Ok(_) => Ok(frames.len()),
        Err(Error::Partial { sent, source, .. }) => Err(Error::Partial {
            sent: ends.iter().take_while(|&&end| end <= sent).count(),
            total: frames.len(),
            source,
        }),
        Err(e) => Err(e),
    }
}

/// Receive timestamps for a burst of frames read back to back: one clock read per
/// [`BurstClock::EVERY`] frames instead of one per frame.
///
/// Why: a clock read (CLOCK_REALTIME through the vDSO, ~20–25 ns here) per frame was a
/// measurable share of the reader's cost at 64-byte frames, where the whole per-frame
/// budget is ~1 µs. A frame's timestamp is the time the reader took it from the kernel,
/// to within the time it takes to read `EVERY` frames (tens of µs at most): frames read
/// in one go share the time taken at the first of each run of `EVERY`.
#[derive(Debug, Default)]
pub struct BurstClock {
    now: u64,
    left: u32,
}

impl BurstClock {
    /// Frames stamped with one clock read.
    pub const EVERY: u32 = 16;

    /// The timestamp for the next frame of the burst.
    pub fn stamp(&mut self) -> u64 {
        if self.left == 0 {
            self.now = now_ns();
            self.left = Self::EVERY;
        }
        self.left -= 1;
        self.now
    }
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME through the vDSO: ~20 ns).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Validate an interface name or `%d` pattern the way the kernel will see it.
///
/// # Errors
/// `Error::InvalidName` naming the problem: empty, longer than 15 bytes, `/`, `:`,
/// whitespace, NUL, `.`/`..`, or more than one `%`.
pub fn validate_ifname(name: &str) -> VnetResult<[u8; IFNAMSIZ]> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return bad("it is empty (give a name such as \"vn0\" or a pattern such as \"vn%d\")");
    }
    if bytes.len() >= IFNAMSIZ {
        return bad("it is longer than 15 bytes (the kernel's IFNAMSIZ limit)");
    }
    if name == "." || name == ".." {
        return bad("\".\" and \"..\" are reserved");
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || *c == '\0')
    {
        return Err(Error::InvalidName {
            name: name.to_owned(),
            reason: match c {
                '/' => "it contains '/'",
                ':' => "it contains ':' (reserved for alias names)",
                '\0' => "it contains a NUL byte",
                _ => "it contains whitespace",
            },
        });
    }
    let percents = name.matches('%').count();
    if percents > 1 || (percents == 1 && !name.contains("%d")) {
        return bad("a pattern may hold one '%d' and no other '%'");
    }
    let mut out = [0u8; IFNAMSIZ];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_ifname("vn0").is_ok());
        assert!(validate_ifname("vn%d").is_ok());
        assert!(validate_ifname("a23456789012345").is_ok());
        for bad in [
            "",
            "a234567890123456",
            "a/b",
            "a b",
            "a\tb",
            "a\0b",
            ".",
            "..",
            "a:1",
            "a%s",
            "%d%d",
        ] {
            assert!(
                matches!(validate_ifname(bad), Err(Error::InvalidName { .. })),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn counters() {
        let c = Counters::default();
        c.rx(2, 100);
        c.tx(1, 60);
        c.tx_error();
        c.rx_drop(3);
        let s = c.snapshot();
        assert_eq!(
            (s.rx_frames, s.rx_bytes, s.tx_frames, s.tx_bytes),
            (2, 100, 1, 60)
        );
        assert_eq!(
            (s.tx_errors, s.rx_dropped, s.rx_errors, s.tx_dropped),
            (1, 3, 0, 0)
        );
    }
}
