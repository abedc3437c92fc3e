//! WireGuard: a tunnel endpoint between a plaintext packet port and a UDP socket.
//!
//! The plaintext side is any [`Device`] of IP packets: a TUN adapter (the system routes
//! through it) or one end of an in-memory loopback pair whose other end is the user's
//! (an endpoint in-process, without root). The protocol itself — handshake, cookies,
//! timers, rekeying, replay window, ChaCha20-Poly1305 — is boringtun's `noise` module;
//! this module adds what a device around it needs: cryptokey routing (`peers`), roaming,
//! the data path threads, and a count for every datagram or packet it does not deliver.
//!
//! Threads (all Rust, no Python): *outbound* reads plaintext packets from the port in
//! batches, routes each by destination to a peer, encrypts them back to back into one
//! buffer and sends the batch with one `sendmmsg`, runs of equal-size datagrams to one
//! endpoint as one UDP GSO message; *inbound* reads datagrams with `recvmmsg` (UDP GRO
//! runs split back into datagrams), finds each one's peer, decrypts, checks the inner
//! source against the peer's AllowedIPs and writes the batch's packets to the port in one
//! `send_frames` call (a TUN with offload merges them with GRO); it also runs the peers'
//! timers (handshake retries, keepalives, rekeying, expiry) every [`TIMER_PERIOD`]. Where
//! the kernel refuses GSO or GRO — the socket option at start, or (GSO) a send — the thread
//! falls back to single datagrams, resends what a refused send held, and says so
//! (`Stats::gso_fallbacks`, `Stats::gso_unavailable`, `Stats::gro_unavailable`).
//!
//! One thread each way, not a pool of crypto workers: boringtun's `Tunn` takes `&mut self`
//! for every packet (counters, replay window), so one peer's packets are encrypted or
//! decrypted one at a time under its lock whatever the number of threads; workers could
//! only spread different peers. Measured on the 2-core machine of BENCHMARKS.md, both ends
//! of a 3.3–4.9 Gbit/s tunnel used 1.0–1.5 cores together; the rest went to the kernel and
//! iperf3.

pub mod keys;
mod peers;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};

pub use self::keys::KEY_LEN;
pub use self::peers::{canonical, parse_network, Peer, PeerChange, PeerConfig, PeerInfo};
use self::peers::{Identity, PeerTable};
use super::Device;
use crate::batch::PacketBatch;
use crate::error::{Error, VnetResult};
use crate::sys::udp::{self, Outgoing, Received, RecvBatch, SendBatch};

/// How often the peers' timers run (boringtun's own device ticks every 250 ms).
pub const TIMER_PERIOD: Duration = Duration::from_millis(100);

/// Handshake initiations per second the interface accepts before it answers with cookies
/// (boringtun's device uses the same figure).
const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// Largest datagram: a 64 KiB plaintext packet plus WireGuard's 32 bytes of framing.
const MAX_DATAGRAM: usize = 65_535 + 32;

/// Plaintext packets read per outbound batch.
const OUTBOUND_BATCH: usize = 64;

/// Datagrams (or GRO runs of datagrams) taken per `recvmmsg`.
const INBOUND_BATCH: usize = 32;

/// Bytes of encrypted datagrams (outbound) or decrypted packets (inbound) gathered before
/// they go out in one `sendmmsg` or one `send_frames` call; a batch also ends with the
/// packets or datagrams the kernel had queued.
const ARENA: usize = 256 * 1024;

/// The most datagrams the kernel takes in one UDP GSO send (`UDP_MAX_SEGMENTS`).
const GSO_MAX_SEGMENTS: usize = 64;

/// The most bytes of one UDP GSO send (one UDP datagram's worth: the kernel's limit is
/// the 16-bit length; kept under it with room for the headers).
const GSO_MAX_BYTES: usize = 65_000;

/// Socket buffers asked for (wireguard-go asks for 7 MiB): a burst of a window's worth of
/// datagrams must not overflow the receive queue while the thread decrypts.
const SOCKET_BUFFER: usize = 4 << 20;

/// Why a datagram or packet was not delivered. Each has its own counter in [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A datagram that is not a WireGuard message (wrong type, wrong length, truncated).
    Malformed,
    /// A message for a session index or public key no peer has.
    UnknownPeer,
    /// A message that fails authentication: wrong key, bad MAC or AEAD tag.
    BadAuthentication,
    /// A data message whose counter was seen before or is too old, or a handshake
    /// initiation replayed (its timestamp is not newer than the last one).
    Replayed,
    /// A data message for a session that no longer exists (expired or never made).
    NoSession,
    /// A handshake refused because the interface is under load and the sender has no cookie.
    UnderLoad,
    /// A decrypted packet whose source address is outside its peer's AllowedIPs.
    DisallowedSource,
    /// A plaintext packet that is not IPv4 or IPv6 (no destination to route by).
    NotIp,
    /// A plaintext packet whose destination is in no peer's AllowedIPs.
    NoRoute,
    /// A plaintext packet for a peer that has no endpoint yet (none configured, never heard).
    NoEndpoint,
    /// A datagram the UDP socket refused to send.
    SendError,
    /// A packet the plaintext port refused (it is closed, or the frame did not fit).
    PortError,
}

impl DropReason {
    /// Every reason, in the order of [`Stats::drops`].
    pub const ALL: [DropReason; 12] = [
        DropReason::Malformed,
        DropReason::UnknownPeer,
        DropReason::BadAuthentication,
        DropReason::Replayed,
        DropReason::NoSession,
        DropReason::UnderLoad,
        DropReason::DisallowedSource,
        DropReason::NotIp,
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::SendError,
        DropReason::PortError,
    ];

