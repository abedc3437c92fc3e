//! A vhost-user virtio-net backend: vnetio as the other end of a virtual machine's
//! virtio-net NIC.
//!
//! [`VhostUserNet`] serves the vhost-user protocol on a Unix socket (QEMU's
//! `-chardev socket,path=SOCK -netdev vhost-user,chardev=…`): it listens and QEMU connects
//! (server mode), or it connects to a socket QEMU listens on and reconnects whenever QEMU
//! restarts (client mode). Like a TAP adapter it is a [`Device`]: `recv_batch` returns the
//! frames the guest transmitted (the guest's TX queue), `send_frames`/`send_frames_meta`
//! put frames into the buffers the guest posted on its RX queue. With `queues=N` each
//! queue pair is a [`VhostQueue`]; the adapter itself works on pair 0, as a TAP adapter
//! works on its first queue.
//!
//! Built on rust-vmm's crates: `vhost` and `vhost-user-backend` speak the protocol and
//! map the guest's memory, `virtio-queue` walks the rings, `vm-memory` bounds every guest
//! memory access. The protocol runs on the crates' threads (one for the socket, one for
//! vring events). Frames the guest transmits are copied out of guest memory once, by the
//! vring worker thread at the guest's kick (into a staging batch the reader's
//! [`PacketBatch`] is swapped with) or by the reader when that is full; frames to the
//! guest are copied into its buffers by the sender's own thread: one copy per frame each
//! way (see `ring`).
//!
//! A guest that disconnects, reboots or reloads its driver leaves the adapter usable: the
//! backend accepts (or makes) the next connection. Frames the guest had queued but the
//! adapter had not taken when that happened are counted as lost (`rx_dropped`, and
//! [`VhostStats::lost`]); frames sent while no guest is there, or while it has no
//! buffers posted, are counted as dropped. Descriptor chains that make no sense are
//! refused and counted ([`VhostStats::guest_tx_faults`], [`VhostStats::guest_rx_faults`]).

mod backend;
pub mod features;
mod options;
mod queue;
pub mod ring;
mod server;
mod shim;

pub use options::{Options, SocketMode, VhostStats};
pub use queue::VhostQueue;
use queue::{set_user_filter, SendLocal};

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vhost_user_backend::ShutdownHandle;

use self::backend::Conn;
use super::loopback::Overflow;
use super::tuntap::RxMode;
use super::{Counters, Device, Stats};
use crate::batch::PacketBatch;
use crate::error::{Error, VnetResult};
use crate::filter::bpf::Program;
use crate::filter::{Placement, UserFilter};
use crate::sys;
use crate::wire::vnet::VnetHdr;
use crate::wire::Medium;

/// How often a waiting receiver looks at the guest's ring without being signalled.
const RECHECK: Duration = Duration::from_millis(100);

/// Most queue pairs a backend serves (the backend crate maps vrings to its worker
/// thread with a 32-bit mask: 16 pairs).
pub const MAX_QUEUE_PAIRS: usize = 16;

/// Fixed settings shared by the data path and the protocol side.
struct Config {
    offered: u64,
    mac: [u8; 6],
    mtu: usize,
    pairs: usize,
    rx_mode: RxMode,
    send_timeout: Duration,
    overflow: Overflow,
}

