//! Macvtap adapters: a macvtap link created over rtnetlink on a lower Ethernet device,
//! and its character device `/dev/tapN` opened as the adapter's queues.
//!
//! A macvtap descriptor speaks TUN's ABI (drivers/net/tap.c): frames by `read`/`write`,
//! the virtio-net header, TUNSETIFF (flags only: IFF_TAP | IFF_NO_PI, optionally
//! IFF_VNET_HDR), TUNSETOFFLOAD, TUNSETVNETHDRSZ, TUNSETVNETLE, TUNSETSNDBUF, SIOCGIFHWADDR.
//! So the adapter is a [`tuntap::Adapter`] with the macvtap backend, and its queues are
//! TUN/TAP [`tuntap::Queue`]s. What differs (checked on Linux 6.18):
//!
//! - The link is not owned by a descriptor: it lives until deleted. vnetio deletes the link
//!   it created when the adapter closes, unless it was opened with `persist`.
//! - The descriptor is open with IFF_VNET_HDR on and a 10-byte header: TUNSETIFF is always
//!   issued, so a plain reader gets plain frames.
//! - No kernel-side filters: TUNSETFILTEREBPF and TUNATTACHFILTER are EINVAL, and the
//!   descriptor is no socket (SO_ATTACH_FILTER). Filters run in this process.
//! - Every open of the character device is one more queue (no IFF_MULTI_QUEUE needed);
//!   the kernel spreads received flows over them.
//! - The device node: `/dev/tapN` is named after the link's ifindex, which is unique only
//!   per network namespace, and sysfs shows the devices of the namespace that mounted it.
//!   So the device numbers are read from a sysfs mounted by a thread inside the link's
//!   namespace, in a private mount namespace, and the node is made on a private tmpfs
//!   there (`sys::mounts`): nothing appears in, or depends on, the machine's `/dev`.
//!   Without CAP_SYS_ADMIN (only possible in the caller's own namespace) the machine's
//!   `/sys` is read instead, checked against the ifindex, and `/dev/tapN` is used when its
//!   device numbers match, else a node is made in a private temporary directory.

use std::fs::{self, File, OpenOptions as FsOpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::netlink::{LinkInfo, Netlink, NewMacvtap};
use super::tuntap::{set_offload_mask, setup_vnet, Adapter, Backend, Parts, RxMode};
use super::{netns, validate_ifname};
use crate::error::{Error, VnetResult};
use crate::sys::{self, mounts, IFNAMSIZ};
use crate::wire::Medium;

/// The default name pattern of a macvtap link vnetio creates.
pub const DEFAULT_NAME: &str = "vnmvt%d";

/// How a macvtap link shares its lower device (IFLA_MACVLAN_MODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No traffic with the lower device's other macvlan/macvtap links at all.
    Private,
    /// Traffic to the other links goes out through the lower device (to a switch that
    /// sends it back: 802.1Qbg hairpin).
    Vepa,
    /// The other links on the same lower device are reached directly.
    #[default]
    Bridge,
    /// The lower device is handed over whole (one link per lower device; it goes
    /// promiscuous and every frame reaches this link).
    Passthru,
    /// Frames are accepted by their source MAC address, from a list kept in the kernel
    /// (`ip link set NAME type macvtap macaddr add MAC`), besides frames sent to its own.
    Source,
}

impl Mode {
    /// Every mode with its name, in the kernel's bit order.
    pub const ALL: [(Mode, &'static str, u32); 5] = [
        (Mode::Private, "private", 1),
        (Mode::Vepa, "vepa", 2),
        (Mode::Bridge, "bridge", 4),
        (Mode::Passthru, "passthru", 8),
        (Mode::Source, "source", 16),
    ];

    /// The mode named `name` ("private", "vepa", "bridge", "passthru", "source").
    pub fn parse(name: &str) -> Option<Mode> {
        Self::ALL.iter().find(|m| m.1 == name).map(|m| m.0)
    }

    /// The mode whose MACVLAN_MODE_* value is `bits`.
    pub fn from_bits(bits: u32) -> Option<Mode> {
        Self::ALL.iter().find(|m| m.2 == bits).map(|m| m.0)
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|m| m.0 == self)
            .map_or("bridge", |m| m.1)
    }

    fn bits(self) -> u32 {
        Self::ALL.iter().find(|m| m.0 == self).map_or(4, |m| m.2)
    }
}

