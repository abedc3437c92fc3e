//! The echo responder on arbitrary frames, both media.
//!
//! Asserts: no panic; every frame is counted exactly once; a reply is at most
//! `REPLY_GROWTH` bytes longer than its request, parses, and carries correct checksums;
//! a reply is never itself answered (two responders cannot ping-pong).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vnetio::responder::{Config, Counters, Responder, REPLY_GROWTH};
use vnetio::wire::checksum::verify_frame;
use vnetio::{Medium, PacketBatch};

const CONFIG: Config = Config {
    mac: [2, 0, 0, 0, 0, 0x22],
    ipv4: Some([192, 0, 2, 2]),
    ipv6: Some([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
};

fuzz_target!(|data: &[u8]| {
    for medium in [Medium::Ethernet, Medium::Ip] {
        let r = Responder::new(CONFIG, medium);
        let mut input = PacketBatch::default();
        input.push(data, 0);
        let mut out = PacketBatch::default();
        let mut counters = Counters::default();
        r.answer_batch(&input, &mut out, &mut counters);
        assert_eq!(
            counters.answered() + counters.ignored + counters.malformed,
            1
        );
        assert_eq!(out.len() as u64, counters.answered());
        if let Some(reply) = out.get(0) {
            assert!(reply.len() <= data.len() + REPLY_GROWTH);
            let check = verify_frame(reply, medium).expect("a reply parses");
            assert!(check.ok(), "a reply with a bad checksum: {check:?}");
            assert!(r.answer(reply).is_err(), "a reply was answered");
        }
    }
});
