//! Native baseline for the forwarder benchmark (`benches/forwarder.py`): two threads copy
//! packets between two TUN (or TAP) adapters, one `read()` and one `write()` per packet,
//! with std (adapters attached by `common/tuntap.rs`).
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

// A command-line tool reports on stdout by design.
#![allow(clippy::print_stdout)]

#[path = "common/tuntap.rs"]
mod tuntap;

use std::fs::File;
use std::io::{self, Read, Write};
use std::process::exit;
use std::thread;

/// Room for any packet a TUN/TAP can hand out, with a virtio-net header in front.
const BUF: usize = 65_536 + 64;

fn usage() -> ! {
    eprintln!("usage: native_forwarder --kind tun|tap --a NS:DEV --b NS:DEV [--vnet-hdr]");
    exit(2)
}

/// Attach to the existing adapter `dev` in namespace `ns`.
fn attach(ns: &str, dev: &str, kind: tuntap::Kind, vnet_hdr: bool) -> io::Result<File> {
    tuntap::enter_netns(ns)?;
    tuntap::attach(dev, kind, vnet_hdr)
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
    let kind = match kind.as_deref() {
        Some("tap") => tuntap::Kind::Tap,
        Some("tun") => tuntap::Kind::Tun,
        _ => usage(),
    };
    let (Some((ns_a, dev_a)), Some((ns_b, dev_b))) = (a, b) else {
        usage()
    };
    let open = |ns: &str, dev: &str| {
        attach(ns, dev, kind, vnet_hdr).unwrap_or_else(|e| {
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