/// How to create a macvtap adapter.
#[derive(Debug, Clone)]
pub struct MacvtapOptions {
    /// The lower Ethernet device, in the same namespace.
    pub lower: String,
    /// Name or `%d` pattern of the new link.
    pub name: String,
    /// How it shares the lower device.
    pub mode: Mode,
    /// Network namespace (as in `ip netns list`) of the lower device and the new link.
    pub netns: Option<String>,
    /// MAC address (`None`: a random one chosen by the kernel).
    pub mac: Option<[u8; 6]>,
    /// MTU (`None`: the lower device's).
    pub mtu: Option<u32>,
    /// Descriptors to open (each one a queue).
    pub queues: usize,
    /// Keep the link after the adapter closes.
    pub persist: bool,
    /// Turn on virtio-net headers and kernel offloads (checksum, TSO, USO).
    pub offload: bool,
    /// How frames are received when `offload` is on.
    pub rx_mode: RxMode,
}

impl MacvtapOptions {
    /// Defaults: "vnmvt%d", bridge mode, one queue, deleted on close.
    pub fn new(lower: &str) -> Self {
        MacvtapOptions {
            lower: lower.to_owned(),
            name: DEFAULT_NAME.to_owned(),
            mode: Mode::Bridge,
            netns: None,
            mac: None,
            mtu: None,
            queues: 1,
            persist: false,
            offload: false,
            rx_mode: RxMode::Segments,
        }
    }
}

/// Create a macvtap link on `opts.lower` and open it as an adapter. Everything that can be
/// checked before the link exists is (names, the lower device, the options); a failure
/// after it exists deletes it again.
pub fn open(opts: &MacvtapOptions) -> VnetResult<Adapter> {
    validate_ifname(&opts.name)?;
    validate_ifname(&opts.lower)?;
    if opts.lower.contains('%') {
        return Err(Error::InvalidArgument(format!(
            "lower must name an existing device, not a pattern ({:?})",
            opts.lower
        )));
    }
    if opts.queues == 0 || opts.queues > 256 {
        return Err(Error::InvalidArgument(format!(
            "queues must be between 1 and 256, not {}",
            opts.queues
        )));
    }
    if let Some(mtu) = opts.mtu {
        if !(68..=65_535).contains(&mtu) {
            return Err(Error::InvalidArgument(format!(
                "mtu must be between 68 and 65535, not {mtu}"
            )));
        }
    }
    if let Some(mac) = opts.mac {
        if mac[0] & 1 == 1 || mac == [0; 6] {
            return Err(Error::InvalidArgument(format!(
                "{} is not a unicast address; a macvtap needs a unicast MAC (first octet even, \
                 not all zero)",
                super::tuntap::format_mac(mac)
            )));
        }
    }
    netns::run_on_thread(opts.netns.as_deref(), || open_here(opts))
}

fn where_text(netns: Option<&str>) -> String {
    netns.map_or_else(
        || "this network namespace".to_owned(),
        |n| format!("network namespace {n}"),
    )
}

fn list(nl: &mut Netlink) -> VnetResult<Vec<LinkInfo>> {
    nl.links()
        .map_err(|e| Error::os("list interfaces (RTM_GETLINK)", e))
}

/// Runs on a thread of its own in the target namespace (`netns::run_on_thread`).
fn open_here(opts: &MacvtapOptions) -> VnetResult<Adapter> {
    let ctl = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .map_err(|e| Error::os("socket(AF_INET)", e))?;
    let mut nl = Netlink::open().map_err(|e| Error::os("socket(AF_NETLINK)", e))?;
    let links = list(&mut nl)?;
    let where_ = where_text(opts.netns.as_deref());
    let lower = links.iter().find(|l| l.name == opts.lower).ok_or_else(|| {
        Error::os(
            format!("lower device {}", opts.lower),
            io::Error::from_raw_os_error(libc::ENODEV),
        )
        .with_hint(format!(
            "there is no interface named {} in {where_}; a macvtap sits on an Ethernet \
                 device of its own namespace (`ip link` lists them)",
            opts.lower
        ))
    })?;
    if lower.flags & libc::IFF_LOOPBACK as u32 != 0 || lower.address.len() != 6 {
        return Err(Error::InvalidArgument(format!(
            "{} is not an Ethernet device ({}); a macvtap needs an Ethernet lower device such \
             as a physical NIC, a veth or a bridge",
            opts.lower,
            lower
                .kind
                .as_deref()
                .unwrap_or(if lower.flags & libc::IFF_LOOPBACK as u32 != 0 {
                    "loopback"
                } else {
                    "no link-layer address"
                })
        )));
    }
    let lower_index = lower.ifindex;
    let mut links = links;
    let mut attempt = 0;
    let (name, ifindex) = loop {
        let name = pick_name(&opts.name, &links, &where_)?;
        let request = NewMacvtap {
            name: &name,
            lower: lower_index,
            mode: opts.mode.bits(),
            mac: opts.mac,
            mtu: opts.mtu,
        };
        match nl.new_macvtap(&request) {
            Ok(()) => {}
            // A pattern's name taken by someone else in between: pick again.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && opts.name.contains('%') => {
                attempt += 1;
                if attempt < 16 {
                    links = list(&mut nl)?;
                    continue;
                }
                return Err(create_error(e, &name, opts));
            }
            Err(e) => return Err(create_error(e, &name, opts)),
        }
        let created = list(&mut nl)?
            .into_iter()
            .find(|l| l.name == name && l.kind.as_deref() == Some("macvtap"))
            .ok_or_else(|| {
                Error::os(
                    format!("find the new macvtap {name}"),
                    io::Error::from_raw_os_error(libc::ENODEV),
                )
                .with_hint("it was deleted by someone else right after it was created")
            })?;
        break (name, created.ifindex);
    };
    // From here on a failure deletes the link again.
    let guard = Created {
        ifindex,
        keep: false,
    };
    let adapter = attach(opts, ctl, nl, &name, ifindex)?;
    guard.keep();
    Ok(adapter)
}

