//! TUN (layer 3) and TAP (layer 2) adapters on `/dev/net/tun`.
//!
//! An adapter has one or more queues (one file descriptor each; more than one needs
//! IFF_MULTI_QUEUE). Descriptors are non-blocking and close-on-exec; waiting is done with
//! `poll` on the descriptor plus an eventfd that `close()` signals, so a thread blocked in
//! receive returns promptly when another thread closes the adapter. A descriptor is
//! released only after every call using it has returned (a read lock per call, the write
//! lock to close), so a number can never be reused under a running `read`.

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use super::netlink::{LinkStats, Netlink};
use super::sys::{self, IfName};
use super::{
    check_meta, netns, now_ns, send_in_software, validate_ifname, Counters, Device, Medium,
    Placement, Stats, UserFilter,
};
use crate::batch::{PacketBatch, MAX_FRAME};
use crate::bpf::Program;
use crate::error::{Error, VnetResult};
use crate::gro;
use crate::vnet::{complete_csum, gso, segment, VnetHdr, F_NEEDS_CSUM, VNET_HDR_LEN};

/// Where the TUN driver lives.
pub const TUN_PATH: &str = "/dev/net/tun";
/// Largest queue length `set_queue_length` takes: the kernel allocates a pointer per slot
/// per queue, so this is 8 MiB of ring (the queued frames themselves cost more).
pub const MAX_QUEUE_LENGTH: u32 = 1 << 20;

/// How to open an adapter.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Name or `%d` pattern (`"vn%d"`).
    pub name: String,
    /// TAP (Ethernet) or TUN (IP).
    pub medium: Medium,
    /// Number of queues; more than one sets IFF_MULTI_QUEUE.
    pub queues: usize,
    /// Make the adapter outlive this process (TUNSETPERSIST).
    pub persist: bool,
    /// Network namespace (as in `ip netns list`) to create or attach in.
    pub netns: Option<String>,
    /// User allowed to attach without CAP_NET_ADMIN (TUNSETOWNER).
    pub owner: Option<u32>,
    /// Group allowed to attach without CAP_NET_ADMIN (TUNSETGROUP).
    pub group: Option<u32>,
    /// MTU to set once open.
    pub mtu: Option<u32>,
    /// Turn on virtio-net headers and kernel offloads (checksum, TSO, USO).
    pub offload: bool,
    /// How frames are received when `offload` is on.
    pub rx_mode: RxMode,
}

/// How an offload adapter hands received frames to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RxMode {
    /// As they would cross a wire: partial checksums completed, super-frames split.
    #[default]
    Segments,
    /// Intact, with their offload metadata (for forwarding at full speed).
    Superframes,
}

/// The TUN_F_* masks tried, richest first: the kernel refuses a mask with any flag it does
/// not know, so older kernels fall through to a smaller one.
const OFFLOAD_MASKS: [libc::c_uint; 3] = [
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_USO4 | libc::TUN_F_USO6,
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6,
    libc::TUN_F_CSUM,
];

/// Names of the TUN_F_* bits in `mask`.
pub fn offload_names(mask: u32) -> Vec<&'static str> {
    [
        (libc::TUN_F_CSUM, "csum"),
        (libc::TUN_F_TSO4, "tso4"),
        (libc::TUN_F_TSO6, "tso6"),
        (libc::TUN_F_USO4, "uso4"),
        (libc::TUN_F_USO6, "uso6"),
    ]
    .into_iter()
    .filter(|(bit, _)| mask & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

impl OpenOptions {
    /// Defaults: one queue, not persistent, caller's namespace.
    pub fn new(name: &str, medium: Medium) -> Self {
        OpenOptions {
            name: name.to_owned(),
            medium,
            queues: 1,
            persist: false,
            netns: None,
            owner: None,
            group: None,
            mtu: None,
            offload: false,
            rx_mode: RxMode::Segments,
        }
    }
}

fn name_str(name: &IfName) -> String {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

fn open_dev() -> VnetResult<File> {
    FsOpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK) // std adds O_CLOEXEC
        .open(TUN_PATH)
        .map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::ENOENT) => "the TUN driver is missing: `modprobe tun` (or create the node: `mknod /dev/net/tun c 10 200`)",
                Some(libc::EACCES | libc::EPERM) => {
                    "this user may not open /dev/net/tun: run as root, or give the device node mode 0666 \
                     (and have root create a persistent adapter with owner=<your uid>)"
                }
                _ => "see `vnetio doctor`",
            };
            Error::os(format!("open {TUN_PATH}"), e).with_hint(hint)
        })
}

/// "; vn0 belongs to uid 1000 / gid 100" for an existing adapter with an owner or group,
/// read over rtnetlink so it works inside any namespace.
/// The name of user or group `id` from a passwd/group-format file (local accounts only;
/// an id without an entry, e.g. from LDAP, is shown as a number).
fn id_name(db: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(db).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()?.parse::<u32>().ok()? == id).then(|| name.to_owned())
    })
}

fn owner_note(name: &str, nl: &mut Netlink) -> String {
    let links = nl.links().unwrap_or_default();
    let Some(tun) = links
        .into_iter()
        .find(|l| l.name == name)
        .and_then(|l| l.tun)
    else {
        return String::new();
    };
    let who = |id: Option<u32>, db: &str| {
        id.map_or_else(
            || "none".to_owned(),
            |v| match id_name(db, v) {
                Some(n) => format!("{v} ({n})"),
                None => v.to_string(),
            },
        )
    };
    if tun.owner.is_none() && tun.group.is_none() {
        format!("; {name} has no owner or group set, so only CAP_NET_ADMIN may attach")
    } else {
        format!(
            "; {name} belongs to uid {} / gid {}",
            who(tun.owner, "/etc/passwd"),
            who(tun.group, "/etc/group")
        )
    }
}

