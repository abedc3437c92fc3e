//! Looking into another process's TUN descriptor (adapter hygiene): `pidfd_open(2)`,
//! `pidfd_getfd(2)` and TUNGETDEVNETNS, which together tell which network namespace the
//! adapter behind someone else's descriptor lives in. Needs CAP_SYS_PTRACE over the
//! process (root); callers treat every error as "unknown".

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// TUNGETDEVNETNS (`_IO('T', 227)`, Linux 5.2): a descriptor of the adapter's network
/// namespace. Not in the libc crate; built with its per-architecture `_IO`.
const TUNGETDEVNETNS: libc::Ioctl = libc::_IO(b'T' as u32, 227);

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ret` is a descriptor the kernel just created for this process (by one of
    // the calls below) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as libc::c_int) })
}

/// `pidfd_open(pid, 0)`: a descriptor referring to process `pid`.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1; no memory
    // is passed.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// `pidfd_getfd(pidfd, fd, 0)`: a duplicate, in this process, of descriptor `fd` of the
/// process `pidfd` refers to (the syscall number comes from libc, per architecture).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: integers only; returns a new descriptor or -1.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })
}

/// TUNGETDEVNETNS on a TUN/TAP descriptor: a descriptor of its adapter's namespace.
pub fn tun_get_dev_netns(tun: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: TUNGETDEVNETNS takes no argument and returns a new descriptor or -1.
    owned(unsafe { libc::ioctl(tun.as_raw_fd(), TUNGETDEVNETNS) }.into())
}