/// The name to create: `pattern` itself, or its `%d` replaced by the lowest number free in
/// `links`.
fn pick_name(pattern: &str, links: &[LinkInfo], where_: &str) -> VnetResult<String> {
    if !pattern.contains('%') {
        if links.iter().any(|l| l.name == pattern) {
            return Err(Error::os(
                format!("create macvtap {pattern}"),
                io::Error::from_raw_os_error(libc::EEXIST),
            )
            .with_hint(format!(
                "an interface named {pattern} already exists in {where_}; pick another name \
                 or a pattern such as \"{DEFAULT_NAME}\""
            )));
        }
        return Ok(pattern.to_owned());
    }
    for n in 0..100_000u32 {
        let name = pattern.replacen("%d", &n.to_string(), 1);
        if name.len() >= IFNAMSIZ {
            break;
        }
        if !links.iter().any(|l| l.name == name) {
            return Ok(name);
        }
    }
    Err(Error::InvalidName {
        name: pattern.to_owned(),
        reason: "no free name left: with the number filled in it is longer than 15 bytes",
    })
}

fn create_error(e: io::Error, name: &str, opts: &MacvtapOptions) -> Error {
    let lower = &opts.lower;
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => {
            Some("creating a macvtap link needs CAP_NET_ADMIN (run as root)".to_owned())
        }
        Some(libc::EBUSY) => Some(format!(
            "{lower} cannot take a macvtap link: it is a port of a bridge, bond or team (a \
             device has one receive handler), or it already has a passthru macvlan/macvtap"
        )),
        Some(libc::EINVAL) => Some(format!(
            "the kernel refused the link: {lower} must be an Ethernet device, the mtu at most \
             {lower}'s, and mode=\"passthru\" needs a lower device without other \
             macvlan/macvtap links"
        )),
        Some(libc::EOPNOTSUPP) => {
            Some("this kernel has no macvtap support (CONFIG_MACVTAP)".to_owned())
        }
        _ => None,
    };
    let err = Error::os(
        format!(
            "create macvtap {name} on {lower} (mode {})",
            opts.mode.as_str()
        ),
        e,
    );
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

/// Deletes the macvtap link it names when dropped, unless kept (a failed open leaves
/// nothing behind).
struct Created {
    ifindex: u32,
    keep: bool,
}

impl Created {
    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if !self.keep {
            if let Ok(mut nl) = Netlink::open() {
                let _ = nl.del_link(self.ifindex);
            }
        }
    }
}

/// Open the new link's character device `opts.queues` times, set each descriptor up, and
/// build the adapter.
fn attach(
    opts: &MacvtapOptions,
    ctl: std::os::fd::OwnedFd,
    nl: Netlink,
    name: &str,
    ifindex: u32,
) -> VnetResult<Adapter> {
    let ifname = validate_ifname(name)?;
    let files = open_node(name, ifindex, opts.queues)?;
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if opts.offload {
        flags |= libc::IFF_VNET_HDR;
    }
    for file in &files {
        // The tap driver ignores the name; the flags replace its default (IFF_VNET_HDR on).
        sys::tun_set_iff(file.as_fd(), &[0; IFNAMSIZ], flags as libc::c_short)
            .map_err(|e| Error::os(format!("TUNSETIFF {name}"), e))?;
        if opts.offload {
            setup_vnet(file.as_fd(), name)?;
        }
    }
    // The offload mask is the link's (like a TUN's); a reader without IFF_VNET_HDR gets
    // plain frames whatever it is (the tap driver checks each descriptor's flags), so it
    // is only set for offload.
    let offloads = if opts.offload {
        set_offload_mask(files[0].as_fd(), true, name)?
    } else {
        0
    };
    let mtu = sys::if_get_mtu(ctl.as_fd(), &ifname)
        .map_err(|e| Error::os(format!("MTU of {name}"), e))?;
    Adapter::assemble(Parts {
        files,
        ctl,
        nl,
        ifname,
        ifindex,
        mtu,
        medium: Medium::Ethernet,
        netns: opts.netns.clone(),
        created: true,
        persistent: opts.persist,
        offload: opts.offload.then_some((opts.rx_mode, offloads)),
        backend: Backend::macvtap(),
    })
}