fn setiff_error(e: io::Error, name: &str, opts: &OpenOptions, nl: &mut Netlink) -> Error {
    let step = format!("TUNSETIFF {name}");
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => format!(
            "creating or attaching to a TUN/TAP adapter needs CAP_NET_ADMIN, unless the adapter is \
             persistent and owned by this user or group (have root create it with owner=<uid> / \
             `vnetio create {name} --{} --owner USER`){}",
            opts.medium.as_str(),
            owner_note(name, nl)
        ),
        Some(libc::EBUSY) => format!(
            "{name} is already attached by another process (a single-queue adapter takes one open \
             file); close the other user, or create the adapter with queues>1"
        ),
        Some(libc::EINVAL) => format!(
            "{name} exists with other settings: it is not a {} adapter, or its multi-queue setting \
             differs from queues={} (IFF_MULTI_QUEUE must match how it was created); open it with \
             matching options or delete it (`{ip} link del {name}` or `vnetio delete {name}{ns}`)",
            opts.medium.as_str().to_uppercase(),
            opts.queues,
            ip = opts.netns.as_deref().map_or_else(|| "ip".to_owned(), |n| format!("ip -n {n}")),
            ns = opts.netns.as_deref().map_or_else(String::new, |n| format!(" --netns {n}")),
        ),
        _ => String::new(),
    };
    let err = Error::os(step, e);
    if hint.is_empty() {
        err
    } else {
        err.with_hint(hint)
    }
}

/// How long a cached MTU is trusted before a send re-reads it (an outside
/// `ip link set … mtu` is seen within this time; one ioctl per send call at most).
const MTU_TTL_NS: u64 = 1_000_000;

/// The adapter's control socket (in its namespace) and its MTU cache, shared by the
/// adapter and its queues.
struct Link {
    ctl: OwnedFd,
    ifname: IfName,
    mtu: AtomicUsize,
    checked_ns: AtomicU64,
    /// The filter run in this process (TUN, or a TAP whose kernel filter was refused).
    filter: UserFilter,
}

impl Link {
    fn refresh_mtu(&self) -> io::Result<u32> {
        let mtu = sys::if_get_mtu(self.ctl.as_fd(), &self.ifname)?;
        self.store_mtu(mtu);
        Ok(mtu)
    }

    fn store_mtu(&self, mtu: u32) {
        self.mtu.store(mtu as usize, Ordering::Relaxed);
        self.checked_ns.store(now_ns(), Ordering::Relaxed);
    }

    /// The MTU, re-read from the kernel when the cached value is older than MTU_TTL_NS.
    fn current_mtu(&self) -> usize {
        if now_ns().saturating_sub(self.checked_ns.load(Ordering::Relaxed)) > MTU_TTL_NS {
            let _ = self.refresh_mtu(); // on failure (adapter gone) keep the last value
        }
        self.mtu.load(Ordering::Relaxed)
    }

    /// Check frames against the MTU; before refusing one, re-read the MTU once in case it
    /// was raised outside vnetio since the last read.
    fn check_frames(&self, medium: Medium, frames: &[&[u8]]) -> VnetResult<()> {
        let mut mtu = self.current_mtu();
        let mut refreshed = false;
        for (index, frame) in frames.iter().enumerate() {
            if let Err(reason) = medium.check_frame(frame, mtu) {
                if !refreshed {
                    refreshed = true;
                    if let Ok(fresh) = self.refresh_mtu() {
                        mtu = fresh as usize;
                        if medium.check_frame(frame, mtu).is_ok() {
                            continue;
                        }
                    }
                }
                let reason = medium.check_frame(frame, mtu).err().unwrap_or(reason);
                return Err(Error::BadFrame { index, reason });
            }
        }
        Ok(())
    }
}

/// Open /dev/net/tun and attach it (TUNSETIFF) to `ifname`, with the virtio-net header
/// set up on offload adapters. Returns the descriptor and the adapter's actual name.
fn attach_queue(
    ifname: &IfName,
    flags: libc::c_int,
    opts: &OpenOptions,
    nl: &mut Netlink,
) -> VnetResult<(File, IfName)> {
    let file = open_dev()?;
    let actual = sys::tun_set_iff(file.as_fd(), ifname, flags as libc::c_short)
        .map_err(|e| setiff_error(e, &name_str(ifname), opts, nl))?;
    if opts.offload {
        let step = |what: &str| format!("{what} {}", name_str(&actual));
        sys::tun_set_vnet_hdr_sz(file.as_fd(), VNET_HDR_LEN as libc::c_int)
            .map_err(|e| Error::os(step("TUNSETVNETHDRSZ"), e))?;
        // virtio 1.0 headers are little-endian; a little-endian host needs nothing (and a
        // kernel without cross-endian support refuses the ioctl there).
        if let Err(e) = sys::tun_set_vnet_le(file.as_fd()) {
            if cfg!(target_endian = "big") {
                return Err(Error::os(step("TUNSETVNETLE"), e));
            }
        }
    }
    Ok((file, actual))
}

/// Set the device-wide offload mask. It outlives descriptors, so it is set on every open
/// to what this open can handle: the richest mask the kernel accepts with `offload`, else
/// 0 (a previous owner's mask would hand a plain reader super-frames).
fn set_offload_mask(first: BorrowedFd<'_>, opts: &OpenOptions, name: &str) -> VnetResult<u32> {
    if opts.offload {
        Ok(OFFLOAD_MASKS
            .iter()
            .copied()
            .find(|&mask| sys::tun_set_offload(first, mask).is_ok())
            .unwrap_or(0))
    } else {
        sys::tun_set_offload(first, 0)
            .map_err(|e| Error::os(format!("TUNSETOFFLOAD 0 {name}"), e))?;
        Ok(0)
    }
}

/// One queue: one descriptor of an adapter.
pub struct Queue {
    file: RwLock<Option<File>>,
    raw: RawFd,
    wake: File,
    closed: AtomicBool,
    counters: Counters,
    medium: Medium,
    link: Arc<Link>,
    index: usize,
    name: String,
    /// `Some` on offload adapters: frames carry a virtio-net header.
    vnet: Option<VnetState>,
    /// Set once the kernel refused a merged super-frame write (EINVAL).
    coalesce_off: AtomicBool,
    coalesced: AtomicU64,
    coalesce_fallbacks: AtomicU64,
}

