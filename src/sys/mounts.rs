//! Reaching a macvtap's character device: a private mount namespace for the calling thread
//! (`unshare(CLONE_NEWNS)`), a sysfs and a tmpfs mounted in it (`mount(2)`), and the device
//! node made there (`mknod(2)`).
//!
//! Why: sysfs shows the network devices of the namespace that *mounted* it, so only a
//! sysfs mounted by a thread inside the macvtap's namespace tells its device numbers (as
//! `ip netns exec` does); and `/dev/tapN`, where devtmpfs or udev put it, is named after an
//! ifindex that is only unique per namespace. Everything here is meant for a short-lived
//! thread of vnetio's own: its mounts vanish with it.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cvt(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Give the *calling thread* a mount namespace of its own (a copy of the current one) in
/// which every mount is private, so mounts made afterwards are seen by this thread only
/// and never propagate back. Needs CAP_SYS_ADMIN. Call it only on a thread vnetio
/// spawned for the purpose, never on a caller's (Python) thread.
pub fn unshare_private_mounts() -> io::Result<()> {
    // SAFETY: unshare takes a flag word; with CLONE_NEWNS (which implies CLONE_FS) only
    // the calling thread's filesystem context and mount namespace change.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    // `mount --make-rprivate /`: no propagation to or from the namespace we copied.
    mount_raw(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE)
}

fn mount_raw(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
) -> io::Result<()> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is either null (allowed for source, fstype and data with the
    // flags used here) or a NUL-terminated string alive across the call.
    cvt(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            std::ptr::null(),
        )
    })
}

/// Mount a fresh filesystem of type `fstype` ("sysfs", "tmpfs") on `target`, with
/// nosuid and noexec. Meant for a thread after [`unshare_private_mounts`].
pub fn mount_fresh(fstype: &CStr, target: &Path) -> io::Result<()> {
    let target = cpath(target)?;
    mount_raw(
        Some(fstype),
        &target,
        Some(fstype),
        libc::MS_NOSUID | libc::MS_NOEXEC,
    )
}

/// `mknod(path, S_IFCHR | 0600, makedev(major, minor))`. Needs CAP_MKNOD and a filesystem
/// mounted without `nodev` for the node to be usable.
pub fn mknod_char(path: &Path, major: u32, minor: u32) -> io::Result<()> {
    let path = cpath(path)?;
    // SAFETY: `path` is a NUL-terminated string alive across the call; mode and device
    // number are plain integers.
    cvt(unsafe {
        libc::mknod(
            path.as_ptr(),
            libc::S_IFCHR | 0o600,
            libc::makedev(major, minor),
        )
    })
}

/// The (major, minor) numbers of a device number (`st_rdev`).
pub fn dev_numbers(rdev: u64) -> (u32, u32) {
    (libc::major(rdev), libc::minor(rdev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_round_trip() {
        assert_eq!(dev_numbers(libc::makedev(246, 3)), (246, 3));
        assert_eq!(dev_numbers(libc::makedev(10, 200)), (10, 200));
    }
}
