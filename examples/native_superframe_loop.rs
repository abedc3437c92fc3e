//! Native baseline for `benches/superframe_loop.py`: 64 KiB TCP super-frames written into
//! TAP A and read from TAP B of a bridge loop, both attached with IFF_VNET_HDR and
//! TUNSETOFFLOAD(CSUM | TSO4 | TSO6), one frame per `write()` / `read()`, std and libc only.
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

// The only unsafe code: the TUN ioctls and poll(), which std does not wrap.
#![allow(unsafe_code)]
// A command-line tool reports on stdout by design.
#![allow(clippy::print_stdout)]
// Counts stay far below 2^52, so f64 is exact enough.
#![allow(clippy::cast_precision_loss)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::process::exit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const VNET_HDR_LEN: usize = 10;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (the rest is padding).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn usage() -> ! {
    eprintln!("usage: native_superframe_loop --a TAP --b TAP --frame FILE [--seconds S]");
    exit(2)
}

/// Attach to TAP `dev` (this namespace) with the virtio-net header and TSO on.
fn attach(dev: &str) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    if dev.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..dev.len()].copy_from_slice(dev.as_bytes());
    // SAFETY: TUNSETIFF reads a `struct ifreq` (40 bytes; IfReq has that layout and size)
    // through a pointer valid for the call. Not guaranteed: that the kernel accepts it
    // (errno is checked).
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mask = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    // SAFETY: TUNSETOFFLOAD takes its argument by value on an attached descriptor. Not
    // guaranteed: that the kernel accepts the mask (errno is checked).
    if unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(mask),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Wait up to 100 ms for `file` to be readable.
fn readable(file: &File) -> bool {
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call. Not guaranteed: nothing;
    // an error or timeout returns <= 0 and the caller simply checks its flags again.
    unsafe { libc::poll(&raw mut pfd, 1, 100) > 0 }
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
        attach(dev).unwrap_or_else(|e| {
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
                if !readable(&fb) {
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
