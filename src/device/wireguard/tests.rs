//! Two interfaces over UDP on the loopback address, each with an in-memory plaintext port.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::device::loopback::{self, LoopbackEnd, Overflow};
use crate::wire::Medium;

struct End {
    tunnel: Tunnel,
    user: LoopbackEnd,
    private: [u8; KEY_LEN],
}

fn end() -> End {
    let (user, port) = loopback::pair(256, Medium::Ip, 1420, Overflow::Drop).unwrap();
    let private = keys::generate_private();
    let config = TunnelConfig {
        private_key: private,
        listen_port: None,
    };
    End {
        tunnel: Tunnel::start(&config, Arc::new(port), None).unwrap(),
        user,
        private,
    }
}

fn peer_of(other: &End, allowed: &[&str], endpoint: bool) -> PeerConfig {
    PeerConfig {
        public_key: keys::public_of(&other.private),
        preshared_key: None,
        endpoint: endpoint
            .then(|| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), other.tunnel.listen_port())),
        allowed_ips: allowed.iter().map(|a| parse_network(a).unwrap()).collect(),
        persistent_keepalive: None,
    }
}

/// An IPv4 packet (UDP, checksums not needed by the tunnel) from `src` to `dst`.
fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
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
    p.extend_from_slice(&dst);
    p.extend_from_slice(&[0x30, 0x39, 0x30, 0x39, 0, (8 + payload.len()) as u8, 0, 0]);
    p.extend_from_slice(payload);
    p
}

fn recv_one(end: &LoopbackEnd, within: Duration) -> Option<Vec<u8>> {
    let mut batch = PacketBatch::default();
    let until = Instant::now() + within;
    while Instant::now() < until {
        if end
            .recv_batch(&mut batch, 1, Duration::from_millis(50))
            .unwrap()
            > 0
        {
            return batch.get(0).map(<[u8]>::to_vec);
        }
    }
    None
}

fn drops(t: &Tunnel, reason: DropReason) -> u64 {
    t.stats().drops[reason as usize]
}

#[test]
fn packets_cross_both_ways_after_a_handshake() {
    let (a, b) = (end(), end());
    a.tunnel
        .add_peer(peer_of(&b, &["10.9.0.2/32"], true))
        .unwrap();
    // b does not know a's endpoint: it learns it from the handshake (roaming).
    b.tunnel
        .add_peer(peer_of(&a, &["10.9.0.1/32"], false))
        .unwrap();

    let out = ipv4([10, 9, 0, 1], [10, 9, 0, 2], b"hello through the tunnel");
    a.user.send_frames(&[&out]).unwrap();
    assert_eq!(
        recv_one(&b.user, Duration::from_secs(5)).as_deref(),
        Some(&out[..])
    );
    let back = ipv4([10, 9, 0, 2], [10, 9, 0, 1], b"and back");
    b.user.send_frames(&[&back]).unwrap();
    assert_eq!(
        recv_one(&a.user, Duration::from_secs(5)).as_deref(),
        Some(&back[..])
    );

    // The port took the packet before the counters moved (a sender counts after sendmmsg
    // returns, a receiver after the write): let both ends' threads finish counting.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let (sa, sb) = (a.tunnel.stats(), b.tunnel.stats());
        let counted = [sa.tx_packets, sa.rx_packets, sb.tx_packets, sb.rx_packets];
        if counted.iter().all(|&n| n > 0) && sa.handshakes + sb.handshakes >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (sa, sb) = (a.tunnel.stats(), b.tunnel.stats());
    assert_eq!(sa.queued, 1, "{sa:?}"); // the first packet waited for the handshake
    assert_eq!((sa.tx_packets, sa.rx_packets), (1, 1), "{sa:?}");
    assert_eq!((sb.tx_packets, sb.rx_packets), (1, 1), "{sb:?}");
    assert_eq!(sa.handshakes + sb.handshakes, 2, "{sa:?} {sb:?}");
    assert_eq!(
        sa.drops.iter().sum::<u64>() + sb.drops.iter().sum::<u64>(),
        0
    );
    let pb = &b.tunnel.peers()[0];
    assert_eq!(pb.endpoint.map(|e| e.port()), Some(a.tunnel.listen_port()));
    assert!(pb.latest_handshake.is_some() && pb.rx_bytes > 0 && pb.tx_bytes > 0);
}

