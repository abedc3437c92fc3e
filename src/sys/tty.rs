//! Terminals: pseudo-terminal pairs (`posix_openpt`, `grantpt`, `unlockpt`, `ptsname_r`),
//! raw mode and line speed (termios), non-blocking descriptors, and `poll` over several
//! descriptors (the serial relay watches two masters and a wake-up eventfd at once).
//!
//! Safe functions over `OwnedFd`/`BorrowedFd`; reads and writes go through `std::fs::File`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use super::cvt;

/// `posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC)`, then `grantpt` and `unlockpt`: a new
/// pseudo-terminal master whose slave (see [`ptsname`]) may be opened.
pub fn open_pty_master() -> io::Result<OwnedFd> {
    // SAFETY: posix_openpt takes flags only; a non-negative return is a new descriptor
    // that nothing else owns.
    let fd = cvt(unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by posix_openpt and is owned by no one else.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: grantpt and unlockpt take a descriptor only (glibc's grantpt is a no-op on
    // Linux's devpts, kept for portability); they touch no memory of ours.
    cvt(unsafe { libc::grantpt(master.as_raw_fd()) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::unlockpt(master.as_raw_fd()) })?;
    Ok(master)
}

/// `ptsname_r`: the path of the slave of the pseudo-terminal master `master`
/// (`/dev/pts/N`).
pub fn ptsname(master: BorrowedFd<'_>) -> io::Result<PathBuf> {
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: `buf` is a live, writable array and its exact length is passed; ptsname_r
    // writes a NUL-terminated string of at most that many bytes, or fails with ERANGE.
    let ret = unsafe { libc::ptsname_r(master.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    // SAFETY: on success `buf` holds a NUL-terminated string within its bounds.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(PathBuf::from(std::ffi::OsStr::new(
        std::str::from_utf8(name.to_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "ptsname is not UTF-8"))?,
    )))
}

fn get_termios(fd: BorrowedFd<'_>) -> io::Result<libc::termios> {
    // SAFETY: `termios` is plain old data (integers and a byte array); all-zero bytes are a
    // valid value, and tcgetattr overwrites it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a live, writable termios; tcgetattr writes exactly one.
    cvt(unsafe { libc::tcgetattr(fd.as_raw_fd(), std::ptr::from_mut(&mut t)) })?;
    Ok(t)
}

fn set_termios(fd: BorrowedFd<'_>, t: &libc::termios) -> io::Result<()> {
    // SAFETY: `t` points to a whole, initialised termios that tcsetattr only reads.
    cvt(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, std::ptr::from_ref(t)) }).map(drop)
}

/// The termios speed constant for `baud`, for the standard rates (`None` otherwise).
fn speed_constant(baud: u32) -> Option<libc::speed_t> {
    Some(match baud {
        1200 => libc::B1200,
        2400 => libc::B2400,
        4800 => libc::B4800,
        9600 => libc::B9600,
        19_200 => libc::B19200,
        38_400 => libc::B38400,
        57_600 => libc::B57600,
        115_200 => libc::B115200,
        230_400 => libc::B230400,
        460_800 => libc::B460800,
        500_000 => libc::B500000,
        921_600 => libc::B921600,
        1_000_000 => libc::B1000000,
        2_000_000 => libc::B2000000,
        4_000_000 => libc::B4000000,
        _ => return None,
    })
}

/// Put the terminal `fd` in raw mode (`cfmakeraw`: no echo, no line editing, no CR/LF
/// or flow-control translation, 8 data bits; `VMIN=1`, `VTIME=0`), receiver on, modem
/// lines ignored (`CLOCAL`), and, if `baud` is given, at that standard line speed.
///
/// # Errors
/// ENOTTY for a descriptor that is not a terminal; EINVAL for a `baud` that is not a
/// standard rate.
pub fn make_raw(fd: BorrowedFd<'_>, baud: Option<u32>) -> io::Result<()> {
    let mut t = get_termios(fd)?;
    // SAFETY: cfmakeraw only rewrites the fields of the termios it is given.
    unsafe { libc::cfmakeraw(std::ptr::from_mut(&mut t)) };
    t.c_cflag |= libc::CREAD | libc::CLOCAL;
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    if let Some(baud) = baud {
        let speed =
            speed_constant(baud).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: cfsetspeed only rewrites the speed fields of the termios it is given.
        cvt(unsafe { libc::cfsetspeed(std::ptr::from_mut(&mut t), speed) })?;
    }
    set_termios(fd, &t)
}