    /// The counter's name (Python attribute names).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::BadAuthentication => "bad_authentication",
            DropReason::Replayed => "replayed",
            DropReason::NoSession => "no_session",
            DropReason::UnderLoad => "under_load",
            DropReason::DisallowedSource => "disallowed_source",
            DropReason::NotIp => "not_ip",
            DropReason::NoRoute => "no_route",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::SendError => "send_error",
            DropReason::PortError => "port_error",
        }
    }

    fn of(error: &WireGuardError) -> DropReason {
        use WireGuardError as E;
        match error {
            E::WrongIndex => DropReason::UnknownPeer,
            E::WrongKey | E::InvalidMac | E::InvalidAeadTag => DropReason::BadAuthentication,
            E::InvalidTai64nTimestamp
            | E::WrongTai64nTimestamp
            | E::InvalidCounter
            | E::DuplicateCounter => DropReason::Replayed,
            E::NoCurrentSession | E::ConnectionExpired => DropReason::NoSession,
            E::UnderLoad => DropReason::UnderLoad,
            E::DestinationBufferTooSmall
            | E::IncorrectPacketLength
            | E::UnexpectedPacket
            | E::WrongPacketType
            | E::InvalidPacket
            | E::LockFailed => DropReason::Malformed,
        }
    }
}

/// The interface's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received (every one, delivered or not).
    pub rx_datagrams: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Datagrams sent (handshakes, cookies, keepalives and data).
    pub tx_datagrams: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Decrypted packets written to the plaintext port.
    pub rx_packets: u64,
    /// Plaintext packets encrypted and sent.
    pub tx_packets: u64,
    /// Plaintext packets held while a handshake completes (sent once it does; boringtun
    /// keeps at most 256 per peer and drops older ones when a session expires unused).
    pub queued: u64,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Failed receive calls on the UDP socket.
    pub rx_errors: u64,
    /// Datagrams the kernel dropped at the UDP socket because its receive buffer was full
    /// (`SO_RXQ_OVFL`; they never reached the interface). The kernel reports the count
    /// with the next datagram it queues, so drops show up once traffic resumes.
    pub socket_overflow: u64,
    /// UDP GSO sends the kernel refused. The refused run and every datagram after it are
    /// sent again singly (none is lost), and GSO stays off: at most 1 per interface.
    pub gso_fallbacks: u64,
    /// 1 when the interface sends without UDP GSO: the kernel does not know it (the socket
    /// option `UDP_SEGMENT` is refused) or refused a GSO send (`gso_fallbacks`), else 0.
    pub gso_unavailable: u64,
    /// 1 when the kernel refused UDP GRO on the socket (datagrams are then received one
    /// per buffer), else 0.
    pub gro_unavailable: u64,
    /// Per [`Drop`] reason, in the order of [`DropReason::ALL`].
    pub drops: [u64; DropReason::ALL.len()],
}

#[derive(Default)]
struct Counters {
    rx_datagrams: AtomicU64,
    rx_bytes: AtomicU64,
    tx_datagrams: AtomicU64,
    tx_bytes: AtomicU64,
    rx_packets: AtomicU64,
    tx_packets: AtomicU64,
    queued: AtomicU64,
    handshakes: AtomicU64,
    rx_errors: AtomicU64,
    socket_overflow: AtomicU64,
    gso_fallbacks: AtomicU64,
    gso_unavailable: AtomicU64,
    gro_unavailable: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl Counters {
    fn drop(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Relaxed);
    }

    fn drop_n(&self, reason: DropReason, n: usize) {
        self.drops[reason as usize].fetch_add(n as u64, Relaxed);
    }
}

/// What an interface is made with (the `[Interface]` section of a wg-quick file, less
/// what the TUN side does with addresses and MTU).
pub struct TunnelConfig {
    /// This end's private key.
    pub private_key: [u8; KEY_LEN],
    /// UDP port to listen on (`None` or 0: one the kernel picks).
    pub listen_port: Option<u16>,
}

/// A change of a running interface: what the userspace API's `set=1` carries (`wg set`,
/// `wg setconf`, `wg addconf`). `None`/`false` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct Reconfig {
    /// A new private key (every peer's sessions end; all zeros is refused).
    pub private_key: Option<[u8; KEY_LEN]>,
    /// A new UDP port (0: one the kernel picks): the socket is bound anew.
    pub listen_port: Option<u16>,
    /// A new firewall mark on the UDP socket (`SO_MARK`; 0: none).
    pub fwmark: Option<u32>,
    /// Remove every peer before applying `peers`.
    pub replace_peers: bool,
    /// Per-peer changes, in order.
    pub peers: Vec<PeerChange>,
}

/// Where a tunnel copies the plaintext packets it carries, both ways, as it carries them (a
/// capture file: the bindings put a capture writer behind it). An error stops the copying;
/// [`Tunnel::set_mirror`] hands it back.
pub trait Mirror: Send {
    /// Copy `packets`, taken at `timestamp_ns` (Unix nanoseconds).
    fn packets(&mut self, packets: &[&[u8]], timestamp_ns: u64) -> Result<(), String>;
}

#[derive(Default)]
struct Mirroring {
    mirror: Option<Box<dyn Mirror>>,
    error: Option<String>,
}

struct Shared {
    /// Fast path: whether `mirroring` holds a mirror.
    mirrored: AtomicBool,
    mirroring: Mutex<Mirroring>,
    /// The peers, and this interface's keys.
    table: RwLock<PeerTable>,
    /// The socket for sends outside the threads (a new peer's first handshake). Each
    /// thread has its own descriptor of the same socket; all are closed by `close`, so the
    /// port is free again once it returns. A new listen port replaces it, and bumps
    /// `socket_generation`: each thread then takes a descriptor of the new one.
    control: Mutex<Option<UdpSocket>>,
    socket_generation: AtomicU64,
    /// The generation of the socket each thread (inbound, outbound) uses now.
    thread_generations: [AtomicU64; 2],
    listen_port: AtomicU16,
    /// The socket's `SO_MARK` (0: none).
    fwmark: AtomicU32,
    /// Whether the socket is IPv6 (dual-stack): IPv4 endpoints are then sent as mapped. A
    /// socket bound anew is of the same family.
    socket_v6: bool,
    /// The network namespace the socket is bound in (a new port is bound there too).
    netns: Option<String>,
    port: Arc<dyn Device>,
    counters: Counters,
    closed: AtomicBool,
}