/// `/sys/class/net/NAME/macvtap/tapN/dev` under `sys_class_net`, checked against the
/// ifindex there: (major, minor).
fn read_dev(sys_class_net: &Path, name: &str, ifindex: u32) -> io::Result<(u32, u32)> {
    let dir = sys_class_net.join(name);
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    let index: u32 = fs::read_to_string(dir.join("ifindex"))?
        .trim()
        .parse()
        .map_err(|_| bad("unreadable ifindex"))?;
    if index != ifindex {
        // Another namespace's device of the same name: this sysfs is not ours.
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    let text = fs::read_to_string(dir.join(format!("macvtap/tap{ifindex}/dev")))?;
    let (major, minor) = text.trim().split_once(':').ok_or_else(|| bad("bad dev"))?;
    Ok((
        major.parse().map_err(|_| bad("bad major"))?,
        minor.parse().map_err(|_| bad("bad minor"))?,
    ))
}

/// This thread's view of sysfs: a private mount of this network namespace's sysfs when
/// the thread could get a mount namespace of its own, else the machine's `/sys`.
struct Sysfs {
    /// The thread has a mount namespace of its own (mounts made now are private).
    private: bool,
}

impl Sysfs {
    /// Call on a thread of vnetio's own only (see `sys::mounts`). Never fails: where a
    /// private sysfs cannot be had, the machine's is read (and checked against the
    /// ifindex by `dev`).
    fn for_this_thread() -> Sysfs {
        if mounts::unshare_private_mounts().is_err() {
            return Sysfs { private: false };
        }
        // EBUSY: /sys already is this namespace's sysfs (the same superblock cannot be
        // mounted on itself), as under `ip netns exec`. Any other failure: /sys stays.
        let _ = mounts::mount_fresh(c"sysfs", Path::new("/sys"));
        Sysfs { private: true }
    }

    /// Takes `self` as proof that this thread's `/sys` was set up (or knowingly left).
    #[allow(clippy::unused_self)]
    fn dev(&self, name: &str, ifindex: u32) -> io::Result<(u32, u32)> {
        read_dev(Path::new("/sys/class/net"), name, ifindex)
    }
}

fn node_error(name: &str, step: &str, e: io::Error) -> Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => Some(
            "making the device node needs CAP_MKNOD (root), and reading the link's sysfs \
             entry from another namespace needs CAP_SYS_ADMIN",
        ),
        Some(libc::EACCES) => Some(
            "the temporary directory is on a filesystem mounted nodev; set TMPDIR to one \
             that allows device nodes, or run with CAP_SYS_ADMIN so vnetio uses a private \
             mount",
        ),
        Some(libc::ENOENT | libc::ENODEV) => Some(
            "the link's sysfs entry (macvtap/tapN/dev) was not found: this process's /sys \
             belongs to another network namespace; run with CAP_SYS_ADMIN so vnetio mounts \
             its own",
        ),
        _ => None,
    };
    let err = Error::os(format!("{step} for macvtap {name}"), e);
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

fn open_char(path: &Path) -> io::Result<File> {
    FsOpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK) // std adds O_CLOEXEC
        .open(path)
}

