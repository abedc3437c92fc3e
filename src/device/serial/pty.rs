//! One pseudo-terminal: a master the relay reads and writes, a slave users open.
//!
//! The slave end is put in raw mode (bytes pass untouched: no echo, no CR/LF translation,
//! no XON/XOFF), and kept open by the relay itself. Without that, a master whose slave
//! nobody has open reports hang-up (`POLLHUP`, reads fail with EIO) until someone opens
//! it; with it, the line stays up while users come and go, and bytes sent meanwhile wait
//! in the slave's input queue (up to the kernel's few KiB, then the relay pushes back).
//! Users who want to start clean flush on open, as pyserial does.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, VnetResult};
use crate::sys::tty;

/// A pseudo-terminal pair: the master (non-blocking) and the slave, held open.
#[derive(Debug)]
pub struct Pty {
    master: File,
    slave: File,
    path: PathBuf,
}

impl Pty {
    /// Open a new pseudo-terminal, its slave in raw mode.
    pub fn open() -> VnetResult<Pty> {
        let master: OwnedFd = tty::open_pty_master().map_err(|e| {
            Error::os("posix_openpt", e).with_hint(
                "is devpts mounted at /dev/pts, and is the pty limit (/proc/sys/kernel/pty/max) \
                 reached?",
            )
        })?;
        let path = tty::ptsname(master.as_fd()).map_err(|e| Error::os("ptsname", e))?;
        let slave = open_tty(&path)?;
        tty::make_raw(slave.as_fd(), None)
            .map_err(|e| Error::os(format!("raw mode on {}", path.display()), e))?;
        tty::set_nonblocking(master.as_fd()).map_err(|e| Error::os("O_NONBLOCK on pty", e))?;
        Ok(Pty {
            master: File::from(master),
            slave,
            path,
        })
    }

    /// The slave's path, `/dev/pts/N`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The master end.
    pub fn master(&self) -> &File {
        &self.master
    }

    /// The slave end the relay holds open.
    pub fn slave(&self) -> BorrowedFd<'_> {
        self.slave.as_fd()
    }
}

/// Open a terminal device read-write, non-blocking, without making it the controlling
/// terminal, close-on-exec.
pub fn open_tty(path: &Path) -> VnetResult<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::os(format!("open {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn slave_bytes_reach_the_master_raw() {
        let pty = Pty::open().unwrap();
        let user = open_tty(pty.path()).unwrap();
        (&user).write_all(b"x\ny\x13").unwrap();
        // The bytes reach the master through the tty layer's work queue, in its own time
        // (a fixed wait is a bet on a loaded machine): read until they are all in.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut got = Vec::new();
        let mut buf = [0u8; 8];
        while got.len() < 5 && std::time::Instant::now() < deadline {
            let _ = tty::poll_many(&[(pty.master().as_fd(), libc::POLLIN)], 50);
            match pty.master().read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        assert_eq!(got, b"x\ny\x13");
    }

    #[test]
    fn master_stays_up_without_users() {
        let pty = Pty::open().unwrap();
        // No user has the slave open: still no hang-up, and a read finds nothing yet.
        let mut buf = [0u8; 8];
        let err = pty.master().read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    }
}
