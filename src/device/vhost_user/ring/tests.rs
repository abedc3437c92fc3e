//! Ring handling over virtio-queue's mock driver: well-formed traffic both ways, and every
//! kind of malformed descriptor chain refused and counted.

use super::*;
use crate::wire::checksum::verify_frame;
use crate::wire::testing::{ethernet, udp4};
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

/// An Ethernet/IPv4/UDP frame of `len` bytes (valid checksums), the payload all `tag`.
fn udp_frame(len: usize, tag: u8) -> Vec<u8> {
    ethernet(&udp4(1, 53, &vec![tag; len - 42]))
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

/// [`pop_all`], which must not find the ring itself broken.
fn pop_ok(q: &mut Queue, mem: &Mem, mode: RxMode, max: usize) -> (PacketBatch, TxTally) {
    let (batch, tally, r) = pop_all(q, mem, mode, max);
    r.unwrap();
    (batch, tally)
}

/// A queue over `vq` whose driver made `chains` available (from descriptor 0 on).
fn queue_with(vq: &MockSplitQueue<'_, Mem>, chains: &[RawDescriptor]) -> Queue {
    vq.add_desc_chains(chains, 0).unwrap();
    vq.create_queue().unwrap()
}

/// `count` one-descriptor TX chains, each `frame` (default header) in a page of its own
/// from `BUF` on.
fn tx_chains(mem: &Mem, frame: &[u8], count: u64) -> Vec<RawDescriptor> {
    (0..count)
        .map(|i| {
            let addr = BUF + i * 0x1000;
            desc(addr, place(mem, addr, VnetHdr::default(), frame), 0, 0)
        })
        .collect()
}

/// Where [`own_used_ring`] puts a queue's used ring.
const USED: GuestAddress = GuestAddress(0x4000);

/// Give `q` a used ring of its own at [`USED`] (the mock places its used ring over the tail
/// of its available ring, where `used_event` lives), turn EVENT_IDX on, and have the driver
/// want an interrupt once used index `used_event` has been passed. Returns where the driver
/// keeps `used_event`.
fn own_used_ring(
    q: &mut Queue,
    mem: &Mem,
    vq: &MockSplitQueue<'_, Mem>,
    used_event: u16,
) -> GuestAddress {
    q.try_set_used_ring_address(USED).unwrap();
    q.set_event_idx(true);
    let at = vq.avail_addr().unchecked_add(4 + 2 * 16);
    mem.write_obj(used_event.to_le(), at).unwrap();
    at
}

#[test]
fn tx_frames_arrive_in_order_header_split_anywhere() {
    let mem = memory();
    let vq = MockSplitQueue::new(&mem, 16);
    let f1 = udp_frame(60, 1);
    let f2 = udp_frame(1514, 2);
    let n1 = place(&mem, BUF, VnetHdr::default(), &f1);
    let n2 = place(&mem, BUF + 0x1000, VnetHdr::default(), &f2);
    let mut q = queue_with(
        &vq,
        &[
            // one descriptor: header and frame together
            desc(BUF, n1, 0, 0),
            // three descriptors, split inside the header and inside the frame
            desc(BUF + 0x1000, 5, NEXT, 2),
            desc(BUF + 0x1005, 100, NEXT, 3),
            desc(BUF + 0x1069, n2 - 105, 0, 0),
        ],
    );
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Superframes, 64);
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
    let mut q = queue_with(&vq, &tx_chains(&mem, &udp_frame(100, 3), 5));
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Segments, 3);
    assert_eq!(batch.len(), 3);
    assert!(tally.more);
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Segments, 10);
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
    let mut q = queue_with(&vq, &[desc(table.0, 32, INDIRECT, 0)]);
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Segments, 8);
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
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Superframes, 8);
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
    let mut q = queue_with(&vq, &[desc(table.0, 16, INDIRECT, 0)]);
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Superframes, 8);
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
    let mut q = queue_with(&vq, &[desc(BUF, n, 0, 0), desc(BUF + 0x1000, n2, 0, 0)]);
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Superframes, 8);
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
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Superframes, 8);
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
    crate::wire::testing::tcp4_superframe(payload, 1, 0x18) // PSH|ACK
}