#[test]
fn spoofed_sources_unknown_routes_and_garbage_are_counted() {
    let (a, b) = (end(), end());
    a.tunnel
        .add_peer(peer_of(&b, &["10.9.0.2/32"], true))
        .unwrap();
    b.tunnel
        .add_peer(peer_of(&a, &["10.9.0.1/32"], true))
        .unwrap();
    let ok = ipv4([10, 9, 0, 1], [10, 9, 0, 2], b"first");
    a.user.send_frames(&[&ok]).unwrap();
    assert!(recv_one(&b.user, Duration::from_secs(5)).is_some());

    // a claims a source outside its AllowedIPs at b: decrypted, then refused.
    let spoofed = ipv4([10, 9, 0, 77], [10, 9, 0, 2], b"spoofed");
    a.user.send_frames(&[&spoofed]).unwrap();
    // No peer has this destination.
    let nowhere = ipv4([10, 9, 0, 1], [192, 0, 2, 1], b"nowhere");
    a.user.send_frames(&[&nowhere]).unwrap();
    // Garbage straight at b's socket.
    let probe = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let b_addr = (Ipv4Addr::LOCALHOST, b.tunnel.listen_port());
    probe.send_to(b"\x04\0\0\0short", b_addr).unwrap(); // data type, truncated
    probe.send_to(&[0x63; 200], b_addr).unwrap(); // no such message type
    let mut forged = vec![4u8, 0, 0, 0];
    forged.extend_from_slice(&(1u32 << 8).to_le_bytes()); // a plausible receiver index
    forged.extend_from_slice(&[0u8; 8 + 16 + 20]); // counter, tag, ciphertext
    probe.send_to(&forged, b_addr).unwrap();

    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until
        && (drops(&b.tunnel, DropReason::DisallowedSource) < 1
            || drops(&a.tunnel, DropReason::NoRoute) < 1
            || drops(&b.tunnel, DropReason::Malformed) < 2
            || drops(&b.tunnel, DropReason::UnknownPeer)
                + drops(&b.tunnel, DropReason::BadAuthentication)
                + drops(&b.tunnel, DropReason::NoSession)
                < 1)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let sb = b.tunnel.stats();
    assert_eq!(sb.drops[DropReason::DisallowedSource as usize], 1, "{sb:?}");
    assert_eq!(sb.drops[DropReason::Malformed as usize], 2, "{sb:?}");
    assert_eq!(drops(&a.tunnel, DropReason::NoRoute), 1);
    assert_eq!(
        sb.rx_packets, 1,
        "only the first packet reached b's port: {sb:?}"
    );
    assert!(recv_one(&b.user, Duration::from_millis(200)).is_none());
}

#[test]
fn a_wrong_key_gets_nothing_through() {
    let (a, b, mallory) = (end(), end(), end());
    b.tunnel
        .add_peer(peer_of(&a, &["10.9.0.1/32"], false))
        .unwrap();
    // mallory thinks it is talking to b, but b does not know mallory's key.
    mallory
        .tunnel
        .add_peer(peer_of(&b, &["10.9.0.2/32"], true))
        .unwrap();
    let p = ipv4([10, 9, 0, 1], [10, 9, 0, 2], b"let me in");
    mallory.user.send_frames(&[&p]).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && drops(&b.tunnel, DropReason::UnknownPeer) == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        drops(&b.tunnel, DropReason::UnknownPeer) >= 1,
        "{:?}",
        b.tunnel.stats()
    );
    assert!(recv_one(&b.user, Duration::from_millis(200)).is_none());
    assert_eq!(b.tunnel.stats().handshakes, 0);
    drop(a);
}