/// A WireGuard interface: the peers, the UDP socket and the threads between the socket
/// and the plaintext port. Dropping it (or [`Tunnel::close`]) stops the threads.
pub struct Tunnel {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// One reconfiguration at a time.
    reconfiguring: Mutex<()>,
}

impl Tunnel {
    /// Bind the UDP socket in network namespace `netns` (`None`: the caller's) and start
    /// the threads over `port`, a device of IP packets.
    pub fn start(
        config: &TunnelConfig,
        port: Arc<dyn Device>,
        netns: Option<&str>,
    ) -> VnetResult<Tunnel> {
        if port.medium() != crate::wire::Medium::Ip {
            return Err(Error::InvalidArgument(
                "a WireGuard interface carries IP packets: its plaintext side must be a TUN \
                 (kind=\"tun\"), not a TAP"
                    .into(),
            ));
        }
        let (socket, socket_v6) =
            super::netns::run_in(netns, || bind(config.listen_port.unwrap_or(0), None))?;
        let listen_port = prepare(&socket)?;
        let dup = |what| {
            socket
                .try_clone()
                .map_err(|e| Error::os(format!("duplicate the UDP socket for {what}"), e))
        };
        let (inbound, outbound) = (dup("receiving")?, dup("sending")?);
        if config.private_key == [0; KEY_LEN] {
            return Err(no_private_key());
        }
        let shared = Arc::new(Shared {
            mirrored: AtomicBool::new(false),
            mirroring: Mutex::new(Mirroring::default()),
            table: RwLock::new(PeerTable::new(Identity::new(
                config.private_key,
                HANDSHAKE_RATE_LIMIT,
            ))),
            control: Mutex::new(Some(socket)),
            socket_generation: AtomicU64::new(0),
            thread_generations: [AtomicU64::new(0), AtomicU64::new(0)],
            listen_port: AtomicU16::new(listen_port),
            fwmark: AtomicU32::new(0),
            socket_v6,
            netns: netns.map(str::to_owned),
            port,
            counters: Counters::default(),
            closed: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        for (name, body, socket) in [
            (
                "vnetio-wg-in",
                Shared::inbound as fn(&Shared, UdpSocket),
                inbound,
            ),
            (
                "vnetio-wg-out",
                Shared::outbound as fn(&Shared, UdpSocket),
                outbound,
            ),
        ] {
            let mine = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || body(&mine, socket));
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    let tunnel = Tunnel {
                        shared,
                        threads: Mutex::new(threads),
                        reconfiguring: Mutex::new(()),
                    };
                    tunnel.close();
                    return Err(Error::os(format!("start the {name} thread"), e));
                }
            }
        }
        Ok(Tunnel {
            shared,
            threads: Mutex::new(threads),
            reconfiguring: Mutex::new(()),
        })
    }

    /// This end's public key.
    pub fn public_key(&self) -> [u8; KEY_LEN] {
        self.shared.read_table().identity.public.to_bytes()
    }

    /// This end's private key.
    pub fn private_key(&self) -> [u8; KEY_LEN] {
        self.shared.read_table().identity.private.to_bytes()
    }

    /// The UDP port datagrams arrive on.
    pub fn listen_port(&self) -> u16 {
        self.shared.listen_port.load(Relaxed)
    }

    /// The UDP socket's firewall mark (0: none).
    pub fn fwmark(&self) -> u32 {
        self.shared.fwmark.load(Relaxed)
    }

    /// The preshared key of the peer with this public key (`None`: no such peer, or none).
    pub fn preshared_key_of(&self, public_key: &[u8; KEY_LEN]) -> Option<[u8; KEY_LEN]> {
        let table = self.shared.read_table();
        let psk = table.by_key(public_key)?.config().preshared_key;
        psk
    }

    /// Add a peer, or replace the one with the same public key.
    pub fn add_peer(&self, config: PeerConfig) -> VnetResult<()> {
        let peer = self.shared.write_table().add(config)?;
        self.shared.kick(&peer);
        Ok(())
    }

    /// Change the running interface: everything that can fail (binding a new port,
    /// setting the mark, room for new peers, the key) is done or checked before anything
    /// changes, so an error leaves the interface as it was; the key and the peers then
    /// change under one lock (the data path sees the old table or the new one), and a new
    /// socket replaces the old one — the old port is closed once this returns.
    pub fn reconfigure(&self, change: &Reconfig) -> VnetResult<()> {
        let _one = self
            .reconfiguring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let shared = &self.shared;
        if change.private_key == Some([0; KEY_LEN]) {
            return Err(no_private_key());
        }
        let added = change.peers.iter().filter(|p| !p.remove).count();
        if u32::try_from(added).map_or(true, |n| n > shared.read_table().room()) {
            return Err(Error::InvalidArgument(
                "more peers than this interface can still add over its lifetime; make a new \
                 interface"
                    .into(),
            ));
        }
        let mark = change.fwmark.unwrap_or_else(|| shared.fwmark.load(Relaxed));
        let mut fresh = None;
        match change.listen_port {
            Some(port) if port != shared.listen_port.load(Relaxed) => {
                let v6 = shared.socket_v6;
                let (socket, _) =
                    super::netns::run_in(shared.netns.as_deref(), || bind(port, Some(v6)))?;
                let port = prepare(&socket)?;
                if mark != 0 {
                    udp::set_mark(socket.as_fd(), mark).map_err(mark_error)?;
                }
                fresh = Some((socket, port));
            }
            _ => {
                if mark != shared.fwmark.load(Relaxed) {
                    let control = shared
                        .control
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let socket = control.as_ref().ok_or(Error::Closed)?;
                    udp::set_mark(socket.as_fd(), mark).map_err(mark_error)?;
                }
            }
        }
        // Nothing below fails.
        let mut kicks = Vec::new();
        {
            let mut table = shared.write_table();
            if let Some(key) = change.private_key {
                table.set_identity(Identity::new(key, HANDSHAKE_RATE_LIMIT));
            }
            if change.replace_peers {
                table.clear();
            }
            for peer in &change.peers {
                if let Some(peer) = table.change(peer)? {
                    kicks.push(peer);
                }
            }
        }
        shared.fwmark.store(mark, Relaxed);
        if let Some((socket, port)) = fresh {
            let generation = {
                let mut control = shared
                    .control
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *control = Some(socket);
                shared.listen_port.store(port, Relaxed);
                shared.socket_generation.fetch_add(1, Relaxed) + 1
            };
            // Each thread takes the new socket within a timer period; the old one closes
            // when the last of them lets it go.
            let until = Instant::now() + 10 * TIMER_PERIOD;
            while Instant::now() < until
                && !shared.is_closed()
                && shared
                    .thread_generations
                    .iter()
                    .any(|g| g.load(Relaxed) != generation)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for peer in kicks {
            shared.kick(&peer);
        }
        Ok(())
    }

    /// Remove a peer. Returns whether it existed.
    pub fn remove_peer(&self, public_key: &[u8; KEY_LEN]) -> bool {
        self.shared.write_table().remove(public_key)
    }

    /// Every peer, as `wg show` describes it.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared
            .read_table()
            .peers()
            .iter()
            .map(|p| p.info())
            .collect()
    }

    /// The interface's counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let mut drops = [0; DropReason::ALL.len()];
        for (out, counter) in drops.iter_mut().zip(&c.drops) {
            *out = counter.load(Relaxed);
        }
        Stats {
            rx_datagrams: c.rx_datagrams.load(Relaxed),
            rx_bytes: c.rx_bytes.load(Relaxed),
            tx_datagrams: c.tx_datagrams.load(Relaxed),
            tx_bytes: c.tx_bytes.load(Relaxed),
            rx_packets: c.rx_packets.load(Relaxed),
            tx_packets: c.tx_packets.load(Relaxed),
            queued: c.queued.load(Relaxed),
            handshakes: c.handshakes.load(Relaxed),
            rx_errors: c.rx_errors.load(Relaxed),
            socket_overflow: c.socket_overflow.load(Relaxed),
            gso_fallbacks: c.gso_fallbacks.load(Relaxed),
            gso_unavailable: c.gso_unavailable.load(Relaxed),
            gro_unavailable: c.gro_unavailable.load(Relaxed),
            drops,
        }
    }

    /// Stop the threads (within [`TIMER_PERIOD`]) and close the plaintext port.
    /// Idempotent.
    pub fn close(&self) {
        self.shared.closed.store(true, Relaxed);
        self.shared.port.close();
        self.shared
            .control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let threads = std::mem::take(
            &mut *self
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for handle in threads {
            let _ = handle.join();
        }
    }

    /// Copy every plaintext packet the tunnel carries, both ways, to `mirror` (`None`:
    /// stop). Returns the mirror it replaces, with the error that stopped it, if one did.
    pub fn set_mirror(
        &self,
        mirror: Option<Box<dyn Mirror>>,
    ) -> (Option<Box<dyn Mirror>>, Option<String>) {
        let mut m = self
            .shared
            .mirroring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.shared.mirrored.store(mirror.is_some(), Relaxed);
        let old = std::mem::replace(&mut m.mirror, mirror);
        (old, m.error.take())
    }

    /// Whether [`Tunnel::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Relaxed)
    }

    /// Hand `data` to the receive path as if `recvmmsg` had returned it from `from`: one
    /// datagram, or with `segment` > 0 a GRO run of datagrams of that size. Replies go out
    /// of the interface's socket; decrypted packets are written to the port. For the fuzz
    /// target (no network needed); not an API.
    #[doc(hidden)]
    pub fn inject_datagrams(&self, data: &[u8], from: SocketAddr, segment: usize) {
        let control = self
            .shared
            .control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(socket) = control.as_ref() else {
            return;
        };
        let mut sink = Inbound::new(self.shared.port.mtu(), MAX_DATAGRAM + 64);
        let received = Received {
            len: data.len(),
            from: Some(from),
            segment,
            truncated: false,
            overflow: None,
        };
        self.shared
            .receive_buffer(socket, data, &received, &mut sink);
        self.shared.flush_inbound(&mut sink);
    }
}

