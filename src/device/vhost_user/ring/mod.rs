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
//!
//! Address translation: every access through vm-memory's `Bytes` trait looks the guest
//! address up among the memory regions again, and at 64-byte frames that lookup, not the
//! copy, was most of the work. So each buffer a descriptor names is translated once
//! (`GuestMemory::get_slices`) and the virtio-net header and the frame are copied through
//! that one `VolatileSlice`; a pass over the ring reads the available index once (one
//! `AvailIter`), and writes its used elements through one translation of the used ring
//! with a single update of the used index at the end ([`UsedRing`]). What remains per
//! chain is virtio-queue's own: one read of the available entry and one of each
//! descriptor.

use std::num::Wrapping;
use std::sync::atomic::Ordering;

use virtio_queue::{DescriptorChain, Error as QueueError, Queue, QueueOwnedT, QueueT};
use vm_memory::bitmap::{BitmapSlice, BS};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions, VolatileSlice};

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
///
/// Each buffer is translated to host memory once ([`GuestMemory::get_slices`]: one slice,
/// or one per guest memory region it spans), and the header and the frame are copied out
/// of those slices.
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
        let size = desc.len() as usize;
        // Refused before it is translated: a looping or huge chain never reaches memory.
        let frame_part = size - size.min(hdr.len() - got_hdr);
        if len + frame_part > out.len() {
            return Err(ChainFault::TooLong);
        }
        if size == 0 {
            continue;
        }
        let slices = mem
            .get_slices(desc.addr(), size, Permissions::Read)
            .map_err(|_| ChainFault::OutOfBounds)?;
        for slice in slices {
            let slice = slice.map_err(|_| ChainFault::OutOfBounds)?;
            let mut from = 0;
            if got_hdr < hdr.len() {
                from = slice.len().min(hdr.len() - got_hdr);
                slice.copy_to(&mut hdr[got_hdr..got_hdr + from]);
                got_hdr += from;
            }
            if from < slice.len() {
                let rest = slice.offset(from).map_err(|_| ChainFault::OutOfBounds)?;
                len += rest.copy_to(&mut out[len..]);
            }
        }
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
/// The available index is read once per pass over the ring, and every chain of the pass
/// is handed back to the guest as used (length 0: the device writes nothing into a TX
/// buffer), refused or not, with one update of the used index at the end of the pass.
/// When the ring runs dry, notifications are re-enabled, and the ring is checked once more
/// so a frame that arrived meanwhile is not left waiting for a kick that will not come.
///
/// The queue's own `needs_notification` does not know of these used elements: ask
/// [`used_needs_notification`] with the used index from before the call.
///
/// # Errors
/// A [`RingFault`] when the ring itself cannot be used; frames taken before that stay in
/// `batch` and are counted in `tally`, and their chains are handed back.
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
        let mut used = UsedRing::new(queue, mem);
        let taken = take_tx_chains(
            queue,
            mem,
            cfg,
            (batch, max),
            scratch,
            tally,
            &mut used,
            hdr_raw,
        );
        // Hand back what was taken before anything else can fail.
        let published = used.publish(queue);
        taken?;
        published?;
        if tally.frames >= max {
            tally.more = pending(queue, mem)? > 0;
            return Ok(());
        }
        if !queue.enable_notification(mem)? {
            return Ok(());
        }
        // A chain arrived while notifications were off: another pass.
    }
}

