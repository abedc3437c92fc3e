//! Kernel-side receive filters on an adapter: counting eBPF socket filters
//! (TUNSETFILTEREBPF), classic filters (TUNATTACHFILTER), and the bookkeeping that keeps
//! reject counts across filter changes.

use super::{Adapter, Backend};
use crate::error::{Error, VnetResult};
use crate::filter::bpf::Program;
use crate::filter::Placement;
use crate::sys;
use crate::wire::Medium;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, MutexGuard};

/// The adapter's filter state on the kernel side.
#[derive(Default)]
pub(super) struct KernelFilter {
    /// The attached eBPF program and its reject counter (a per-CPU array map).
    pub(super) ebpf: Option<(OwnedFd, OwnedFd)>,
    /// A classic program is attached (TUNATTACHFILTER).
    pub(super) classic: bool,
    /// Rejects counted by eBPF programs since replaced (their maps are gone).
    pub(super) retired: u64,
    /// Where the current filter runs.
    pub(super) placement: Option<Placement>,
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
    pub(super) fn rejected(&self) -> u64 {
        self.retired
            + self
                .ebpf
                .as_ref()
                .map_or(0, |(_, map)| sys::bpf_counter_sum(map.as_fd()).unwrap_or(0))
    }
}

impl Adapter {
    pub(super) fn kfilter(&self) -> MutexGuard<'_, KernelFilter> {
        self.kfilter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Attach `program` in the kernel as a counting eBPF filter.
    pub(super) fn attach_ebpf(
        &self,
        fd: BorrowedFd<'_>,
        program: &Program,
    ) -> VnetResult<(OwnedFd, OwnedFd)> {
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
        let insns = crate::filter::ebpf::translate(program, map.as_raw_fd()).map_err(|why| {
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
    pub(super) fn vlan_tags_in_data(&self) {
        let _ = sys::ethtool_features_off(
            self.link.ctl.as_fd(),
            &self.ifname,
            &["tx-vlan-hw-insert", "tx-vlan-stag-hw-insert"],
        );
    }

    /// Detach every kernel-side filter (on close, so a persistent adapter does not keep
    /// filtering for its next user: the kernel ties the eBPF program to the device).
    pub(super) fn detach_kernel_filters(&self) {
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

    pub(super) fn apply_filter(
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
        // here, as a TUN reader usually wants every packet and filters are rare there. A
        // macvtap descriptor takes no filter at all (the tap driver has neither
        // TUNSETFILTEREBPF nor TUNATTACHFILTER, and it is no socket for SO_ATTACH_FILTER).
        let auto = placement.is_none();
        let kernel_filters = matches!(self.backend, Backend::Tun);
        if !kernel_filters && matches!(placement, Some(Placement::Kernel | Placement::Classic)) {
            return Err(Error::InvalidArgument(format!(
                "{} is a macvtap adapter, whose descriptor takes no kernel filter (the tap \
                 driver has no TUNSETFILTEREBPF or TUNATTACHFILTER); use placement=\"auto\" \
                 or \"userspace\" (the filter then runs in this process, rejects counted in \
                 rx_filtered)",
                self.name
            )));
        }
        let mut want = placement.unwrap_or(match self.medium {
            Medium::Ethernet if kernel_filters => Placement::Kernel,
            _ => Placement::Userspace,
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
                kf.drop_classic(fd);
                // Frames already queued passed no filter: check them here.
                let queues = self.queues.len();
                self.link.filter.catch_up(Arc::new(program), queues, false);
            }
            Placement::Classic => {
                sys::tun_attach_filter(fd, program.insns())
                    .map_err(|e| Error::os(format!("TUNATTACHFILTER {}", self.name), e))?;
                kf.classic = true;
                kf.drop_ebpf(fd);
                let queues = self.queues.len();
                self.link.filter.catch_up(Arc::new(program), queues, true);
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
