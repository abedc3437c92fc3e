//! The vhost-user backend's queue processing alone, over a simulated guest: frames/s and
//! Gbit/s per core of `device::vhost_user::ring::{pop_tx, push_rx}`, the functions the
//! backend's queue runs on a guest's split virtqueues, with no QEMU, no socket and no
//! eventfd. `cargo bench --bench vhost_ring` (also in `make bench-rust`).
//!
//! The simulated guest is what Linux's virtio-net driver puts on its rings, built once in
//! guest memory (a `GuestMemoryMmap`, as the backend maps a guest's memfd): a 256-entry
//! TX and RX ring (QEMU's default size), EVENT_IDX on, VERSION_1 (12-byte header).
//!
//! * **guest TX → batch** (`pop_tx`): each chain is one descriptor holding the virtio-net
//!   header and the frame (Linux pushes the header into the skb's headroom for a linear
//!   frame); a 64 KiB TSO super-frame is an indirect chain of 17 descriptors, the headers
//!   and 16 pages of payload (as Linux sends a paged skb with INDIRECT_DESC). Each
//!   iteration makes `n` chains available (one store of the available index: the ring's
//!   entries do not change between rounds) and takes them into a cleared `PacketBatch`, as
//!   one `recv_batch` does; then asks whether the guest wants an interrupt.
//! * **batch → guest RX** (`push_rx`), mergeable receive buffers (MRG_RXBUF): the guest
//!   posts 256 single-descriptor, device-writable buffers per round, 1536 bytes each for
//!   small frames and 4 KiB for 64 KiB super-frames (Linux sizes mergeable buffers by the
//!   average packet, up to a page); a 65 054-byte super-frame with its GSO header spans 16
//!   of them (`num_buffers` = 16). Each iteration reposts the buffers and places as many
//!   frames as fill them, as one `send_batch` does, then decides on the interrupt.
//!
//! Every benchmark checks once, before timing, that all frames arrive whole and nothing is
//! refused. Not included (per batch, not per frame): the queue's locks and the one
//! eventfd write of an interrupt (the `ring` module's callers in `queue.rs`).
//!
//! Two clocks (`benches/clock/`), each benchmark once with each: `wall/…` is criterion's
//! own (elapsed time), `cpu/…` the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`),
//! so "per core" stays meaningful on a shared machine where other work takes the CPU away
//! for a while (it still slows the caches). On an idle machine the two agree.

mod clock;

use std::hint::black_box;
use std::num::Wrapping;
use std::sync::atomic::Ordering;