#[test]
fn close_stops_the_threads_promptly() {
    let a = end();
    let start = Instant::now();
    a.tunnel.close();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(a.tunnel.is_closed());
    a.tunnel.close();
}

#[test]
fn close_frees_the_port() {
    let a = end();
    let port = a.tunnel.listen_port();
    a.tunnel.close();
    // The Tunnel still exists (as a Python object would until collected): the port is free.
    UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, port))
        .or_else(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
        .expect("the port is still bound after close()");
}

struct Collect(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Mirror for Collect {
    fn packets(&mut self, packets: &[&[u8]], _timestamp_ns: u64) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .extend(packets.iter().map(|p| p.to_vec()));
        Ok(())
    }
}

#[test]
fn a_mirror_sees_the_plaintext_both_ways() {
    let (a, b) = (end(), end());
    a.tunnel
        .add_peer(peer_of(&b, &["10.9.0.2/32"], true))
        .unwrap();
    b.tunnel
        .add_peer(peer_of(&a, &["10.9.0.1/32"], false))
        .unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    assert!(a
        .tunnel
        .set_mirror(Some(Box::new(Collect(Arc::clone(&seen)))))
        .0
        .is_none());
    let out = ipv4([10, 9, 0, 1], [10, 9, 0, 2], b"out");
    a.user.send_frames(&[&out]).unwrap();
    assert!(recv_one(&b.user, Duration::from_secs(5)).is_some());
    let back = ipv4([10, 9, 0, 2], [10, 9, 0, 1], b"back");
    b.user.send_frames(&[&back]).unwrap();
    assert!(recv_one(&a.user, Duration::from_secs(5)).is_some());
    let (old, error) = a.tunnel.set_mirror(None);
    assert!(old.is_some() && error.is_none());
    assert_eq!(*seen.lock().unwrap(), vec![out, back]);
}

#[test]
fn gso_runs_split_by_endpoint_size_count_and_bytes() {
    let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
    let b: SocketAddr = "192.0.2.2:1".parse().unwrap();
    let run = |first, count, bytes, size| Run {
        first,
        count,
        bytes,
        size,
    };
    // Equal sizes to one endpoint, a shorter one ends the run; another endpoint, a larger
    // datagram start new ones.
    let d = [
        (100, a),
        (100, a),
        (40, a),
        (100, a),
        (100, b),
        (200, b),
        (100, b),
    ];
    assert_eq!(
        gso_runs(d.iter().copied(), true),
        [
            run(0, 3, 240, 100),
            run(3, 1, 100, 100),
            run(4, 1, 100, 100),
            run(5, 2, 300, 200)
        ]
    );
    // Without GSO: one message per datagram.
    let singles = gso_runs(d.iter().copied(), false);
    assert_eq!(singles.len(), d.len());
    assert!(singles
        .iter()
        .enumerate()
        .all(|(i, r)| r.first == i && r.count == 1 && r.bytes == d[i].0));
    // The kernel's limits: 64 segments, 65,000 bytes.
    let many = vec![(100, a); 150];
    let counts: Vec<usize> = gso_runs(many.into_iter(), true)
        .iter()
        .map(|r| r.count)
        .collect();
    assert_eq!(counts, [64, 64, 22]);
    let large = vec![(1452, a); 50];
    let counts: Vec<usize> = gso_runs(large.into_iter(), true)
        .iter()
        .map(|r| r.count)
        .collect();
    assert_eq!(counts, [44, 6]);
}

/// a and b with a session between them (a knows b's endpoint, b learned a's).
fn connected() -> (End, End) {
    let (a, b) = (end(), end());
    a.tunnel
        .add_peer(peer_of(&b, &["10.9.0.2/32"], true))
        .unwrap();
    b.tunnel
        .add_peer(peer_of(&a, &["10.9.0.1/32"], false))
        .unwrap();
    let p = ipv4([10, 9, 0, 1], [10, 9, 0, 2], b"hello");
    a.user.send_frames(&[&p]).unwrap();
    assert!(recv_one(&b.user, Duration::from_secs(5)).is_some());
    (a, b)
}

