//! The WireGuard receive path: arbitrary datagrams from arbitrary sources, and real ones.
//!
//! One interface (A) with one peer (B, allowed 10.0.0.2/32) and an in-memory plaintext
//! port, kept across inputs; B is a boringtun `Tunn` driven here, with a session
//! established once (A's replies come back over a UDP socket on 127.0.0.1). Datagrams
//! enter through `Tunnel::inject_datagrams` (the receive path, without the socket read).
//! The input is a list of operations:
//!
//! - raw bytes from B's address or another one (alone, or as a GRO run);
//! - a real data datagram from B (an IPv4 packet from an allowed or a disallowed source),
//!   sent as is, with one byte changed, or as a GRO run of several of equal size;
//! - the last real datagram again (a replay).
//!
//! Asserts: no panic; every datagram is counted once in `rx_datagrams`; every one not
//! delivered is counted in exactly one drop reason; what reaches the port is exactly the
//! unaltered packets from the allowed source, in order; raw bytes deliver nothing.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use libfuzzer_sys::fuzz_target;
use vnetio::device::loopback::{self, LoopbackEnd, Overflow};
use vnetio::device::wireguard::{
    keys, parse_network, DropReason, PeerConfig, Tunnel, TunnelConfig,
};
use vnetio::{Device, Medium, PacketBatch};

const ALLOWED: [u8; 4] = [10, 0, 0, 2];
const OTHER: [u8; 4] = [10, 0, 0, 99];

struct Rig {
    a: Tunnel,
    user: LoopbackEnd,
    b: Tunn,
    b_sock: UdpSocket,
    b_addr: SocketAddr,
    last: Vec<u8>,
    buf: Vec<u8>,
}

impl Rig {
    fn new() -> Rig {
        let (user, port) = loopback::pair(8192, Medium::Ip, 1420, Overflow::Error).unwrap();
        let a_private = keys::generate_private();
        let b_private = keys::generate_private();
        let a = Tunnel::start(
            &TunnelConfig {
                private_key: a_private,
                listen_port: None,
            },
            Arc::new(port),
            None,
        )
        .unwrap();
        let b_sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        b_sock
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let b_addr = b_sock.local_addr().unwrap();
        a.add_peer(PeerConfig {
            public_key: keys::public_of(&b_private),
            preshared_key: None,
            endpoint: Some(b_addr),
            allowed_ips: vec![parse_network("10.0.0.2/32").unwrap()],
            persistent_keepalive: None,
        })
        .unwrap();
        let b = Tunn::new(
            StaticSecret::from(b_private),
            PublicKey::from(keys::public_of(&a_private)),
            None,
            None,
            1,
            None,
        );
        let mut rig = Rig {
            a,
            user,
            b,
            b_sock,
            b_addr,
            last: Vec::new(),
            buf: vec![0; 65_536],
        };
        rig.handshake();
        rig
    }

    /// B initiates, A answers (to B's socket), B confirms with a keepalive.
    fn handshake(&mut self) {
        let mut out = vec![0u8; 2048];
        let init = match self.b.format_handshake_initiation(&mut out, true) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            _ => panic!("B made no handshake initiation"),
        };
        self.a.inject_datagrams(&init, self.b_addr, 0);
        loop {
            let (n, _) = self.b_sock.recv_from(&mut self.buf).expect("A answers B");
            if self.buf[0] != 2 {
                continue; // (a keepalive or an old reply)
            }
            let response = self.buf[..n].to_vec();
            match self.b.decapsulate(None, &response, &mut out) {
                TunnResult::WriteToNetwork(keepalive) => {
                    let keepalive = keepalive.to_vec();
                    self.a.inject_datagrams(&keepalive, self.b_addr, 0);
                    return;
                }
                other => panic!("B did not take A's response: {:?}", kind(&other)),
            }
        }
    }

    /// A data datagram from B carrying `packet`.
    fn seal(&mut self, packet: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; packet.len() + 64];
        for _ in 0..2 {
            match self.b.encapsulate(packet, &mut out) {
                TunnResult::WriteToNetwork(d) if d[0] == 4 => return d.to_vec(),
                _ => self.handshake(), // the session expired: a new one (the packet queued)
            }
        }
        panic!("B could not encrypt after a new handshake");
    }

    /// Datagrams received, packets delivered, and drops of the receive path (not the
    /// send side's, which A's timers may add to at any time: a keepalive to a roamed,
    /// unreachable endpoint).
    fn counts(&self) -> (u64, u64, u64) {
        let s = self.a.stats();
        let received: u64 = DropReason::ALL
            .iter()
            .zip(s.drops)
            .filter(|(r, _)| !matches!(r, DropReason::SendError | DropReason::NoEndpoint))
            .map(|(_, n)| n)
            .sum();
        (s.rx_datagrams, s.rx_packets, received)
    }

    /// Inject and check the accounting: `n` datagrams, `want` the packets to arrive.
    fn inject(&mut self, data: &[u8], from: SocketAddr, segment: usize, n: u64, want: &[Vec<u8>]) {
        let (rx0, ok0, drop0) = self.counts();
        self.a.inject_datagrams(data, from, segment);
        let (rx1, ok1, drop1) = self.counts();
        assert_eq!(rx1 - rx0, n, "datagrams counted");
        assert_eq!(
            (ok1 - ok0) + (drop1 - drop0),
            n,
            "each delivered or dropped once"
        );
        let mut batch = PacketBatch::default();
        self.user
            .recv_batch(&mut batch, 8192, Duration::ZERO)
            .unwrap();
        let got: Vec<Vec<u8>> = batch.iter().map(<[u8]>::to_vec).collect();
        assert_eq!(ok1 - ok0, got.len() as u64, "delivered packets counted");
        assert_eq!(got, want, "what reached the port");
    }
}