/// Per-queue state of an offload (IFF_VNET_HDR) adapter.
struct VnetState {
    rx_mode: RxMode,
    /// TUN_F_* offloads the kernel accepted (what our writes may use).
    offloads: u32,
    /// Where a received super-frame is held while it is split (segments mode).
    scratch: Mutex<Vec<u8>>,
    /// Where a super-frame is merged before it is written.
    tx_scratch: Mutex<Vec<u8>>,
}

impl Queue {
    /// Position of this queue in its adapter.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The adapter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn close_fd(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake pollers first (the eventfd stays readable), then wait for running calls
        // to leave before the descriptor is released.
        let _ = (&self.wake).write(&1u64.to_ne_bytes());
        let mut file = self
            .file
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *file = None;
    }

    /// Wait up to `wait` for `events` on the descriptor. `Ok(false)` on timeout.
    fn wait_for(&self, file: &File, events: libc::c_short, wait: Duration) -> VnetResult<bool> {
        let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
        // Round sub-millisecond waits up so a tiny timeout still polls once.
        let ms = if ms == 0 && !wait.is_zero() { 1 } else { ms };
        let (ready, woke) = sys::poll2(file.as_fd(), events, self.wake.as_fd(), ms)
            .map_err(|e| Error::os(format!("poll {}", self.name), e))?;
        if woke || self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(ready.readable || ready.writable || ready.error)
    }
}

impl Device for Queue {
    fn medium(&self) -> Medium {
        self.medium
    }

    fn mtu(&self) -> usize {
        self.link.current_mtu()
    }

    fn check_frames(&self, frames: &[&[u8]]) -> VnetResult<()> {
        self.link.check_frames(self.medium, frames)
    }

    fn recv_batch(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        let (n, bytes) = self
            .link
            .filter
            .recv(batch, max, wait, |b, m, w| self.recv_raw(b, m, w))?;
        self.counters.rx(n, bytes);
        Ok(n)
    }

    fn send_frames(&self, frames: &[&[u8]]) -> VnetResult<usize> {
        self.write_frames(frames, None)
    }

    fn send_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<usize> {
        match &self.vnet {
            // The kernel takes the metadata as it is, when it accepts every offload used.
            Some(v)
                if hdrs
                    .iter()
                    .flatten()
                    .all(|h| offload_accepted(v.offloads, *h)) =>
            {
                self.write_frames(frames, Some(hdrs))
            }
            _ => send_in_software(self, frames, hdrs),
        }
    }

    fn check_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<()> {
        check_meta(
            self.medium,
            self.link.current_mtu(),
            frames,
            hdrs,
            |plain| self.link.check_frames(self.medium, plain),
        )
    }

    fn stats(&self) -> VnetResult<Stats> {
        let mut s = self.counters.snapshot();
        (s.tx_coalesced, s.coalesce_fallbacks) = self.coalesce_counts();
        Ok(s)
    }

    fn close(&self) {
        self.close_fd();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn raw_fd(&self) -> VnetResult<RawFd> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(self.raw)
    }
}

/// Whether an adapter with TUN_F_* `offloads` on takes a frame with `hdr` as it is.
fn offload_accepted(offloads: u32, hdr: VnetHdr) -> bool {
    let need = match hdr.kind() {
        gso::TCPV4 => libc::TUN_F_TSO4,
        gso::TCPV6 => libc::TUN_F_TSO6,
        gso::UDP_L4 => libc::TUN_F_USO4 | libc::TUN_F_USO6,
        _ => 0,
    };
    let csum = if hdr.flags & F_NEEDS_CSUM != 0 {
        libc::TUN_F_CSUM
    } else {
        0
    };
    offloads & need == need && offloads & csum == csum
}

impl Queue {
    /// Receive without filtering; counts only errors.
    fn recv_raw(&self, batch: &mut PacketBatch, max: usize, wait: Duration) -> VnetResult<usize> {
        let guard = self
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = guard.as_ref().ok_or(Error::Closed)?;
        let deadline = Instant::now() + wait;
        let mut n = 0;
        while n < max {
            match self.read_one(file, batch) {
                Ok((frames, _)) => n += frames,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A malformed frame from the kernel: counted in rx_errors, skipped.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if n > 0 {
                        break;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || !self.wait_for(file, libc::POLLIN, left)? {
                        break;
                    }
                }
                Err(e) => {
                    self.counters.rx_error();
                    if n > 0 {
                        break; // deliver what we have; the error repeats on the next call
                    }
                    return Err(Error::os(format!("read from {}", self.name), e));
                }
            }
        }
        Ok(n)
    }

