//! Receive filters: classic BPF programs and their interpreter (`bpf`), their translation
//! to counting eBPF socket filters for the kernel (`ebpf`), and the in-process filter a
//! device runs on frames it has read (`UserFilter`). Where a filter runs is a
//! [`Placement`].

pub mod bpf;
pub mod ebpf;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::batch::PacketBatch;
use crate::error::VnetResult;
use bpf::Program;

/// Where a receive filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the kernel, as an eBPF socket filter that counts its rejects (TAP and TUN;
    /// needs CAP_BPF or CAP_SYS_ADMIN to load).
    Kernel,
    /// In the kernel, as a classic filter (TUNATTACHFILTER): no extra privilege, but the
    /// kernel counts rejects together with ring-full drops.
    Classic,
    /// In this process, by vnetio's BPF interpreter, on frames already read.
    Userspace,
}

impl Placement {
    /// The name used in the Python API.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Kernel => "kernel",
            Placement::Classic => "classic",
            Placement::Userspace => "userspace",
        }
    }

    /// Parse a Python-side name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "kernel" => Some(Placement::Kernel),
            "classic" => Some(Placement::Classic),
            "userspace" => Some(Placement::Userspace),
            _ => None,
        }
    }
}

/// A filter run in this process on frames as they are received.
#[derive(Debug, Default)]
pub struct UserFilter {
    program: RwLock<Option<Arc<Program>>>,
    rejected: AtomicU64,
}

impl UserFilter {
    /// Replace the program (`None`: deliver everything).
    pub fn set(&self, program: Option<Arc<Program>>) {
        *self
            .program
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = program;
    }

    /// Whether a program is set.
    pub fn is_set(&self) -> bool {
        self.program
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Frames rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    /// Receive through `recv` (a device's unfiltered receive) and keep only the frames
    /// the program accepts. Waits, within `wait`, until at least one frame is accepted.
    /// Returns (frames, bytes) appended.
    pub(crate) fn recv(
        &self,
        batch: &mut PacketBatch,
        max: usize,
        wait: Duration,
        mut recv: impl FnMut(&mut PacketBatch, usize, Duration) -> VnetResult<usize>,
    ) -> VnetResult<(usize, usize)> {
        let program = self
            .program
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let (start, before) = (batch.len(), batch.nbytes());
        let Some(program) = program else {
            let n = recv(batch, max, wait)?;
            return Ok((n, batch.nbytes() - before));
        };
        let deadline = Instant::now() + wait;
        loop {
            let n = recv(
                batch,
                max,
                deadline.saturating_duration_since(Instant::now()),
            )?;
            if n == 0 {
                return Ok((0, 0));
            }
            let dropped = batch.retain_from(start, |frame, _| program.run(frame));
            self.rejected.fetch_add(dropped as u64, Relaxed);
            if dropped < n || Instant::now() >= deadline {
                return Ok((n - dropped, batch.nbytes() - before));
            }
        }
    }
}
