//! The supervisor thread: waits for a frontend (accepts, or connects in client mode),
//! runs one `VhostUserDaemon` per connection, and when the connection ends counts what
//! it left behind and goes back to waiting. One daemon per connection keeps nothing of a
//! previous guest (rings, memory table, acknowledged features) in the next session.

use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;

use super::backend::{Conn, NetBackend};
use super::{sys, Shared};

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

/// The supervisor loop; returns when the adapter is closed.
pub(super) fn run(shared: &Arc<Shared>, endpoint: &Endpoint) {
    // The crate's listener wraps a duplicate of our socket: we poll ours (with the close
    // eventfd), the crate accepts on its own.
    let mut listener = match endpoint {
        Endpoint::Server(l) => match l.try_clone() {
            Ok(dup) => {
                let _ = dup.set_nonblocking(true);
                Some(Listener::from(dup))
            }
            Err(e) => {
                shared.record_error(format!("duplicate the vhost-user socket: {e}"));
                return;
            }
        },
        Endpoint::Client(_) => None,
    };
    let nvrings = 2 * shared.pairs.len();
    while !shared.is_closed() {
        if let Endpoint::Server(l) = endpoint {
            if !wait_for_connection(shared, l, POLL_MS) {
                continue;
            }
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
        let started = match (endpoint, listener.as_mut()) {
            (Endpoint::Server(_), Some(l)) => daemon.start(l),
            (Endpoint::Client(path), _) => daemon.start_client(path.to_str().unwrap_or_default()),
            (Endpoint::Server(_), None) => return,
        };
        if let Err(e) = started {
            stop_workers(&daemon);
            if matches!(endpoint, Endpoint::Server(_)) {
                shared.record_error(format!("accept a vhost-user connection: {e}"));
            }
            pause(shared, RECONNECT);
            continue;
        }
        shared.attach(&conn, daemon.shutdown_handle());
        if shared.is_closed() {
            // close() ran before the shutdown handle was published.
            daemon.request_shutdown();
        }
        let result = daemon.wait();
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
