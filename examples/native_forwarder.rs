//! Native baseline for the forwarder benchmark (`benches/forwarder.py`): two threads copy
//! packets between two TUN (or TAP) adapters, one `read()` and one `write()` per packet,
//! with std and libc only.
//!
//! ```text
//! target/release/examples/native_forwarder --kind tun --a NS_A:DEV_A --b NS_B:DEV_B [--vnet-hdr]
//! ```
//!
//! Each adapter must already exist (`ip tuntap add`) in its network namespace (a name from
//! `ip netns list`); the forwarder enters each namespace in turn to attach to it. With
//! `--vnet-hdr` both are attached with IFF_VNET_HDR and given TUNSETOFFLOAD(CSUM | TSO4 |
//! TSO6): the kernel hands out 64 KiB TCP super-frames behind a 10-byte virtio-net header,
//! and the forwarder writes header and frame through unchanged. Prints `{"event":"ready"}`
//! once both are attached (the JSON-line protocol of `benches/harness/procs.py`), then runs
//! until killed.

// The only unsafe code: setns() and the TUN ioctls, which std does not wrap.
#![allow(unsafe_code)]
// A command-line tool reports on stdout by design.
#![allow(clippy::print_stdout)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::process::exit;
use std::thread;

/// Room for any packet a TUN/TAP can hand out, with a virtio-net header in front.
const BUF: usize = 65_536 + 64;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (the rest is padding).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn usage() -> ! {
    eprintln!("usage: native_forwarder --kind tun|tap --a NS:DEV --b NS:DEV [--vnet-hdr]");
    exit(2)
}

/// Enter the network namespace `ns` (this thread only, as setns does).
fn enter_netns(ns: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: setns takes a descriptor that stays open for the call (f lives until the
    // end of this function) and a namespace type; it changes only this thread's network
    // namespace. Not guaranteed: nothing else; errors are reported through errno.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn ioctl_int(fd: &File, request: libc::Ioctl, value: libc::c_ulong) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value; fd is an open /dev/net/tun
    // descriptor. Not guaranteed: that the kernel accepts the value (checked below).
    if unsafe { libc::ioctl(fd.as_raw_fd(), request, value) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attach to the existing adapter `dev` in namespace `ns`.
fn attach(ns: &str, dev: &str, tap: bool, vnet_hdr: bool) -> io::Result<File> {
    enter_netns(ns)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    if dev.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
    }
    req.name[..dev.len()].copy_from_slice(dev.as_bytes());
    let mut flags = libc::IFF_NO_PI | if tap { libc::IFF_TAP } else { libc::IFF_TUN };
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    req.flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads a `struct ifreq` (40 bytes on Linux; IfReq has that layout
    // and size) through the pointer, which is valid for the call. Not guaranteed: nothing
    // beyond the call; the kernel may refuse (errno).
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if vnet_hdr {
        let mask = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        ioctl_int(&file, libc::TUNSETOFFLOAD, libc::c_ulong::from(mask))?;
    }
    Ok(file)
}

/// Copy packets from `src` to `dst` until a read fails for good. A refused write (ring
/// full, adapter going down) drops that packet, as a router would.
fn pump(mut src: &File, mut dst: &File) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match src.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let _ = dst.write(&buf[..n]);
    }
}

fn split(spec: &str) -> (String, String) {
    match spec.split_once(':') {
        Some((ns, dev)) => (ns.to_owned(), dev.to_owned()),
        None => usage(),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut kind, mut a, mut b, mut vnet_hdr) = (None, None, None, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kind" => kind = args.next(),
            "--a" => a = args.next().map(|s| split(&s)),
            "--b" => b = args.next().map(|s| split(&s)),
            "--vnet-hdr" => vnet_hdr = true,
            _ => usage(),
        }
    }
    let tap = match kind.as_deref() {
        Some("tap") => true,
        Some("tun") => false,
        _ => usage(),
    };
    let (Some((ns_a, dev_a)), Some((ns_b, dev_b))) = (a, b) else {
        usage()
    };
    let open = |ns: &str, dev: &str| {
        attach(ns, dev, tap, vnet_hdr).unwrap_or_else(|e| {
            eprintln!("native_forwarder: attach {dev} in {ns}: {e}");
            exit(1)
        })
    };
    let fa = open(&ns_a, &dev_a);
    let fb = open(&ns_b, &dev_b);
    println!("{{\"event\":\"ready\"}}");
    let _ = io::stdout().flush();
    thread::scope(|s| {
        s.spawn(|| pump(&fa, &fb));
        s.spawn(|| pump(&fb, &fa));
    });
}
