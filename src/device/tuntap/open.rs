//! Opening an adapter: /dev/net/tun, TUNSETIFF with the flags asked for, the offload
//! mask, one descriptor per queue, and kernel errors explained (who owns an adapter,
//! which flag the kernel refused).

use super::config::check_mtu;
use super::config::Link;
use super::filter::KernelFilter;
use super::queue::VnetState;
use super::{Adapter, Backend, OpenOptions, Queue, RxMode, OFFLOAD_MASKS, TUN_PATH};
use crate::batch::MAX_FRAME;
use crate::device::netlink::Netlink;
use crate::device::{netns, now_ns, validate_ifname, Counters};
use crate::error::{Error, VnetResult};
use crate::filter::UserFilter;
use crate::sys;
use crate::sys::IfName;
use crate::wire::vnet::VNET_HDR_LEN;
use crate::wire::Medium;
use std::fs::{File, OpenOptions as FsOpenOptions};
use std::io;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};

pub(super) fn name_str(name: &IfName) -> String {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

pub(super) fn open_dev() -> VnetResult<File> {
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
pub(super) fn id_name(db: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(db).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()?.parse::<u32>().ok()? == id).then(|| name.to_owned())
    })
}

pub(super) fn owner_note(name: &str, nl: &mut Netlink) -> String {
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

/// Why TUNSETIFF said EINVAL for an existing `name`: what the adapter is (read over
/// rtnetlink) against what this open asked for.
fn einval_reason(name: &str, opts: &OpenOptions, nl: &mut Netlink) -> String {
    let wanted = opts.medium.as_str().to_uppercase();
    let link = nl
        .links()
        .unwrap_or_default()
        .into_iter()
        .find(|l| l.name == name);
    let Some(link) = link else {
        return format!("{name} exists with other settings than this {wanted} open asked for");
    };
    let Some(tun) = link.tun else {
        let kind = link.kind.as_deref().unwrap_or("plain");
        return format!("{name} exists and is no TUN/TAP adapter: it is a {kind} link");
    };
    let is = if tun.tap { "TAP" } else { "TUN" };
    if is != wanted {
        let class = if tun.tap { "vnetio.Tap" } else { "vnetio.Tun" };
        format!("{name} exists as a {is} adapter, not a {wanted}: open it with {class}")
    } else if tun.multi_queue != (opts.queues > 1) {
        if tun.multi_queue {
            format!(
                "{name} is a multi-queue {is} (IFF_MULTI_QUEUE) and queues={} opens a \
                 single-queue one: open it with queues=2 or more",
                opts.queues
            )
        } else {
            format!(
                "{name} is a single-queue {is} and queues={} asks for a multi-queue one \
                 (IFF_MULTI_QUEUE must match how it was created): open it with queues=1",
                opts.queues
            )
        }
    } else {
        format!("{name} exists as a {is} adapter with other settings than this open asked for")
    }
}

pub(super) fn setiff_error(
    e: io::Error,
    name: &str,
    opts: &OpenOptions,
    nl: &mut Netlink,
) -> Error {
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
            "{name} is already attached to another open descriptor, in another process or in \
             this one (a single-queue adapter takes one open file); close the other user \
             (`vnetio list{ns}` names the processes holding it), or create the adapter with \
             queues>1",
            ns = opts
                .netns
                .as_deref()
                .map_or_else(String::new, |n| format!(" --netns {n}"))
        ),
        Some(libc::EINVAL) => format!(
            "{}; open it with matching options or delete it (`{ip} link del {name}` or \
             `vnetio delete {name}{ns}`)",
            einval_reason(name, opts, nl),
            ip = opts
                .netns
                .as_deref()
                .map_or_else(|| "ip".to_owned(), |n| format!("ip -n {n}")),
            ns = opts
                .netns
                .as_deref()
                .map_or_else(String::new, |n| format!(" --netns {n}")),
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

/// Open /dev/net/tun and attach it (TUNSETIFF) to `ifname`, with the virtio-net header
/// set up on offload adapters. Returns the descriptor and the adapter's actual name.
pub(super) fn attach_queue(
    ifname: &IfName,
    flags: libc::c_int,
    opts: &OpenOptions,
    nl: &mut Netlink,
) -> VnetResult<(File, IfName)> {
    let file = open_dev()?;
    let actual = sys::tun_set_iff(file.as_fd(), ifname, flags as libc::c_short)
        .map_err(|e| setiff_error(e, &name_str(ifname), opts, nl))?;
    if opts.offload {
        setup_vnet(file.as_fd(), &name_str(&actual))?;
    }
    Ok((file, actual))
}

/// Put a virtio-net header of vnetio's size (little-endian, virtio 1.0) before every frame
/// on a descriptor opened with IFF_VNET_HDR (a TUN/TAP queue or a macvtap's).
pub(crate) fn setup_vnet(fd: BorrowedFd<'_>, name: &str) -> VnetResult<()> {
    let step = |what: &str| format!("{what} {name}");
    sys::tun_set_vnet_hdr_sz(fd, VNET_HDR_LEN as libc::c_int)
        .map_err(|e| Error::os(step("TUNSETVNETHDRSZ"), e))?;
    // virtio 1.0 headers are little-endian; a little-endian host needs nothing (and a
    // kernel without cross-endian support refuses the ioctl there).
    if let Err(e) = sys::tun_set_vnet_le(fd) {
        if cfg!(target_endian = "big") {
            return Err(Error::os(step("TUNSETVNETLE"), e));
        }
    }
    Ok(())
}

/// Set the device-wide offload mask. It outlives descriptors, so it is set on every open
/// to what this open can handle: the richest mask the kernel accepts with `offload`, else
/// 0 (a previous owner's mask would hand a plain reader super-frames).
pub(crate) fn set_offload_mask(
    first: BorrowedFd<'_>,
    offload: bool,
    name: &str,
) -> VnetResult<u32> {
    if offload {
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
        let offloads = set_offload_mask(first, opts.offload, &name)?;
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
        Adapter::assemble(Parts {
            files,
            ctl,
            nl,
            ifname: actual,
            ifindex,
            mtu,
            medium: opts.medium,
            netns: opts.netns.clone(),
            created: !existed,
            persistent,
            offload: opts.offload.then_some((opts.rx_mode, offloads)),
            backend: Backend::Tun,
        })
    }

    /// An adapter over descriptors that are open and set up: `files` (one per queue, with
    /// the virtio-net header set up when `offload` is `Some`), the control sockets opened
    /// in the adapter's namespace, and what is known about its link.
    pub(crate) fn assemble(p: Parts) -> VnetResult<Adapter> {
        let name = name_str(&p.ifname);
        let mut nl = p.nl;
        let kernel_base = nl.link_stats(p.ifindex).unwrap_or_default();
        let link = Arc::new(Link {
            ctl: p.ctl,
            ifname: p.ifname,
            mtu: AtomicUsize::new(p.mtu as usize),
            checked_ns: AtomicU64::new(now_ns()),
            filter: UserFilter::default(),
        });
        let offloads = p.offload.map_or(0, |(_, mask)| mask);
        let queues = p
            .files
            .into_iter()
            .enumerate()
            .map(|(index, file)| {
                Ok(Arc::new(Queue {
                    raw: file.as_raw_fd(),
                    file: RwLock::new(Some(file)),
                    wake: File::from(sys::eventfd().map_err(|e| Error::os("eventfd", e))?),
                    closed: AtomicBool::new(false),
                    counters: Counters::default(),
                    medium: p.medium,
                    link: Arc::clone(&link),
                    index,
                    name: name.clone(),
                    vnet: p.offload.map(|(rx_mode, offloads)| VnetState {
                        rx_mode,
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
            ifname: p.ifname,
            name,
            medium: p.medium,
            ifindex: p.ifindex,
            netns: p.netns,
            created: p.created,
            persistent: AtomicBool::new(p.persistent),
            link,
            nl: Mutex::new(nl),
            kernel_base,
            final_stats: Mutex::new(None),
            offloads,
            offload: p.offload.is_some(),
            kfilter: Mutex::new(KernelFilter::default()),
            backend: p.backend,
        })
    }
}

/// What [`Adapter::assemble`] builds an adapter from.
pub(crate) struct Parts {
    /// One open descriptor per queue.
    pub(crate) files: Vec<File>,
    /// An AF_INET datagram socket in the adapter's namespace (for SIOC* ioctls).
    pub(crate) ctl: OwnedFd,
    /// An rtnetlink socket in the adapter's namespace.
    pub(crate) nl: Netlink,
    pub(crate) ifname: IfName,
    pub(crate) ifindex: u32,
    pub(crate) mtu: u32,
    pub(crate) medium: Medium,
    pub(crate) netns: Option<String>,
    /// This open created the link.
    pub(crate) created: bool,
    /// The link outlives the adapter.
    pub(crate) persistent: bool,
    /// Offload adapters: how frames are received, and the TUN_F_* mask the kernel took.
    pub(crate) offload: Option<(RxMode, u32)>,
    pub(crate) backend: Backend,
}