use clock::ThreadCpu;
use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, Throughput};
use virtio_bindings::bindings::virtio_ring::{
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vnetio::device::tuntap::RxMode;
use vnetio::device::vhost_user::features;
use vnetio::device::vhost_user::ring::{
    pop_tx, push_rx, used_needs_notification, Pushed, RxConfig, RxTally, TxConfig, TxTally,
};
use vnetio::wire::checksum::{checksum, pseudo_header_v4};
use vnetio::wire::vnet::{gso, VnetHdr, F_NEEDS_CSUM};
use vnetio::{Medium, PacketBatch};

type Mem = GuestMemoryMmap<()>;

/// Ring size (QEMU's default `tx_queue_size`/`rx_queue_size`).
const SIZE: u16 = 256;
const DESC_TABLE: u64 = 0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
/// Indirect descriptor tables, 0x200 bytes apart (17 descriptors take 272).
const TABLES: u64 = 0x1_0000;
/// Guest buffers.
const BUF: u64 = 0x10_0000;
/// Virtio-net header on the rings: `virtio_net_hdr_v1` (VERSION_1), 12 bytes.
const HDR: usize = 12;
/// TCP payload of a super-frame: a 65 054-byte frame, as in benches/superframe_loop.py.
const PAYLOAD: usize = 65_000;
const PAGE: u64 = 0x1000;
/// What the simulated guest's driver negotiated (a 6.1 guest on QEMU, VM-FACTS.md).
const ACKED: u64 = features::VERSION_1
    | features::MRG_RXBUF
    | features::CSUM
    | features::GUEST_CSUM
    | features::HOST_TSO4
    | features::GUEST_TSO4
    | features::RING_EVENT_IDX
    | features::RING_INDIRECT_DESC;

/// A guest's side of one split virtqueue, and the device's `Queue` over it.
struct Ring {
    mem: Mem,
    queue: Queue,
    avail_idx: Wrapping<u16>,
}

impl Ring {
    fn new(mem_bytes: usize) -> Self {
        let mem = Mem::from_ranges(&[(GuestAddress(0), mem_bytes)]).unwrap();
        let mut queue = Queue::new(SIZE).unwrap();
        queue.set_size(SIZE);
        queue.set_event_idx(true);
        queue
            .try_set_desc_table_address(GuestAddress(DESC_TABLE))
            .unwrap();
        queue
            .try_set_avail_ring_address(GuestAddress(AVAIL))
            .unwrap();
        queue.try_set_used_ring_address(GuestAddress(USED)).unwrap();
        queue.set_ready(true);
        // Slot i of the available ring names chain i, for good: rounds only move the index.
        for i in 0..SIZE {
            mem.write_obj(i.to_le(), GuestAddress(AVAIL + 4 + 2 * u64::from(i)))
                .unwrap();
        }
        Ring {
            mem,
            queue,
            avail_idx: Wrapping(0),
        }
    }

    fn set_desc(&self, table: u64, i: u16, addr: u64, len: usize, flags: u32, next: u16) {
        let d = RawDescriptor::from(Descriptor::new(addr, len as u32, flags as u16, next));
        self.mem
            .write_obj(d, GuestAddress(table + 16 * u64::from(i)))
            .unwrap();
    }

    /// The guest makes `n` more chains available (the driver's one index store).
    fn post(&mut self, n: u16) {
        self.avail_idx += Wrapping(n);
        self.mem
            .store(
                self.avail_idx.0.to_le(),
                GuestAddress(AVAIL + 2),
                Ordering::Release,
            )
            .unwrap();
    }
}

/// An Ethernet/IPv4/UDP frame of `len` bytes (valid checksums not needed: no offload).
fn plain_frame(len: usize) -> Vec<u8> {
    let mut f = vec![
        0x02, 0x76, 0x6e, 0x10, 0, 2, 0x02, 0x76, 0x6e, 0x10, 0, 1, 0x08, 0x00,
    ];
    let ip_len = (len - 14) as u16;
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0]);
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
    f.resize(len, 0xab);
    f
}

/// A TCP/IPv4 super-frame with a partial checksum and its GSO header, as a guest with
/// HOST_TSO4 sends it (and a host sends a guest with GUEST_TSO4).
fn superframe() -> (Vec<u8>, VnetHdr) {
    let mut f = vec![
        0x02, 0x76, 0x6e, 0x10, 0, 2, 0x02, 0x76, 0x6e, 0x10, 0, 1, 0x08, 0x00,
    ];
    let total = (40 + PAYLOAD) as u16;
    f.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2, 0x9c, 0x40, 0x14, 0x51]);
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend((0..PAYLOAD).map(|i| (i % 251) as u8));
    let pseudo = pseudo_header_v4([192, 0, 2, 1], [192, 0, 2, 2], 6, (20 + PAYLOAD) as u32);
    f[50..52].copy_from_slice(&pseudo.to_be_bytes());
    let c = checksum(&f[14..34]);
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

fn header_bytes(hdr: VnetHdr) -> Vec<u8> {
    let mut b = hdr.to_bytes().to_vec();
    b.resize(HDR, 0);
    b
}

/// A TX ring whose 256 chains each hold `hdr ++ frame` in one descriptor.
fn tx_ring_linear(frame: &[u8]) -> Ring {
    let ring = Ring::new(BUF as usize + usize::from(SIZE) * 0x800);
    let mut bytes = header_bytes(VnetHdr::default());
    bytes.extend_from_slice(frame);
    for i in 0..SIZE {
        let addr = BUF + u64::from(i) * 0x800;
        ring.mem.write_slice(&bytes, GuestAddress(addr)).unwrap();
        ring.set_desc(DESC_TABLE, i, addr, bytes.len(), 0, 0);
    }
    ring
}