    /// Read one frame into `batch`: (frames appended, bytes appended). On an offload
    /// adapter in segments mode one read may append many frames.
    fn read_one(&self, file: &File, batch: &mut PacketBatch) -> io::Result<(usize, usize)> {
        let Some(v) = &self.vnet else {
            let len = (&*file).read(batch.recv_slot(MAX_FRAME))?;
            batch.commit(len, now_ns());
            return Ok((1, len));
        };
        let mut raw_hdr = [0u8; VNET_HDR_LEN];
        let before = batch.nbytes();
        let slot = batch.recv_slot(MAX_FRAME);
        let n =
            (&*file).read_vectored(&mut [IoSliceMut::new(&mut raw_hdr), IoSliceMut::new(slot)])?;
        let ts = now_ns();
        let len = n.saturating_sub(VNET_HDR_LEN);
        let hdr = VnetHdr::parse(&raw_hdr).unwrap_or_default();
        let invalid = |why: String| {
            self.counters.rx_error();
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: bad frame from the kernel: {why}", self.name),
            )
        };
        if n < VNET_HDR_LEN {
            return Err(invalid("shorter than its virtio-net header".into()));
        }
        let plain = hdr.flags & F_NEEDS_CSUM == 0 && !hdr.is_gso();
        if plain || v.rx_mode == RxMode::Superframes {
            if let Err(why) = hdr.validate(len) {
                return Err(invalid(why));
            }
            batch.commit_with(len, ts, if plain { None } else { Some(hdr) });
            return Ok((1, len));
        }
        if !hdr.is_gso() {
            if let Err(why) = complete_csum(&mut slot[..len], hdr) {
                return Err(invalid(why));
            }
            batch.commit(len, ts);
            return Ok((1, len));
        }
        // A super-frame to split: move it aside, then append its segments.
        let mut scratch = v
            .scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        scratch.clear();
        scratch.extend_from_slice(&slot[..len]);
        match segment(&scratch, hdr, self.medium, batch, ts) {
            Ok(count) => Ok((count, batch.nbytes() - before)),
            Err(why) => Err(invalid(why)),
        }
    }

    /// Write frames in order (with their virtio-net headers on offload adapters).
    /// Write one frame (behind `hdr` on offload adapters), waiting for room when the
    /// socket buffer is full. The error is returned raw, for the caller to classify.
    fn write_one(&self, file: &File, hdr: Option<VnetHdr>, frame: &[u8]) -> Result<(), WriteError> {
        loop {
            let result = if self.vnet.is_some() {
                let raw_hdr = hdr.unwrap_or_default().to_bytes();
                (&*file).write_vectored(&[IoSlice::new(&raw_hdr), IoSlice::new(frame)])
            } else {
                (&*file).write(frame)
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The socket send buffer is full: wait for room (wakes on close).
                    self.wait_for(file, libc::POLLOUT, Duration::from_millis(100))
                        .map_err(WriteError::Vnet)?;
                }
                Err(e) => return Err(WriteError::Io(e)),
            }
        }
    }

    fn write_error(&self, e: io::Error) -> Error {
        self.counters.tx_error();
        let hint = match e.raw_os_error() {
            Some(libc::EIO) => {
                Some("the adapter is down: call up() (or `ip link set NAME up`) before sending")
            }
            Some(libc::EINVAL) => Some("the kernel rejected the frame's format"),
            _ => None,
        };
        let err = Error::os(format!("write to {}", self.name), e);
        match hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    }

    /// Write frames in order (with their virtio-net headers on offload adapters). On an
    /// offload adapter whose kernel takes TSO/USO, runs of plain frames of one flow are
    /// merged into super-frames first (see `gro`); if the kernel refuses a merged write
    /// (EINVAL, as some kernel versions do), merging is turned off for this queue, the
    /// fallback is counted, and the frames of that run are written one by one.
    fn write_frames(
        &self,
        frames: &[&[u8]],
        hdrs: Option<&[Option<VnetHdr>]>,
    ) -> VnetResult<usize> {
        let guard = self
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = guard.as_ref().ok_or(Error::Closed)?;
        let allow = match (&self.vnet, hdrs) {
            (Some(v), None) if !self.coalesce_off.load(Ordering::Relaxed) => gro_allow(v.offloads),
            _ => gro::Allow::default(),
        };
        let runs = if allow == gro::Allow::default() {
            (0..frames.len())
                .map(|i| gro::Run {
                    start: i,
                    end: i + 1,
                })
                .collect()
        } else {
            gro::plan(frames, self.medium, allow)
        };
        let (mut sent, mut bytes) = (0, 0);
        let mut failure = None;
        'runs: for run in runs {
            if run.end - run.start > 1 {
                let mut scratch = self.vnet.as_ref().map(|v| {
                    v.tx_scratch
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                });
                if let Some(buf) = scratch.as_deref_mut() {
                    if let Some(hdr) = gro::merge(frames, run, self.medium, buf) {
                        match self.write_one(file, Some(hdr), buf) {
                            Ok(()) => {
                                self.coalesced
                                    .fetch_add((run.end - run.start) as u64, Ordering::Relaxed);
                                sent = run.end;
                                bytes += frames[run.start..run.end]
                                    .iter()
                                    .map(|f| f.len())
                                    .sum::<usize>();
                                continue 'runs;
                            }
                            Err(WriteError::Io(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                                // This kernel refuses merged writes: stop merging, lose nothing.
                                self.coalesce_off.store(true, Ordering::Relaxed);
                                self.coalesce_fallbacks.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failure = Some(e.into_error(self));
                                break 'runs;
                            }
                        }
                    }
                }
            }
            for (i, frame) in frames.iter().enumerate().take(run.end).skip(run.start) {
                let hdr = hdrs.and_then(|h| h.get(i).copied().flatten());
                match self.write_one(file, hdr, frame) {
                    Ok(()) => {
                        sent = i + 1;
                        bytes += frame.len();
                    }
                    Err(e) => {
                        failure = Some(e.into_error(self));
                        break 'runs;
                    }
                }
            }
        }
        self.counters.tx(sent, bytes);
        match failure {
            None => Ok(sent),
            Some(Error::Closed) if sent == 0 => Err(Error::Closed),
            Some(e) => Err(Error::Partial {
                sent,
                total: frames.len(),
                source: Box::new(e),
            }),
        }
    }

    /// Frames written as part of merged super-frames, and merged writes the kernel
    /// refused (after which this queue writes frames one by one).
    pub fn coalesce_counts(&self) -> (u64, u64) {
        (
            self.coalesced.load(Ordering::Relaxed),
            self.coalesce_fallbacks.load(Ordering::Relaxed),
        )
    }
}

/// How a single write failed: the OS said no, or waiting for room ended (closed).
enum WriteError {
    Io(io::Error),
    Vnet(Error),
}

impl WriteError {
    /// The error to report (an OS failure is counted in `tx_errors` and given a hint).
    fn into_error(self, queue: &Queue) -> Error {
        match self {
            WriteError::Io(e) => queue.write_error(e),
            WriteError::Vnet(e) => e,
        }
    }
}

/// What may be merged on an adapter with TUN_F_* `offloads`.
fn gro_allow(offloads: u32) -> gro::Allow {
    gro::Allow {
        tcp4: offloads & libc::TUN_F_TSO4 != 0 && offloads & libc::TUN_F_CSUM != 0,
        tcp6: offloads & libc::TUN_F_TSO6 != 0 && offloads & libc::TUN_F_CSUM != 0,
        udp: offloads & (libc::TUN_F_USO4 | libc::TUN_F_USO6)
            == (libc::TUN_F_USO4 | libc::TUN_F_USO6)
            && offloads & libc::TUN_F_CSUM != 0,
    }
}