impl std::ops::Drop for Tunnel {
    fn drop(&mut self) {
        self.close();
    }
}

/// A UDP socket on `port`: dual-stack IPv6 where the namespace has IPv6, else IPv4
/// (`v6`: that family only, for a socket that replaces one).
fn bind(port: u16, v6: Option<bool>) -> VnetResult<(UdpSocket, bool)> {
    match v6 {
        Some(true) => {
            return UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))
                .map(|s| (s, true))
                .map_err(|e| bind_error(port, e))
        }
        Some(false) => {
            return UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
                .map(|s| (s, false))
                .map_err(|e| bind_error(port, e))
        }
        None => {}
    }
    match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(socket) => Ok((socket, true)),
        Err(e)
            if e.raw_os_error() == Some(libc::EAFNOSUPPORT)
                || e.raw_os_error() == Some(libc::EADDRNOTAVAIL) =>
        {
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
                .map(|s| (s, false))
                .map_err(|e| bind_error(port, e))
        }
        Err(e) => Err(bind_error(port, e)),
    }
}

/// Socket options every interface socket has; returns its port.
fn prepare(socket: &UdpSocket) -> VnetResult<u16> {
    // Best effort: a smaller buffer only costs drops under bursts (the kernel counts them).
    let _ = udp::set_socket_buffers(socket.as_fd(), SOCKET_BUFFER);
    socket
        .set_read_timeout(Some(TIMER_PERIOD))
        .map_err(|e| Error::os("set the UDP socket's receive timeout", e))?;
    Ok(socket
        .local_addr()
        .map_err(|e| Error::os("getsockname on the UDP socket", e))?
        .port())
}