/// A TX ring whose 256 chains are indirect tables: the header and the frame's 54 bytes of
/// headers in one descriptor, then the payload in page-sized descriptors.
fn tx_ring_indirect(frame: &[u8], hdr: VnetHdr) -> (Ring, usize) {
    let stride = 0x11000u64; // 17 pages per chain
    let ring = Ring::new((BUF + u64::from(SIZE) * stride) as usize);
    let mut head = header_bytes(hdr);
    head.extend_from_slice(&frame[..54]);
    let pages: Vec<&[u8]> = frame[54..].chunks(PAGE as usize).collect();
    for i in 0..SIZE {
        let base = BUF + u64::from(i) * stride;
        let table = TABLES + u64::from(i) * 0x200;
        ring.mem.write_slice(&head, GuestAddress(base)).unwrap();
        ring.set_desc(table, 0, base, head.len(), VRING_DESC_F_NEXT, 1);
        for (k, page) in pages.iter().enumerate() {
            let addr = base + PAGE * (k as u64 + 1);
            let k = k as u16 + 1;
            let last = usize::from(k) == pages.len();
            let flags = if last { 0 } else { VRING_DESC_F_NEXT };
            ring.mem.write_slice(page, GuestAddress(addr)).unwrap();
            ring.set_desc(table, k, addr, page.len(), flags, k + 1);
        }
        let table_len = 16 * (pages.len() + 1);
        ring.set_desc(DESC_TABLE, i, table, table_len, VRING_DESC_F_INDIRECT, 0);
    }
    (ring, pages.len() + 1)
}

/// One `recv_batch(max)` worth of work: `n` chains made available, taken into `batch`
/// (`max` counts frames: in segments mode a super-frame becomes ~45).
fn tx_round(
    ring: &mut Ring,
    cfg: &TxConfig,
    batch: &mut PacketBatch,
    scratch: &mut Vec<u8>,
    (n, max): (u16, usize),
) -> TxTally {
    ring.post(n);
    let before = ring.queue.next_used();
    batch.clear();
    let mut tally = TxTally::default();
    pop_tx(
        &mut ring.queue,
        &ring.mem,
        cfg,
        batch,
        max,
        scratch,
        &mut tally,
    )
    .unwrap();
    black_box(used_needs_notification(&ring.queue, &ring.mem, before));
    tally
}

fn tx_cfg(mode: RxMode) -> TxConfig {
    TxConfig {
        hdr_len: features::header_len(ACKED),
        rx_mode: mode,
        medium: Medium::Ethernet,
        timestamp_ns: 1,
    }
}

/// An RX ring of 256 single-descriptor device-writable buffers of `buf_len` bytes.
fn rx_ring(buf_len: usize) -> Ring {
    let stride = (buf_len as u64).next_multiple_of(PAGE);
    let ring = Ring::new((BUF + u64::from(SIZE) * stride) as usize);
    for i in 0..SIZE {
        let addr = BUF + u64::from(i) * stride;
        ring.set_desc(DESC_TABLE, i, addr, buf_len, VRING_DESC_F_WRITE, 0);
    }
    ring
}

/// One `send_batch` worth of work: the guest reposts its 256 buffers, `count` frames are
/// placed into them. Returns the frames placed.
fn rx_round(
    ring: &mut Ring,
    frame: &[u8],
    hdr: VnetHdr,
    count: usize,
    used: &mut Vec<(u16, u32)>,
) -> usize {
    let cfg = RxConfig {
        hdr_len: features::header_len(ACKED),
        mergeable: ACKED & features::MRG_RXBUF != 0,
    };
    ring.post(SIZE);
    let before = ring.queue.next_used();
    let mut tally = RxTally::default();
    let mut placed = 0;
    for _ in 0..count {
        let h = features::for_guest(ACKED, hdr);
        match push_rx(&mut ring.queue, &ring.mem, &cfg, h, frame, used, &mut tally) {
            Ok(Pushed::Done) => placed += 1,
            other => panic!("push_rx: {other:?}"),
        }
    }
    black_box(used_needs_notification(&ring.queue, &ring.mem, before));
    placed
}

