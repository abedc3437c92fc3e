//! Native baseline for `benches/superframe_loop.py`: 64 KiB TCP super-frames written into
//! TAP A and read from TAP B of a bridge loop, both attached with IFF_VNET_HDR and
//! TUNSETOFFLOAD(CSUM | TSO4 | TSO6) by `common/tuntap.rs`, one frame per `write()` /
//! `read()`, std only.
//!
//! ```text
//! ip netns exec NS target/release/examples/native_superframe_loop \
//!     --a vnA --b vnB --frame FILE --seconds 3 --copies 64
//! ```
//!
//! FILE holds what is written each time: the 10-byte virtio-net header, then the frame (the
//! Python side builds it, so both loops write the same bytes). The writer keeps `--copies`
//! copies of it back to back in one buffer and writes them in turn, unpaced, as the Python
//! side writes the frames of its `Batch` (one copy would be written from a cache-hot 64 KiB
//! buffer, which no program sending distinct frames has); a reader thread counts the frames
//! of exactly that length read from B into one reused buffer. Prints
//! one JSON line: `{"written": W, "delivered": D, "bytes": B, "seconds": S, "writer_cpu":
//! CW, "reader_cpu": CR}` (bytes of delivered frames, without the header; each thread's
//! CPU seconds).

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
    eprintln!(
        "usage: native_superframe_loop --a TAP --b TAP --frame FILE [--seconds S] [--copies N]"
    );
    exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut a, mut b, mut frame_path, mut seconds, mut copies) = (None, None, None, 3.0f64, 1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--a" => a = args.next(),
            "--b" => b = args.next(),
            "--frame" => frame_path = args.next(),
            "--copies" => {
                copies = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|&n: &usize| n > 0)
                    .unwrap_or_else(|| usage());
            }
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
    let all = buf.repeat(copies);
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
    let (delivered, bytes, elapsed, reader_cpu, writer_cpu) = thread::scope(|s| {
        let writer = s.spawn(|| {
            let cpu0 = tuntap::thread_cpu_seconds();
            let mut frames = all.chunks_exact(buf.len()).cycle();
            while !stop.load(Ordering::Relaxed) {
                let frame = frames.next().unwrap_or(&buf);
                if fa.write(frame).is_ok() {
                    written.fetch_add(1, Ordering::Relaxed);
                }
            }
            tuntap::thread_cpu_seconds() - cpu0
        });
        let reader = s.spawn(|| {
            let cpu0 = tuntap::thread_cpu_seconds();
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
            let elapsed = start.elapsed().as_secs_f64();
            (n, total, elapsed, tuntap::thread_cpu_seconds() - cpu0)
        });
        let (n, total, elapsed, reader_cpu) = reader.join().unwrap_or((0, 0, 0.0, 0.0));
        (n, total, elapsed, reader_cpu, writer.join().unwrap_or(0.0))
    });
    println!(
        "{{\"written\": {}, \"delivered\": {delivered}, \"bytes\": {bytes}, \"seconds\": {elapsed:.6}, \"writer_cpu\": {writer_cpu:.6}, \"reader_cpu\": {reader_cpu:.6}}}",
        written.load(Ordering::Relaxed)
    );
}
