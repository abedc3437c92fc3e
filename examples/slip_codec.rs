//! Native baseline for the SLIP codec benchmark (`benches/serial_loop.py`): vnetio's
//! encoder and decoder (`device::serial::slip`) called from Rust, with no Python between
//! the loop and the call.
//!
//! ```text
//! target/release/examples/slip_codec PACKETS_FILE [MIN_SECONDS]
//! ```
//!
//! `PACKETS_FILE` holds the packets, each as a 4-byte little-endian length and its bytes.
//! Encodes them all into one reused buffer, and decodes that stream with a fresh
//! `Decoder` (frames copied into a reused arena, as the Python API gathers them), each
//! repeated for at least `MIN_SECONDS` (0.3) and at least 3 times; prints one JSON line
//! with the best time of each as packet bytes per second.

// A benchmark binary: its output is the JSON line; byte counts as f64 lose nothing here.
#![allow(clippy::print_stdout)]
#![allow(clippy::cast_precision_loss)]

use std::time::Instant;

use vnetio::device::serial::slip::{encode_into, Decoder};
use vnetio::PacketBatch;

fn best(min_seconds: f64, mut f: impl FnMut()) -> f64 {
    let (mut runs, mut total, mut best) = (0u32, 0.0, f64::INFINITY);
    while runs < 3 || total < min_seconds {
        let t = Instant::now();
        f();
        let s = t.elapsed().as_secs_f64();
        best = best.min(s);
        total += s;
        runs += 1;
    }
    best
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: slip_codec PACKETS_FILE [MIN_SECONDS]");
    let min_seconds: f64 = args.next().map_or(0.3, |s| s.parse().expect("MIN_SECONDS"));
    let data = std::fs::read(&path).expect("read the packets file");
    let mut packets = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let n = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        packets.push(&data[at + 4..at + 4 + n]);
        at += 4 + n;
    }
    let bytes: usize = packets.iter().map(|p| p.len()).sum();
    let mut stream = Vec::new();
    let encode = best(min_seconds, || {
        stream.clear();
        for p in &packets {
            encode_into(p, &mut stream);
        }
        std::hint::black_box(&stream);
    });
    let mut frames = PacketBatch::default();
    let decode = best(min_seconds, || {
        frames.clear();
        let mut d = Decoder::new(65_535);
        d.feed(&stream, |f| frames.push(f, 0));
        std::hint::black_box(&frames);
    });
    assert_eq!(
        frames.len(),
        packets.iter().filter(|p| !p.is_empty()).count()
    );
    println!(
        "{{\"packets\":{},\"bytes\":{bytes},\"encode_bytes_per_s\":{},\"decode_bytes_per_s\":{}}}",
        packets.len(),
        bytes as f64 / encode,
        bytes as f64 / decode
    );
}
