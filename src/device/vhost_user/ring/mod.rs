//! The data path over a guest's split virtqueues: frames the guest transmitted are copied
//! out of its TX ring into a [`PacketBatch`], frames for the guest are copied into the
//! buffers it posted on its RX ring. Pure: no sockets, no threads, no eventfds; it works on
//! a `virtio_queue::Queue` and any `vm_memory::GuestMemory`, so the tests run it over
//! virtio-queue's mock driver and test memory.
//!
//! Contract: whatever the guest writes into its rings and descriptors, nothing here
//! panics, reads or writes outside guest memory, or loops without bound. A descriptor
//! chain that does not make sense is refused, handed back to the guest as used with
//! length 0 (so the guest's driver can reclaim the buffer), and counted by its
//! [`ChainFault`]; a ring whose indexes make no sense stops the queue ([`RingFault`]).
//!
//! Copies: one per frame in each direction. A frame the guest transmitted is read from
//! guest memory straight into the batch's arena; a frame for the guest is written from
//! the caller's slice straight into the guest's buffers. Splitting a super-frame in
//! software (segments mode, or a guest that did not negotiate TSO) adds one more, as it
//! does on a TAP.

use std::num::Wrapping;
use std::sync::atomic::Ordering;

use virtio_queue::{DescriptorChain, Error as QueueError, Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions};

use crate::batch::{PacketBatch, MAX_FRAME};
use crate::device::tuntap::RxMode;
use crate::offload::gso::segment;
use crate::wire::vnet::{complete_csum, VnetHdr, F_NEEDS_CSUM};
use crate::wire::Medium;

/// Longest frame (after the virtio-net header) accepted from a guest: a 64 KiB IP
/// super-frame behind an Ethernet header and one VLAN tag.
pub const MAX_GUEST_FRAME: usize = 65_535 + 14 + 4;

/// Why a descriptor chain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainFault {
    /// The chain does not end: a loop, a `next` index outside the table, a descriptor or
    /// indirect table that cannot be read, or an indirect table inside an indirect table.
    Unterminated,
    /// A buffer lies (partly) outside guest memory.
    OutOfBounds,
    /// A device-writable buffer in a chain the device must read (guest TX), or a
    /// read-only buffer in a chain the device must write (guest RX).
    WrongDirection,
    /// More bytes than the largest frame ([`MAX_GUEST_FRAME`]).
    TooLong,
    /// Too short for the virtio-net header.
    ShortHeader,
}

/// Refused chains, by fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// [`ChainFault::Unterminated`].
    pub unterminated: u64,
    /// [`ChainFault::OutOfBounds`].
    pub out_of_bounds: u64,
    /// [`ChainFault::WrongDirection`].
    pub wrong_direction: u64,
    /// [`ChainFault::TooLong`].
    pub too_long: u64,
    /// [`ChainFault::ShortHeader`].
    pub short_header: u64,
}

impl FaultCounts {
    /// Count one refused chain.
    pub fn count(&mut self, fault: ChainFault) {
        let slot = match fault {
            ChainFault::Unterminated => &mut self.unterminated,
            ChainFault::OutOfBounds => &mut self.out_of_bounds,
            ChainFault::WrongDirection => &mut self.wrong_direction,
            ChainFault::TooLong => &mut self.too_long,
            ChainFault::ShortHeader => &mut self.short_header,
        };
        *slot += 1;
    }

    /// All refused chains.
    pub fn total(&self) -> u64 {
        self.unterminated
            + self.out_of_bounds
            + self.wrong_direction
            + self.too_long
            + self.short_header
    }

    /// Add `other`'s counts to these.
    pub fn add(&mut self, other: &FaultCounts) {
        self.unterminated += other.unterminated;
        self.out_of_bounds += other.out_of_bounds;
        self.wrong_direction += other.wrong_direction;
        self.too_long += other.too_long;
        self.short_header += other.short_header;
    }
}

/// A ring that cannot be processed further until the guest's driver resets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFault {
    /// The queue is not set up (not ready, or no ring addresses).
    NotReady,
    /// The available index moved more than the ring size past what was processed.
    AvailIndex,
    /// A ring structure (available or used ring) lies outside guest memory.
    Memory,
}

