//! The kernel ABI for TUN/TAP: ioctls on `/dev/net/tun` and on a control socket,
//! `socket`, `setns`, `poll`, `eventfd`, and the `bpf(2)` calls behind kernel-side filters;
//! `tty`: pseudo-terminals and termios for the serial devices; `cache`: the CPU cache hint
//! of the receive loops (not a system call, but `unsafe` to issue, so it lives here).
//!
//! This is the only module of the core that may use `unsafe`. Every block carries a
//! `SAFETY:` note. Ioctl request numbers come from the `libc` crate, which defines them
//! per architecture (`_IOW`/`_IOR` with the right direction bits), never hard-coded here.
//! Everything else (reads, writes, netlink messages) goes through safe `std` types over
//! the `OwnedFd`s made here.
#![allow(unsafe_code)]

pub mod cache;
pub mod mounts;
pub mod pidfd;
pub mod tty;
pub mod udp;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `IFNAMSIZ`: an interface name plus its NUL terminator.
pub const IFNAMSIZ: usize = libc::IFNAMSIZ;

/// The kernel's interface-name buffer (NUL-terminated, NUL-padded).
pub type IfName = [u8; IFNAMSIZ];

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn ifreq_with_name(name: &IfName) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data (a name array and a union of integers,
    // sockaddrs and a pointer); all-zero bytes are a valid value of every field.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(name.iter()) {
        *dst = src as libc::c_char;
    }
    ifr
}

fn name_of(ifr: &libc::ifreq) -> IfName {
    let mut out = [0u8; IFNAMSIZ];
    for (dst, &src) in out.iter_mut().zip(ifr.ifr_name.iter()) {
        *dst = src as u8;
    }
    out[IFNAMSIZ - 1] = 0;
    out
}

/// Issue `request` with a pointer to `ifr`.
fn ioctl_ifreq(fd: BorrowedFd<'_>, request: libc::Ioctl, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor for the duration of the borrow. Every request
    // passed here (TUNSETIFF, TUNGETIFF, SIOC[GS]IF*) reads and/or writes at most one
    // `struct ifreq`, and `ifr` points to a whole, writable one. Not guaranteed: that the
    // kernel accepts the request; that is the returned error.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request, std::ptr::from_mut(ifr)) }).map(drop)
}

/// Issue `request` whose argument is an integer passed by value (TUNSETPERSIST,
/// TUNSETOWNER, TUNSETGROUP, TUNSETOFFLOAD).
fn ioctl_int_arg(fd: BorrowedFd<'_>, request: libc::Ioctl, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: `fd` is live. TUNSETPERSIST/OWNER/GROUP/OFFLOAD take their argument by
    // value (the kernel casts the pointer-sized argument to an integer) and touch no
    // memory of ours.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) }).map(drop)
}

/// TUNSETIFF: create or attach to the adapter `name` with `flags` (IFF_TUN/IFF_TAP, …).
/// Returns the name the kernel chose (it expands `%d` patterns).
pub fn tun_set_iff(fd: BorrowedFd<'_>, name: &IfName, flags: libc::c_short) -> io::Result<IfName> {
    let mut ifr = ifreq_with_name(name);
    ifr.ifr_ifru.ifru_flags = flags;
    ioctl_ifreq(fd, libc::TUNSETIFF, &mut ifr)?;
    Ok(name_of(&ifr))
}

/// TUNGETIFF: the attached adapter's name and its flags as this fd sees them.
pub fn tun_get_iff(fd: BorrowedFd<'_>) -> io::Result<(IfName, libc::c_short)> {
    let mut ifr = ifreq_with_name(&[0; IFNAMSIZ]);
    ioctl_ifreq(fd, libc::TUNGETIFF, &mut ifr)?;
    // SAFETY: TUNGETIFF fills `ifru_flags`; reading a `c_short` from the zero-initialised
    // union is valid whichever member the kernel wrote.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok((name_of(&ifr), flags))
}

/// TUNSETPERSIST.
pub fn tun_set_persist(fd: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    ioctl_int_arg(fd, libc::TUNSETPERSIST, libc::c_ulong::from(persist))
}