/// One pass of [`pop_tx`]: the chains available when it starts, up to `max` frames.
#[allow(clippy::too_many_arguments)] // one caller; these are its pieces
fn take_tx_chains<'m, M: GuestMemory>(
    queue: &mut Queue,
    mem: &'m M,
    cfg: &TxConfig,
    (batch, max): (&mut PacketBatch, usize),
    scratch: &mut Vec<u8>,
    tally: &mut TxTally,
    used: &mut UsedRing<'m, M>,
    hdr_raw: &mut [u8],
) -> Result<(), RingFault> {
    let size = queue.size();
    let mut chains = queue.iter(mem)?;
    while tally.frames < max {
        let Some(chain) = chains.next() else {
            break;
        };
        let head = chain.head_index();
        let slot = batch.recv_slot(MAX_FRAME);
        let limit = slot.len().min(MAX_GUEST_FRAME);
        let read = read_tx_chain(chain, mem, hdr_raw, &mut slot[..limit]);
        // A head index outside the table: there is nothing to hand back.
        if head < size {
            used.push(head, 0)?;
            tally.chains += 1;
        }
        match read {
            Err(fault) => tally.faults.count(fault),
            Ok(len) => deliver(batch, scratch, cfg, hdr_raw, len, tally),
        }
    }
    Ok(())
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

/// Check one RX chain and write bytes `from..` of `hdr ++ frame` into its buffers, as far
/// as they reach: every buffer device-writable and inside guest memory, the chain
/// terminated, room for at least the header. Each buffer is translated to host memory
/// once, and written through that translation. Returns the bytes written and where header
/// bytes 10 and 11 (`num_buffers`) went.
///
/// A refused chain may already have had bytes written into its buffers: they are the
/// guest's buffers, handed back to it with length 0.
fn fill_rx_chain<M: GuestMemory>(
    chain: DescriptorChain<&M>,
    mem: &M,
    hdr: &[u8],
    frame: &[u8],
    from: usize,
) -> Result<(usize, NumBuffersAt), ChainFault> {
    let total = hdr.len() + frame.len();
    let (mut at, mut room, mut seen, mut open) = (from, 0usize, 0usize, false);
    let mut num_buffers_at = [None; 2];
    for desc in chain {
        seen += 1;
        open = desc.has_next();
        if !desc.is_write_only() {
            return Err(ChainFault::WrongDirection);
        }
        let size = desc.len() as usize;
        room += size;
        if size == 0 {
            continue;
        }
        let mut addr = desc.addr();
        let slices = mem
            .get_slices(addr, size, Permissions::Write)
            .map_err(|_| ChainFault::OutOfBounds)?;
        for slice in slices {
            let slice = slice.map_err(|_| ChainFault::OutOfBounds)?;
            let n = slice.len().min(total - at);
            if n > 0 {
                write_stream(&slice, (hdr, frame), at, n, addr, &mut num_buffers_at)?;
                at += n;
            }
            addr = addr.unchecked_add(slice.len() as u64);
        }
    }
    if seen == 0 || open {
        return Err(ChainFault::Unterminated);
    }
    if room < hdr.len() {
        return Err(ChainFault::ShortHeader);
    }
    Ok((at - from, num_buffers_at))
}

/// Where header bytes 10 and 11 (`num_buffers`) of a frame went in guest memory.
type NumBuffersAt = [Option<GuestAddress>; 2];

/// Write bytes `at..at + n` of `hdr ++ frame` to the start of `slice`, which lies at
/// guest address `addr`; note where bytes 10 and 11 of the header went.
fn write_stream<B: BitmapSlice>(
    slice: &VolatileSlice<'_, B>,
    (hdr, frame): (&[u8], &[u8]),
    at: usize,
    n: usize,
    addr: GuestAddress,
    num_buffers_at: &mut NumBuffersAt,
) -> Result<(), ChainFault> {
    let end = at + n;
    let mut done = 0;
    if at < hdr.len() {
        let hdr_end = end.min(hdr.len());
        slice.copy_from(&hdr[at..hdr_end]);
        for (k, slot) in num_buffers_at.iter_mut().enumerate() {
            let offset = 10 + k;
            if (at..hdr_end).contains(&offset) {
                *slot = addr.checked_add((offset - at) as u64);
            }
        }
        done = hdr_end - at;
    }
    if at + done < end {
        let rest = slice.offset(done).map_err(|_| ChainFault::OutOfBounds)?;
        rest.copy_from(&frame[at + done - hdr.len()..end - hdr.len()]);
    }
    Ok(())
}

/// Place one frame, behind its virtio-net header `hdr`, into the buffers the guest
/// posted on its RX `queue`.
///
/// The frame is written straight into guest memory (one copy), each buffer translated
/// once. With MRG_RXBUF it may span several chains; `num_buffers` in the first header says
/// how many. Used entries are published only once the whole frame is in place, with one
/// update of the used index, so a frame that does not fit consumes nothing: the ring is
/// rewound and the chains stay for the next frame. A refused chain is handed back
/// (length 0) and counted; as its used entry then sits before the chains this frame took,
/// a frame that cannot be finished after a refusal gives its chains back with length 0
/// too (the guest's driver drops such buffers as too short).
///
/// `used` is scratch space (reused to avoid an allocation per frame). The queue's own
/// `needs_notification` does not know of these used elements: ask
/// [`used_needs_notification`].
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
    let size = queue.size();
    let mut hdr_bytes = [0u8; 12];
    hdr_bytes[..10].copy_from_slice(&hdr.to_bytes());
    hdr_bytes[10] = 1; // num_buffers (little-endian 1), fixed up below for merged frames
    let hdr_part = &hdr_bytes[..cfg.hdr_len.min(12)];
    let total = hdr_part.len() + frame.len();
    let mut ring = UsedRing::new(queue, mem);
    let mut written = 0;
    let mut num_buffers_at = [None; 2];
    let mut refused = false;
    let mut outcome = Pushed::Done;
    let mut chains = queue.iter(mem)?;
    while written < total {
        if !cfg.mergeable && !used.is_empty() {
            outcome = Pushed::TooBig;
            break;
        }
        if used.len() >= usize::from(size) {
            outcome = Pushed::TooBig; // more buffers than the ring can ever hold
            break;
        }
        let Some(chain) = chains.next() else {
            outcome = Pushed::NoBuffers;
            break;
        };
        let head = chain.head_index();
        match fill_rx_chain(chain, mem, hdr_part, frame, written) {
            Err(fault) => {
                tally.faults.count(fault);
                refused = true;
                // A head index outside the table: there is nothing to hand back.
                if head < size {
                    ring.push(head, 0)?;
                    tally.chains += 1;
                }
            }
            Ok((n, at)) => {
                for (slot, addr) in num_buffers_at.iter_mut().zip(at) {
                    *slot = slot.or(addr);
                }
                used.push((head, n as u32));
                written += n;
            }
        }
    }
    if outcome == Pushed::Done {
        if used.len() > 1 {
            let count = (used.len() as u16).to_le_bytes();
            for (byte, addr) in count.iter().zip(num_buffers_at) {
                if let Some(addr) = addr {
                    mem.write_slice(std::slice::from_ref(byte), addr)
                        .map_err(|_| RingFault::Memory)?;
                }
            }
        }
        for &(head, len) in used.iter() {
            ring.push(head, len)?;
        }
        tally.chains += used.len();
    } else if refused {
        for &(head, _) in used.iter() {
            ring.push(head, 0)?;
        }
        tally.chains += used.len();
    } else {
        queue.set_next_avail(start);
    }
    ring.publish(queue)?;
    Ok(outcome)
}