impl From<QueueError> for RingFault {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::QueueNotReady => RingFault::NotReady,
            QueueError::InvalidAvailRingIndex => RingFault::AvailIndex,
            _ => RingFault::Memory,
        }
    }
}

/// The next chain the guest made available, if any.
fn next_chain<'m, M: GuestMemory>(
    queue: &mut Queue,
    mem: &'m M,
) -> Result<Option<DescriptorChain<&'m M>>, RingFault> {
    Ok(queue.iter(mem)?.next())
}

/// Chains the guest made available and the device has not taken yet (also on a stopped
/// queue, as long as its rings are known).
///
/// # Errors
/// The ring's fault when its available index cannot be read or makes no sense.
pub fn pending<M: GuestMemory>(queue: &Queue, mem: &M) -> Result<u16, RingFault> {
    if queue.avail_ring() == 0 {
        return Err(RingFault::NotReady);
    }
    let avail = queue.avail_idx(mem, Ordering::Acquire)?;
    let n = (avail - Wrapping(queue.next_avail())).0;
    if n > queue.size() {
        return Err(RingFault::AvailIndex);
    }
    Ok(n)
}

/// How the frames a guest transmits are taken.
#[derive(Debug, Clone, Copy)]
pub struct TxConfig {
    /// Length of the virtio-net header before each frame (10 or 12).
    pub hdr_len: usize,
    /// Keep offload metadata, or complete checksums and split super-frames.
    pub rx_mode: RxMode,
    /// Always Ethernet for virtio-net; kept as a parameter for `segment`.
    pub medium: Medium,
    /// Receive timestamp given to every frame of the call.
    pub timestamp_ns: u64,
}

/// What one [`pop_tx`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxTally {
    /// Frames appended to the batch (a split super-frame counts each segment).
    pub frames: usize,
    /// Bytes appended to the batch.
    pub bytes: usize,
    /// Chains handed back to the guest (as used), refused ones included.
    pub chains: usize,
    /// Chains refused, by fault.
    pub faults: FaultCounts,
    /// Frames whose virtio-net header did not describe them (or that were shorter than
    /// an Ethernet header): refused, counted here.
    pub bad_frames: u64,
    /// Segmentation-offload super-frames among the frames read (before any split).
    pub superframes: u64,
    /// Whether chains were left in the ring because the batch reached `max` frames.
    pub more: bool,
}

/// Read one TX chain: the virtio-net header into `hdr`, the frame into `out`. Returns the
/// frame length. The chain is read as one byte stream, so the header and the frame may
/// be split across descriptors anywhere (VIRTIO_F_ANY_LAYOUT, implied by VERSION_1).
fn read_tx_chain<M: GuestMemory>(
    chain: DescriptorChain<&M>,
    mem: &M,
    hdr: &mut [u8],
    out: &mut [u8],
) -> Result<usize, ChainFault> {
    let (mut got_hdr, mut len, mut seen, mut open) = (0usize, 0usize, 0usize, false);
    for desc in chain {
        seen += 1;
        // The iterator stops silently at a loop, a bad `next` or an unreadable table; a
        // chain whose last descriptor still says NEXT was cut short by one of those.
        open = desc.has_next();
        if desc.is_write_only() {
            return Err(ChainFault::WrongDirection);
        }
        let mut addr = desc.addr();
        let mut left = desc.len() as usize;
        if got_hdr < hdr.len() {
            let n = left.min(hdr.len() - got_hdr);
            mem.read_slice(&mut hdr[got_hdr..got_hdr + n], addr)
                .map_err(|_| ChainFault::OutOfBounds)?;
            got_hdr += n;
            left -= n;
            addr = addr.checked_add(n as u64).ok_or(ChainFault::OutOfBounds)?;
        }
        if left == 0 {
            continue;
        }
        let end = len
            .checked_add(left)
            .filter(|&end| end <= out.len())
            .ok_or(ChainFault::TooLong)?;
        mem.read_slice(&mut out[len..end], addr)
            .map_err(|_| ChainFault::OutOfBounds)?;
        len = end;
    }
    if seen == 0 || open {
        return Err(ChainFault::Unterminated);
    }
    if got_hdr < hdr.len() {
        return Err(ChainFault::ShortHeader);
    }
    Ok(len)
}