fn no_private_key() -> Error {
    Error::InvalidArgument(
        "a vnetio WireGuard interface cannot run without a private key (an all-zero key \
         removes it): give one, such as `wg genkey` prints"
            .into(),
    )
}

fn mark_error(e: io::Error) -> Error {
    let hint = (e.raw_os_error() == Some(libc::EPERM))
        .then(|| "setting a socket's mark needs CAP_NET_ADMIN (root)".to_owned());
    let err = Error::os("set the UDP socket's firewall mark (SO_MARK)", e);
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

fn bind_error(port: u16, e: io::Error) -> Error {
    let err = Error::os(format!("bind the WireGuard UDP socket to port {port}"), e);
    match err {
        Error::Os { ref source, .. } if source.raw_os_error() == Some(libc::EADDRINUSE) => err
            .with_hint(format!(
                "another socket (another WireGuard interface?) uses UDP port {port}; choose \
                 another listen_port, or none to let the kernel pick one"
            )),
        other => other,
    }
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// A peer with a persistent keepalive and an endpoint starts its handshake at once
    /// (as `wg set` does), so it is reachable before it has anything to send.
    fn kick(&self, peer: &Peer) {
        if peer.config().persistent_keepalive.is_none() {
            return;
        }
        let control = self
            .control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(socket) = control.as_ref() {
            let mut buf = vec![0u8; 256];
            let result = peer.tunn().format_handshake_initiation(&mut buf, false);
            self.emit(socket, peer, result, None);
        }
    }

    /// When the socket was replaced (a new listen port) since `generation`: a descriptor
    /// of the new one and its generation, which `thread` (0 inbound, 1 outbound) now uses.
    /// `None`: no change, or it could not be had (tried again next time).
    fn new_socket(&self, generation: u64, thread: usize) -> Option<(UdpSocket, u64)> {
        if self.socket_generation.load(Relaxed) == generation {
            return None;
        }
        let control = self
            .control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.socket_generation.load(Relaxed);
        let socket = control.as_ref()?.try_clone().ok()?;
        self.thread_generations[thread].store(now, Relaxed);
        Some((socket, now))
    }

    fn read_table(&self) -> RwLockReadGuard<'_, PeerTable> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, PeerTable> {
        self.table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Send a datagram to `to` (an endpoint as we keep it: IPv4 plain).
    fn send_to(&self, socket: &UdpSocket, datagram: &[u8], to: SocketAddr) -> bool {
        let to = match to {
            SocketAddr::V4(v4) if self.socket_v6 => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            other => other,
        };
        if socket.send_to(datagram, to).is_err() {
            self.counters.drop(DropReason::SendError);
            return false;
        }
        self.counters.tx_datagrams.fetch_add(1, Relaxed);
        self.counters
            .tx_bytes
            .fetch_add(datagram.len() as u64, Relaxed);
        true
    }

    /// [`Shared::send_to`], counted for `peer` too.
    fn send_to_peer(
        &self,
        socket: &UdpSocket,
        peer: &Peer,
        datagram: &[u8],
        to: SocketAddr,
    ) -> bool {
        let sent = self.send_to(socket, datagram, to);
        if sent {
            peer.tx_datagrams.fetch_add(1, Relaxed);
            peer.tx_bytes.fetch_add(datagram.len() as u64, Relaxed);
        }
        sent
    }

    /// Act on what boringtun asked for: send a datagram to `to` (or the peer's endpoint),
    /// count an error. Returns whether a datagram was sent.
    fn emit(
        &self,
        socket: &UdpSocket,
        peer: &Peer,
        result: TunnResult<'_>,
        to: Option<SocketAddr>,
    ) -> bool {
        match result {
            TunnResult::WriteToNetwork(datagram) => {
                if let Some(to) = to.or_else(|| peer.endpoint()) {
                    self.send_to_peer(socket, peer, datagram, to)
                } else {
                    self.counters.drop(DropReason::NoEndpoint);
                    false
                }
            }
            TunnResult::Err(e) => {
                self.counters.drop(DropReason::of(&e));
                false
            }
            TunnResult::Done
            | TunnResult::WriteToTunnelV4(..)
            | TunnResult::WriteToTunnelV6(..) => false,
        }
    }

    /// Plaintext port → peers: route, encrypt, send. Datagrams of a batch are gathered in
    /// one buffer and leave in one `sendmmsg`; runs of equal-size datagrams to one endpoint
    /// go as one UDP GSO message while the kernel takes them.
    fn outbound(&self, socket: UdpSocket) {
        let mut socket = socket;
        let mut generation = 0;
        let mut batch = PacketBatch::default();
        let mut tx = Outbound::new();
        if udp::udp_gso_supported(socket.as_fd()).is_err() {
            // A kernel without UDP GSO would not refuse the control message but ignore it
            // (the run would leave as one datagram): never try it there.
            tx.gso = false;
            self.counters.gso_unavailable.store(1, Relaxed);
        }
        while !self.closed.load(Relaxed) {
            if let Some((fresh, g)) = self.new_socket(generation, 1) {
                (socket, generation) = (fresh, g);
            }
            let socket = &socket;
            batch.clear();
            match self
                .port
                .recv_batch(&mut batch, OUTBOUND_BATCH, TIMER_PERIOD)
            {
                Ok(0) => continue,
                Ok(_) => {}
                Err(Error::Closed) => break,
                Err(_) => {
                    self.counters.drop(DropReason::PortError);
                    std::thread::sleep(TIMER_PERIOD);
                    continue;
                }
            }
            if self.mirrored.load(Relaxed) {
                let packets: Vec<&[u8]> = batch.iter().collect();
                self.mirror(&packets);
            }
            let table = self.read_table();
            for packet in batch.iter() {
                let Some(dst) = Tunn::dst_address(packet) else {
                    self.counters.drop(DropReason::NotIp);
                    continue;
                };
                let Some(peer) = table.route(dst) else {
                    self.counters.drop(DropReason::NoRoute);
                    continue;
                };
                if tx.room() < packet.len() + 64 {
                    self.flush_outbound(socket, &mut tx);
                }
                let start = tx.used;
                let mut tunn = peer.tunn();
                let result = tunn.encapsulate(packet, &mut tx.arena[start..]);
                drop(tunn);
                match result {
                    TunnResult::WriteToNetwork(d) if d.first() == Some(&4) => {
                        let len = d.len();
                        if let Some(to) = peer.endpoint() {
                            tx.used += len;
                            tx.pending.push((start, len, to, Arc::clone(peer)));
                        } else {
                            self.counters.drop(DropReason::NoEndpoint);
                        }
                    }
                    result => {
                        // No session yet: boringtun holds the packet and (maybe) starts a
                        // handshake; the packet goes out when the handshake completes.
                        self.counters.queued.fetch_add(1, Relaxed);
                        self.emit(socket, peer, result, None);
                    }
                }
            }
            self.flush_outbound(socket, &mut tx);
        }
    }

    /// Send what [`Shared::outbound`] gathered: GSO runs where allowed, in `sendmmsg`s.
    ///
    /// When the kernel refuses a GSO run (see [`gso_refused`]), GSO is switched off for
    /// good and everything not yet sent — that run first — goes again as single datagrams,
    /// still in `sendmmsg` batches: nothing of a refused run is lost.
    fn flush_outbound(&self, socket: &UdpSocket, tx: &mut Outbound) {
        let c = &self.counters;
        let fd = socket.as_fd();
        let arena = &tx.arena;
        let pending = &tx.pending;
        // The first datagram not yet handed to the kernel.
        let mut from = 0;
        'batch: while from < pending.len() {
            let runs = gso_runs(
                pending[from..].iter().map(|&(_, len, to, _)| (len, to)),
                tx.gso,
            );
            let msgs: Vec<Outgoing<'_>> = runs
                .iter()
                .map(|run| {
                    let (start, _, to, _) = pending[from + run.first];
                    Outgoing {
                        data: &arena[start..start + run.bytes],
                        to: self.wire_address(to),
                        segment: (run.count > 1)
                            .then(|| u16::try_from(run.size).unwrap_or(u16::MAX)),
                    }
                })
                .collect();
            let mut done = 0;
            while done < msgs.len() {
                let run = &runs[done];
                let datagrams = &pending[from + run.first..from + run.first + run.count];
                match tx.send.send(fd, &msgs[done..]) {
                    Ok(n) => {
                        for run in &runs[done..done + n] {
                            let first = from + run.first;
                            self.count_sent(&pending[first..first + run.count]);
                        }
                        done += n;
                    }
                    Err(e) if msgs[done].segment.is_some() && gso_refused(&e) => {
                        // The kernel (or the route to this endpoint) does not take UDP GSO:
                        // from now on datagrams go singly, starting with this run's.
                        tx.gso = false;
                        c.gso_fallbacks.fetch_add(1, Relaxed);
                        c.gso_unavailable.store(1, Relaxed);
                        from += run.first;
                        continue 'batch;
                    }
                    Err(_) => {
                        c.drop_n(DropReason::SendError, datagrams.len());
                        done += 1;
                    }
                }
            }
            break;
        }
        tx.pending.clear();
        tx.used = 0;
    }

    /// Count datagrams sent (each a plaintext packet), for the interface and their peers.
    fn count_sent(&self, sent: &[(usize, usize, SocketAddr, Arc<Peer>)]) {
        let c = &self.counters;
        let bytes: usize = sent.iter().map(|e| e.1).sum();
        c.tx_datagrams.fetch_add(sent.len() as u64, Relaxed);
        c.tx_packets.fetch_add(sent.len() as u64, Relaxed);
        c.tx_bytes.fetch_add(bytes as u64, Relaxed);
        for (_, len, _, peer) in sent {
            peer.tx_datagrams.fetch_add(1, Relaxed);
            peer.tx_bytes.fetch_add(*len as u64, Relaxed);
        }
    }

    /// An endpoint as the socket takes it (IPv4 as mapped on a dual-stack socket).
    fn wire_address(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(v4) if self.socket_v6 => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            other => other,
        }
    }

    /// Peers → plaintext port: receive (`recvmmsg`, GRO runs split back into datagrams),
    /// authenticate, decrypt, check, deliver a batch in one `send_frames`; and the timers.
    fn inbound(&self, socket: UdpSocket) {
        let mut socket = socket;
        let mut generation = 0;
        self.receive_options(&socket);
        let mut rx = RecvBatch::new(INBOUND_BATCH);
        let mut bufs = vec![vec![0u8; MAX_DATAGRAM]; INBOUND_BATCH];
        let mut got = [Received::default(); INBOUND_BATCH];
        let mut sink = Inbound::new(self.port.mtu(), ARENA + MAX_DATAGRAM);
        let mut next_tick = Instant::now() + TIMER_PERIOD;
        let mut next_reset = Instant::now() + Duration::from_secs(1);
        while !self.closed.load(Relaxed) {
            if let Some((fresh, g)) = self.new_socket(generation, 0) {
                (socket, generation) = (fresh, g);
                self.receive_options(&socket);
            }
            let socket = &socket;
            let fd = socket.as_fd();
            let now = Instant::now();
            if now >= next_tick {
                self.tick(socket, &mut sink.arena);
                next_tick = now + TIMER_PERIOD;
                if now >= next_reset {
                    self.read_table().identity.rate_limiter.reset_count();
                    next_reset = now + Duration::from_secs(1);
                }
            }
            match rx.recv(fd, &mut bufs, &mut got) {
                Ok(n) => {
                    for (buf, r) in bufs.iter().zip(&got).take(n) {
                        self.receive_buffer(socket, &buf[..r.len], r, &mut sink);
                    }
                    if let Some(total) = got[..n].iter().filter_map(|r| r.overflow).max() {
                        self.counters
                            .socket_overflow
                            .fetch_max(u64::from(total), Relaxed);
                    }
                    self.flush_inbound(&mut sink);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => {
                    self.counters.rx_errors.fetch_add(1, Relaxed);
                    std::thread::sleep(TIMER_PERIOD);
                }
            }
        }
    }

    /// The receiving socket's options: UDP GRO, and the overflow count.
    fn receive_options(&self, socket: &UdpSocket) {
        let fd = socket.as_fd();
        if udp::udp_set_gro(fd, true).is_err() {
            self.counters.gro_unavailable.store(1, Relaxed);
        }
        // Without it, datagrams dropped at a full socket buffer would be counted nowhere.
        let _ = udp::set_rxq_ovfl(fd);
    }

    /// One buffer of `recvmmsg`: a datagram, or a GRO run of them from one source.
    fn receive_buffer(&self, socket: &UdpSocket, data: &[u8], r: &Received, sink: &mut Inbound) {
        let Some(from) = r.from.filter(|_| !r.truncated) else {
            // An address family we do not speak, or a datagram cut short: count each one.
            let n = if r.segment > 0 {
                data.len().div_ceil(r.segment)
            } else {
                1
            };
            let c = &self.counters;
            c.rx_datagrams.fetch_add(n as u64, Relaxed);
            c.rx_bytes.fetch_add(data.len() as u64, Relaxed);
            c.drop_n(DropReason::Malformed, n);
            return;
        };
        if r.segment > 0 {
            for datagram in data.chunks(r.segment) {
                self.receive(socket, datagram, from, sink);
            }
        } else {
            self.receive(socket, data, from, sink);
        }
    }

    /// Write the decrypted packets gathered in `sink` to the port in one call.
    /// Copy packets to the mirror, if one is set (see [`Tunnel::set_mirror`]).
    fn mirror(&self, packets: &[&[u8]]) {
        if !self.mirrored.load(Relaxed) || packets.is_empty() {
            return;
        }
        let mut m = self
            .mirroring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(mirror) = m.mirror.as_mut() else {
            return;
        };
        if let Err(e) = mirror.packets(packets, super::now_ns()) {
            m.error = Some(e);
            m.mirror = None;
            self.mirrored.store(false, Relaxed);
        }
    }

    fn flush_inbound(&self, sink: &mut Inbound) {
        if sink.spans.is_empty() {
            return;
        }
        let frames: Vec<&[u8]> = sink
            .spans
            .iter()
            .map(|&(start, len)| &sink.arena[start..start + len])
            .collect();
        self.mirror(&frames);
        let total = frames.len();
        let c = &self.counters;
        match self.port.send_frames(&frames) {
            Ok(_) => {
                c.rx_packets.fetch_add(total as u64, Relaxed);
            }
            Err(Error::Partial { sent, .. }) => {
                c.rx_packets.fetch_add(sent as u64, Relaxed);
                c.drop_n(DropReason::PortError, total - sent);
            }
            Err(_) => c.drop_n(DropReason::PortError, total),
        }
        drop(frames);
        sink.spans.clear();
        sink.used = 0;
    }

    fn tick(&self, socket: &UdpSocket, out: &mut [u8]) {
        for peer in self.read_table().peers() {
            let result = peer.tunn().update_timers(out);
            match result {
                // An expired connection is routine (no traffic for 3 minutes): not a drop.
                TunnResult::Err(WireGuardError::ConnectionExpired) => {}
                result => {
                    self.emit(socket, &peer, result, None);
                }
            }
        }
    }

    /// One datagram from `from`: authenticate, decrypt; a data packet is checked against
    /// the peer's AllowedIPs and gathered in `sink` (the caller flushes it), anything else
    /// (handshakes, cookies, keepalives) is answered at once.
    fn receive(&self, socket: &UdpSocket, datagram: &[u8], from: SocketAddr, sink: &mut Inbound) {
        let c = &self.counters;
        c.rx_datagrams.fetch_add(1, Relaxed);
        c.rx_bytes.fetch_add(datagram.len() as u64, Relaxed);
        if sink.room() < datagram.len() + 64 {
            self.flush_inbound(sink);
        }
        let start = sink.used;
        let out = &mut sink.arena[start..];
        let from_ip = canonical(from).ip();
        let table = self.read_table();
        let me = &table.identity;
        // MAC1 of handshakes first (cheap, keyed on our public key), cookies under load:
        // only then the Diffie-Hellman that finds the initiator's key.
        let packet = match me.rate_limiter.verify_packet(Some(from_ip), datagram, out) {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                self.send_to(socket, cookie, from);
                c.drop(DropReason::UnderLoad);
                return;
            }
            Err(TunnResult::Err(e)) => {
                c.drop(DropReason::of(&e));
                return;
            }
            Err(_) => {
                c.drop(DropReason::Malformed);
                return;
            }
        };
        let peer = match &packet {
            Packet::HandshakeInit(init) => {
                match parse_handshake_anon(&me.private, &me.public, init) {
                    Ok(half) => table.by_key(&half.peer_static_public),
                    Err(e) => {
                        c.drop(DropReason::of(&e));
                        return;
                    }
                }
            }
            Packet::HandshakeResponse(p) => table.by_index(p.receiver_idx),
            Packet::PacketCookieReply(p) => table.by_index(p.receiver_idx),
            Packet::PacketData(p) => table.by_index(p.receiver_idx),
        };
        let Some(peer) = peer else {
            c.drop(DropReason::UnknownPeer);
            return;
        };
        let handshake = matches!(
            packet,
            Packet::HandshakeInit(_) | Packet::HandshakeResponse(_)
        );
        let mut tunn = peer.tunn();
        let (len, src) = match tunn.decapsulate(Some(from_ip), datagram, out) {
            TunnResult::Err(e) => {
                drop(tunn);
                c.drop(DropReason::of(&e));
                return;
            }
            TunnResult::Done => {
                drop(tunn);
                peer.heard_from(from, datagram.len()); // a keepalive, or a cookie
                return;
            }
            TunnResult::WriteToNetwork(reply) => {
                // A handshake answered (or completed: a keepalive confirms it), or a
                // cookie: the peer's own load guard (more than 10 handshakes a second)
                // asks the initiator to prove its address first. Then what waited for the
                // session goes out.
                if reply.first() == Some(&3) {
                    c.drop(DropReason::UnderLoad);
                } else if handshake {
                    c.handshakes.fetch_add(1, Relaxed);
                }
                self.send_to_peer(socket, peer, reply, from);
                while let TunnResult::WriteToNetwork(queued) = tunn.decapsulate(None, &[], out) {
                    if self.send_to_peer(socket, peer, queued, from) {
                        c.tx_packets.fetch_add(1, Relaxed);
                    }
                }
                drop(tunn);
                peer.heard_from(from, datagram.len());
                return;
            }
            TunnResult::WriteToTunnelV4(packet, src) => (packet.len(), IpAddr::V4(src)),
            TunnResult::WriteToTunnelV6(packet, src) => (packet.len(), IpAddr::V6(src)),
        };
        drop(tunn);
        // The datagram was authentic: roaming applies even if the packet is refused.
        peer.heard_from(from, datagram.len());
        if table.route(src).map(|p| p.id) != Some(peer.id) {
            c.drop(DropReason::DisallowedSource);
            return;
        }
        let packet = &sink.arena[start..start + len];
        if self.port.medium().check_frame(packet, sink.mtu).is_err() {
            c.drop(DropReason::PortError); // larger than the port's MTU
            return;
        }
        sink.spans.push((start, len));
        sink.used += len;
    }
}