/// A TUN or TAP adapter: its queues plus the sockets used to configure it (opened in the
/// adapter's network namespace, so configuration works from any thread).
pub struct Adapter {
    queues: Vec<Arc<Queue>>,
    ifname: IfName,
    name: String,
    medium: Medium,
    ifindex: u32,
    netns: Option<String>,
    created: bool,
    persistent: AtomicBool,
    link: Arc<Link>,
    nl: Mutex<Netlink>,
    kernel_base: LinkStats,
    final_stats: Mutex<Option<Stats>>,
    offloads: u32,
    offload: bool,
    kfilter: Mutex<KernelFilter>,
}

/// The adapter's filter state on the kernel side.
#[derive(Default)]
struct KernelFilter {
    /// The attached eBPF program and its reject counter (a per-CPU array map).
    ebpf: Option<(OwnedFd, OwnedFd)>,
    /// A classic program is attached (TUNATTACHFILTER).
    classic: bool,
    /// Rejects counted by eBPF programs since replaced (their maps are gone).
    retired: u64,
    /// Where the current filter runs.
    placement: Option<Placement>,
}

impl KernelFilter {
    /// Keep the count of a counter map that is going away.
    fn retire(&mut self, map: &OwnedFd) {
        self.retired += sys::bpf_counter_sum(map.as_fd()).unwrap_or(0);
    }

    /// Detach the eBPF filter, if any, keeping its count.
    fn drop_ebpf(&mut self, fd: BorrowedFd<'_>) {
        if let Some((_, map)) = self.ebpf.take() {
            self.retire(&map);
            let _ = sys::tun_set_filter_ebpf(fd, None);
        }
    }

    /// Detach the classic filter, if any.
    fn drop_classic(&mut self, fd: BorrowedFd<'_>) {
        if std::mem::take(&mut self.classic) {
            let _ = sys::tun_detach_filter(fd);
        }
    }

    /// Frames the kernel-side filters rejected since this open (eBPF counts only).
    fn rejected(&self) -> u64 {
        self.retired
            + self
                .ebpf
                .as_ref()
                .map_or(0, |(_, map)| sys::bpf_counter_sum(map.as_fd()).unwrap_or(0))
    }
}

impl Adapter {
    /// Create or attach to an adapter.
    ///
    /// Requires CAP_NET_ADMIN unless the adapter already exists, is persistent and is
    /// owned by the caller's user or group.
    pub fn open(opts: &OpenOptions) -> VnetResult<Adapter> {
        let ifname = validate_ifname(&opts.name)?;
        if opts.queues == 0 || opts.queues > 256 {
            return Err(Error::InvalidArgument(format!(
                "queues must be between 1 and 256, not {}",
                opts.queues
            )));
        }
        if let Some(mtu) = opts.mtu {
            check_mtu(mtu)?;
        }
        netns::run_in(opts.netns.as_deref(), || Self::open_here(opts, ifname))
    }

    fn open_here(opts: &OpenOptions, ifname: IfName) -> VnetResult<Adapter> {
        let ctl = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
            .map_err(|e| Error::os("socket(AF_INET)", e))?;
        let mut nl = Netlink::open().map_err(|e| Error::os("socket(AF_NETLINK)", e))?;
        let is_pattern = opts.name.contains('%');
        let existed = !is_pattern && sys::if_get_index(ctl.as_fd(), &ifname).is_ok();
        let mut flags = libc::IFF_NO_PI
            | match opts.medium {
                Medium::Ethernet => libc::IFF_TAP,
                Medium::Ip => libc::IFF_TUN,
            };
        if opts.queues > 1 {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        if opts.offload {
            flags |= libc::IFF_VNET_HDR;
        }
        let mut files = Vec::with_capacity(opts.queues);
        let mut actual = ifname;
        for _ in 0..opts.queues {
            let (file, name) = attach_queue(&actual, flags, opts, &mut nl)?;
            actual = name;
            files.push(file);
        }
        let name = name_str(&actual);
        let first = files[0].as_fd();
        let offloads = set_offload_mask(first, opts, &name)?;
        if let Some(uid) = opts.owner {
            sys::tun_set_owner(first, uid)
                .map_err(|e| Error::os(format!("TUNSETOWNER {name}"), e))?;
        }
        if let Some(gid) = opts.group {
            sys::tun_set_group(first, gid)
                .map_err(|e| Error::os(format!("TUNSETGROUP {name}"), e))?;
        }
        if let Some(mtu) = opts.mtu {
            sys::if_set_mtu(ctl.as_fd(), &actual, mtu)
                .map_err(|e| Error::os(format!("set MTU of {name}"), e))?;
        }
        let ifindex = sys::if_get_index(ctl.as_fd(), &actual)
            .map_err(|e| Error::os(format!("ifindex of {name}"), e))?;
        let mtu = sys::if_get_mtu(ctl.as_fd(), &actual)
            .map_err(|e| Error::os(format!("MTU of {name}"), e))?;
        // Persist last: if anything above failed, dropping the files removes what we made.
        if opts.persist {
            sys::tun_set_persist(first, true)
                .map_err(|e| Error::os(format!("TUNSETPERSIST {name}"), e))?;
        }
        let (_, iff) =
            sys::tun_get_iff(first).map_err(|e| Error::os(format!("TUNGETIFF {name}"), e))?;
        let persistent = i32::from(iff) & libc::IFF_PERSIST != 0;
        let kernel_base = nl.link_stats(ifindex).unwrap_or_default();
        let link = Arc::new(Link {
            ctl,
            ifname: actual,
            mtu: AtomicUsize::new(mtu as usize),
            checked_ns: AtomicU64::new(now_ns()),
            filter: UserFilter::default(),
        });
        let queues = files
            .into_iter()
            .enumerate()
            .map(|(index, file)| {
                Ok(Arc::new(Queue {
                    raw: file.as_raw_fd(),
                    file: RwLock::new(Some(file)),
                    wake: File::from(sys::eventfd().map_err(|e| Error::os("eventfd", e))?),
                    closed: AtomicBool::new(false),
                    counters: Counters::default(),
                    medium: opts.medium,
                    link: Arc::clone(&link),
                    index,
                    name: name.clone(),
                    vnet: opts.offload.then(|| VnetState {
                        rx_mode: opts.rx_mode,
                        offloads,
                        scratch: Mutex::new(Vec::with_capacity(MAX_FRAME)),
                        tx_scratch: Mutex::new(Vec::with_capacity(MAX_FRAME)),
                    }),
                    coalesce_off: AtomicBool::new(false),
                    coalesced: AtomicU64::new(0),
                    coalesce_fallbacks: AtomicU64::new(0),
                }))
            })
            .collect::<VnetResult<Vec<_>>>()?;
        Ok(Adapter {
            queues,
            ifname: actual,
            name,
            medium: opts.medium,
            ifindex,
            netns: opts.netns.clone(),
            created: !existed,
            persistent: AtomicBool::new(persistent),
            link,
            nl: Mutex::new(nl),
            kernel_base,
            final_stats: Mutex::new(None),
            offloads,
            offload: opts.offload,
            kfilter: Mutex::new(KernelFilter::default()),
        })
    }

    /// The adapter's name (a `%d` pattern resolved).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Interface index in its namespace.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
    /// The namespace it lives in (`None`: the caller's).
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }
    /// Whether this open created it.
    pub fn created(&self) -> bool {
        self.created
    }
    /// Whether it outlives its last descriptor.
    pub fn persistent(&self) -> bool {
        self.persistent.load(Ordering::Relaxed)
    }
    /// Whether frames carry virtio-net headers (opened with `offload`).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// The TUN_F_* offloads the kernel accepted for this adapter.
    pub fn offloads(&self) -> u32 {
        self.offloads
    }