#[test]
fn tx_superframe_kept_or_split() {
    let mem = memory();
    let (f, hdr) = tcp4_superframe(4000);
    for (mode, frames) in [(RxMode::Superframes, 1), (RxMode::Segments, 3)] {
        let vq = MockSplitQueue::new(&mem, 16);
        let n = place(&mem, BUF, hdr, &f);
        let mut q = queue_with(&vq, &[desc(BUF, n, 0, 0)]);
        let (batch, tally) = pop_ok(&mut q, &mem, mode, 64);
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

/// [`push`] a frame without offload metadata, the header 12 bytes long.
fn push_plain(
    q: &mut Queue,
    mem: &Mem,
    mergeable: bool,
    frame: &[u8],
    tally: &mut RxTally,
) -> Result<Pushed, RingFault> {
    push(q, mem, &rx_cfg(mergeable), VnetHdr::default(), frame, tally)
}

/// `count` one-descriptor receive buffers of `len` bytes, each in a page of its own from
/// `BUF` on.
fn rx_buffers(count: u64, len: u32) -> Vec<RawDescriptor> {
    (0..count)
        .map(|i| desc(BUF + i * 0x1000, len, WRITE, 0))
        .collect()
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
    let mut q = queue_with(
        &vq,
        &[
            desc(BUF, 2048, WRITE, 0),
            // header and frame split across two descriptors of one chain
            desc(BUF + 0x1000, 8, WRITE | NEXT, 2),
            desc(BUF + 0x2000, 2048, WRITE, 0),
        ],
    );
    let mut tally = RxTally::default();
    let f = udp_frame(200, 5);
    let pushed: Vec<_> = (0..3)
        .map(|_| push_plain(&mut q, &mem, false, &f, &mut tally))
        .collect();
    assert_eq!(
        pushed,
        [Ok(Pushed::Done), Ok(Pushed::Done), Ok(Pushed::NoBuffers)]
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
    let mut q = queue_with(&vq, &rx_buffers(4, 1536));
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
    let mut q = queue_with(&vq, &rx_buffers(8, 1536));
    own_used_ring(&mut q, &mem, &vq, 2);
    let (f, hdr) = tcp4_superframe(4000); // three buffers
    let mut tally = RxTally::default();
    let old = q.next_used();
    assert_eq!(
        push(&mut q, &mem, &rx_cfg(true), hdr, &f, &mut tally),
        Ok(Pushed::Done)
    );
    let idx: u16 = mem.read_obj(USED.unchecked_add(2)).unwrap();
    assert_eq!((idx, q.next_used()), (3, 3), "all three published");
    assert!(
        used_needs_notification(&q, &mem, old),
        "0 -> 3 crosses used_event 2"
    );
    let old = q.next_used();
    let small = udp_frame(100, 1);
    assert_eq!(
        push_plain(&mut q, &mem, true, &small, &mut tally),
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
    let mut q = queue_with(&vq, &[desc(BUF, 1000, WRITE, 0)]);
    let mut tally = RxTally::default();
    let big = udp_frame(1500, 1);
    assert_eq!(
        push_plain(&mut q, &mem, false, &big, &mut tally),
        Ok(Pushed::TooBig)
    );
    assert_eq!(q.next_avail(), 0);
    let small = udp_frame(100, 1);
    assert_eq!(
        push_plain(&mut q, &mem, false, &small, &mut tally),
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
        push_plain(&mut q, &mem, false, &f, &mut tally),
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
    let mut q = queue_with(
        &vq,
        &[desc(BUF, 1536, WRITE, 0), desc(BUF + 0x1000, 1536, 0, 0)],
    );
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
    let mut q = queue_with(&vq, &[desc(BUF, 2048, WRITE, 0)]);
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
        let mut q = queue_with(&vq, &descs);
        q.set_event_idx(round % 2 == 0);
        if round % 3 == 0 {
            let (_, tally, r) = pop_all(&mut q, &mem, RxMode::Segments, 64);
            assert!(r.is_ok() || tally.chains <= 8);
        } else {
            let mut tally = RxTally::default();
            let mergeable = round % 2 == 1;
            for _ in 0..4 {
                if push_plain(&mut q, &mem, mergeable, &frame, &mut tally).is_err() {
                    break;
                }
            }
        }
    }
}

/// The used elements and index of a used ring at `used` (for queues given a used ring of
/// their own, away from the mock's).
fn used_at(mem: &Mem, used: GuestAddress) -> (u16, Vec<(u32, u32)>) {
    let idx: u16 = mem.read_obj(used.unchecked_add(2)).unwrap();
    let elems = (0..u64::from(idx))
        .map(|i| {
            let e: [u32; 2] = mem.read_obj(used.unchecked_add(4 + 8 * i)).unwrap();
            (e[0], e[1])
        })
        .collect();
    (idx, elems)
}

#[test]
fn tx_pass_hands_back_with_one_index_update_and_notifies_by_event_idx() {
    let mem = memory();
    let vq = MockSplitQueue::new(&mem, 16);
    let mut q = queue_with(&vq, &tx_chains(&mem, &udp_frame(100, 6), 3));
    let used_event = own_used_ring(&mut q, &mem, &vq, 1);
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Superframes, 64);
    assert_eq!((batch.len(), tally.chains), (3, 3));
    assert_eq!(used_at(&mem, USED), (3, vec![(0, 0), (1, 0), (2, 0)]));
    assert_eq!(q.next_used(), 3);
    assert!(
        used_needs_notification(&q, &mem, 0),
        "0 -> 3 crosses used_event 1"
    );
    mem.write_obj(7u16.to_le(), used_event).unwrap();
    assert!(
        !used_needs_notification(&q, &mem, 0),
        "0 -> 3 does not cross 7"
    );
    // Nothing more on the ring: another pass hands nothing back and asks for no interrupt.
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Superframes, 64);
    assert_eq!((batch.len(), tally.chains, q.next_used()), (0, 0, 3));
}

/// Guest memory in two regions that meet at `split` (as a guest's RAM may be, in several
/// mappings): a buffer or a ring across the seam is two host slices.
fn two_regions(split: u64) -> Mem {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), split as usize),
        (GuestAddress(split), (MEM_END - split) as usize),
    ])
    .unwrap()
}

