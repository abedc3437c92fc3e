//! The vhost-user data path (`device::vhost_user::ring`) over guest memory the fuzzer
//! writes: descriptor table, available ring and buffers are arbitrary bytes.
//!
//! Layout of the 64 KiB guest memory: descriptor table at 0, available ring at 0x1000,
//! used ring at 0x2000, the rest buffers; the input is copied in from address 0 and its
//! first bytes also choose the queue size, EVENT_IDX, mergeable buffers and the receive
//! mode. Descriptors may point anywhere (outside the memory too).
//!
//! Asserts: no panic; the device never hands back more chains than the guest made
//! available; every frame taken fits the largest frame; after any refusal the queue
//! still works (a second pass does not panic either).
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vnetio::device::tuntap::RxMode;
use vnetio::device::vhost_user::ring::{
    pop_tx, push_rx, RxConfig, RxTally, TxConfig, TxTally, MAX_GUEST_FRAME,
};
use vnetio::wire::vnet::VnetHdr;
use vnetio::{Medium, PacketBatch};

const MEM: usize = 0x1_0000;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]) else {
        return;
    };
    let image = &data[..data.len().min(MEM)];
    if mem.write_slice(image, GuestAddress(0)).is_err() {
        return;
    }
    let size = 1u16 << (data[0] % 9); // 1..=256
    let event_idx = data[1] & 1 != 0;
    let mergeable = data[1] & 2 != 0;
    let mode = if data[1] & 4 != 0 {
        RxMode::Segments
    } else {
        RxMode::Superframes
    };
    let hdr_len = if data[1] & 8 != 0 { 10 } else { 12 };
    let Ok(mut q) = Queue::new(256) else { return };
    q.set_size(size);
    q.set_event_idx(event_idx);
    if q.try_set_desc_table_address(GuestAddress(0)).is_err()
        || q.try_set_avail_ring_address(GuestAddress(0x1000)).is_err()
        || q.try_set_used_ring_address(GuestAddress(0x2000)).is_err()
    {
        return;
    }
    q.set_ready(true);
    let avail = u16::from_le_bytes([data[2], data[3]]);
    let _ = mem.write_obj(avail.to_le(), GuestAddress(0x1002));
    let _ = mem.write_obj(0u16, GuestAddress(0x2002));

    if data[1] & 16 == 0 {
        let cfg = TxConfig {
            hdr_len,
            rx_mode: mode,
            medium: Medium::Ethernet,
            timestamp_ns: 0,
        };
        for _ in 0..2 {
            let mut batch = PacketBatch::default();
            let mut tally = TxTally::default();
            let mut scratch = Vec::new();
            let _ = pop_tx(
                &mut q,
                &mem,
                &cfg,
                &mut batch,
                512,
                &mut scratch,
                &mut tally,
            );
            assert!(tally.chains <= usize::from(size));
            if mode == RxMode::Superframes {
                assert!(batch.lengths().all(|l| l <= MAX_GUEST_FRAME));
            }
        }
    } else {
        let cfg = RxConfig { hdr_len, mergeable };
        let frame_len = usize::from(data[0]) * 64 + 14;
        let frame = vec![0xab; frame_len];
        let mut used = Vec::new();
        let mut tally = RxTally::default();
        for _ in 0..4 {
            if push_rx(
                &mut q,
                &mem,
                &cfg,
                VnetHdr::default(),
                &frame,
                &mut used,
                &mut tally,
            )
            .is_err()
            {
                break;
            }
        }
        assert!(tally.chains <= 4 * usize::from(size) + usize::from(size));
    }
});
