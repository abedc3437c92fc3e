//! UDP in batches: `recvmmsg`/`sendmmsg`, UDP GSO (`UDP_SEGMENT`, a control message on a
//! send: one buffer of equal-size datagrams that the kernel splits) and UDP GRO
//! (`UDP_GRO`, a socket option: the kernel hands back runs of datagrams from one source as
//! one buffer, with the segment size in a control message). Used by the WireGuard engine.
//!
//! Everything here takes a borrowed descriptor of a UDP socket and caller-owned buffers;
//! the pointer structures the kernel reads (`mmsghdr`, `iovec`, `sockaddr`, control
//! messages) are built in [`RecvBatch`]/[`SendBatch`], which own them and rebuild them per
//! call, so no pointer outlives the buffers it points into.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// Room for one control message carrying a `u16` or `int` (with alignment), twice over.
const CMSG_SPACE: usize = 64;

/// The control-message buffer of one message (aligned for `cmsghdr`).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_SPACE]);

/// One received message, as [`RecvBatch::recv`] reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Bytes in the buffer.
    pub len: usize,
    /// The sender (`None`: an address family this code does not know).
    pub from: Option<SocketAddr>,
    /// With GRO: the size of each datagram coalesced into the buffer (the last may be
    /// shorter); 0: the buffer is one datagram.
    pub segment: usize,
    /// The datagram was larger than its buffer (the kernel cut it).
    pub truncated: bool,
    /// With `SO_RXQ_OVFL` on: datagrams the kernel dropped at this socket (its receive
    /// buffer was full) since the socket was made; `None`: no such control message.
    pub overflow: Option<u32>,
}

/// Reusable state for `recvmmsg` into caller buffers.
pub struct RecvBatch {
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    /// Room for up to `max` messages per call.
    pub fn new(max: usize) -> RecvBatch {
        RecvBatch {
            // SAFETY: `sockaddr_storage` is plain old data; all-zero is a valid value.
            addrs: vec![unsafe { zeroed() }; max],
            cmsgs: vec![CmsgBuf([0; CMSG_SPACE]); max],
            iovs: Vec::with_capacity(max),
            hdrs: Vec::with_capacity(max),
        }
    }

    /// `recvmmsg(fd, …, MSG_WAITFORONE)`: wait for the first datagram as the socket's
    /// receive timeout allows, then take what is already queued, up to `bufs.len()` (and
    /// the `max` given to [`RecvBatch::new`]). Fills `out[i]` for each message `i`
    /// received into `bufs[i]`; returns how many. A timeout is `WouldBlock`.
    pub fn recv(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: &mut [Vec<u8>],
        out: &mut [Received],
    ) -> io::Result<usize> {
        let n = bufs.len().min(out.len()).min(self.addrs.len());
        self.iovs.clear();
        self.hdrs.clear();
        for buf in bufs.iter_mut().take(n) {
            self.iovs.push(libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            });
        }
        for i in 0..n {
            // SAFETY: `msghdr` is plain old data; all-zero is valid (null pointers, 0 lengths).
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_name = std::ptr::from_mut(&mut self.addrs[i]).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_iov = std::ptr::from_mut(&mut self.iovs[i]);
            msg.msg_iovlen = 1;
            msg.msg_control = self.cmsgs[i].0.as_mut_ptr().cast();
            msg.msg_controllen = CMSG_SPACE as _;
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
        // SAFETY: `hdrs` holds `n` initialised mmsghdr whose name, iovec and control
        // pointers point into `self.addrs`, `self.iovs`, `self.cmsgs` and `bufs`, all alive
        // and not otherwise borrowed for the duration of the call, with the lengths given;
        // the kernel writes at most those lengths. The timeout pointer is null.
        let got = cvt(unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        })? as usize;
        for (i, slot) in out.iter_mut().enumerate().take(got) {
            let hdr = &self.hdrs[i];
            let mut segment = 0;
            let mut overflow = None;
            // SAFETY: the kernel set msg_controllen to the bytes of control messages it
            // wrote into cmsgs[i]; CMSG_FIRSTHDR/NXTHDR stay within that length, and each
            // header's data is read only when its length covers a `c_int`/`u16`.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&raw const hdr.msg_hdr);
                while !c.is_null() {
                    let len = (*c).cmsg_len as usize;
                    if (*c).cmsg_level == libc::SOL_SOCKET
                        && (*c).cmsg_type == libc::SO_RXQ_OVFL
                        && len >= libc::CMSG_LEN(size_of::<u32>() as u32) as usize
                    {
                        overflow = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                    }
                    if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                        let len = (*c).cmsg_len as usize;
                        if len >= libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize {
                            let v =
                                std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                            segment = usize::try_from(v).unwrap_or(0);
                        } else if len >= libc::CMSG_LEN(size_of::<u16>() as u32) as usize {
                            segment =
                                std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u16>()) as usize;
                        }
                    }
                    c = libc::CMSG_NXTHDR(&raw const hdr.msg_hdr, c);
                }
            }
            let len = hdr.msg_len as usize;
            *slot = Received {
                len,
                from: from_sockaddr(&self.addrs[i], hdr.msg_hdr.msg_namelen),
                segment: if segment > 0 && segment < len {
                    segment
                } else {
                    0
                },
                truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                overflow,
            };
        }
        Ok(got)
    }
}