fn change_of(other: &End) -> PeerChange {
    PeerChange {
        public_key: keys::public_of(&other.private),
        ..PeerChange::default()
    }
}

fn ping(from: &End, to: &End, src: [u8; 4], dst: [u8; 4]) -> bool {
    let p = ipv4(src, dst, b"ping");
    from.user.send_frames(&[&p]).unwrap();
    recv_one(&to.user, Duration::from_secs(5)).as_deref() == Some(&p[..])
}

#[test]
fn reconfigure_changes_endpoints_and_allowed_ips_in_place() {
    let (a, b) = connected();
    let handshakes = a.tunnel.stats().handshakes + b.tunnel.stats().handshakes;
    // New AllowedIPs (replacing the old) and the same endpoint again: the session stays.
    let mut change = change_of(&b);
    change.replace_allowed_ips = true;
    change.allowed_ips = vec![parse_network("10.9.1.0/24").unwrap()];
    change.endpoint = Some(SocketAddr::new(
        Ipv4Addr::LOCALHOST.into(),
        b.tunnel.listen_port(),
    ));
    a.tunnel
        .reconfigure(&Reconfig {
            peers: vec![change],
            ..Reconfig::default()
        })
        .unwrap();
    let peer = &a.tunnel.peers()[0];
    let nets: Vec<String> = peer.allowed_ips.iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["10.9.1.0/24"]);
    assert!(peer.latest_handshake.is_some(), "the session was dropped");
    // 10.9.0.2 no longer routes to b; 10.9.1.7 does (b accepts a's source as before).
    let before = drops(&a.tunnel, DropReason::NoRoute);
    a.user
        .send_frames(&[&ipv4([10, 9, 0, 1], [10, 9, 0, 2], b"x")])
        .unwrap();
    assert!(ping(&a, &b, [10, 9, 0, 1], [10, 9, 1, 7]));
    assert_eq!(drops(&a.tunnel, DropReason::NoRoute), before + 1);
    let after = a.tunnel.stats().handshakes + b.tunnel.stats().handshakes;
    assert_eq!(after, handshakes, "a new handshake happened");
}

#[test]
fn reconfigure_moves_a_network_between_peers_and_removes_and_replaces() {
    let (a, b, c) = (end(), end(), end());
    a.tunnel
        .add_peer(peer_of(&b, &["10.9.0.0/24", "10.8.0.0/16"], true))
        .unwrap();
    let mut to_c = change_of(&c);
    to_c.allowed_ips = vec![parse_network("10.9.0.0/24").unwrap()];
    to_c.persistent_keepalive = Some(0);
    a.tunnel
        .reconfigure(&Reconfig {
            peers: vec![to_c],
            ..Reconfig::default()
        })
        .unwrap();
    let shown = |t: &Tunnel| -> Vec<Vec<String>> {
        t.peers()
            .iter()
            .map(|p| p.allowed_ips.iter().map(ToString::to_string).collect())
            .collect()
    };
    // As `wg set` does: the network leaves b for c, b keeps the rest.
    assert_eq!(shown(&a.tunnel), [vec!["10.8.0.0/16"], vec!["10.9.0.0/24"]]);
    // update_only of an unknown peer is skipped; removing an unknown peer is no error.
    let mut ghost = change_of(&end());
    ghost.update_only = true;
    let mut gone = change_of(&end());
    gone.remove = true;
    let mut drop_b = change_of(&b);
    drop_b.remove = true;
    a.tunnel
        .reconfigure(&Reconfig {
            peers: vec![ghost, gone, drop_b],
            ..Reconfig::default()
        })
        .unwrap();
    assert_eq!(shown(&a.tunnel), [vec!["10.9.0.0/24"]]);
    // replace_peers: only what the request lists remains.
    let mut only_b = change_of(&b);
    only_b.allowed_ips = vec![parse_network("10.7.0.0/16").unwrap()];
    a.tunnel
        .reconfigure(&Reconfig {
            replace_peers: true,
            peers: vec![only_b],
            ..Reconfig::default()
        })
        .unwrap();
    let peers = a.tunnel.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].public_key, keys::public_of(&b.private));
    assert_eq!(shown(&a.tunnel), [vec!["10.7.0.0/16"]]);
}

