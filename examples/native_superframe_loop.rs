//! Native baseline for `benches/superframe_loop.py`: 64 KiB TCP super-frames written into
//! TAP A and read from TAP B of a bridge loop, both attached with IFF_VNET_HDR and
//! TUNSETOFFLOAD(CSUM | TSO4 | TSO6) by `common/tuntap.rs`, one frame per `write()` /
//! `read()`, std only.
//!
//! ```text
//! ip netns exec NS target/release/examples/native_superframe_loop \
//!     --a vnA --b vnB --frame FILE --seconds 3
//! ```
//!
//! FILE holds what is written each time: the 10-byte virtio-net header, then the frame (the
//! Python side builds it, so both loops write the same bytes). A writer thread writes it
//! unpaced; a reader thread counts the frames of exactly that length read from B. Prints
//! one JSON line: `{"written": W, "delivered": D, "bytes": B, "seconds": S}` (bytes of
//! delivered frames, without the header).

// A command-line tool reports on stdout by design.
#![allow(clippy::print_stdout)]
// Counts stay far below 2^52, so f64 is exact enough.
#![allow(clippy::cast_precision_loss)]

#[path = "common/tuntap.rs"]
mod tuntap;

use std::io::{Read, Write};
use std::process::exit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const VNET_HDR_LEN: usize = 10;

fn usage() -> ! {
    eprintln!("usage: native_superframe_loop --a TAP --b TAP --frame FILE [--seconds S]");
    exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut a, mut b, mut frame_path, mut seconds) = (None, None, None, 3.0f64);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--a" => a = args.next(),
            "--b" => b = args.next(),
            "--frame" => frame_path = args.next(),
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage());
            }
            _ => usage(),
        }
    }
    let (Some(a), Some(b), Some(frame_path)) = (a, b, frame_path) else {
        usage()
    };
    let buf = std::fs::read(&frame_path).unwrap_or_else(|e| {
        eprintln!("native_superframe_loop: {frame_path}: {e}");
        exit(1)
    });
    let want = buf.len() - VNET_HDR_LEN;
    let open = |dev: &str| {
        tuntap::attach(dev, tuntap::Kind::Tap, true).unwrap_or_else(|e| {
            eprintln!("native_superframe_loop: attach {dev}: {e}");
            exit(1)
        })
    };
    // Reader first: a TAP without a reader has no carrier (its bridge port is disabled).
    let mut fb = open(&b);
    let mut fa = open(&a);
    thread::sleep(Duration::from_millis(200)); // the bridge ports start forwarding
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let (delivered, bytes, elapsed) = thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if fa.write(&buf).is_ok() {
                    written.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let reader = s.spawn(|| {
            let mut rx = vec![0u8; 65_536 + 64];
            let (mut n, mut total) = (0u64, 0u64);
            let start = Instant::now();
            let end = start + Duration::from_secs_f64(seconds);
            while Instant::now() < end {
                if !tuntap::wait_readable(&fb, 100) {
                    continue;
                }
                if let Ok(len) = fb.read(&mut rx) {
                    if len.saturating_sub(VNET_HDR_LEN) == want {
                        n += 1;
                        total += want as u64;
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            (n, total, start.elapsed().as_secs_f64())
        });
        reader.join().unwrap_or((0, 0, 0.0))
    });
    println!(
        "{{\"written\": {}, \"delivered\": {delivered}, \"bytes\": {bytes}, \"seconds\": {elapsed:.6}}}",
        written.load(Ordering::Relaxed)
    );
}