    /// Its queues.
    pub fn queues(&self) -> &[Arc<Queue>] {
        &self.queues
    }

    fn live(&self) -> VnetResult<()> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn nl(&self) -> MutexGuard<'_, Netlink> {
        self.nl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// TUNSETPERSIST on or off.
    pub fn set_persistent(&self, persist: bool) -> VnetResult<()> {
        self.live()?;
        let guard = self.queues[0]
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = guard.as_ref().ok_or(Error::Closed)?;
        sys::tun_set_persist(file.as_fd(), persist)
            .map_err(|e| Error::os(format!("TUNSETPERSIST {}", self.name), e))?;
        self.persistent.store(persist, Ordering::Relaxed);
        Ok(())
    }

    /// Whether IFF_UP is set.
    pub fn is_up(&self) -> VnetResult<bool> {
        self.live()?;
        let flags = sys::if_get_flags(self.link.ctl.as_fd(), &self.ifname)
            .map_err(|e| Error::os(format!("flags of {}", self.name), e))?;
        Ok(i32::from(flags) & libc::IFF_UP != 0)
    }

    /// Set or clear IFF_UP.
    pub fn set_up(&self, up: bool) -> VnetResult<()> {
        self.live()?;
        let ctl = self.link.ctl.as_fd();
        let step = || format!("set {} {}", self.name, if up { "up" } else { "down" });
        let flags = sys::if_get_flags(ctl, &self.ifname).map_err(|e| Error::os(step(), e))?;
        let flags = if up {
            flags | libc::IFF_UP as libc::c_short
        } else {
            flags & !(libc::IFF_UP as libc::c_short)
        };
        sys::if_set_flags(ctl, &self.ifname, flags).map_err(|e| with_cap_hint(Error::os(step(), e)))
    }

    /// Read the MTU from the kernel (and refresh the cached copy frames are checked against).
    pub fn get_mtu(&self) -> VnetResult<u32> {
        self.live()?;
        let mtu = self
            .link
            .refresh_mtu()
            .map_err(|e| Error::os(format!("MTU of {}", self.name), e))?;
        Ok(mtu)
    }

    /// Set the MTU.
    pub fn set_mtu(&self, mtu: u32) -> VnetResult<()> {
        self.live()?;
        check_mtu(mtu)?;
        sys::if_set_mtu(self.link.ctl.as_fd(), &self.ifname, mtu).map_err(|e| {
            with_cap_hint(Error::os(format!("set MTU of {} to {mtu}", self.name), e))
        })?;
        self.link.store_mtu(mtu);
        Ok(())
    }

    /// The kernel queue length (txqueuelen): how many frames the adapter holds for each
    /// reader before it drops them (counted in `rx_dropped`).
    pub fn queue_length(&self) -> VnetResult<u32> {
        self.live()?;
        sys::if_get_txqlen(self.link.ctl.as_fd(), &self.ifname)
            .map_err(|e| Error::os(format!("queue length of {}", self.name), e))
    }

    /// Set the kernel queue length (frames already queued are kept).
    pub fn set_queue_length(&self, frames: u32) -> VnetResult<()> {
        self.live()?;
        if !(1..=MAX_QUEUE_LENGTH).contains(&frames) {
            return Err(Error::InvalidArgument(format!(
                "queue_length must be 1 to {MAX_QUEUE_LENGTH} frames, not {frames}"
            )));
        }
        sys::if_set_txqlen(self.link.ctl.as_fd(), &self.ifname, frames).map_err(|e| {
            with_cap_hint(Error::os(
                format!("set queue length of {} to {frames}", self.name),
                e,
            ))
        })
    }

    /// The Ethernet address (TAP).
    pub fn mac(&self) -> VnetResult<[u8; 6]> {
        self.live()?;
        sys::if_get_hwaddr(self.link.ctl.as_fd(), &self.ifname)
            .map_err(|e| Error::os(format!("MAC of {}", self.name), e))
    }

    /// Set the Ethernet address (TAP only).
    pub fn set_mac(&self, mac: [u8; 6]) -> VnetResult<()> {
        self.live()?;
        if self.medium != Medium::Ethernet {
            return Err(Error::InvalidArgument(
                "a TUN adapter has no MAC address".into(),
            ));
        }
        if mac[0] & 1 == 1 {
            return Err(Error::InvalidArgument(format!(
                "{} is a multicast address; an adapter needs a unicast MAC (first octet even)",
                format_mac(mac)
            )));
        }
        sys::if_set_hwaddr(self.link.ctl.as_fd(), &self.ifname, mac)
            .map_err(|e| with_cap_hint(Error::os(format!("set MAC of {}", self.name), e)))
    }

