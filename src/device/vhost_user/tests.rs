//! Device-level tests of the vhost-user adapter without a guest, and of its relay.

use super::*;
use std::os::fd::AsRawFd;

fn socket(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vnetio-vhost-{name}-{}.sock", std::process::id()))
}

#[test]
fn options_are_checked() {
    let mut o = Options::new(socket("opts"));
    o.queues = 0;
    assert!(matches!(
        VhostUserNet::new(&o),
        Err(Error::InvalidArgument(_))
    ));
    o.queues = MAX_QUEUE_PAIRS + 1;
    assert!(matches!(
        VhostUserNet::new(&o),
        Err(Error::InvalidArgument(_))
    ));
    o.queues = 1;
    o.mtu = 67;
    assert!(matches!(
        VhostUserNet::new(&o),
        Err(Error::InvalidArgument(_))
    ));
    o.mtu = 1500;
    o.mac = [1, 0, 0, 0, 0, 1];
    assert!(matches!(
        VhostUserNet::new(&o),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn without_a_guest() {
    let path = socket("noguest");
    let mut o = Options::new(&path);
    o.send_timeout = Duration::from_millis(10);
    let dev = VhostUserNet::new(&o).unwrap();
    assert!(path.exists(), "the socket is there when new() returns");
    assert!(!dev.connected());
    assert_eq!(dev.features(), 0);
    assert!(!dev.wait_connected(Duration::from_millis(30)).unwrap());
    // A second backend on the same live socket is refused.
    assert!(matches!(
        VhostUserNet::new(&Options::new(&path)),
        Err(Error::Os { .. })
    ));
    // Receiving times out; sending drops and counts.
    let mut batch = PacketBatch::default();
    let t = Instant::now();
    assert_eq!(
        dev.recv_batch(&mut batch, 8, Duration::from_millis(30))
            .unwrap(),
        0
    );
    assert!(t.elapsed() >= Duration::from_millis(30));
    let frame = [0u8; 60];
    assert_eq!(dev.send_frames(&[&frame, &frame]).unwrap(), 2);
    let s = dev.stats().unwrap();
    assert_eq!((s.tx_frames, s.tx_dropped), (0, 2));
    assert_eq!(dev.vhost_stats().dropped_no_guest, 2);
    dev.close();
    assert!(!path.exists(), "close removes the socket");
    assert!(matches!(
        dev.recv_batch(&mut batch, 1, Duration::ZERO),
        Err(Error::Closed)
    ));
    assert!(matches!(
        dev.wait_connected(Duration::ZERO),
        Err(Error::Closed)
    ));
}

#[test]
fn overflow_error_reports_no_guest() {
    let mut o = Options::new(socket("overflow"));
    o.overflow = Overflow::Error;
    let dev = VhostUserNet::new(&o).unwrap();
    let frame = [0u8; 60];
    match dev.send_frames(&[&frame]) {
        Err(Error::Partial {
            sent: 0,
            total: 1,
            source,
        }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOTCONN));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn stale_socket_is_replaced() {
    let path = socket("stale");
    drop(UnixListener::bind(&path).unwrap()); // leaves the file, nobody listening
    assert!(path.exists());
    let dev = VhostUserNet::new(&Options::new(&path)).unwrap();
    assert!(
        UnixStream::connect(&path).is_ok(),
        "the new backend listens"
    );
    drop(dev);
    assert!(!path.exists());
}

#[test]
fn close_wakes_a_blocked_receiver_and_a_poller() {
    let dev = Arc::new(VhostUserNet::new(&Options::new(socket("wake"))).unwrap());
    let fd = dev.raw_fd().unwrap();
    let d2 = Arc::clone(&dev);
    let t = std::thread::spawn(move || {
        let mut batch = PacketBatch::default();
        d2.recv_batch(&mut batch, 1, Duration::from_secs(10))
    });
    std::thread::sleep(Duration::from_millis(30));
    let start = Instant::now();
    dev.close();
    assert!(matches!(t.join().unwrap(), Err(Error::Closed)));
    assert!(start.elapsed() < Duration::from_secs(2));
    // The eventfd a poller waits on (raw_fd) became readable.
    assert_eq!(fd, dev.shared.pairs[0].ready.as_raw_fd());
    let file = std::os::fd::AsFd::as_fd(&dev.shared.pairs[0].ready);
    let (ready, _) = sys::poll2(file, libc::POLLIN, file, 0).unwrap();
    assert!(ready.readable);
}

#[test]
fn closing_a_queue_closes_only_that_queue() {
    let mut o = Options::new(socket("qclose"));
    o.queues = 2;
    let dev = VhostUserNet::new(&o).unwrap();
    let frame = [0u8; 60];
    dev.queues()[1].close();
    assert!(dev.queues()[1].is_closed());
    assert!(matches!(
        dev.queues()[1].send_frames(&[&frame]),
        Err(Error::Closed)
    ));
    assert!(matches!(dev.queues()[1].raw_fd(), Err(Error::Closed)));
    assert!(!dev.is_closed());
    assert_eq!(dev.queues()[0].send_frames(&[&frame]).unwrap(), 1);
}

#[test]
fn client_mode_keeps_trying() {
    let path = socket("client");
    let mut o = Options::new(&path);
    o.mode = SocketMode::Client;
    let dev = VhostUserNet::new(&o).unwrap();
    // Nobody listens: no connection, no error surfaced to the caller.
    assert!(!dev.wait_connected(Duration::from_millis(50)).unwrap());
    // A listener appears: the backend connects (the session then waits for a
    // frontend that never speaks; dropping our end ends it).
    let l = UnixListener::bind(&path).unwrap();
    l.set_nonblocking(false).unwrap();
    let (conn, _) = l.accept().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while dev.vhost_stats().connections == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(dev.vhost_stats().connections, 1);
    drop(conn);
    while dev.vhost_stats().disconnects == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(dev.vhost_stats().disconnects, 1);
    dev.close();
    let _ = std::fs::remove_file(&path);
}

fn staged_with(frames: &[&[u8]]) -> Staged {
    let mut s = Staged::default();
    for (i, f) in frames.iter().enumerate() {
        let hdr = (i == 1).then(|| VnetHdr {
            gso_size: 1448,
            ..VnetHdr::default()
        });
        s.batch.push_with(f, 100 + i as u64, hdr);
    }
    s
}

#[test]
fn staged_frames_move_whole_into_an_empty_batch() {
    let mut s = staged_with(&[b"one", b"two", b"three"]);
    let mut batch = PacketBatch::with_capacity(4, 4096);
    assert_eq!(s.move_into(&mut batch, 256), 3);
    assert!(s.batch.is_empty());
    let got: Vec<&[u8]> = batch.iter().collect();
    assert_eq!(got, [&b"one"[..], b"two", b"three"]);
    assert_eq!(batch.timestamp_ns(2), Some(102));
    assert_eq!(batch.hdr(1).map(|h| h.gso_size), Some(1448));
    assert_eq!(batch.hdr(0), None);
    // The staging area got the caller's (empty) arena and takes frames again.
    s.batch.push(b"four", 7);
    assert_eq!(s.move_into(&mut batch, 256), 1);
    assert_eq!(batch.get(3), Some(&b"four"[..]));
}

#[test]
fn staged_frames_move_in_order_up_to_max() {
    let mut s = staged_with(&[b"one", b"two", b"three"]);
    let mut batch = PacketBatch::default();
    batch.push(b"zero", 1);
    assert_eq!(s.move_into(&mut batch, 2), 2);
    let got: Vec<&[u8]> = batch.iter().collect();
    assert_eq!(got, [&b"zero"[..], b"one", b"two"]);
    assert_eq!(batch.hdr(2).map(|h| h.gso_size), Some(1448));
    // The rest stays staged, first in line.
    let rest: Vec<&[u8]> = s.batch.iter().collect();
    assert_eq!(rest, [&b"three"[..]]);
    assert_eq!(s.batch.timestamp_ns(0), Some(102));
    let mut next = PacketBatch::default();
    assert_eq!(s.move_into(&mut next, 1), 1);
    assert_eq!(next.get(0), Some(&b"three"[..]));
    assert_eq!(s.move_into(&mut next, 5), 0);
}