/// Take up to `max` frames the guest transmitted from its TX `queue` into `batch`.
///
/// Each chain is returned to the guest as used (length 0: the device writes nothing into
/// a TX buffer) right after it is read, refused or not. When the ring runs dry,
/// notifications are re-enabled, and the ring is checked once more so a frame that
/// arrived meanwhile is not left waiting for a kick that will not come.
///
/// # Errors
/// A [`RingFault`] when the ring itself cannot be used; frames taken before that stay in
/// `batch` and are counted in `tally`.
pub fn pop_tx<M: GuestMemory>(
    queue: &mut Queue,
    mem: &M,
    cfg: &TxConfig,
    batch: &mut PacketBatch,
    max: usize,
    scratch: &mut Vec<u8>,
    tally: &mut TxTally,
) -> Result<(), RingFault> {
    let mut hdr_raw = [0u8; 12];
    let hdr_raw = &mut hdr_raw[..cfg.hdr_len.min(12)];
    loop {
        if tally.frames >= max {
            tally.more = pending(queue, mem)? > 0;
            return Ok(());
        }
        let Some(chain) = next_chain(queue, mem)? else {
            if queue.enable_notification(mem)? {
                continue; // a chain arrived while notifications were off
            }
            return Ok(());
        };
        let head = chain.head_index();
        let slot = batch.recv_slot(MAX_FRAME);
        let limit = slot.len().min(MAX_GUEST_FRAME);
        let read = read_tx_chain(chain, mem, hdr_raw, &mut slot[..limit]);
        // Hand the buffer back before looking at what it held: it is no longer needed.
        match queue.add_used(mem, head, 0) {
            Ok(()) => tally.chains += 1,
            // A head index outside the table: there is nothing to hand back.
            Err(QueueError::InvalidDescriptorIndex) => {}
            Err(e) => return Err(e.into()),
        }
        match read {
            Err(fault) => tally.faults.count(fault),
            Ok(len) => deliver(batch, scratch, cfg, hdr_raw, len, tally),
        }
    }
}

/// Append the frame just read into the batch's receive slot, as `cfg.rx_mode` says.
fn deliver(
    batch: &mut PacketBatch,
    scratch: &mut Vec<u8>,
    cfg: &TxConfig,
    hdr_raw: &[u8],
    len: usize,
    tally: &mut TxTally,
) {
    let ts = cfg.timestamp_ns;
    let hdr = VnetHdr::parse(hdr_raw).unwrap_or_default();
    let slot = batch.recv_slot(len);
    let frame = &mut slot[..len];
    let plain = hdr.flags & F_NEEDS_CSUM == 0 && !hdr.is_gso();
    let checked = if len < 14 {
        Err(String::new())
    } else if hdr.is_gso() {
        hdr.check_frame(frame, cfg.medium)
    } else {
        hdr.validate(len)
    };
    if checked.is_err() {
        tally.bad_frames += 1;
        return;
    }
    tally.superframes += u64::from(hdr.is_gso());
    if plain {
        batch.commit(len, ts);
    } else if cfg.rx_mode == RxMode::Superframes {
        batch.commit_with(len, ts, Some(hdr));
    } else if !hdr.is_gso() {
        if complete_csum(frame, hdr).is_err() {
            tally.bad_frames += 1;
            return;
        }
        batch.commit(len, ts);
    } else {
        scratch.clear();
        scratch.extend_from_slice(frame);
        let before = batch.nbytes();
        match segment(scratch, hdr, cfg.medium, batch, ts) {
            Ok(count) => {
                tally.frames += count;
                tally.bytes += batch.nbytes() - before;
            }
            Err(_) => tally.bad_frames += 1,
        }
        return;
    }
    tally.frames += 1;
    tally.bytes += len;
}

/// How frames are placed into a guest's receive buffers.
#[derive(Debug, Clone, Copy)]
pub struct RxConfig {
    /// Length of the virtio-net header before each frame (10 or 12).
    pub hdr_len: usize,
    /// MRG_RXBUF: a frame may span several chains (`num_buffers` says how many).
    pub mergeable: bool,
}

/// What became of one frame offered to [`push_rx`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// In the guest's buffers and on its used ring.
    Done,
    /// Not enough buffers posted; nothing was consumed (try again after a refill).
    NoBuffers,
    /// Larger than the buffers the guest posts can ever hold; nothing was consumed.
    TooBig,
}