/// One message for [`SendBatch::send`]: `data` to `to`; with `segment`, `data` is a run
/// of datagrams of that size (the last may be shorter) sent with UDP GSO.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The datagram, or the run of datagrams.
    pub data: &'a [u8],
    /// Where to.
    pub to: SocketAddr,
    /// GSO segment size (`None`: one datagram).
    pub segment: Option<u16>,
}

/// Reusable state for `sendmmsg`.
#[derive(Default)]
pub struct SendBatch {
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl SendBatch {
    /// `sendmmsg`: send `msgs` in order. Returns how many were sent (at least 1); the
    /// error is the first message's when it could not be sent.
    pub fn send(&mut self, fd: BorrowedFd<'_>, msgs: &[Outgoing<'_>]) -> io::Result<usize> {
        let n = msgs.len();
        if n == 0 {
            return Ok(0);
        }
        self.addrs.clear();
        self.iovs.clear();
        self.hdrs.clear();
        if self.cmsgs.len() < n {
            self.cmsgs.resize(n, CmsgBuf([0; CMSG_SPACE]));
        }
        let mut lens = Vec::with_capacity(n);
        for m in msgs {
            let (addr, len) = to_sockaddr(m.to);
            self.addrs.push(addr);
            lens.push(len);
            self.iovs.push(libc::iovec {
                iov_base: m.data.as_ptr().cast_mut().cast(),
                iov_len: m.data.len(),
            });
        }
        for (i, m) in msgs.iter().enumerate() {
            // SAFETY: `msghdr` is plain old data; all-zero is valid.
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_name = std::ptr::from_mut(&mut self.addrs[i]).cast();
            msg.msg_namelen = lens[i];
            msg.msg_iov = std::ptr::from_mut(&mut self.iovs[i]);
            msg.msg_iovlen = 1;
            if let Some(size) = m.segment {
                // SAFETY: CMSG_SPACE is arithmetic on its argument; it reads no memory.
                let space = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
                msg.msg_control = self.cmsgs[i].0.as_mut_ptr().cast();
                msg.msg_controllen = space as _;
                // SAFETY: cmsgs[i] is CMSG_SPACE bytes (>= `space`), aligned for cmsghdr;
                // CMSG_FIRSTHDR of a msghdr with a control buffer that large is non-null
                // and points at its start; the u16 fits in the data area CMSG_LEN covers.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&raw const msg);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
                }
            }
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0,
            });
        }
        // SAFETY: `hdrs` holds `n` initialised mmsghdr whose pointers point into
        // `self.addrs`, `self.iovs`, `self.cmsgs` and the callers' `data` slices, all alive
        // for the call; the kernel only reads them (and writes msg_len).
        let sent = cvt(unsafe {
            libc::sendmmsg(fd.as_raw_fd(), self.hdrs.as_mut_ptr(), n as libc::c_uint, 0)
        })?;
        Ok(sent as usize)
    }
}

/// `setsockopt(SOL_UDP, UDP_GRO, on)`: let the kernel coalesce received datagrams.
pub fn udp_set_gro(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, libc::c_int::from(on))
}

/// Whether the kernel knows UDP GSO: `getsockopt(SOL_UDP, UDP_SEGMENT)`, as wireguard-go
/// asks. A kernel before 4.18 answers `ENOPROTOOPT`, and it would not refuse a send that
/// carries the `UDP_SEGMENT` control message: it would ignore it and send the whole run as
/// one datagram. So GSO is only used once this has said yes.
pub fn udp_gso_supported(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a live `c_int` and `len` holds its exact size; the kernel writes
    // at most `len` bytes into it and the length it wrote into `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            std::ptr::from_mut(&mut value).cast(),
            &raw mut len,
        )
    })
    .map(drop)
}

/// `setsockopt(SOL_SOCKET, SO_RXQ_OVFL, 1)`: every received message then carries the
/// count of datagrams the kernel dropped at this socket because its buffer was full.
pub fn set_rxq_ovfl(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// `setsockopt(SOL_SOCKET, SO_MARK, mark)`: the firewall mark of every datagram the socket
/// sends (policy routing, nftables); 0 removes it. Needs `CAP_NET_ADMIN`.
pub fn set_mark(fd: BorrowedFd<'_>, mark: u32) -> io::Result<()> {
    setsockopt_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_MARK,
        libc::c_int::from_ne_bytes(mark.to_ne_bytes()),
    )
}

