//! Forward between a vhost-user virtio-net backend (a guest's NIC) and a vnetio TAP
//! adapter with offload, keeping segmentation-offload super-frames whole both ways.
//!
//! ```text
//! ip netns add vh
//! cargo run --example vhost_tap_forward -- /tmp/vhost.sock --tap vh0 --netns vh \
//!     --addr 192.0.2.1/24 --seconds 60
//! ```
//!
//! The TAP is created in the namespace, given the address and brought up; QEMU's guest
//! on the socket then reaches the namespace's kernel stack through vnetio. Prints the
//! negotiated features on connection and both sides' counters at the end (super-frames
//! received from the guest are counted in `vhost.superframes`). Ends after `--seconds`,
//! or once `--connections N` guest connections have ended.

// A command-line tool reports on stdout by design.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use vnetio::batch::PacketBatch;
use vnetio::device::tuntap::{parse_cidr, Adapter, OpenOptions, RxMode};
use vnetio::device::vhost_user::{features, Options, VhostUserNet};
use vnetio::wire::vnet::VnetHdr;
use vnetio::{Device, Medium};

struct Args {
    socket: String,
    tap: String,
    netns: Option<String>,
    addr: Option<String>,
    seconds: u64,
    connections: u64,
    segments: bool,
}

fn parse() -> Option<Args> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        socket: it.next()?,
        tap: "vh0".into(),
        netns: None,
        addr: None,
        seconds: 60,
        connections: 0,
        segments: false,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--tap" => a.tap = it.next()?,
            "--netns" => a.netns = Some(it.next()?),
            "--addr" => a.addr = Some(it.next()?),
            "--seconds" => a.seconds = it.next()?.parse().ok()?,
            "--segments" => a.segments = true,
            "--connections" => a.connections = it.next()?.parse().ok()?,
            _ => return None,
        }
    }
    Some(a)
}

/// Move frames from `from` to `to` (offload metadata kept) until `stop`. Counts frames
/// that carried GSO metadata in `gso`.
fn pump(from: &dyn Device, to: &dyn Device, stop: &AtomicBool, gso: &AtomicU64) -> String {
    let mut batch = PacketBatch::default();
    let mut hdrs: Vec<Option<VnetHdr>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        batch.clear();
        match from.recv_batch(&mut batch, 64, Duration::from_millis(50)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) => return format!("receive: {e}"),
        }
        hdrs.clear();
        hdrs.extend((0..batch.len()).map(|i| batch.hdr(i)));
        gso.fetch_add(
            hdrs.iter().flatten().filter(|h| h.is_gso()).count() as u64,
            Ordering::Relaxed,
        );
        let frames: Vec<&[u8]> = batch.iter().collect();
        if let Err(e) = to.send_frames_meta(&frames, &hdrs) {
            eprintln!("vhost_tap_forward: send: {e}");
        }
    }
    String::new()
}

fn main() -> ExitCode {
    let Some(args) = parse() else {
        eprintln!(
            "usage: vhost_tap_forward SOCKET [--tap NAME] [--netns NS] [--addr CIDR] \
             [--seconds N] [--connections N] [--segments]"
        );
        return ExitCode::from(2);
    };
    let mode = if args.segments {
        RxMode::Segments
    } else {
        RxMode::Superframes
    };
    let mut topts = OpenOptions::new(&args.tap, Medium::Ethernet);
    topts.netns.clone_from(&args.netns);
    topts.offload = true;
    topts.rx_mode = mode;
    let tap = match Adapter::open(&topts) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vhost_tap_forward: open {}: {e}", args.tap);
            return ExitCode::FAILURE;
        }
    };
    if let Some(cidr) = &args.addr {
        let setup = parse_cidr(cidr).and_then(|(ip, prefix)| tap.add_address(ip, prefix));
        if let Err(e) = setup.and_then(|()| tap.set_up(true)) {
            eprintln!("vhost_tap_forward: configure {}: {e}", args.tap);
            return ExitCode::FAILURE;
        }
    }
    let mut vopts = Options::new(&args.socket);
    vopts.rx_mode = mode;
    let vhost = match VhostUserNet::new(&vopts) {
        Ok(v) => Arc::new(v),
        Err(e) => {
            eprintln!("vhost_tap_forward: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tap = Arc::new(tap);
    println!("listening socket={} tap={}", args.socket, args.tap);
    let stop = Arc::new(AtomicBool::new(false));
    let (gso_from_guest, gso_to_guest) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let spawn = |from: Arc<dyn Device>, to: Arc<dyn Device>, gso: &Arc<AtomicU64>| {
        let (s, g) = (Arc::clone(&stop), Arc::clone(gso));
        thread::spawn(move || pump(&*from, &*to, &s, &g))
    };
    let threads = [
        spawn(vhost.clone(), tap.clone(), &gso_from_guest),
        spawn(tap.clone(), vhost.clone(), &gso_to_guest),
    ];
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut was = false;
    while Instant::now() < end {
        let now = vhost.connected();
        if now != was {
            was = now;
            if now {
                println!(
                    "connected features={}",
                    features::names(vhost.features()).join(",")
                );
            } else {
                println!("disconnected");
            }
        }
        if args.connections > 0 && vhost.vhost_stats().disconnects >= args.connections {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        if let Ok(msg) = t.join() {
            if !msg.is_empty() {
                println!("pump ended: {msg}");
            }
        }
    }
    println!(
        "gso super-frames guest->tap={} tap->guest={}",
        gso_from_guest.load(Ordering::Relaxed),
        gso_to_guest.load(Ordering::Relaxed)
    );
    println!("vhost stats {:?}", vhost.stats().unwrap_or_default());
    println!("vhost {:?}", vhost.vhost_stats());
    println!("tap stats {:?}", tap.stats().unwrap_or_default());
    if let Some(e) = vhost.last_error() {
        println!("last_error {e}");
    }
    vhost.close();
    tap.close();
    ExitCode::SUCCESS
}