/// What [`push_rx`] calls did, beyond the frames themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxTally {
    /// Chains placed on the used ring (refused ones included).
    pub chains: usize,
    /// Chains refused, by fault.
    pub faults: FaultCounts,
}

/// Check an RX chain before anything is written into it: every buffer device-writable
/// and inside guest memory, the chain terminated, room for at least the header.
fn check_rx_chain<M: GuestMemory>(
    chain: DescriptorChain<&M>,
    mem: &M,
    hdr_len: usize,
) -> Result<usize, ChainFault> {
    let (mut room, mut seen, mut open) = (0usize, 0usize, false);
    for desc in chain {
        seen += 1;
        open = desc.has_next();
        if !desc.is_write_only() {
            return Err(ChainFault::WrongDirection);
        }
        let len = desc.len() as usize;
        if len > 0 && !mem.check_range(desc.addr(), len, Permissions::Write) {
            return Err(ChainFault::OutOfBounds);
        }
        room += len;
    }
    if seen == 0 || open {
        return Err(ChainFault::Unterminated);
    }
    if room < hdr_len {
        return Err(ChainFault::ShortHeader);
    }
    Ok(room)
}

/// Write bytes `from..` of `hdr ++ frame` into the chain's buffers, as far as they reach.
/// Records where header bytes 10 and 11 (`num_buffers`) went. Returns the bytes written.
fn write_rx_chain<M: GuestMemory>(
    chain: DescriptorChain<&M>,
    mem: &M,
    hdr: &[u8],
    frame: &[u8],
    from: usize,
    num_buffers_at: &mut [Option<GuestAddress>; 2],
) -> Result<usize, RingFault> {
    let total = hdr.len() + frame.len();
    let mut at = from;
    for desc in chain {
        if at == total {
            break;
        }
        let end = at + (desc.len() as usize).min(total - at);
        let mut addr = desc.addr();
        if at < hdr.len() {
            let hdr_end = end.min(hdr.len());
            mem.write_slice(&hdr[at..hdr_end], addr)
                .map_err(|_| RingFault::Memory)?;
            for (k, slot) in num_buffers_at.iter_mut().enumerate() {
                let offset = 10 + k;
                if offset < hdr.len() && (at..hdr_end).contains(&offset) {
                    *slot = addr.checked_add((offset - at) as u64);
                }
            }
            addr = addr
                .checked_add((hdr_end - at) as u64)
                .ok_or(RingFault::Memory)?;
            at = hdr_end;
        }
        if at < end {
            let (a, b) = (at - hdr.len(), end - hdr.len());
            mem.write_slice(&frame[a..b], addr)
                .map_err(|_| RingFault::Memory)?;
            at = end;
        }
    }
    Ok(at - from)
}