/// TUNSETOWNER.
pub fn tun_set_owner(fd: BorrowedFd<'_>, uid: u32) -> io::Result<()> {
    ioctl_int_arg(fd, libc::TUNSETOWNER, libc::c_ulong::from(uid))
}

/// TUNSETGROUP.
pub fn tun_set_group(fd: BorrowedFd<'_>, gid: u32) -> io::Result<()> {
    ioctl_int_arg(fd, libc::TUNSETGROUP, libc::c_ulong::from(gid))
}

/// TUNSETOFFLOAD: the offloads (TUN_F_*) this adapter's readers accept. Device-wide; it
/// outlives the descriptor.
pub fn tun_set_offload(fd: BorrowedFd<'_>, mask: libc::c_uint) -> io::Result<()> {
    ioctl_int_arg(fd, libc::TUNSETOFFLOAD, libc::c_ulong::from(mask))
}

/// An ioctl whose argument is a pointer to one `int` the kernel reads.
fn ioctl_int_ptr(fd: BorrowedFd<'_>, request: libc::Ioctl, value: libc::c_int) -> io::Result<()> {
    let mut v = value;
    // SAFETY: TUNSETVNETHDRSZ and TUNSETVNETLE read one `int` through the pointer, which
    // points to a live local of that type for the duration of the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request, std::ptr::from_mut(&mut v)) }).map(drop)
}

/// TUNSETVNETHDRSZ: size of the virtio-net header before each frame.
pub fn tun_set_vnet_hdr_sz(fd: BorrowedFd<'_>, size: libc::c_int) -> io::Result<()> {
    ioctl_int_ptr(fd, libc::TUNSETVNETHDRSZ, size)
}

/// TUNSETVNETLE: virtio-net header fields are little-endian (virtio 1.0).
pub fn tun_set_vnet_le(fd: BorrowedFd<'_>) -> io::Result<()> {
    ioctl_int_ptr(fd, libc::TUNSETVNETLE, 1)
}

/// TUNGETFEATURES: the IFF_* flags this kernel's TUN driver supports.
pub fn tun_get_features(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one `unsigned int` through the pointer, which points
    // to a live local of that type.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNGETFEATURES,
            std::ptr::from_mut(&mut features),
        )
    })?;
    Ok(features)
}

/// SIOCGIFFLAGS on a control socket.
pub fn if_get_flags(sock: BorrowedFd<'_>, name: &IfName) -> io::Result<libc::c_short> {
    let mut ifr = ifreq_with_name(name);
    ioctl_ifreq(sock, libc::SIOCGIFFLAGS, &mut ifr)?;
    // SAFETY: SIOCGIFFLAGS fills `ifru_flags`; any c_short bit pattern is valid.
    Ok(unsafe { ifr.ifr_ifru.ifru_flags })
}

/// SIOCSIFFLAGS on a control socket.
pub fn if_set_flags(sock: BorrowedFd<'_>, name: &IfName, flags: libc::c_short) -> io::Result<()> {
    let mut ifr = ifreq_with_name(name);
    ifr.ifr_ifru.ifru_flags = flags;
    ioctl_ifreq(sock, libc::SIOCSIFFLAGS, &mut ifr)
}

/// SIOCGIFMTU.
pub fn if_get_mtu(sock: BorrowedFd<'_>, name: &IfName) -> io::Result<u32> {
    let mut ifr = ifreq_with_name(name);
    ioctl_ifreq(sock, libc::SIOCGIFMTU, &mut ifr)?;
    // SAFETY: SIOCGIFMTU fills `ifru_mtu`; any c_int bit pattern is valid.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(u32::try_from(mtu).unwrap_or(0))
}

/// SIOCSIFMTU.
pub fn if_set_mtu(sock: BorrowedFd<'_>, name: &IfName, mtu: u32) -> io::Result<()> {
    let mut ifr = ifreq_with_name(name);
    ifr.ifr_ifru.ifru_mtu =
        libc::c_int::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    ioctl_ifreq(sock, libc::SIOCSIFMTU, &mut ifr)
}