impl Config {
    /// `struct virtio_net_config`: mac, status (link up), max_virtqueue_pairs, mtu,
    /// speed (unknown), duplex (unknown).
    fn config_space(&self) -> [u8; 17] {
        let mut c = [0u8; 17];
        c[..6].copy_from_slice(&self.mac);
        c[6..8].copy_from_slice(&1u16.to_le_bytes());
        c[8..10].copy_from_slice(&(self.pairs as u16).to_le_bytes());
        c[10..12].copy_from_slice(&(self.mtu as u16).to_le_bytes());
        c[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        c[16] = 0xff;
        c
    }
}

#[derive(Debug, Default)]
struct PairFlags {
    /// The guest kicked its TX queue (or frames were left there): frames may be waiting.
    tx_pending: bool,
    /// Bumped on every guest RX kick (buffers posted).
    refills: u64,
    /// This pair's [`VhostQueue`] was closed.
    closed: bool,
}

/// Most frames the vring worker thread takes from a guest TX ring ahead of the reader.
/// Beyond that the frames wait in the ring (the guest then stops, as on a full ring), and
/// the reader takes them itself.
const STAGE_FRAMES: usize = 256;

/// Frames the vring worker thread took from the guest's TX ring when it kicked, waiting
/// for the reader (`recv_batch`). Taking them at the kick hands the guest its buffers
/// back (and its interrupt) without waiting for the reader's thread to be woken and run:
/// under emulation the guest waits for that round trip.
#[derive(Default)]
struct Staged {
    batch: PacketBatch,
    /// Scratch space of the ring walk (offload splitting), shared by both takers.
    scratch: Vec<u8>,
    /// Frames refused while taking (counted in the queue's `rx_errors` when handed over).
    refused: u64,
}

impl Staged {
    /// Move up to `max` staged frames to the end of `batch`, oldest first. Returns how
    /// many. An empty `batch` taking all of them gets the staged arena itself (no copy).
    fn move_into(&mut self, batch: &mut PacketBatch, max: usize) -> usize {
        let n = self.batch.len().min(max);
        if n == 0 {
            return 0;
        }
        if batch.is_empty() && n == self.batch.len() {
            std::mem::swap(batch, &mut self.batch);
            self.batch.clear();
            return n;
        }
        for i in 0..n {
            if let (Some(frame), Some(ts)) = (self.batch.get(i), self.batch.timestamp_ns(i)) {
                batch.push_with(frame, ts, self.batch.hdr(i));
            }
        }
        let mut seen = 0usize;
        self.batch.retain_from(0, |_, _| {
            seen += 1;
            if seen > n {
                u32::MAX // kept whole
            } else {
                0
            }
        });
        n
    }
}

/// Signals of one queue pair, raised by the vring worker thread.
struct PairSignals {
    flags: Mutex<PairFlags>,
    cond: Condvar,
    /// Readable while guest TX frames may be waiting (level-triggered by hand).
    ready: File,
    /// Guest TX frames taken at the kick, not yet received. Locked before the TX vring.
    staged: Mutex<Staged>,
}

impl PairSignals {
    fn new() -> VnetResult<Self> {
        Ok(PairSignals {
            flags: Mutex::new(PairFlags::default()),
            cond: Condvar::new(),
            ready: File::from(sys::eventfd().map_err(|e| Error::os("eventfd", e))?),
            staged: Mutex::new(Staged::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PairFlags> {
        self.flags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_tx_pending(&self, pending: bool) {
        let mut f = self.lock();
        if f.tx_pending == pending {
            return;
        }
        f.tx_pending = pending;
        if pending {
            let _ = (&self.ready).write(&1u64.to_ne_bytes());
            self.cond.notify_all();
        } else {
            let mut buf = [0u8; 8];
            let _ = (&self.ready).read(&mut buf);
        }
    }

    fn raise_tx(&self) {
        self.set_tx_pending(true);
    }

    fn raise_refill(&self) {
        self.lock().refills += 1;
        self.cond.notify_all();
    }

    /// Wake everyone waiting on this pair (close, disconnect).
    fn wake_all(&self) {
        let _ = (&self.ready).write(&1u64.to_ne_bytes());
        let _guard = self.lock();
        self.cond.notify_all();
    }
}

/// What the adapter, its queues and the protocol threads share.
pub(crate) struct Shared {
    cfg: Config,
    pairs: Vec<PairSignals>,
    conn: RwLock<Option<Arc<Conn>>>,
    shutdown: Mutex<Option<ShutdownHandle>>,
    /// Bumped on every connection state change; `wait_connected` waits on it.
    state: Mutex<u64>,
    state_cond: Condvar,
    closed: AtomicBool,
    /// Wakes the supervisor thread out of its poll on close.
    wake: File,
    stats: Mutex<VhostStats>,
    /// The last error the protocol side met (for diagnostics).
    last_error: Mutex<Option<String>>,
    filter: UserFilter,
    /// Frames lost per pair (counted in that queue's `rx_dropped`).
    lost: Vec<Counters>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    fn current(&self) -> Option<Arc<Conn>> {
        self.conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn state_changed(&self) {
        *lock(&self.state) += 1;
        self.state_cond.notify_all();
    }

    fn stat(&self, f: impl FnOnce(&mut VhostStats)) {
        f(&mut lock(&self.stats));
    }

    fn count_lost(&self, pair: usize, frames: u64) {
        self.stat(|s| s.lost += frames);
        if let Some(c) = self.lost.get(pair) {
            c.rx_drop(frames as usize);
        }
    }

    fn record_error(&self, what: String) {
        *lock(&self.last_error) = Some(what);
    }

    /// A connection started.
    fn attach(&self, conn: &Arc<Conn>, handle: Option<ShutdownHandle>) {
        *self
            .conn
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(conn));
        *lock(&self.shutdown) = handle;
        self.stat(|s| s.connections += 1);
        self.state_changed();
    }

    /// A connection ended: count what it leaves behind and wake everyone waiting.
    fn detach(&self, conn: &Arc<Conn>) {
        *self
            .conn
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        *lock(&self.shutdown) = None;
        for pair in 0..self.pairs.len() {
            // Lost frames are only known per ring; count them on their pair.
            let lost = conn.lost_at_end(2 * pair + 1);
            if lost > 0 {
                self.count_lost(pair, lost);
            }
        }
        self.stat(|s| s.disconnects += 1);
        for p in &self.pairs {
            let _guard = p.lock();
            p.cond.notify_all();
        }
        self.state_changed();
    }

    /// Whether a guest driver has queue pair `pair` running.
    fn pair_live(&self, pair: usize) -> bool {
        self.current()
            .is_some_and(|c| c.live(2 * pair) && c.live(2 * pair + 1))
    }
}

/// A vhost-user virtio-net backend (see the module documentation).
pub struct VhostUserNet {
    shared: Arc<Shared>,
    queues: Vec<Arc<VhostQueue>>,
    socket: PathBuf,
    mode: SocketMode,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl VhostUserNet {
    /// Create the backend and start serving `opts.socket` (server mode: the socket exists
    /// when this returns, so QEMU can be started right after).
    ///
    /// # Errors
    /// `InvalidArgument` for options out of range; `Os` when the socket cannot be bound
    /// (another backend listening on it is `EADDRINUSE`) or a thread cannot be started.
    pub fn new(opts: &Options) -> VnetResult<Self> {
        if !(1..=MAX_QUEUE_PAIRS).contains(&opts.queues) {
            return Err(Error::InvalidArgument(format!(
                "queues must be between 1 and {MAX_QUEUE_PAIRS}, not {}",
                opts.queues
            )));
        }
        if !(68..=65_535).contains(&opts.mtu) {
            return Err(Error::InvalidArgument(format!(
                "mtu must be between 68 and 65535, not {}",
                opts.mtu
            )));
        }
        if opts.mac[0] & 1 == 1 {
            return Err(Error::InvalidArgument(
                "mac must be a unicast address (lowest bit of the first byte clear)".into(),
            ));
        }
        if opts.mode == SocketMode::Client && opts.socket.to_str().is_none() {
            return Err(Error::InvalidArgument(
                "in client mode the socket path must be valid UTF-8".into(),
            ));
        }
        let endpoint = match opts.mode {
            SocketMode::Server => server::Endpoint::Server(bind(&opts.socket)?),
            SocketMode::Client => server::Endpoint::Client(opts.socket.clone()),
        };
        let pairs = (0..opts.queues)
            .map(|_| PairSignals::new())
            .collect::<VnetResult<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            cfg: Config {
                offered: features::offered(opts.offload, opts.queues),
                mac: opts.mac,
                mtu: opts.mtu,
                pairs: opts.queues,
                rx_mode: opts.rx_mode,
                send_timeout: opts.send_timeout,
                overflow: opts.overflow,
            },
            pairs,
            conn: RwLock::new(None),
            shutdown: Mutex::new(None),
            state: Mutex::new(0),
            state_cond: Condvar::new(),
            closed: AtomicBool::new(false),
            wake: File::from(sys::eventfd().map_err(|e| Error::os("eventfd", e))?),
            stats: Mutex::new(VhostStats::default()),
            last_error: Mutex::new(None),
            filter: UserFilter::default(),
            lost: (0..opts.queues).map(|_| Counters::default()).collect(),
        });
        let queues = (0..opts.queues)
            .map(|index| {
                Arc::new(VhostQueue {
                    index,
                    shared: Arc::clone(&shared),
                    counters: Counters::default(),
                    send_local: Mutex::new(SendLocal::default()),
                })
            })
            .collect();
        let thread_shared = Arc::clone(&shared);
        let supervisor = std::thread::Builder::new()
            .name("vnetio-vhost".into())
            .spawn(move || server::run(&thread_shared, &endpoint))
            .map_err(|e| Error::os("start the vhost-user thread", e))?;
        Ok(VhostUserNet {
            shared,
            queues,
            socket: opts.socket.clone(),
            mode: opts.mode,
            supervisor: Mutex::new(Some(supervisor)),
        })
    }

    /// The queue pairs.
    pub fn queues(&self) -> &[Arc<VhostQueue>] {
        &self.queues
    }

    /// The vhost-user socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The feature bits offered to the frontend.
    pub fn offered_features(&self) -> u64 {
        self.shared.cfg.offered
    }

    /// The feature bits the guest driver negotiated (0 while no driver is there).
    pub fn features(&self) -> u64 {
        self.shared.current().map_or(0, |c| c.acked())
    }

    /// Whether a guest driver is running queue pair 0 (frames can flow).
    pub fn connected(&self) -> bool {
        self.shared.pair_live(0)
    }

    /// Wait up to `timeout` for [`VhostUserNet::connected`]. Returns whether it is.
    ///
    /// # Errors
    /// `Closed` if the adapter is closed before or while waiting.
    pub fn wait_connected(&self, timeout: Duration) -> VnetResult<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.is_closed() {
                return Err(Error::Closed);
            }
            if self.connected() {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // A short slice: a ring becoming ready is signalled, but checking again now
            // and then costs nothing and covers any transition that is not.
            let slice = (deadline - now).min(Duration::from_millis(50));
            let guard = lock(&self.shared.state);
            let _ = self
                .shared
                .state_cond
                .wait_timeout(guard, slice)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Counters beyond [`Stats`].
    pub fn vhost_stats(&self) -> VhostStats {
        *lock(&self.shared.stats)
    }

    /// The last error the protocol side met (a frontend that sent something invalid, a
    /// connection that could not be made), if any.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }
}

/// Bind the server socket. A stale socket file (nobody listening) is replaced; a live
/// one is an error.
fn bind(path: &Path) -> VnetResult<UnixListener> {
    let step = || format!("bind the vhost-user socket {}", path.display());
    match UnixListener::bind(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let stale = matches!(
                UnixStream::connect(path),
                Err(ref c) if c.kind() == std::io::ErrorKind::ConnectionRefused
            );
            let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt;
                m.file_type().is_socket()
            });
            if !(stale && is_socket) {
                return Err(Error::os(step(), e).with_hint(
                    "another backend is listening on this socket, or it is not a socket",
                ));
            }
            std::fs::remove_file(path).map_err(|e| Error::os(step(), e))?;
            UnixListener::bind(path).map_err(|e| Error::os(step(), e))
        }
        Err(e) => Err(Error::os(step(), e)),
    }
}

impl Device for VhostUserNet {
    fn medium(&self) -> Medium {
        Medium::Ethernet
    }

    fn mtu(&self) -> usize {
        self.shared.cfg.mtu
    }

    fn recv_batch(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        self.queues[0].recv_batch(batch, max, wait)
    }

    fn send_frames(&self, frames: &[&[u8]]) -> VnetResult<usize> {
        self.queues[0].send_frames(frames)
    }

    fn send_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<usize> {
        self.queues[0].send_frames_meta(frames, hdrs)
    }

    fn set_filter(
        &self,
        program: Option<Program>,
        placement: Option<Placement>,
    ) -> VnetResult<Option<Placement>> {
        set_user_filter(&self.shared, program, placement)
    }

    fn filter_placement(&self) -> Option<Placement> {
        self.shared.filter.is_set().then_some(Placement::Userspace)
    }

    /// The sum over all queue pairs.
    fn stats(&self) -> VnetResult<Stats> {
        let mut total = Stats {
            rx_filtered: Some(self.shared.filter.rejected()),
            ..Stats::default()
        };
        for q in &self.queues {
            let s = q.stats_snapshot();
            total.rx_frames += s.rx_frames;
            total.rx_bytes += s.rx_bytes;
            total.tx_frames += s.tx_frames;
            total.tx_bytes += s.tx_bytes;
            total.rx_errors += s.rx_errors;
            total.tx_errors += s.tx_errors;
            total.rx_dropped += s.rx_dropped;
            total.tx_dropped += s.tx_dropped;
        }
        Ok(total)
    }

    fn close(&self) {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(h) = lock(&self.shared.shutdown).take() {
            h.shutdown();
        }
        let _ = (&self.shared.wake).write(&1u64.to_ne_bytes());
        for p in &self.shared.pairs {
            p.wake_all();
        }
        self.shared.state_changed();
        let handle = lock(&self.supervisor).take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        if self.mode == SocketMode::Server {
            let _ = std::fs::remove_file(&self.socket);
        }
    }

    fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    fn raw_fd(&self) -> VnetResult<RawFd> {
        self.queues[0].raw_fd()
    }
}

impl Drop for VhostUserNet {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests;