fn kind(r: &TunnResult<'_>) -> &'static str {
    match r {
        TunnResult::Done => "done",
        TunnResult::Err(_) => "error",
        TunnResult::WriteToNetwork(_) => "network",
        TunnResult::WriteToTunnelV4(..) => "v4",
        TunnResult::WriteToTunnelV6(..) => "v6",
    }
}

fn ipv4(src: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&[10, 0, 0, 1]);
    let udp = (8 + payload.len()) as u16;
    p.extend_from_slice(&[0x30, 0x39, 0, 9]);
    p.extend_from_slice(&udp.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

fn rig() -> &'static Mutex<Rig> {
    static RIG: OnceLock<Mutex<Rig>> = OnceLock::new();
    RIG.get_or_init(|| Mutex::new(Rig::new()))
}

fuzz_target!(|data: &[u8]| {
    let mut rig = rig()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let other: SocketAddr = "[2001:db8::7]:4242".parse().unwrap();
    let mut input = data;
    while let [op, len, rest @ ..] = input {
        let take = (*len as usize).min(rest.len());
        let (chunk, tail) = rest.split_at(take);
        input = tail;
        let from = if op & 0x80 != 0 { other } else { rig.b_addr };
        match op % 4 {
            0 => {
                // Raw bytes: never authentic, so every datagram is dropped.
                let segment = if op & 0x40 != 0 {
                    usize::from(op & 0x0f) * 7
                } else {
                    0
                };
                let n = if segment > 0 && segment < chunk.len() {
                    chunk.len().div_ceil(segment) as u64
                } else {
                    1
                };
                let segment = if n > 1 { segment } else { 0 };
                rig.inject(chunk, from, segment, n, &[]);
            }
            1 => {
                // A real datagram, maybe from a disallowed source, maybe with a byte changed.
                let src = if op & 0x40 != 0 { OTHER } else { ALLOWED };
                let packet = ipv4(src, chunk);
                let mut datagram = rig.seal(&packet);
                let altered = op & 0x20 != 0 && !chunk.is_empty();
                if altered {
                    let at = usize::from(chunk[0]) * 7 % datagram.len();
                    datagram[at] ^= chunk.get(1).copied().unwrap_or(1).max(1);
                }
                let want = if src == ALLOWED && !altered {
                    vec![packet]
                } else {
                    vec![]
                };
                rig.inject(&datagram, from, 0, 1, &want);
                rig.last = datagram;
            }
            2 => {
                // The last real datagram again: a replay, dropped.
                if !rig.last.is_empty() {
                    let last = rig.last.clone();
                    rig.inject(&last, from, 0, 1, &[]);
                }
            }
            _ => {
                // A GRO run: equal-size real datagrams back to back (the last may be shorter).
                let count = usize::from(op >> 2 & 0x07) + 2;
                let mut run = Vec::new();
                let mut want = Vec::new();
                let mut size = 0;
                for i in 0..count {
                    let cut = if i + 1 == count {
                        chunk.len() / 2
                    } else {
                        chunk.len()
                    };
                    let packet = ipv4(ALLOWED, &chunk[..cut]);
                    let datagram = rig.seal(&packet);
                    if i == 0 {
                        size = datagram.len();
                    }
                    run.extend_from_slice(&datagram);
                    want.push(packet);
                }
                // (a shorter last datagram is padded by WireGuard to 16: it may equal size)
                rig.inject(&run, from, size, count as u64, &want);
            }
        }
    }
});