/// SIOCGIFTXQLEN: the txqueuelen (for a TUN/TAP, how many frames each reader's ring holds).
pub fn if_get_txqlen(sock: BorrowedFd<'_>, name: &IfName) -> io::Result<u32> {
    let mut ifr = ifreq_with_name(name);
    ioctl_ifreq(sock, libc::SIOCGIFTXQLEN, &mut ifr)?;
    // SAFETY: SIOCGIFTXQLEN fills `ifr_qlen`, the union's int member that libc names
    // `ifru_mtu` (C: ifru_ivalue); any c_int bit pattern is valid.
    let qlen = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(u32::try_from(qlen).unwrap_or(0))
}

/// SIOCSIFTXQLEN.
pub fn if_set_txqlen(sock: BorrowedFd<'_>, name: &IfName, qlen: u32) -> io::Result<()> {
    let mut ifr = ifreq_with_name(name);
    ifr.ifr_ifru.ifru_mtu =
        libc::c_int::try_from(qlen).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    ioctl_ifreq(sock, libc::SIOCSIFTXQLEN, &mut ifr)
}

/// SIOCGIFINDEX.
pub fn if_get_index(sock: BorrowedFd<'_>, name: &IfName) -> io::Result<u32> {
    let mut ifr = ifreq_with_name(name);
    ioctl_ifreq(sock, libc::SIOCGIFINDEX, &mut ifr)?;
    // SAFETY: SIOCGIFINDEX fills `ifru_ifindex`; any c_int bit pattern is valid.
    let index = unsafe { ifr.ifr_ifru.ifru_ifindex };
    Ok(u32::try_from(index).unwrap_or(0))
}

/// SIOCGIFHWADDR: the adapter's Ethernet address.
pub fn if_get_hwaddr(sock: BorrowedFd<'_>, name: &IfName) -> io::Result<[u8; 6]> {
    let mut ifr = ifreq_with_name(name);
    ioctl_ifreq(sock, libc::SIOCGIFHWADDR, &mut ifr)?;
    // SAFETY: SIOCGIFHWADDR fills `ifru_hwaddr`, a `sockaddr` whose first 6 data bytes
    // are the address; a sockaddr of any bytes is a valid value.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = src as u8;
    }
    Ok(mac)
}