/// Open the character device of macvtap `name` (ifindex `ifindex`) `count` times. Runs on
/// a thread of vnetio's own, in the link's namespace.
fn open_node(name: &str, ifindex: u32, count: usize) -> VnetResult<Vec<File>> {
    let sysfs = Sysfs::for_this_thread();
    let (major, minor) = sysfs
        .dev(name, ifindex)
        .map_err(|e| node_error(name, "read the device numbers", e))?;
    let open_all = |path: &Path| -> VnetResult<Vec<File>> {
        (0..count)
            .map(|_| {
                open_char(path)
                    .map_err(|e| node_error(name, &format!("open {}", path.display()), e))
            })
            .collect()
    };
    if sysfs.private {
        // A tmpfs of this thread's own over /dev: the node is seen by nobody else and goes
        // with the thread (the open descriptors keep working).
        mounts::mount_fresh(c"tmpfs", Path::new("/dev"))
            .map_err(|e| node_error(name, "mount a private tmpfs", e))?;
        let node = PathBuf::from(format!("/dev/tap{ifindex}"));
        mounts::mknod_char(&node, major, minor).map_err(|e| node_error(name, "mknod", e))?;
        let files = open_all(&node);
        let _ = fs::remove_file(&node);
        return files;
    }
    // No mount namespace of our own: /dev/tapN if it is this device, else a node of ours.
    let dev_node = PathBuf::from(format!("/dev/tap{ifindex}"));
    let matches = fs::metadata(&dev_node).is_ok_and(|m| {
        m.file_type().is_char_device() && mounts::dev_numbers(m.rdev()) == (major, minor)
    });
    if matches {
        return open_all(&dev_node);
    }
    let dir = private_dir().map_err(|e| node_error(name, "create a temporary directory", e))?;
    let node = dir.join("tap");
    let files = mounts::mknod_char(&node, major, minor)
        .map_err(|e| node_error(name, "mknod", e))
        .and_then(|()| open_all(&node));
    let _ = fs::remove_file(&node);
    let _ = fs::remove_dir(&dir);
    files
}

/// A new directory only this user may enter, under the temporary directory.
fn private_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    let stamp = crate::device::now_ns();
    for i in 0..16u64 {
        let dir = base.join(format!(
            "vnetio-macvtap-{}-{:x}",
            std::process::id(),
            stamp.wrapping_add(i)
        ));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EEXIST))
}

/// The device numbers of macvtap links `links` (name, ifindex) of namespace `netns`, in
/// order; `None` where they cannot be read.
pub fn char_devs(
    netns: Option<&str>,
    links: &[(String, u32)],
) -> VnetResult<Vec<Option<(u32, u32)>>> {
    netns::run_on_thread(netns, || {
        let sysfs = Sysfs::for_this_thread();
        Ok(links
            .iter()
            .map(|(name, ifindex)| sysfs.dev(name, *ifindex).ok())
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip() {
        for (mode, name, bits) in Mode::ALL {
            assert_eq!(Mode::parse(name), Some(mode));
            assert_eq!(Mode::from_bits(bits), Some(mode));
            assert_eq!((mode.as_str(), mode.bits()), (name, bits));
        }
        assert_eq!(Mode::parse("Bridge"), None);
        assert_eq!(Mode::from_bits(3), None);
    }

    #[test]
    fn names_from_patterns() {
        let links: Vec<LinkInfo> = ["vnmvt0", "vnmvt1", "eth0"]
            .iter()
            .map(|n| LinkInfo {
                name: (*n).to_owned(),
                ..LinkInfo::default()
            })
            .collect();
        assert_eq!(pick_name("vnmvt%d", &links, "here").unwrap(), "vnmvt2");
        assert_eq!(pick_name("mv%d", &links, "here").unwrap(), "mv0");
        assert_eq!(pick_name("mine", &links, "here").unwrap(), "mine");
        let taken = pick_name("eth0", &links, "here").unwrap_err();
        assert_eq!(taken.raw_os_error(), Some(libc::EEXIST));
        // 14 bytes plus a digit fits; two digits would not.
        assert_eq!(
            pick_name("abcdefghijklmn%d", &links, "here").unwrap(),
            "abcdefghijklmn0"
        );
    }

    #[test]
    fn bad_options_are_refused_before_anything_is_created() {
        let mut o = MacvtapOptions::new("eth0");
        o.name = "a-name-that-is-too-long".into();
        assert!(matches!(open(&o), Err(Error::InvalidName { .. })));
        let mut o = MacvtapOptions::new("eth%d");
        o.name = "mv0".into();
        assert!(matches!(open(&o), Err(Error::InvalidArgument(_))));
        let mut o = MacvtapOptions::new("eth0");
        o.queues = 0;
        assert!(matches!(open(&o), Err(Error::InvalidArgument(_))));
        let mut o = MacvtapOptions::new("eth0");
        o.mac = Some([1, 0, 0, 0, 0, 1]);
        assert!(matches!(open(&o), Err(Error::InvalidArgument(_))));
        let mut o = MacvtapOptions::new("eth0");
        o.mtu = Some(10);
        assert!(matches!(open(&o), Err(Error::InvalidArgument(_))));
    }
}