    /// Add an address (`ip addr add`).
    pub fn add_address(&self, addr: IpAddr, prefix: u8) -> VnetResult<()> {
        self.live()?;
        self.nl()
            .add_address(self.ifindex, addr, prefix)
            .map_err(|e| {
                let exists = e.raw_os_error() == Some(libc::EEXIST);
                let err = with_cap_hint(Error::os(
                    format!("add address {addr}/{prefix} to {}", self.name),
                    e,
                ));
                if exists {
                    err.with_hint("the adapter already has this address")
                } else {
                    err
                }
            })
    }

    /// Remove an address.
    pub fn del_address(&self, addr: IpAddr, prefix: u8) -> VnetResult<()> {
        self.live()?;
        self.nl()
            .del_address(self.ifindex, addr, prefix)
            .map_err(|e| {
                with_cap_hint(Error::os(
                    format!("remove address {addr}/{prefix} from {}", self.name),
                    e,
                ))
            })
    }

    /// Every address with its prefix length.
    pub fn addresses(&self) -> VnetResult<Vec<(IpAddr, u8)>> {
        self.live()?;
        self.nl()
            .addresses(self.ifindex)
            .map_err(|e| Error::os(format!("list addresses of {}", self.name), e))
    }

    fn kernel_stats(&self) -> VnetResult<Stats> {
        let mut s = Stats::default();
        for q in &self.queues {
            let qs = q.counters.snapshot();
            s.rx_frames += qs.rx_frames;
            s.rx_bytes += qs.rx_bytes;
            s.tx_frames += qs.tx_frames;
            s.tx_bytes += qs.tx_bytes;
            s.rx_errors += qs.rx_errors;
            s.tx_errors += qs.tx_errors;
            let (merged, fallbacks) = q.coalesce_counts();
            s.tx_coalesced += merged;
            s.coalesce_fallbacks += fallbacks;
        }
        let k = self
            .nl()
            .link_stats(self.ifindex)
            .map_err(|e| Error::os(format!("counters of {}", self.name), e))?;
        // The kernel's view is mirrored: what it transmits is what our readers receive.
        // Its tx_dropped also holds the frames a kernel-side filter rejected; with the
        // eBPF filter those are counted apart, so they are moved to rx_filtered.
        let kf = self.kfilter();
        let kernel_rejected = kf.rejected();
        s.rx_dropped = k
            .tx_dropped
            .saturating_sub(self.kernel_base.tx_dropped)
            .saturating_sub(kernel_rejected);
        s.tx_dropped = k.rx_dropped.saturating_sub(self.kernel_base.rx_dropped);
        s.rx_filtered = (!kf.classic).then(|| kernel_rejected + self.link.filter.rejected());
        Ok(s)
    }

    fn kfilter(&self) -> MutexGuard<'_, KernelFilter> {
        self.kfilter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Attach `program` in the kernel as a counting eBPF filter.
    fn attach_ebpf(&self, fd: BorrowedFd<'_>, program: &Program) -> VnetResult<(OwnedFd, OwnedFd)> {
        let need_cap = |e: io::Error| {
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                "loading an eBPF filter needs CAP_BPF or CAP_SYS_ADMIN (the kernel's \
                 unprivileged_bpf_disabled setting refuses others); use placement=\"classic\" \
                 (in the kernel, rejects counted with drops) or placement=\"userspace\""
            } else {
                "use placement=\"classic\" or placement=\"userspace\""
            };
            Error::os("bpf(BPF_MAP_CREATE) for the filter's counter", e).with_hint(hint)
        };
        let map = sys::bpf_counter_map().map_err(need_cap)?;
        let insns = crate::ebpf::translate(program, map.as_raw_fd()).map_err(|why| {
            Error::InvalidArgument(format!("cannot run this filter as eBPF: {why}"))
        })?;
        let prog = sys::bpf_load_socket_filter(&insns).map_err(|(e, log)| {
            if e.raw_os_error() == Some(libc::EPERM) {
                need_cap(e)
            } else {
                let tail: Vec<&str> = log.lines().rev().take(4).collect();
                Error::InvalidArgument(format!(
                    "the kernel refused the filter ({e}); verifier: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ))
            }
        })?;
        sys::tun_set_filter_ebpf(fd, Some(prog.as_fd()))
            .map_err(|e| Error::os(format!("TUNSETFILTEREBPF {}", self.name), e))?;
        Ok((prog, map))
    }

    /// Make kernel filters see VLAN tags where libpcap's programs look for them. A TAP
    /// advertises VLAN tag insertion "in hardware", so the kernel hands it frames whose
    /// tag sits in metadata (skb->vlan_tci) rather than in the data; the filter runs before
    /// the driver writes the tag back into the frame, so `vlan` expressions would miss.
    /// With the insertion offload off, the kernel inserts tags before the filter runs
    /// (what the reader gets is the same either way). Needs CAP_NET_ADMIN; without it the
    /// filter still works, and tagged frames are filtered as if untagged.
    fn vlan_tags_in_data(&self) {
        let _ = sys::ethtool_features_off(
            self.link.ctl.as_fd(),
            &self.ifname,
            &["tx-vlan-hw-insert", "tx-vlan-stag-hw-insert"],
        );
    }

    /// Detach every kernel-side filter (on close, so a persistent adapter does not keep
    /// filtering for its next user: the kernel ties the eBPF program to the device).
    fn detach_kernel_filters(&self) {
        let mut kf = self.kfilter();
        let Some(q) = self.queues.first() else { return };
        let guard = q
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(file) = guard.as_ref() else { return };
        kf.drop_ebpf(file.as_fd());
        kf.drop_classic(file.as_fd());
    }

    fn apply_filter(
        &self,
        program: Option<Program>,
        placement: Option<Placement>,
    ) -> VnetResult<Option<Placement>> {
        let q = &self.queues[0];
        let guard = q
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = guard.as_ref().ok_or(Error::Closed)?;
        let fd = file.as_fd();
        let mut kf = self.kfilter();
        let Some(program) = program else {
            self.link.filter.set(None);
            kf.drop_ebpf(fd);
            kf.drop_classic(fd);
            kf.placement = None;
            return Ok(None);
        };
        // Auto: in the kernel on a TAP (counted eBPF, else this process); a TUN filters
        // here, as a TUN reader usually wants every packet and filters are rare there.
        let auto = placement.is_none();
        let mut want = placement.unwrap_or(match self.medium {
            Medium::Ethernet => Placement::Kernel,
            Medium::Ip => Placement::Userspace,
        });
        if want != Placement::Userspace && self.medium == Medium::Ethernet {
            self.vlan_tags_in_data();
        }
        if want == Placement::Kernel {
            match self.attach_ebpf(fd, &program) {
                Ok(attached) => {
                    // TUNSETFILTEREBPF replaced the old program: only its count is kept.
                    if let Some((_, old)) = kf.ebpf.replace(attached) {
                        kf.retire(&old);
                    }
                }
                Err(_) if auto => want = Placement::Userspace,
                Err(e) => return Err(e),
            }
        }
        match want {
            Placement::Kernel => {
                self.link.filter.set(None);
                kf.drop_classic(fd);
            }
            Placement::Classic => {
                sys::tun_attach_filter(fd, program.insns())
                    .map_err(|e| Error::os(format!("TUNATTACHFILTER {}", self.name), e))?;
                kf.classic = true;
                self.link.filter.set(None);
                kf.drop_ebpf(fd);
            }
            Placement::Userspace => {
                // Filter here first, then drop the kernel side: no frame slips through.
                self.link.filter.set(Some(Arc::new(program)));
                kf.drop_ebpf(fd);
                kf.drop_classic(fd);
            }
        }
        kf.placement = Some(want);
        Ok(Some(want))
    }
}

fn check_mtu(mtu: u32) -> VnetResult<()> {
    if (68..=65_535).contains(&mtu) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "mtu must be between 68 and 65535, not {mtu}"
        )))
    }
}