/// SIOCSIFHWADDR: set the adapter's Ethernet address (TAP only).
pub fn if_set_hwaddr(sock: BorrowedFd<'_>, name: &IfName, mac: [u8; 6]) -> io::Result<()> {
    let mut ifr = ifreq_with_name(name);
    // SAFETY: writing a whole `sockaddr` into the zeroed union; no reads of other members.
    let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    sa.sa_family = libc::ARPHRD_ETHER;
    for (dst, &src) in sa.sa_data.iter_mut().zip(mac.iter()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_hwaddr = sa;
    ioctl_ifreq(sock, libc::SIOCSIFHWADDR, &mut ifr)
}

/// `socket(domain, type | SOCK_CLOEXEC, protocol)`.
pub fn socket(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; a non-negative return is a new descriptor that
    // nothing else owns, so `OwnedFd` may take it.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: `fd` was just returned by socket() and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setns(fd, CLONE_NEWNET)`: move the *calling thread* into the network namespace `fd`.
/// Callers run this on a short-lived thread of their own, never on a Python thread.
pub fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and a flag; it touches no memory of ours. Only the
    // calling thread changes namespace (network namespaces are per thread).
    cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`: used to wake pollers when an adapter closes.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; a non-negative return is a fresh descriptor we own.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: `fd` was just returned by eventfd() and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What `poll` reported for one descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// Data can be read.
    pub readable: bool,
    /// Data can be written.
    pub writable: bool,
    /// Error, hang-up or invalid descriptor.
    pub error: bool,
}

/// Poll `fd` for `events` (`POLLIN`/`POLLOUT`) and `wake` for readability, up to
/// `timeout_ms` (negative: forever). Returns (fd's readiness, whether `wake` fired);
/// EINTR is reported as nothing ready, so the caller re-checks signals and loops.
pub fn poll2(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    wake: BorrowedFd<'_>,
    timeout_ms: libc::c_int,
) -> io::Result<(Ready, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a live array of two initialised pollfd structs and the count
    // passed matches its length; the kernel writes only `revents`.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok((Ready::default(), false));
        }
        return Err(err);
    }
    let r = fds[0].revents;
    Ok((
        Ready {
            readable: r & libc::POLLIN != 0,
            writable: r & libc::POLLOUT != 0,
            error: r & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0,
        },
        fds[1].revents != 0,
    ))
}

// ---- socket filters: classic (TUNATTACHFILTER) and eBPF (bpf(2) + TUNSETFILTEREBPF) ----

// Not in the libc crate; built with its per-architecture `_IOW`/`_IOR` (linux/if_tun.h).
const TUNATTACHFILTER: libc::Ioctl = libc::_IOW::<libc::sock_fprog>(b'T' as u32, 213);
const TUNDETACHFILTER: libc::Ioctl = libc::_IOW::<libc::sock_fprog>(b'T' as u32, 214);
const TUNSETFILTEREBPF: libc::Ioctl = libc::_IOR::<libc::c_int>(b'T' as u32, 225);

/// TUNATTACHFILTER: attach a classic program to every queue of the adapter (the kernel
/// keeps it for queues attached later, too).
pub fn tun_attach_filter(
    fd: BorrowedFd<'_>,
    program: &[crate::filter::bpf::Insn],
) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let len = libc::c_ushort::try_from(insns.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: `fd` is live; TUNATTACHFILTER reads one `struct sock_fprog` whose `filter`
    // points to `len` initialised `sock_filter`s in `insns`, alive across the call (the
    // kernel copies them).
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNATTACHFILTER, std::ptr::from_ref(&fprog)) })
        .map(drop)
}

/// TUNDETACHFILTER: remove the classic program.
pub fn tun_detach_filter(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: 0,
        filter: std::ptr::null_mut(),
    };
    // SAFETY: `fd` is live; TUNDETACHFILTER ignores the argument's contents, which point to
    // a valid local struct anyway.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNDETACHFILTER, std::ptr::from_ref(&fprog)) })
        .map(drop)
}

/// TUNSETFILTEREBPF: attach the eBPF socket filter `prog` to the adapter (`None`
/// detaches). The program belongs to the device, not to this descriptor.
pub fn tun_set_filter_ebpf(fd: BorrowedFd<'_>, prog: Option<BorrowedFd<'_>>) -> io::Result<()> {
    ioctl_int_ptr(fd, TUNSETFILTEREBPF, prog.map_or(-1, |p| p.as_raw_fd()))
}

// ---- ethtool features (SIOCETHTOOL), looked up by name ----

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// SIOCETHTOOL with `buf` as the command block (`ifr_data`).
fn ethtool(sock: BorrowedFd<'_>, name: &IfName, buf: &mut [u64]) -> io::Result<()> {
    let mut ifr = ifreq_with_name(name);
    ifr.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    ioctl_ifreq(sock, libc::SIOCETHTOOL as libc::Ioctl, &mut ifr)
}

const ETHTOOL_GDRVINFO: u32 = 0x03;

/// Whether an interface of this name exists, asked through SIOCETHTOOL, which looks the
/// name up under the kernel's RTNL lock: an `ip link del` in progress (the device already
/// down, its name not yet released, all under RTNL) has finished before the answer, unlike
/// SIOCGIFFLAGS, which can see the device half deleted. Any error but ENODEV means the
/// lookup found it (the driver info itself is not needed).
pub fn if_exists_settled(sock: BorrowedFd<'_>, name: &IfName) -> bool {
    // struct ethtool_drvinfo: {cmd u32, ...} in 196 bytes.
    let mut info = [0u64; 25];
    bytemuck_u64s(&mut info)[0..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    !matches!(ethtool(sock, name, &mut info), Err(e) if e.raw_os_error() == Some(libc::ENODEV))
}

/// Turn off the named device features (`ethtool -K`-style names such as
/// "tx-vlan-hw-insert"). Bit positions are looked up by name in the kernel's feature
/// string set, as they differ between kernel versions. Returns how many names were found.
pub fn ethtool_features_off(
    sock: BorrowedFd<'_>,
    name: &IfName,
    features: &[&str],
) -> io::Result<usize> {
    // ETHTOOL_GSSET_INFO: {cmd u32, reserved u32, sset_mask u64, data u32[]}.
    let mut info = [0u64; 3];
    let b = bytemuck_u64s(&mut info);
    b[0..4].copy_from_slice(&ETHTOOL_GSSET_INFO.to_ne_bytes());
    b[8..16].copy_from_slice(&(1u64 << ETH_SS_FEATURES).to_ne_bytes());
    ethtool(sock, name, &mut info)?;
    let b = bytemuck_u64s(&mut info);
    let count = u32::from_ne_bytes([b[16], b[17], b[18], b[19]]) as usize;
    if count == 0 || count > 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no feature names",
        ));
    }
    // ETHTOOL_GSTRINGS: {cmd u32, string_set u32, len u32, data u8[len * 32]}.
    let mut strings = vec![0u64; (12 + count * ETH_GSTRING_LEN).div_ceil(8)];
    let head: &mut [u8] = bytemuck_u64s(&mut strings);
    head[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    head[4..8].copy_from_slice(&ETH_SS_FEATURES.to_ne_bytes());
    head[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    ethtool(sock, name, &mut strings)?;
    let bytes = bytemuck_u64s(&mut strings);
    let blocks = count.div_ceil(32);
    // ETHTOOL_SFEATURES: {cmd u32, size u32, features {valid u32, requested u32}[size]}.
    let mut set = vec![0u64; 1 + blocks];
    let mut found = 0;
    {
        let out = bytemuck_u64s(&mut set);
        out[0..4].copy_from_slice(&ETHTOOL_SFEATURES.to_ne_bytes());
        out[4..8].copy_from_slice(&(blocks as u32).to_ne_bytes());
        for bit in 0..count {
            let raw = &bytes[12 + bit * ETH_GSTRING_LEN..12 + (bit + 1) * ETH_GSTRING_LEN];
            let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
            if !features.iter().any(|f| f.as_bytes() == &raw[..end]) {
                continue;
            }
            found += 1;
            let valid_at = 8 + (bit / 32) * 8; // requested stays 0: off
            let mut valid = u32::from_ne_bytes([
                out[valid_at],
                out[valid_at + 1],
                out[valid_at + 2],
                out[valid_at + 3],
            ]);
            valid |= 1 << (bit % 32);
            out[valid_at..valid_at + 4].copy_from_slice(&valid.to_ne_bytes());
        }
    }
    if found > 0 {
        ethtool(sock, name, &mut set)?;
    }
    Ok(found)
}

/// The bytes of a `u64` buffer (used for 8-byte-aligned ethtool command blocks).
fn bytemuck_u64s(buf: &mut [u64]) -> &mut [u8] {
    // SAFETY: any bit pattern is a valid `u8`, `u8` has alignment 1, and the returned
    // slice covers exactly the buffer's bytes and borrows it mutably for its lifetime.
    unsafe {
        std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(buf))
    }
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `bpf(cmd, attr, sizeof attr)`; the kernel accepts a prefix of its `union bpf_attr`
/// (the rest reads as zero).
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised `#[repr(C)]` struct laid out as the prefix of
    // `union bpf_attr` for `cmd`, and the size passed is its size. Pointers inside it
    // (set by the callers below) point to buffers alive across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by a bpf() command that creates a descriptor, and
    // nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

/// A per-CPU array map with one u64 entry: the counter an eBPF filter adds its rejects to.
pub fn bpf_counter_map() -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_PERCPU_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        map_flags: 0,
    };
    bpf(BPF_MAP_CREATE, &mut attr).map(owned)
}