/// Place one frame, behind its virtio-net header `hdr`, into the buffers the guest
/// posted on its RX `queue`.
///
/// The frame is written straight into guest memory (one copy). With MRG_RXBUF it may
/// span several chains; `num_buffers` in the first header says how many. Used entries are
/// published only once the whole frame is in place, so a frame that does not fit consumes
/// nothing: the ring is rewound and the chains stay for the next frame. A refused chain
/// is handed back at once (length 0) and counted; as its used entry then already sits
/// between chains this frame took, a frame that cannot be finished after a refusal gives
/// its chains back with length 0 too (the guest's driver drops such buffers as too short).
///
/// `used` is scratch space (reused to avoid an allocation per frame).
///
/// # Errors
/// A [`RingFault`] when the ring itself cannot be used.
pub fn push_rx<M: GuestMemory>(
    queue: &mut Queue,
    mem: &M,
    cfg: &RxConfig,
    hdr: VnetHdr,
    frame: &[u8],
    used: &mut Vec<(u16, u32)>,
    tally: &mut RxTally,
) -> Result<Pushed, RingFault> {
    used.clear();
    let start = queue.next_avail();
    let mut hdr_bytes = [0u8; 12];
    hdr_bytes[..10].copy_from_slice(&hdr.to_bytes());
    hdr_bytes[10] = 1; // num_buffers (little-endian 1), fixed up below for merged frames
    let hdr_part = &hdr_bytes[..cfg.hdr_len.min(12)];
    let total = hdr_part.len() + frame.len();
    let mut written = 0;
    let mut num_buffers_at = [None; 2];
    let mut refused = false;
    let mut outcome = Pushed::Done;
    while written < total {
        if !cfg.mergeable && !used.is_empty() {
            outcome = Pushed::TooBig;
            break;
        }
        if used.len() >= usize::from(queue.size()) {
            outcome = Pushed::TooBig; // more buffers than the ring can ever hold
            break;
        }
        let Some(chain) = next_chain(queue, mem)? else {
            outcome = Pushed::NoBuffers;
            break;
        };
        let head = chain.head_index();
        if let Err(fault) = check_rx_chain(chain.clone(), mem, hdr_part.len()) {
            tally.faults.count(fault);
            refused = true;
            match queue.add_used(mem, head, 0) {
                Ok(()) => tally.chains += 1,
                Err(QueueError::InvalidDescriptorIndex) => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        let n = write_rx_chain(chain, mem, hdr_part, frame, written, &mut num_buffers_at)?;
        used.push((head, n as u32));
        written += n;
    }
    if outcome != Pushed::Done {
        if refused {
            for &(head, _) in used.iter() {
                queue.add_used(mem, head, 0)?;
                tally.chains += 1;
            }
        } else {
            queue.set_next_avail(start);
        }
        return Ok(outcome);
    }
    if used.len() > 1 {
        let count = (used.len() as u16).to_le_bytes();
        for (byte, addr) in count.iter().zip(num_buffers_at) {
            if let Some(addr) = addr {
                mem.write_slice(std::slice::from_ref(byte), addr)
                    .map_err(|_| RingFault::Memory)?;
            }
        }
    }
    publish_used(queue, mem, used)?;
    tally.chains += used.len();
    Ok(Pushed::Done)
}

/// Put `entries` on the used ring at once: all elements first, then a single update of
/// the used index. `Queue::add_used` moves the index after every element, and a driver
/// polling meanwhile would see the first buffer of a merged frame (with `num_buffers` =
/// N) before the other N-1, which Linux counts as a length error and drops ("buffers
/// missing"); virtio 1.x requires the buffers of one packet to be used together.
///
/// Notification is then decided by [`used_needs_notification`] (the queue's own
/// `needs_notification` only knows of elements `add_used` put there).
fn publish_used<M: GuestMemory>(
    queue: &mut Queue,
    mem: &M,
    entries: &[(u16, u32)],
) -> Result<(), RingFault> {
    let size = queue.size();
    if size == 0 || queue.used_ring() == 0 {
        return Err(RingFault::NotReady);
    }
    let base = GuestAddress(queue.used_ring());
    let mut idx = Wrapping(queue.next_used());
    for &(head, len) in entries {
        let slot = u64::from(idx.0 % size);
        let addr = base.checked_add(4 + slot * 8).ok_or(RingFault::Memory)?;
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        mem.write_slice(&elem, addr)
            .map_err(|_| RingFault::Memory)?;
        idx += Wrapping(1);
    }
    let idx_addr = base.checked_add(2).ok_or(RingFault::Memory)?;
    mem.store(idx.0.to_le(), idx_addr, Ordering::Release)
        .map_err(|_| RingFault::Memory)?;
    queue.set_next_used(idx.0);
    Ok(())
}

/// Whether the driver wants an interrupt for the used elements published since the used
/// index was `old`: always without EVENT_IDX; with it, when the index crossed the
/// driver's `used_event` (the `vring_need_event` rule).
pub fn used_needs_notification<M: GuestMemory>(queue: &Queue, mem: &M, old: u16) -> bool {
    let new = queue.next_used();
    if new == old {
        return false;
    }
    if !queue.event_idx_enabled() {
        return true;
    }
    // The used index store must be visible before the driver's used_event is read.
    std::sync::atomic::fence(Ordering::SeqCst);
    let Some(addr) = GuestAddress(queue.avail_ring()).checked_add(4 + 2 * u64::from(queue.size()))
    else {
        return true;
    };
    let Ok(event) = mem.load::<u16>(addr, Ordering::Acquire).map(u16::from_le) else {
        return true;
    };
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests;