/// Raise the socket's send and receive buffers to `bytes`: `SO_*BUFFORCE` (root, beyond
/// `net.core.[rw]mem_max`), else the plain options (capped by those sysctls).
pub fn set_socket_buffers(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if setsockopt_int(fd, libc::SOL_SOCKET, force, v).is_err() {
            setsockopt_int(fd, libc::SOL_SOCKET, plain, v)?;
        }
    }
    Ok(())
}

fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live `c_int` and its exact size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: `sockaddr_storage` is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is aligned
            // and large enough for one.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read(std::ptr::from_ref(storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read(std::ptr::from_ref(storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;
    use std::time::Duration;

    #[test]
    fn datagrams_dropped_at_a_full_socket_are_counted() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        setsockopt_int(rx.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 4096).unwrap();
        set_rxq_ovfl(rx.as_fd()).unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = 200;
        for i in 0..sent {
            tx.send_to(&[i as u8; 1000], rx.local_addr().unwrap())
                .unwrap();
        }
        let mut batch = RecvBatch::new(64);
        let mut bufs = vec![vec![0u8; 2048]; 64];
        let mut out = [Received::default(); 64];
        let (mut received, mut overflow) = (0, 0);
        while let Ok(n) = batch.recv(rx.as_fd(), &mut bufs, &mut out) {
            received += n;
            overflow = out[..n]
                .iter()
                .filter_map(|r| r.overflow)
                .max()
                .unwrap_or(overflow);
        }
        // The kernel stamps the count on datagrams queued after the drops: send one more,
        // and read up to it (a datagram of the burst delivered late on a loaded machine,
        // after the loop above gave up, comes first and is counted).
        tx.send_to(b"after", rx.local_addr().unwrap()).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        loop {
            let n = batch.recv(rx.as_fd(), &mut bufs, &mut out).unwrap();
            for r in &out[..n] {
                overflow = overflow.max(r.overflow.unwrap_or(0));
            }
            let lens: Vec<usize> = out[..n].iter().map(|r| r.len).collect();
            if lens.last() == Some(&5) {
                assert!(lens[..n - 1].iter().all(|&l| l == 1000), "{lens:?}");
                received += n - 1;
                break;
            }
            assert!(lens.iter().all(|&l| l == 1000), "{lens:?}");
            received += n;
        }
        assert!(
            overflow > 0,
            "a 4 KiB buffer took {received} of {sent} datagrams"
        );
        assert_eq!(received + overflow as usize, sent);
    }

    #[test]
    fn this_kernel_knows_udp_gso() {
        // Linux 4.18 and later: the probe must say yes, else the WireGuard tunnel would
        // never use GSO.
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            if let Ok(socket) = UdpSocket::bind(addr) {
                udp_gso_supported(socket.as_fd()).unwrap();
            }
        }
        // A TCP socket has no UDP options: the probe says no.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(udp_gso_supported(tcp.as_fd()).is_err());
    }

    #[test]
    fn sockaddr_round_trip() {
        for a in ["192.0.2.7:51820", "[2001:db8::1]:9", "[::ffff:10.0.0.1]:1"] {
            let addr: SocketAddr = a.parse().unwrap();
            let (s, len) = to_sockaddr(addr);
            assert_eq!(from_sockaddr(&s, len), Some(addr));
        }
    }

    #[test]
    fn batches_over_loopback_with_and_without_gso_and_gro() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let gro = udp_set_gro(rx.as_fd(), true).is_ok();
        // Three single datagrams, then a GSO run of 4 × 100 bytes + 40.
        let run: Vec<u8> = (0..440u32).map(|i| (i / 100) as u8).collect();
        let msgs = [
            Outgoing {
                data: &b"one"[..],
                to,
                segment: None,
            },
            Outgoing {
                data: &b"two!"[..],
                to,
                segment: None,
            },
            Outgoing {
                data: &run,
                to,
                segment: Some(100),
            },
        ];
        let mut batch = SendBatch::default();
        let mut sent = 0;
        while sent < msgs.len() {
            sent += batch.send(tx.as_fd(), &msgs[sent..]).unwrap();
        }
        let mut recv = RecvBatch::new(16);
        let mut bufs = vec![vec![0u8; 65_536]; 16];
        let mut out = [Received::default(); 16];
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        while datagrams.len() < 7 {
            let n = recv.recv(rx.as_fd(), &mut bufs, &mut out).unwrap();
            for (buf, r) in bufs.iter().zip(&out).take(n) {
                assert_eq!(r.from, Some(tx.local_addr().unwrap()));
                assert!(!r.truncated);
                let step = if r.segment > 0 { r.segment } else { r.len };
                datagrams.extend(buf[..r.len].chunks(step).map(<[u8]>::to_vec));
            }
        }
        assert_eq!(datagrams[0], b"one");
        assert_eq!(datagrams[1], b"two!");
        for (k, d) in datagrams[2..].iter().enumerate() {
            assert_eq!(d.len(), if k < 4 { 100 } else { 40 }, "gro={gro}");
            assert!(d.iter().all(|&b| b == k as u8));
        }
    }
}