/// Number of possible CPUs (the length of a per-CPU map value), from
/// /sys/devices/system/cpu/possible ("0-1", "0", "0-3,5"); read once per process (the set
/// of possible CPUs is fixed at boot), so `stats()` costs no file read.
fn possible_cpus() -> io::Result<usize> {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(&n) = COUNT.get() {
        return Ok(n);
    }
    let n = parse_cpu_list(&std::fs::read_to_string(
        "/sys/devices/system/cpu/possible",
    )?)?;
    Ok(*COUNT.get_or_init(|| n))
}

fn parse_cpu_list(text: &str) -> io::Result<usize> {
    let mut count = 0usize;
    for part in text.trim().split(',') {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad cpu list");
        count += match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                b.checked_sub(a).ok_or_else(bad)? + 1
            }
            None => part.parse::<usize>().map(|_| 1).map_err(|_| bad())?,
        };
    }
    Ok(count.max(1))
}

/// The sum over all CPUs of entry 0 of a [`bpf_counter_map`].
pub fn bpf_counter_sum(map: BorrowedFd<'_>) -> io::Result<u64> {
    let key = 0u32;
    let mut values = vec![0u64; possible_cpus()?];
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: std::ptr::from_ref(&key) as u64,
        value: values.as_mut_ptr() as u64,
        ..MapElemAttr::default()
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
    Ok(values.iter().fold(0u64, |s, v| s.wrapping_add(*v)))
}