/// Whether `fd` is a terminal (`isatty`).
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: isatty takes a descriptor only.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// Set `O_NONBLOCK` on the open file description of `fd` (shared with every duplicate).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and touches no memory.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: F_SETFL takes the flag word by value.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// `fcntl(F_DUPFD_CLOEXEC)`: a new descriptor for the open file description that the
/// descriptor number `fd` refers to (a number a caller handed in: EBADF if it is not open).
pub fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes the lowest acceptable number by value and touches no
    // memory; on a number that is not open it fails with EBADF. A non-negative return is
    // a new descriptor that nothing else owns.
    let new = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `new` was just returned by fcntl and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `poll` over up to [`POLL_MAX`] descriptors: `fds` pairs each descriptor with the events
/// wanted (`POLLIN`/`POLLOUT`; 0 to ignore it this time). Returns each one's `revents`,
/// in order; EINTR is reported as nothing ready (callers loop). `timeout_ms < 0` waits
/// for ever.
pub fn poll_many(
    fds: &[(BorrowedFd<'_>, libc::c_short)],
    timeout_ms: libc::c_int,
) -> io::Result<[libc::c_short; POLL_MAX]> {
    if fds.len() > POLL_MAX {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut set = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; POLL_MAX];
    for (slot, (fd, events)) in set.iter_mut().zip(fds) {
        // A negative descriptor is ignored by poll: how "no events wanted" is expressed, so
        // that a hung-up descriptor does not report POLLHUP while it is not being watched.
        slot.fd = if *events == 0 { -1 } else { fd.as_raw_fd() };
        slot.events = *events;
    }
    // SAFETY: `set` is a live array of initialised pollfd structs and the count passed is
    // at most its length; the kernel writes only `revents`.
    let ret = unsafe { libc::poll(set.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    let mut out = [0; POLL_MAX];
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(out);
        }
        return Err(err);
    }
    for (o, s) in out.iter_mut().zip(set.iter()) {
        *o = s.revents;
    }
    Ok(out)
}

/// Most descriptors [`poll_many`] takes.
pub const POLL_MAX: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn pty_pair_carries_bytes_in_raw_mode() {
        let master = open_pty_master().unwrap();
        let path = ptsname(master.as_fd()).unwrap();
        assert!(path.starts_with("/dev/pts/"), "{path:?}");
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert!(is_tty(slave.as_fd()));
        make_raw(slave.as_fd(), Some(115_200)).unwrap();
        let mut m = std::fs::File::from(master);
        // Raw mode: a newline is not turned into CR LF, 0x03 is no signal, 0x11 no XON.
        (&slave).write_all(b"a\n\x03\x11").unwrap();
        let mut buf = [0u8; 16];
        let n = m.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"a\n\x03\x11");
        m.write_all(b"\r\x7f").unwrap();
        let n = (&slave).read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"\r\x7f");
    }

    #[test]
    fn odd_speeds_are_refused() {
        let master = open_pty_master().unwrap();
        let err = make_raw(master.as_fd(), Some(12_345)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn poll_many_reports_in_order() {
        let a = super::super::eventfd().unwrap();
        let b = super::super::eventfd().unwrap();
        std::fs::File::from(b.try_clone().unwrap())
            .write_all(&1u64.to_ne_bytes())
            .unwrap();
        let r = poll_many(&[(a.as_fd(), libc::POLLIN), (b.as_fd(), libc::POLLIN)], 10).unwrap();
        assert_eq!((r[0], r[1] & libc::POLLIN), (0, libc::POLLIN));
        // Not watched: not reported, even though readable.
        let r = poll_many(&[(a.as_fd(), libc::POLLIN), (b.as_fd(), 0)], 0).unwrap();
        assert_eq!((r[0], r[1]), (0, 0));
    }
}