fn with_cap_hint(err: Error) -> Error {
    if err.raw_os_error() == Some(libc::EPERM) {
        err.with_hint("changing adapter settings needs CAP_NET_ADMIN (run as root)")
    } else {
        err
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff` (or `-` separated).
pub fn parse_mac(text: &str) -> VnetResult<[u8; 6]> {
    let bad = || {
        Error::InvalidArgument(format!(
            "invalid MAC address {text:?}: expected six hex octets such as \"02:00:00:00:00:01\""
        ))
    };
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (dst, part) in mac.iter_mut().zip(parts) {
        if part.is_empty() || part.len() > 2 {
            return Err(bad());
        }
        *dst = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// Parse `192.0.2.1/24` or `2001:db8::1/64` (no prefix: a host address).
pub fn parse_cidr(text: &str) -> VnetResult<(IpAddr, u8)> {
    let bad = |why: &str| {
        Error::InvalidArgument(format!("invalid address {text:?}: {why} (expected e.g. \"192.0.2.1/24\" or \"2001:db8::1/64\")"))
    };
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let ip: IpAddr = addr.trim().parse().map_err(|_| bad("not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| bad("bad prefix length"))?,
    };
    Ok((ip, prefix))
}

impl Device for Adapter {
    fn medium(&self) -> Medium {
        self.medium
    }

    fn mtu(&self) -> usize {
        self.link.current_mtu()
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

    fn check_frames_meta(&self, frames: &[&[u8]], hdrs: &[Option<VnetHdr>]) -> VnetResult<()> {
        self.queues[0].check_frames_meta(frames, hdrs)
    }

    fn check_frames(&self, frames: &[&[u8]]) -> VnetResult<()> {
        self.link.check_frames(self.medium, frames)
    }

    fn stats(&self) -> VnetResult<Stats> {
        if let Some(s) = *self
            .final_stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            return Ok(s);
        }
        self.kernel_stats()
    }

    fn set_filter(
        &self,
        program: Option<Program>,
        placement: Option<Placement>,
    ) -> VnetResult<Option<Placement>> {
        self.live()?;
        self.apply_filter(program, placement)
    }

    fn filter_placement(&self) -> Option<Placement> {
        self.kfilter().placement
    }

    fn close(&self) {
        if self.is_closed() {
            return;
        }
        let last = self.kernel_stats().ok();
        *self
            .final_stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = last;
        self.detach_kernel_filters();
        for q in &self.queues {
            q.close_fd();
        }
    }

    fn is_closed(&self) -> bool {
        self.queues[0].is_closed()
    }

    fn raw_fd(&self) -> VnetResult<RawFd> {
        self.queues[0].raw_fd()
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        if !self.is_closed() {
            self.detach_kernel_filters();
        }
        for q in &self.queues {
            q.close_fd();
        }
    }
}

/// TUNGETFEATURES: which IFF_* flags the kernel's TUN driver supports.
pub fn features() -> VnetResult<u32> {
    let file = open_dev()?;
    sys::tun_get_features(file.as_fd()).map_err(|e| Error::os("TUNGETFEATURES", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac = parse_mac("02:AB:0c:00:00:ff").unwrap();
        assert_eq!(mac, [2, 0xab, 0x0c, 0, 0, 0xff]);
        assert_eq!(format_mac(mac), "02:ab:0c:00:00:ff");
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "002:00:00:00:00:0",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr() {
        assert_eq!(
            parse_cidr("192.0.2.1/24").unwrap(),
            ("192.0.2.1".parse().unwrap(), 24)
        );
        assert_eq!(
            parse_cidr("2001:db8::1").unwrap(),
            ("2001:db8::1".parse().unwrap(), 128)
        );
        assert_eq!(parse_cidr("198.51.100.7").unwrap().1, 32);
        for bad in [
            "",
            "192.0.2.1/33",
            "2001:db8::1/129",
            "host/24",
            "192.0.2.1/x",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }
}