/// The device's side of a split virtqueue's used ring, for one pass over the ring:
/// elements written one after the other, then the used index updated once
/// ([`UsedRing::publish`]), so the driver sees all of a pass's buffers at once.
///
/// `Queue::add_used` moves the index after every element: a driver polling meanwhile
/// would see the first buffer of a merged frame (with `num_buffers` = N) before the other
/// N-1, which Linux counts as a length error and drops ("buffers missing"); virtio 1.x
/// requires the buffers of one packet to be used together. It also translates the ring's
/// address twice per element; this translates the ring once, at the first element (when
/// the ring lies in one region of guest memory, as rings do; else each access is
/// translated).
struct UsedRing<'m, M: GuestMemory> {
    mem: &'m M,
    /// Guest address of the ring (its flags), 0 when the queue has none.
    base: u64,
    size: u16,
    /// The ring's flags, index and elements as one host slice, once translated.
    slice: Option<VolatileSlice<'m, BS<'m, M::Bitmap>>>,
    /// Elements written since the pass began.
    pushed: usize,
    next: Wrapping<u16>,
}

impl<'m, M: GuestMemory> UsedRing<'m, M> {
    fn new(queue: &Queue, mem: &'m M) -> Self {
        UsedRing {
            mem,
            base: queue.used_ring(),
            size: queue.size(),
            slice: None,
            pushed: 0,
            next: Wrapping(queue.next_used()),
        }
    }

    /// Write one element (not visible to the driver before [`UsedRing::publish`]).
    fn push(&mut self, head: u16, len: u32) -> Result<(), RingFault> {
        if self.size == 0 || self.base == 0 {
            return Err(RingFault::NotReady);
        }
        let offset = 4 + 8 * usize::from(self.next.0 % self.size);
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        if self.slice.is_none() {
            let len = 4 + 8 * usize::from(self.size);
            self.slice = one_slice(self.mem, GuestAddress(self.base), len, Permissions::Write);
        }
        let written = match &self.slice {
            Some(ring) => ring.write_slice(&elem, offset).is_ok(),
            None => GuestAddress(self.base)
                .checked_add(offset as u64)
                .is_some_and(|addr| self.mem.write_slice(&elem, addr).is_ok()),
        };
        if !written {
            return Err(RingFault::Memory);
        }
        self.next += Wrapping(1);
        self.pushed += 1;
        Ok(())
    }

    /// Make the elements written visible to the driver: one store of the used index
    /// (release: after the elements), and the queue's own used index moved with it.
    fn publish(self, queue: &mut Queue) -> Result<(), RingFault> {
        if self.pushed == 0 {
            return Ok(());
        }
        let idx = self.next.0.to_le();
        let stored = match &self.slice {
            Some(ring) => ring.store(idx, 2, Ordering::Release).is_ok(),
            None => GuestAddress(self.base)
                .checked_add(2)
                .is_some_and(|addr| self.mem.store(idx, addr, Ordering::Release).is_ok()),
        };
        if !stored {
            return Err(RingFault::Memory);
        }
        queue.set_next_used(self.next.0);
        Ok(())
    }
}

/// `len` bytes of guest memory at `addr` as one host slice, if they lie in one region.
fn one_slice<M: GuestMemory>(
    mem: &M,
    addr: GuestAddress,
    len: usize,
    access: Permissions,
) -> Option<VolatileSlice<'_, BS<'_, M::Bitmap>>> {
    let first = mem.get_slices(addr, len, access).ok()?.next()?.ok()?;
    (first.len() == len).then_some(first)
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
