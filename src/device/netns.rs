//! Run setup work inside a named network namespace without moving the caller.
//!
//! A network namespace is a per-thread attribute, and a TUN/TAP adapter (and a socket)
//! belongs to the namespace of the thread that created it, for good. So vnetio opens
//! everything for a namespaced adapter on a short-lived thread that `setns`es into the
//! namespace and then exits: the calling (Python) thread never changes namespace.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use crate::error::{Error, VnetResult};
use crate::sys;

fn netns_path(name: &str) -> VnetResult<PathBuf> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "invalid network namespace name {name:?}: it must be a plain name as shown by `ip netns list`"
        )));
    }
    for dir in ["/run/netns", "/var/run/netns"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(Error::os(
        format!("network namespace {name:?}"),
        std::io::Error::from_raw_os_error(libc::ENOENT),
    )
    .with_hint(format!(
        "it does not exist; create it with `ip netns add {name}`"
    )))
}

/// Run `f` in network namespace `netns` (or right here when `None`).
pub fn run_in<T: Send>(
    netns: Option<&str>,
    f: impl FnOnce() -> VnetResult<T> + Send,
) -> VnetResult<T> {
    if netns.is_none() {
        return f();
    }
    run_on_thread(netns, f)
}

/// Run `f` on a short-lived thread of its own, in network namespace `netns` (`None`: the
/// caller's). For work that changes per-thread state beyond the network namespace (a
/// private mount namespace, see `sys::mounts`), which must never touch a caller's thread.
pub fn run_on_thread<T: Send>(
    netns: Option<&str>,
    f: impl FnOnce() -> VnetResult<T> + Send,
) -> VnetResult<T> {
    let ns = match netns {
        None => None,
        Some(name) => {
            let path = netns_path(name)?;
            let file =
                File::open(&path).map_err(|e| Error::os(format!("open {}", path.display()), e))?;
            Some((name, file))
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some((name, file)) = &ns {
                sys::setns_net(file.as_fd()).map_err(|e| {
                    Error::os(format!("setns into network namespace {name:?}"), e)
                        .with_hint("entering a network namespace needs CAP_SYS_ADMIN (run as root)")
                })?;
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::InvalidArgument(
                "internal panic while opening in namespace".into(),
            ))
        })
    })
}
