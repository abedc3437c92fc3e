//! Attaching to TUN/TAP adapters for the native baselines, `examples/native_*.rs`: the one
//! place where they open an adapter, and the only unsafe code they have. Each example pulls
//! it in with `#[path = "common/tuntap.rs"] mod tuntap;` (cargo builds `examples/*.rs` as
//! separate crates, and a folder without `main.rs` is not an example of its own).
//!
//! The baselines are plain Rust, one `read()` / `write()` per frame, and deliberately do not
//! use vnetio or its batching. Why two ways of opening:
//!
//! * A plain attachment (`IFF_NO_PI`) goes through the `tun-tap` crate. The benchmark tables
//!   name it as the native peer ("native Rust `write()`/`read()` (tun-tap)"): a published
//!   crate, not a loop of ours tuned against vnetio.
//! * tun-tap cannot ask for `IFF_VNET_HDR` (it builds the TUNSETIFF flags itself) nor call
//!   `TUNSETOFFLOAD`, and the super-frame baselines need both, so for `offload` this module
//!   issues the two ioctls itself.
//!
//! Either way the caller gets a `File`, so every baseline reads and writes through std.

// The only unsafe code of the examples: TUNSETIFF / TUNSETOFFLOAD, setns, fcntl and poll,
// which std does not wrap, and taking over tun-tap's descriptor.
#![allow(unsafe_code)]
// Each example uses part of this module.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use tun_tap::{Iface, Mode};

/// Which kind of adapter to attach to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Layer 3: IP packets.
    Tun,
    /// Layer 2: Ethernet frames.
    Tap,
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (the rest is padding).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Attach to the existing adapter `name` in this thread's network namespace, without
/// packet information (`IFF_NO_PI`). With `offload`, also `IFF_VNET_HDR` (a 10-byte
/// virtio-net header in front of every frame) and TUNSETOFFLOAD(CSUM | TSO4 | TSO6): the
/// kernel then hands out and takes 64 KiB TCP super-frames.
pub fn attach(name: &str, kind: Kind, offload: bool) -> io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad adapter name",
        ));
    }
    if !offload {
        let mode = if kind == Kind::Tap {
            Mode::Tap
        } else {
            Mode::Tun
        };
        let fd = Iface::without_packet_info(name, mode)?.into_raw_fd();
        // SAFETY: `into_raw_fd` released the descriptor tun-tap had opened and attached, so
        // it is open and nothing else owns or closes it. Not guaranteed: nothing more.
        return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let kind_flag = if kind == Kind::Tap {
        libc::IFF_TAP
    } else {
        libc::IFF_TUN
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (kind_flag | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads a `struct ifreq` (40 bytes on Linux; IfReq has that layout and
    // size) through the pointer, which is valid for the call. Not guaranteed: that the
    // kernel accepts it (errno is checked).
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mask = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    // SAFETY: TUNSETOFFLOAD takes its argument by value on an attached descriptor. Not
    // guaranteed: that the kernel accepts the mask (errno is checked).
    let set = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(mask),
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Enter the network namespace `ns` (a name from `ip netns list`), for this thread only,
/// as setns does.
pub fn enter_netns(ns: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: setns takes a descriptor that stays open for the call (f lives until the
    // end of this function) and a namespace type; it changes only this thread's network
    // namespace. Not guaranteed: nothing else; errors are reported through errno.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Make reads and writes on `file` fail with `WouldBlock` instead of waiting.
pub fn set_nonblocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` keeps open, with integer arguments only; no
    // memory is passed to the kernel.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wait up to `timeout_ms` for `file` to be readable; true when it is.
pub fn wait_readable(file: &File, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, exclusively borrowed for the duration of the call. Not
    // guaranteed: nothing; an error or timeout returns <= 0 and callers just check again.
    unsafe { libc::poll(&raw mut pfd, 1, timeout_ms) > 0 }
}

/// CPU time the calling thread has used so far, in seconds (`CLOCK_THREAD_CPUTIME_ID`):
/// what a benchmark divides by its frames to get CPU per frame of one thread.
#[allow(clippy::cast_precision_loss)] // seconds and nanoseconds far below 2^52
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer, which is valid and
    // exclusively borrowed for the call. Not guaranteed: nothing; it cannot fail for this
    // clock, and a failure would leave zero.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A second descriptor for the open file behind `fd` (`dup`): the same TAP queue, read
/// through std. For `reader_probe`, which reads one vnetio queue both ways.
pub fn dup_fd(fd: std::os::fd::RawFd) -> io::Result<File> {
    // SAFETY: dup takes an integer and returns a new descriptor or -1; no memory is passed.
    let new = unsafe { libc::dup(fd) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a descriptor just returned by dup, owned by nobody else.
    Ok(unsafe { File::from_raw_fd(new) })
}
