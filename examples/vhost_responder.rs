//! A virtual host behind a vhost-user virtio-net backend: answers ARP, IPv6 neighbour
//! solicitations and pings (vnetio's `responder`) for a guest whose NIC is this backend.
//!
//! ```text
//! cargo run --example vhost_responder -- /tmp/vhost.sock --ip 192.0.2.1 --seconds 60
//! qemu-system-x86_64 -accel tcg -m 256M \
//!   -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
//!   -chardev socket,id=c0,path=/tmp/vhost.sock \
//!   -netdev vhost-user,id=n0,chardev=c0 -device virtio-net-pci,netdev=n0,vectors=0 …
//! ```
//!
//! `vectors=0` (no MSI-X): QEMU 7.2 under TCG (no KVM) crashes in
//! `msix_set_vector_notifiers` when it starts any vhost-user net device with MSI-X; with
//! KVM it is not needed. For client mode (`--client`) QEMU listens:
//! `-chardev socket,id=c0,path=/tmp/vhost.sock,server=on,wait=off`. With `--queues N`:
//! `-netdev vhost-user,…,queues=N -device virtio-net-pci,…,mq=on` and `-smp` ≥ N (the
//! guest uses one queue pair per vCPU).
//!
//! Prints one line per event (`listening`, `connected` with the negotiated features,
//! `disconnected`), a summary of the first frames the guest sends, and, at the end, the
//! adapter's counters. Runs for `--seconds` (or until `--connections N` connections have
//! ended), in server mode unless `--client`. `--stall-after N` stops reading after N
//! frames, so frames pile up on the guest's TX ring (they are counted as lost when the
//! guest goes away).

// A command-line tool reports on stdout by design.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use vnetio::batch::PacketBatch;
use vnetio::device::tuntap::RxMode;
use vnetio::device::vhost_user::{features, Options, SocketMode, VhostUserNet};
use vnetio::responder::{Config, Counters, Responder};
use vnetio::{Device, Medium};

struct Args {
    socket: String,
    client: bool,
    ip: [u8; 4],
    ip6: Option<[u8; 16]>,
    mac: [u8; 6],
    seconds: u64,
    connections: u64,
    queues: usize,
    offload: bool,
    superframes: bool,
    show: usize,
    stall_after: u64,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: vhost_responder SOCKET [--client] [--ip A.B.C.D] [--ip6 ADDR] [--mac MAC] \
         [--seconds N] [--connections N] [--queues N] [--no-offload] [--superframes] [--show N] [--stall-after FRAMES]"
    );
    ExitCode::from(2)
}

fn parse() -> Option<Args> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        socket: it.next()?,
        client: false,
        ip: [192, 0, 2, 1],
        ip6: None,
        mac: [0x02, 0x76, 0x6e, 0x00, 0x00, 0x01],
        seconds: 60,
        connections: 0,
        queues: 1,
        offload: true,
        superframes: false,
        show: 20,
        stall_after: 0,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--client" => a.client = true,
            "--no-offload" => a.offload = false,
            "--superframes" => a.superframes = true,
            "--ip" => {
                let v: std::net::Ipv4Addr = it.next()?.parse().ok()?;
                a.ip = v.octets();
            }
            "--ip6" => {
                let v: std::net::Ipv6Addr = it.next()?.parse().ok()?;
                a.ip6 = Some(v.octets());
            }
            "--mac" => a.mac = vnetio::device::tuntap::parse_mac(&it.next()?).ok()?,
            "--seconds" => a.seconds = it.next()?.parse().ok()?,
            "--connections" => a.connections = it.next()?.parse().ok()?,
            "--queues" => a.queues = it.next()?.parse().ok()?,
            "--show" => a.show = it.next()?.parse().ok()?,
            "--stall-after" => a.stall_after = it.next()?.parse().ok()?,
            _ => return None,
        }
    }
    Some(a)
}

/// One line about a frame: Ethernet addresses, EtherType, length, offload metadata.
fn describe(frame: &[u8], batch: &PacketBatch, index: usize) -> String {
    let mac = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let ethertype = frame
        .get(12..14)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let meta = batch.hdr(index).map_or(String::new(), |h| {
        format!(
            " gso_type={} gso_size={} flags={}",
            h.gso_type, h.gso_size, h.flags
        )
    });
    format!(
        "frame {} > {} type=0x{ethertype:04x} len={}{meta}",
        mac(frame.get(6..12).unwrap_or_default()),
        mac(frame.get(..6).unwrap_or_default()),
        frame.len()
    )
}

/// The final counters: the responder's, the adapter's, per queue pair, vhost-user's.
fn report(dev: &VhostUserNet, counters: &Counters) {
    println!("responder {counters:?}");
    println!("stats {:?}", dev.stats().unwrap_or_default());
    for q in dev.queues() {
        let s = q.stats().unwrap_or_default();
        println!(
            "queue {} rx_frames={} tx_frames={}",
            q.index(),
            s.rx_frames,
            s.tx_frames
        );
    }
    println!("vhost {:?}", dev.vhost_stats());
    if let Some(e) = dev.last_error() {
        println!("last_error {e}");
    }
}

fn main() -> ExitCode {
    let Some(args) = parse() else {
        return usage();
    };
    let mut opts = Options::new(&args.socket);
    opts.mode = if args.client {
        SocketMode::Client
    } else {
        SocketMode::Server
    };
    opts.queues = args.queues;
    opts.offload = args.offload;
    opts.rx_mode = if args.superframes {
        RxMode::Superframes
    } else {
        RxMode::Segments
    };
    let dev = match VhostUserNet::new(&opts) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vhost_responder: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "listening socket={} mode={:?} offered={}",
        args.socket,
        opts.mode,
        features::names(dev.offered_features()).join(",")
    );
    let responder = Responder::new(
        Config {
            mac: args.mac,
            ipv4: Some(args.ip),
            ipv6: args.ip6,
        },
        Medium::Ethernet,
    );
    let (mut input, mut output) = (PacketBatch::default(), PacketBatch::default());
    let mut counters = Counters::default();
    let (mut shown, mut was_connected) = (0usize, false);
    let end = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < end {
        let connected = dev.connected();
        if connected != was_connected {
            was_connected = connected;
            if connected {
                println!(
                    "connected features={}",
                    features::names(dev.features()).join(",")
                );
            } else {
                println!("disconnected stats={:?}", dev.vhost_stats());
            }
        }
        if args.connections > 0 && dev.vhost_stats().disconnects >= args.connections {
            break;
        }
        input.clear();
        output.clear();
        let taken = dev.stats().map_or(0, |s| s.rx_frames);
        if args.stall_after > 0 && taken >= args.stall_after {
            // Stop reading (to leave frames on the guest's TX ring, for the lost count).
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        // Every queue pair: the guest spreads its flows over them.
        for q in dev.queues() {
            match q.recv_batch(&mut input, 64, Duration::from_millis(20)) {
                Ok(_) => {}
                Err(e) => {
                    eprintln!("vhost_responder: receive: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        for (i, frame) in input.iter().enumerate() {
            if shown < args.show {
                println!("{}", describe(frame, &input, i));
                shown += 1;
            }
        }
        responder.answer_batch(&input, &mut output, &mut counters);
        if !output.is_empty() {
            let frames: Vec<&[u8]> = output.iter().collect();
            if let Err(e) = dev.send_frames(&frames) {
                eprintln!("vhost_responder: send: {e}");
            }
        }
    }
    report(&dev, &counters);
    dev.close();
    ExitCode::SUCCESS
}
