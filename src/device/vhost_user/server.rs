//! The supervisor thread: waits for a frontend (accepts, or connects in client mode),
//! runs one `VhostUserDaemon` per connection behind the ordering relay (`shim`), and when
//! the connection ends counts what it left behind and goes back to waiting. One daemon
//! per connection keeps nothing of a previous guest (rings, memory table, acknowledged
//! features) in the next session.

use std::os::fd::AsFd;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;

use super::backend::{Conn, NetBackend};
use super::shim::Relay;
use super::Shared;
use crate::sys;

/// How long the supervisor sleeps between checks for `close` while it waits.
const POLL_MS: libc::c_int = 200;
/// Pause between connection attempts in client mode.
const RECONNECT: Duration = Duration::from_millis(200);

/// Where connections come from.
pub(super) enum Endpoint {
    /// Listen on this socket (bound by `VhostUserNet::new`).
    Server(UnixListener),
    /// Connect to this socket.
    Client(PathBuf),
}

/// Wait up to `ms` for the listener to have a connection waiting (or for `close`).
/// Returns whether one is waiting.
fn wait_for_connection(shared: &Shared, listener: &UnixListener, ms: libc::c_int) -> bool {
    match sys::poll2(listener.as_fd(), libc::POLLIN, shared.wake.as_fd(), ms) {
        Ok((ready, woke)) => !woke && ready.readable,
        Err(e) => {
            shared.record_error(format!("poll the vhost-user socket: {e}"));
            std::thread::sleep(Duration::from_millis(POLL_MS as u64));
            false
        }
    }
}

/// Sleep `d`, waking early on `close`.
fn pause(shared: &Shared, d: Duration) {
    let _ = sys::poll2(
        shared.wake.as_fd(),
        libc::POLLIN,
        shared.wake.as_fd(),
        d.as_millis() as libc::c_int,
    );
}

/// The next frontend connection: accepted (server) or made (client). `None` when there
/// is none yet (try again) or the adapter is closing.
fn next_frontend(shared: &Shared, endpoint: &Endpoint) -> Option<UnixStream> {
    match endpoint {
        Endpoint::Server(l) => {
            if !wait_for_connection(shared, l, POLL_MS) {
                return None;
            }
            match l.accept() {
                Ok((stream, _)) => Some(stream),
                Err(e) => {
                    shared.record_error(format!("accept a vhost-user connection: {e}"));
                    None
                }
            }
        }
        Endpoint::Client(path) => {
            let stream = UnixStream::connect(path).ok();
            if stream.is_none() {
                // QEMU not (yet, or no longer) listening: try again shortly.
                pause(shared, RECONNECT);
            }
            stream
        }
    }
}

/// A listener on a private (abstract, per-process) address, and a stream already
/// connected to it: the backend crate accepts that stream, the relay holds the other end.
fn private_pair() -> std::io::Result<(Listener, UnixStream)> {
    use std::os::linux::net::SocketAddrExt;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "vnetio-vhost-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = UnixListener::bind_addr(&addr)?;
    let ours = UnixStream::connect_addr(&addr)?;
    Ok((Listener::from(listener), ours))
}

/// The supervisor loop; returns when the adapter is closed.
pub(super) fn run(shared: &Arc<Shared>, endpoint: &Endpoint) {
    let nvrings = 2 * shared.pairs.len();
    while !shared.is_closed() {
        let Some(frontend) = next_frontend(shared, endpoint) else {
            continue;
        };
        if shared.is_closed() {
            break;
        }
        let conn = Arc::new(Conn::new(nvrings));
        let backend = Arc::new(NetBackend::new(Arc::clone(shared), Arc::clone(&conn)));
        let mut daemon =
            match VhostUserDaemon::new("vnetio-vhost-user".into(), backend, conn.mem.clone()) {
                Ok(d) => d,
                Err(e) => {
                    shared.record_error(format!("start the vhost-user daemon: {e}"));
                    pause(shared, RECONNECT);
                    continue;
                }
            };
        let relay = private_pair().and_then(|(mut listener, ours)| {
            let relay = Relay::start(frontend, ours)?;
            // The connection is already queued: this accepts it at once.
            match daemon.start(&mut listener) {
                Ok(()) => Ok(relay),
                Err(e) => {
                    relay.stop();
                    Err(std::io::Error::other(e.to_string()))
                }
            }
        });
        let relay = match relay {
            Ok(r) => r,
            Err(e) => {
                stop_workers(&daemon);
                shared.record_error(format!("set up the vhost-user connection: {e}"));
                pause(shared, RECONNECT);
                continue;
            }
        };
        shared.attach(&conn, daemon.shutdown_handle());
        if shared.is_closed() {
            // close() ran before the shutdown handle was published.
            daemon.request_shutdown();
        }
        let result = daemon.wait();
        relay.stop();
        shared.detach(&conn);
        stop_workers(&daemon);
        if let Err(e) = result {
            shared.record_error(format!("vhost-user connection ended: {e}"));
        }
    }
}

/// End the daemon's vring worker threads (they wait on their exit eventfds).
fn stop_workers<T>(daemon: &VhostUserDaemon<T>)
where
    T: vhost_user_backend::VhostUserBackend + Clone + 'static,
    T::Bitmap: vhost_user_backend::bitmap::BitmapReplace
        + vm_memory::mmap::NewBitmap
        + Clone
        + Send
        + Sync,
    T::Vring: Clone + Send + Sync,
{
    for handler in daemon.get_epoll_handlers() {
        handler.send_exit_event();
    }
}