fn guest_tx<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let mut g = c.benchmark_group(format!("{clock}/guest_tx"));
    for size in [64usize, 1514] {
        let frame = plain_frame(size);
        let mut ring = tx_ring_linear(&frame);
        let cfg = tx_cfg(RxMode::Superframes);
        let mut batch = PacketBatch::with_capacity(256, 256 * 2048);
        let mut scratch = Vec::new();
        let round = (SIZE, usize::from(SIZE));
        let t = tx_round(&mut ring, &cfg, &mut batch, &mut scratch, round);
        assert_eq!((t.frames, t.faults.total(), t.bad_frames), (256, 0, 0));
        assert!(batch.iter().all(|f| f == &frame[..]));
        g.throughput(Throughput::Elements(u64::from(SIZE)));
        g.bench_function(BenchmarkId::new("frames_256", size), |b| {
            b.iter(|| tx_round(&mut ring, &cfg, &mut batch, &mut scratch, round));
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("{clock}/guest_tx_64k"));
    let (frame, hdr) = superframe();
    let n: u16 = 64;
    let segments = PAYLOAD.div_ceil(usize::from(hdr.gso_size));
    for (mode, name, max) in [
        (RxMode::Superframes, "superframes_64", usize::from(n)),
        (RxMode::Segments, "segments_64", usize::from(n) * segments),
    ] {
        let (mut ring, descs) = tx_ring_indirect(&frame, hdr);
        assert_eq!(descs, 17);
        let cfg = tx_cfg(mode);
        let mut batch = PacketBatch::with_capacity(max, 64 * 70_000);
        let mut scratch = Vec::new();
        let t = tx_round(&mut ring, &cfg, &mut batch, &mut scratch, (n, max));
        assert_eq!((t.faults.total(), t.bad_frames), (0, 0));
        assert_eq!((t.superframes, t.frames), (u64::from(n), max));
        if mode == RxMode::Superframes {
            assert!(batch.iter().all(|f| f == &frame[..]));
            assert_eq!(batch.hdr(0), Some(hdr));
        }
        // Throughput in the super-frames' bits, in both modes (segments add headers).
        g.throughput(Throughput::Bits(u64::from(n) * frame.len() as u64 * 8));
        g.bench_function(name, |b| {
            b.iter(|| tx_round(&mut ring, &cfg, &mut batch, &mut scratch, (n, max)));
        });
    }
    g.finish();
}

fn guest_rx<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let mut used = Vec::new();
    let mut g = c.benchmark_group(format!("{clock}/guest_rx"));
    for size in [64usize, 1514] {
        let frame = plain_frame(size);
        let mut ring = rx_ring(1536);
        let count = usize::from(SIZE);
        assert_eq!(
            rx_round(&mut ring, &frame, VnetHdr::default(), count, &mut used),
            count
        );
        g.throughput(Throughput::Elements(count as u64));
        g.bench_function(BenchmarkId::new("mergeable_1536_frames_256", size), |b| {
            b.iter(|| rx_round(&mut ring, &frame, VnetHdr::default(), count, &mut used));
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("{clock}/guest_rx_64k"));
    let (frame, hdr) = superframe();
    let buf_len = PAGE as usize;
    let per_frame = (frame.len() + HDR).div_ceil(buf_len);
    assert_eq!(per_frame, 16);
    let count = usize::from(SIZE) / per_frame;
    let mut ring = rx_ring(buf_len);
    assert_eq!(rx_round(&mut ring, &frame, hdr, count, &mut used), count);
    assert_eq!(used.len(), per_frame);
    let mut first = [0u8; HDR];
    let last_frame = BUF + PAGE * u64::from(SIZE - per_frame as u16);
    ring.mem
        .read_slice(&mut first, GuestAddress(last_frame))
        .unwrap();
    assert_eq!(VnetHdr::parse(&first), Some(hdr));
    assert_eq!(u16::from_le_bytes([first[10], first[11]]), per_frame as u16);
    g.throughput(Throughput::Bits((count * frame.len() * 8) as u64));
    g.bench_function(format!("mergeable_4k_superframes_{count}"), |b| {
        b.iter(|| rx_round(&mut ring, &frame, hdr, count, &mut used));
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    guest_tx(c, "wall");
    guest_rx(c, "wall");
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    guest_tx(c, "cpu");
    guest_rx(c, "cpu");
}

clock::main_with_both_clocks!(wall, cpu);