#[test]
fn tx_buffers_across_a_region_seam() {
    let seam = BUF + 0x800;
    let mem = two_regions(seam);
    let vq = MockSplitQueue::new(&mem, 16);
    let f1 = udp_frame(1514, 1); // header in the first region, the frame across the seam
    let f2 = udp_frame(200, 2); // the header itself across the seam
    let n1 = place(&mem, BUF, VnetHdr::default(), &f1);
    let n2 = place(&mem, seam - 5, VnetHdr::default(), &f2);
    let mut q = queue_with(&vq, &[desc(BUF, n1, 0, 0), desc(seam - 5, n2, 0, 0)]);
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Superframes, 64);
    assert_eq!(batch.iter().collect::<Vec<_>>(), vec![&f1[..], &f2[..]]);
    assert_eq!((tally.faults.total(), tally.bad_frames), (0, 0));
    // Across the seam into a hole: refused, not half read.
    let mem = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), seam as usize),
        (GuestAddress(seam + 0x1000), 0x10_0000),
    ])
    .unwrap();
    let vq = MockSplitQueue::new(&mem, 16);
    let n = place(&mem, BUF, VnetHdr::default(), &f1[..1000]);
    let mut q = queue_with(&vq, &[desc(BUF, n + 0x1000, 0, 0)]);
    let (batch, tally) = pop_ok(&mut q, &mem, RxMode::Superframes, 64);
    assert!(batch.is_empty());
    assert_eq!(tally.faults.out_of_bounds, 1);
}

#[test]
fn rx_buffers_and_used_ring_across_a_region_seam() {
    // The seam cuts a receive buffer and, 8 bytes in, the used ring (its index before the
    // seam, its elements after): each access there is translated on its own.
    for seam in [BUF + 0x800, USED.0 + 8] {
        let mem = two_regions(seam);
        let vq = MockSplitQueue::new(&mem, 16);
        let mut q = queue_with(
            &vq,
            &[
                desc(BUF + 0x7f8, 2048, WRITE, 0), // header across a seam at BUF + 0x800
                desc(BUF + 0x1000, 1536, WRITE, 0),
                desc(BUF + 0x2000, 1536, WRITE, 0),
            ],
        );
        q.try_set_used_ring_address(USED).unwrap();
        let mut tally = RxTally::default();
        let small = udp_frame(300, 3);
        assert_eq!(
            push_plain(&mut q, &mem, true, &small, &mut tally),
            Ok(Pushed::Done)
        );
        let (f, hdr) = tcp4_superframe(2000); // two buffers
        assert_eq!(
            push(&mut q, &mem, &rx_cfg(true), hdr, &f, &mut tally),
            Ok(Pushed::Done)
        );
        let total = f.len() as u32 + 12;
        assert_eq!(
            used_at(&mem, USED),
            (3, vec![(0, 312), (1, 1536), (2, total - 1536)]),
            "seam at {seam:#x}"
        );
        let first = read(&mem, BUF + 0x7f8, 312);
        assert_eq!(&first[10..12], &[1, 0]);
        assert_eq!(&first[12..], &small[..]);
        let h = read(&mem, BUF + 0x1000, 12);
        assert_eq!(VnetHdr::parse(&h), Some(hdr));
        assert_eq!(u16::from_le_bytes([h[10], h[11]]), 2, "num_buffers");
        let mut got = read(&mem, BUF + 0x1000 + 12, 1524);
        got.extend(read(&mem, BUF + 0x2000, total as usize - 1536));
        assert_eq!(got, f);
        assert_eq!(tally.faults.total(), 0);
    }
}