#[test]
fn reconfigure_rebinds_the_port_and_traffic_follows() {
    let (a, b) = connected();
    let old = a.tunnel.listen_port();
    a.tunnel
        .reconfigure(&Reconfig {
            listen_port: Some(0),
            ..Reconfig::default()
        })
        .unwrap();
    let new = a.tunnel.listen_port();
    assert_ne!(new, old);
    // The old port is closed once reconfigure returns.
    UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, old))
        .or_else(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, old)))
        .expect("the old port is still bound");
    // a → b from the new port: b roams to it, so b → a works too.
    assert!(ping(&a, &b, [10, 9, 0, 1], [10, 9, 0, 2]));
    assert!(ping(&b, &a, [10, 9, 0, 2], [10, 9, 0, 1]));
    assert_eq!(b.tunnel.peers()[0].endpoint.map(|e| e.port()), Some(new));
}

#[test]
fn a_refused_reconfigure_changes_nothing() {
    let (a, b) = connected();
    let taken = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let busy = taken.local_addr().unwrap().port();
    // A dual-stack socket on a port an IPv4 socket holds fails with EADDRINUSE.
    let c = end();
    let mut add_c = change_of(&c);
    add_c.allowed_ips = vec![parse_network("10.9.3.0/24").unwrap()];
    let before = (a.tunnel.listen_port(), a.tunnel.peers().len());
    let err = a
        .tunnel
        .reconfigure(&Reconfig {
            private_key: Some(keys::generate_private()),
            listen_port: Some(busy),
            peers: vec![add_c],
            ..Reconfig::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("another listen_port"), "{err}");
    assert_eq!((a.tunnel.listen_port(), a.tunnel.peers().len()), before);
    assert_eq!(a.tunnel.private_key(), a.private);
    // A zero private key is refused too.
    let err = a
        .tunnel
        .reconfigure(&Reconfig {
            private_key: Some([0; KEY_LEN]),
            ..Reconfig::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("without a private key"), "{err}");
    assert!(ping(&a, &b, [10, 9, 0, 1], [10, 9, 0, 2]));
}

#[test]
fn a_new_private_key_needs_the_peer_to_know_it() {
    let (a, b) = connected();
    let fresh = keys::generate_private();
    a.tunnel
        .reconfigure(&Reconfig {
            private_key: Some(fresh),
            ..Reconfig::default()
        })
        .unwrap();
    assert_eq!(a.tunnel.public_key(), keys::public_of(&fresh));
    assert!(a.tunnel.peers()[0].latest_handshake.is_none());
    // b still expects a's old key: nothing gets through.
    assert!(!ping(&a, &b, [10, 9, 0, 1], [10, 9, 0, 2]));
    // b learns a's new key (a new peer in b's table): traffic flows again.
    let mut old = change_of(&a);
    old.remove = true;
    let mut new = PeerChange {
        public_key: keys::public_of(&fresh),
        ..PeerChange::default()
    };
    new.allowed_ips = vec![parse_network("10.9.0.1/32").unwrap()];
    b.tunnel
        .reconfigure(&Reconfig {
            peers: vec![old, new],
            ..Reconfig::default()
        })
        .unwrap();
    assert!(ping(&a, &b, [10, 9, 0, 1], [10, 9, 0, 2]));
}

#[test]
fn fwmark_is_set_on_the_socket() {
    let a = end();
    let result = a.tunnel.reconfigure(&Reconfig {
        fwmark: Some(0x77),
        ..Reconfig::default()
    });
    match result {
        Ok(()) => assert_eq!(a.tunnel.fwmark(), 0x77),
        // Without CAP_NET_ADMIN: refused, named, and nothing changed.
        Err(e) => {
            assert!(e.to_string().contains("SO_MARK"), "{e}");
            assert_eq!(a.tunnel.fwmark(), 0);
        }
    }
}
