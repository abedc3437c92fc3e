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
mod tests {
    use super::*;
    use crate::wire::checksum::verify_frame;
    use crate::wire::vnet::gso;
    use virtio_bindings::bindings::virtio_ring::{
        VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    };
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestMemoryMmap;

    type Mem = GuestMemoryMmap<()>;

    const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    const WRITE: u16 = VRING_DESC_F_WRITE as u16;
    const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;
    /// Guest buffers live from here on (the rings sit below 64 KiB).
    const BUF: u64 = 0x10_0000;
    const MEM_END: u64 = 0x100_0000;

    fn memory() -> Mem {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_END as usize)]).unwrap()
    }

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(Descriptor::new(addr, len, flags, next))
    }

    fn tx_cfg(mode: RxMode) -> TxConfig {
        TxConfig {
            hdr_len: 12,
            rx_mode: mode,
            medium: Medium::Ethernet,
            timestamp_ns: 7,
        }
    }

    /// An Ethernet/IPv4/UDP frame of `len` bytes (valid checksums).
    fn udp_frame(len: usize, tag: u8) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        let ip_len = len - 14;
        f.extend_from_slice(&[
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            1,
            0,
            0,
            64,
            17,
        ]);
        f.extend_from_slice(&[0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        let udp_len = ip_len - 20;
        f.extend_from_slice(&[
            0x30,
            0x39,
            0x00,
            0x35,
            (udp_len >> 8) as u8,
            udp_len as u8,
            0,
            0,
        ]);
        f.resize(len, tag);
        crate::wire::checksum::fix_frame(&mut f, Medium::Ethernet).unwrap();
        f
    }

    /// Put `hdr ++ frame` at `addr` in guest memory.
    fn place(mem: &Mem, addr: u64, hdr: VnetHdr, frame: &[u8]) -> u32 {
        let mut bytes = hdr.to_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(frame);
        mem.write_slice(&bytes, GuestAddress(addr)).unwrap();
        bytes.len() as u32
    }

    fn used_entries(mem: &Mem, vq: &MockSplitQueue<'_, Mem>) -> Vec<(u32, u32)> {
        let n = vq.used().idx().load();
        (0..n)
            .map(|i| {
                let e = vq.used().ring().ref_at(usize::from(i)).unwrap().load();
                (e.id(), e.len())
            })
            .inspect(|_| {
                let _ = mem;
            })
            .collect()
    }

    fn pop_all(
        q: &mut Queue,
        mem: &Mem,
        mode: RxMode,
        max: usize,
    ) -> (PacketBatch, TxTally, Result<(), RingFault>) {
        let mut batch = PacketBatch::default();
        let mut tally = TxTally::default();
        let mut scratch = Vec::new();
        let r = pop_tx(
            q,
            mem,
            &tx_cfg(mode),
            &mut batch,
            max,
            &mut scratch,
            &mut tally,
        );
        (batch, tally, r)
    }

    #[test]
    fn tx_frames_arrive_in_order_header_split_anywhere() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let f1 = udp_frame(60, 1);
        let f2 = udp_frame(1514, 2);
        let n1 = place(&mem, BUF, VnetHdr::default(), &f1);
        let n2 = place(&mem, BUF + 0x1000, VnetHdr::default(), &f2);
        vq.add_desc_chains(
            &[
                // one descriptor: header and frame together
                desc(BUF, n1, 0, 0),
                // three descriptors, split inside the header and inside the frame
                desc(BUF + 0x1000, 5, NEXT, 2),
                desc(BUF + 0x1005, 100, NEXT, 3),
                desc(BUF + 0x1069, n2 - 105, 0, 0),
            ],
            0,
        )
        .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let (batch, tally, r) = pop_all(&mut q, &mem, RxMode::Superframes, 64);
        r.unwrap();
        assert_eq!(batch.iter().collect::<Vec<_>>(), vec![&f1[..], &f2[..]]);
        assert_eq!(batch.timestamp_ns(0), Some(7));
        assert_eq!((tally.frames, tally.chains, tally.bytes), (2, 2, 60 + 1514));
        assert_eq!(tally.faults.total(), 0);
        assert_eq!(used_entries(&mem, &vq), vec![(0, 0), (1, 0)]);
        assert_eq!(pending(&q, &mem), Ok(0));
    }

    #[test]
    fn tx_max_leaves_the_rest_and_says_so() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let f = udp_frame(100, 3);
        let mut descs = Vec::new();
        for i in 0..5u64 {
            let n = place(&mem, BUF + i * 0x1000, VnetHdr::default(), &f);
            descs.push(desc(BUF + i * 0x1000, n, 0, 0));
        }
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let (batch, tally, r) = pop_all(&mut q, &mem, RxMode::Segments, 3);
        r.unwrap();
        assert_eq!(batch.len(), 3);
        assert!(tally.more);
        let (batch, tally, r) = pop_all(&mut q, &mem, RxMode::Segments, 10);
        r.unwrap();
        assert_eq!(batch.len(), 2);
        assert!(!tally.more);
    }

    #[test]
    fn tx_indirect_chain() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let f = udp_frame(300, 4);
        let n = place(&mem, BUF, VnetHdr::default(), &f);
        let table = GuestAddress(0x8_0000);
        for (i, d) in [desc(BUF, 12, NEXT, 1), desc(BUF + 12, n - 12, 0, 0)]
            .iter()
            .enumerate()
        {
            mem.write_obj(*d, table.unchecked_add(16 * i as u64))
                .unwrap();
        }
        vq.add_desc_chains(&[desc(table.0, 32, INDIRECT, 0)], 0)
            .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let (batch, tally, r) = pop_all(&mut q, &mem, RxMode::Segments, 8);
        r.unwrap();
        assert_eq!(batch.get(0), Some(&f[..]));
        assert_eq!(tally.faults.total(), 0);
    }

    /// Each malformed chain is refused, counted by its fault, handed back, and the good
    /// frame after it still arrives.
    fn refused_then_good(bad: &[RawDescriptor], fault: ChainFault) {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 32);
        let good = udp_frame(80, 9);
        let n = place(&mem, BUF + 0x8000, VnetHdr::default(), &good);
        // Two calls: add_desc_chains takes a descriptor after one with NEXT as part of
        // the same chain, whatever its `next` field says.
        vq.add_desc_chains(bad, 0).unwrap();
        let at = bad.len() as u16;
        vq.add_desc_chains(&[desc(BUF + 0x8000, n, 0, 0)], at)
            .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let (batch, tally, r) = pop_all(&mut q, &mem, RxMode::Superframes, 8);
        r.unwrap();
        assert_eq!(
            batch.iter().collect::<Vec<_>>(),
            vec![&good[..]],
            "{fault:?}"
        );
        let mut want = FaultCounts::default();
        want.count(fault);
        assert_eq!(tally.faults, want, "{fault:?}");
        let used = used_entries(&mem, &vq);
        assert_eq!(used.last(), Some(&(u32::from(at), 0)));
        assert_eq!(used.len(), 2, "the bad chain is handed back too");
    }

    #[test]
    fn tx_refuses_out_of_bounds() {
        refused_then_good(&[desc(MEM_END - 8, 100, 0, 0)], ChainFault::OutOfBounds);
        refused_then_good(&[desc(u64::MAX - 4, 100, 0, 0)], ChainFault::OutOfBounds);
    }

    #[test]
    fn tx_refuses_a_loop() {
        let mem = memory();
        place(&mem, BUF, VnetHdr::default(), &udp_frame(60, 0));
        // 0 -> 1 -> 0 -> ...: ends by the chain's time-to-live, still saying NEXT.
        refused_then_good(
            &[desc(BUF, 0, NEXT, 1), desc(BUF, 0, NEXT, 0)],
            ChainFault::Unterminated,
        );
        // A self-loop with data: refused before it can grow past the largest frame.
        refused_then_good(&[desc(BUF, 4000, NEXT, 0)], ChainFault::TooLong);
    }

    #[test]
    fn tx_refuses_next_outside_the_table() {
        refused_then_good(&[desc(BUF, 12, NEXT, 999)], ChainFault::Unterminated);
    }

    #[test]
    fn tx_refuses_wrong_direction() {
        refused_then_good(&[desc(BUF, 100, WRITE, 0)], ChainFault::WrongDirection);
    }

    #[test]
    fn tx_refuses_too_long_and_short() {
        // 20 descriptors of 4 KiB = 80 KiB > the largest frame.
        let mut long: Vec<_> = (0..20u16)
            .map(|i| desc(BUF + u64::from(i) * 0x1000, 0x1000, NEXT, i + 1))
            .collect();
        long[19] = desc(BUF + 19 * 0x1000, 0x1000, 0, 0);
        refused_then_good(&long, ChainFault::TooLong);
        refused_then_good(&[desc(BUF, 6, 0, 0)], ChainFault::ShortHeader);
    }

    #[test]
    fn tx_refuses_bad_indirect_tables() {
        let mem = memory();
        // A table length that is not a multiple of 16.
        refused_then_good(&[desc(0x8_0000, 20, INDIRECT, 0)], ChainFault::Unterminated);
        // A table outside guest memory.
        refused_then_good(
            &[desc(MEM_END + 0x1000, 32, INDIRECT, 0)],
            ChainFault::Unterminated,
        );
        // An indirect descriptor inside an indirect table.
        let table = GuestAddress(0x8_0000);
        mem.write_obj(desc(0x9_0000, 16, INDIRECT, 0), table)
            .unwrap();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(&[desc(table.0, 16, INDIRECT, 0)], 0)
            .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let (batch, tally, r) = pop_all(&mut q, &mem, RxMode::Superframes, 8);
        r.unwrap();
        assert!(batch.is_empty());
        assert_eq!(tally.faults.unterminated, 1);
    }

    #[test]
    fn tx_bad_virtio_header_is_refused() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let f = udp_frame(100, 0);
        let bad = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 500, // beyond the frame
            csum_offset: 6,
            ..VnetHdr::default()
        };
        let n = place(&mem, BUF, bad, &f);
        let n2 = place(&mem, BUF + 0x1000, VnetHdr::default(), &f[..10]);
        vq.add_desc_chains(&[desc(BUF, n, 0, 0), desc(BUF + 0x1000, n2, 0, 0)], 0)
            .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let (batch, tally, r) = pop_all(&mut q, &mem, RxMode::Superframes, 8);
        r.unwrap();
        assert!(batch.is_empty());
        assert_eq!(
            tally.bad_frames, 2,
            "bad header, and a frame shorter than Ethernet"
        );
        assert_eq!(tally.chains, 2);
    }

    #[test]
    fn tx_invalid_head_index_and_avail_index() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        // An avail entry naming descriptor 200 of a 16-entry table.
        vq.avail().ring().ref_at(0).unwrap().store(200);
        vq.avail().idx().store(1);
        let mut q: Queue = vq.create_queue().unwrap();
        let (batch, tally, r) = pop_all(&mut q, &mem, RxMode::Superframes, 8);
        r.unwrap();
        assert!(batch.is_empty());
        assert_eq!(tally.faults.unterminated, 1);
        assert_eq!(tally.chains, 0, "nothing to hand back for index 200");
        // The guest claims 40 new entries on a 16-entry ring.
        vq.avail().idx().store(41);
        let (_, _, r) = pop_all(&mut q, &mem, RxMode::Superframes, 8);
        assert_eq!(r, Err(RingFault::AvailIndex));
        assert_eq!(pending(&q, &mem), Err(RingFault::AvailIndex));
    }

    /// A TCP/IPv4 super-frame of `payload` bytes with a partial checksum, as a guest with
    /// HOST_TSO4 sends it.
    fn tcp4_superframe(payload: usize) -> (Vec<u8>, VnetHdr) {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = 40 + payload;
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0x12,
            0x34,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ]);
        f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2, 0x30, 0x39, 0x00, 0x50]);
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend((0..payload).map(|i| (i % 251) as u8));
        let pseudo = crate::wire::checksum::pseudo_header_v4(
            [192, 0, 2, 1],
            [192, 0, 2, 2],
            6,
            (20 + payload) as u32,
        );
        f[50..52].copy_from_slice(&pseudo.to_be_bytes());
        let c = crate::wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: gso::TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        (f, hdr)
    }

    #[test]
    fn tx_superframe_kept_or_split() {
        let mem = memory();
        let (f, hdr) = tcp4_superframe(4000);
        for (mode, frames) in [(RxMode::Superframes, 1), (RxMode::Segments, 3)] {
            let vq = MockSplitQueue::new(&mem, 16);
            let n = place(&mem, BUF, hdr, &f);
            vq.add_desc_chains(&[desc(BUF, n, 0, 0)], 0).unwrap();
            let mut q: Queue = vq.create_queue().unwrap();
            let (batch, tally, r) = pop_all(&mut q, &mem, mode, 64);
            r.unwrap();
            assert_eq!(tally.frames, frames);
            assert_eq!(batch.len(), frames);
            if mode == RxMode::Superframes {
                assert_eq!(batch.hdr(0), Some(hdr));
                assert_eq!(batch.get(0), Some(&f[..]));
            } else {
                for s in batch.iter() {
                    assert!(verify_frame(s, Medium::Ethernet).unwrap().ok());
                }
                assert!(!batch.has_offload());
            }
        }
    }

    fn rx_cfg(mergeable: bool) -> RxConfig {
        RxConfig {
            hdr_len: 12,
            mergeable,
        }
    }

    fn push(
        q: &mut Queue,
        mem: &Mem,
        cfg: &RxConfig,
        hdr: VnetHdr,
        frame: &[u8],
        tally: &mut RxTally,
    ) -> Result<Pushed, RingFault> {
        let mut used = Vec::new();
        push_rx(q, mem, cfg, hdr, frame, &mut used, tally)
    }

    fn read(mem: &Mem, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    #[test]
    fn rx_single_buffer_frames() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(
            &[
                desc(BUF, 2048, WRITE, 0),
                // header and frame split across two descriptors of one chain
                desc(BUF + 0x1000, 8, WRITE | NEXT, 2),
                desc(BUF + 0x2000, 2048, WRITE, 0),
            ],
            0,
        )
        .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let mut tally = RxTally::default();
        let f = udp_frame(200, 5);
        let cfg = rx_cfg(false);
        assert_eq!(
            push(&mut q, &mem, &cfg, VnetHdr::default(), &f, &mut tally),
            Ok(Pushed::Done)
        );
        assert_eq!(
            push(&mut q, &mem, &cfg, VnetHdr::default(), &f, &mut tally),
            Ok(Pushed::Done)
        );
        assert_eq!(
            push(&mut q, &mem, &cfg, VnetHdr::default(), &f, &mut tally),
            Ok(Pushed::NoBuffers)
        );
        assert_eq!(used_entries(&mem, &vq), vec![(0, 212), (1, 212)]);
        let first = read(&mem, BUF, 212);
        assert_eq!(&first[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&first[12..], &f[..]);
        let mut second = read(&mem, BUF + 0x1000, 8);
        second.extend(read(&mem, BUF + 0x2000, 204));
        assert_eq!(second, first);
    }

    #[test]
    fn rx_mergeable_spans_buffers_and_sets_num_buffers() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let descs: Vec<_> = (0..4u64)
            .map(|i| desc(BUF + i * 0x1000, 1536, WRITE, 0))
            .collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let (f, hdr) = tcp4_superframe(4000); // 4054 + 12 bytes: three buffers
        let mut tally = RxTally::default();
        assert_eq!(
            push(&mut q, &mem, &rx_cfg(true), hdr, &f, &mut tally),
            Ok(Pushed::Done)
        );
        assert_eq!(
            used_entries(&mem, &vq),
            vec![(0, 1536), (1, 1536), (2, 4066 - 3072)]
        );
        let h = read(&mem, BUF, 12);
        assert_eq!(VnetHdr::parse(&h), Some(hdr));
        assert_eq!(u16::from_le_bytes([h[10], h[11]]), 3, "num_buffers");
        let mut got = read(&mem, BUF + 12, 1524);
        got.extend(read(&mem, BUF + 0x1000, 1536));
        got.extend(read(&mem, BUF + 0x2000, 4066 - 3072));
        assert_eq!(got, f);
        // The next frame does not fit in the one buffer left: nothing is consumed.
        assert_eq!(
            push(&mut q, &mem, &rx_cfg(true), hdr, &f, &mut tally),
            Ok(Pushed::NoBuffers)
        );
        assert_eq!(q.next_avail(), 3);
        assert_eq!(used_entries(&mem, &vq).len(), 3);
    }

    #[test]
    fn rx_merged_frame_is_published_with_one_index_update_and_notifies_by_event_idx() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let descs: Vec<_> = (0..8u64)
            .map(|i| desc(BUF + i * 0x1000, 1536, WRITE, 0))
            .collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        // The mock places its used ring over the tail of its available ring (where
        // `used_event` lives); give this queue a used ring of its own.
        let used = GuestAddress(0x4000);
        q.try_set_used_ring_address(used).unwrap();
        q.set_event_idx(true);
        // The driver wants an interrupt once used index 2 has been passed.
        let used_event = vq.avail_addr().unchecked_add(4 + 2 * 16);
        mem.write_obj(2u16.to_le(), used_event).unwrap();
        let (f, hdr) = tcp4_superframe(4000); // three buffers
        let mut tally = RxTally::default();
        let old = q.next_used();
        assert_eq!(
            push(&mut q, &mem, &rx_cfg(true), hdr, &f, &mut tally),
            Ok(Pushed::Done)
        );
        let idx: u16 = mem.read_obj(used.unchecked_add(2)).unwrap();
        assert_eq!((idx, q.next_used()), (3, 3), "all three published");
        assert!(
            used_needs_notification(&q, &mem, old),
            "0 -> 3 crosses used_event 2"
        );
        let old = q.next_used();
        let small = udp_frame(100, 1);
        assert_eq!(
            push(
                &mut q,
                &mem,
                &rx_cfg(true),
                VnetHdr::default(),
                &small,
                &mut tally
            ),
            Ok(Pushed::Done)
        );
        assert!(!used_needs_notification(&q, &mem, old), "3 -> 4 does not");
        q.set_event_idx(false);
        assert!(
            used_needs_notification(&q, &mem, old),
            "without EVENT_IDX: always"
        );
        assert!(
            !used_needs_notification(&q, &mem, q.next_used()),
            "nothing new: never"
        );
    }

    #[test]
    fn rx_too_big_for_a_single_buffer_keeps_the_buffer() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(&[desc(BUF, 1000, WRITE, 0)], 0).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let mut tally = RxTally::default();
        let big = udp_frame(1500, 1);
        assert_eq!(
            push(
                &mut q,
                &mem,
                &rx_cfg(false),
                VnetHdr::default(),
                &big,
                &mut tally
            ),
            Ok(Pushed::TooBig)
        );
        assert_eq!(q.next_avail(), 0);
        let small = udp_frame(100, 1);
        assert_eq!(
            push(
                &mut q,
                &mem,
                &rx_cfg(false),
                VnetHdr::default(),
                &small,
                &mut tally
            ),
            Ok(Pushed::Done)
        );
    }

    #[test]
    fn rx_refuses_malformed_chains() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(
            &[
                desc(BUF, 2048, 0, 0),                   // read-only: wrong direction
                desc(MEM_END - 100, 2048, WRITE, 0),     // out of bounds
                desc(BUF + 0x1000, 4, WRITE, 0),         // shorter than the header
                desc(BUF + 0x2000, 64, WRITE | NEXT, 3), // loops onto itself
            ],
            0,
        )
        .unwrap();
        vq.add_desc_chains(&[desc(BUF + 0x3000, 2048, WRITE, 0)], 4)
            .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let mut tally = RxTally::default();
        let f = udp_frame(300, 2);
        assert_eq!(
            push(
                &mut q,
                &mem,
                &rx_cfg(false),
                VnetHdr::default(),
                &f,
                &mut tally
            ),
            Ok(Pushed::Done)
        );
        assert_eq!(
            tally.faults,
            FaultCounts {
                unterminated: 1,
                out_of_bounds: 1,
                wrong_direction: 1,
                short_header: 1,
                too_long: 0,
            }
        );
        assert_eq!(
            used_entries(&mem, &vq),
            vec![(0, 0), (1, 0), (2, 0), (3, 0), (4, 312)]
        );
        assert_eq!(read(&mem, BUF + 0x3000 + 12, 300), f);
    }

    #[test]
    fn rx_refusal_mid_frame_gives_taken_buffers_back() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(
            &[desc(BUF, 1536, WRITE, 0), desc(BUF + 0x1000, 1536, 0, 0)],
            0,
        )
        .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let mut tally = RxTally::default();
        let (f, hdr) = tcp4_superframe(4000);
        assert_eq!(
            push(&mut q, &mem, &rx_cfg(true), hdr, &f, &mut tally),
            Ok(Pushed::NoBuffers)
        );
        // The refused chain first, then the taken one with length 0: nothing half-written
        // is ever published.
        assert_eq!(used_entries(&mem, &vq), vec![(1, 0), (0, 0)]);
        assert_eq!(tally.faults.wrong_direction, 1);
    }

    #[test]
    fn rx_with_legacy_header() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(&[desc(BUF, 2048, WRITE, 0)], 0).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let mut tally = RxTally::default();
        let f = udp_frame(64, 3);
        let cfg = RxConfig {
            hdr_len: 10,
            mergeable: false,
        };
        assert_eq!(
            push(&mut q, &mem, &cfg, VnetHdr::default(), &f, &mut tally),
            Ok(Pushed::Done)
        );
        assert_eq!(used_entries(&mem, &vq), vec![(0, 74)]);
        assert_eq!(read(&mem, BUF + 10, 64), f);
    }

    /// Random descriptor tables (the fuzz target's idea, run a few thousand times here):
    /// whatever the guest writes, both directions neither panic nor touch memory outside
    /// what the chains describe, and the ring stays usable.
    #[test]
    fn random_tables_never_panic() {
        let mem = memory();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let frame = udp_frame(600, 7);
        for round in 0..3000 {
            // Fresh rings each round (the previous round's chains may have scribbled on them).
            mem.write_slice(&[0u8; 0x1000], GuestAddress(0)).unwrap();
            let vq = MockSplitQueue::new(&mem, 8);
            let descs: Vec<_> = (0..8)
                .map(|_| {
                    let r = rnd();
                    let addr = match r % 4 {
                        0 => BUF + (r >> 8) % 0x10000,
                        1 => MEM_END - (r >> 8) % 0x2000,
                        2 => r >> 3,
                        _ => 0x8_0000,
                    };
                    let len = ((r >> 20) % 3000) as u32;
                    let flags = ((r >> 40) & 7) as u16;
                    let next = ((r >> 48) % 10) as u16;
                    desc(addr, len, flags, next)
                })
                .collect();
            vq.add_desc_chains(&descs, 0).unwrap();
            let mut q: Queue = vq.create_queue().unwrap();
            q.set_event_idx(round % 2 == 0);
            if round % 3 == 0 {
                let (_, tally, r) = pop_all(&mut q, &mem, RxMode::Segments, 64);
                assert!(r.is_ok() || tally.chains <= 8);
            } else {
                let mut tally = RxTally::default();
                for _ in 0..4 {
                    if push(
                        &mut q,
                        &mem,
                        &rx_cfg(round % 2 == 1),
                        VnetHdr::default(),
                        &frame,
                        &mut tally,
                    )
                    .is_err()
                    {
                        break;
                    }
                }
            }
        }
    }
}