/// What the outbound thread gathers between `sendmmsg`s: encrypted datagrams back to back
/// in `arena`, and for each its span, endpoint and peer.
struct Outbound {
    arena: Vec<u8>,
    used: usize,
    pending: Vec<(usize, usize, SocketAddr, Arc<Peer>)>,
    send: SendBatch,
    /// Whether UDP GSO is still in use (the kernel has not refused it).
    gso: bool,
}

impl Outbound {
    fn new() -> Outbound {
        Outbound {
            arena: vec![0; ARENA + MAX_DATAGRAM],
            used: 0,
            pending: Vec::with_capacity(OUTBOUND_BATCH),
            send: SendBatch::default(),
            gso: true,
        }
    }

    fn room(&self) -> usize {
        self.arena.len() - self.used
    }
}

/// What the inbound thread gathers between `send_frames` calls: decrypted packets back to
/// back in `arena`, and their spans.
struct Inbound {
    arena: Vec<u8>,
    used: usize,
    spans: Vec<(usize, usize)>,
    mtu: usize,
}

impl Inbound {
    fn new(mtu: usize, bytes: usize) -> Inbound {
        Inbound {
            arena: vec![0; bytes],
            used: 0,
            spans: Vec::with_capacity(256),
            mtu,
        }
    }

    fn room(&self) -> usize {
        self.arena.len() - self.used
    }
}