/// Load an eBPF socket filter. On failure: the error and the verifier's log (loaded a
/// second time with logging on, so the common success path pays nothing for it).
pub fn bpf_load_socket_filter(
    insns: &[crate::filter::ebpf::EbpfInsn],
) -> Result<OwnedFd, (io::Error, String)> {
    let license = b"Dual MIT/GPL\0";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: u32::try_from(insns.len()).unwrap_or(u32::MAX),
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    attr.prog_name[..6].copy_from_slice(b"vnetio");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(err) => {
            let mut log = vec![0u8; 1 << 18];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
                return Ok(owned(fd)); // a transient failure
            }
            let end = log.iter().position(|&c| c == 0).unwrap_or(0);
            Err((err, String::from_utf8_lossy(&log[..end]).into_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[allow(clippy::unnecessary_cast)] // `Ioctl` is c_ulong on glibc, c_int on musl
    fn filter_ioctl_numbers_match_if_tun_h() {
        // Values from linux/if_tun.h on 64-bit x86 and ARM.
        assert_eq!(TUNATTACHFILTER as u64, 0x4010_54d5);
        assert_eq!(TUNDETACHFILTER as u64, 0x4010_54d6);
        assert_eq!(TUNSETFILTEREBPF as u64, 0x8004_54e1);
    }

    #[test]
    fn cpu_count_is_at_least_one() {
        assert!(possible_cpus().unwrap() >= 1);
        assert_eq!(possible_cpus().unwrap(), possible_cpus().unwrap());
    }

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        for (text, n) in [("0\n", 1), ("0-1\n", 2), ("0-3,5\n", 5), ("0,2-3", 3)] {
            assert_eq!(parse_cpu_list(text).unwrap(), n, "{text:?}");
        }
        for bad in ["", "x", "3-1", "0-"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ifreq_name_round_trip_keeps_terminator() {
        let mut name = [b'x'; IFNAMSIZ];
        name[IFNAMSIZ - 1] = 0;
        let ifr = ifreq_with_name(&name);
        assert_eq!(name_of(&ifr), name);
    }

    #[test]
    fn poll_times_out_and_wakes() {
        let a = eventfd().unwrap();
        let wake = eventfd().unwrap();
        let (ready, fired) = poll2(a.as_fd(), libc::POLLIN, wake.as_fd(), 10).unwrap();
        assert_eq!((ready.readable, fired), (false, false));
        std::io::Write::write_all(
            &mut std::fs::File::from(wake.try_clone().unwrap()),
            &1u64.to_ne_bytes(),
        )
        .unwrap();
        let (_, fired) = poll2(a.as_fd(), libc::POLLIN, wake.as_fd(), 1000).unwrap();
        assert!(fired);
    }
}