/// A run of datagrams that leaves as one message: `count` consecutive datagrams (contiguous
/// in the arena) from index `first`, `bytes` in all, each `size` long but the last, which
/// may be shorter. With `count` 1 it is a single datagram, sent without GSO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first: usize,
    count: usize,
    bytes: usize,
    size: usize,
}

/// Split datagrams (length, endpoint), in order, into the messages of one `sendmmsg`: with
/// `gso`, runs to one endpoint of equal-size datagrams (the last may be shorter) within the
/// kernel's limits; without, one message per datagram.
fn gso_runs(datagrams: impl Iterator<Item = (usize, SocketAddr)>, gso: bool) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut last_to = None;
    for (i, (len, to)) in datagrams.enumerate() {
        if let Some(run) = runs.last_mut() {
            let open = gso
                && last_to == Some(to)
                && len <= run.size
                && run.bytes == run.count * run.size // the last one was not shorter
                && run.count < GSO_MAX_SEGMENTS
                && run.bytes + len <= GSO_MAX_BYTES;
            if open {
                run.count += 1;
                run.bytes += len;
                continue;
            }
        }
        runs.push(Run {
            first: i,
            count: 1,
            bytes: len,
            size: len,
        });
        last_to = Some(to);
    }
    runs
}

/// Errors with which the kernel refuses a UDP GSO send it would take as single datagrams:
/// `EIO` (older kernels answer it for a device without checksum offload, where 6.18 sends
/// anyway, measured on a veth with `tx off`; the kernel's source gives it for IPsec routes),
/// `EMSGSIZE` (a segment larger than the route's MTU, which a single datagram would pass
/// fragmented: a low-MTU path, or a path MTU learned since), `EINVAL` (a size or segment
/// count it does not take), `EOPNOTSUPP`/`ENOPROTOOPT` (no GSO at all).
fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EMSGSIZE | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
    )
}

#[cfg(test)]
mod tests;
