//! Receive filters: classic BPF programs and their interpreter (`bpf`), their translation
//! to counting eBPF socket filters for the kernel (`ebpf`), and the in-process filter a
//! device runs on frames it has read (`UserFilter`). Where a filter runs is a
//! [`Placement`].

pub mod bpf;
pub mod ebpf;

use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
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
///
/// It also closes the gap a kernel filter leaves when it is attached: frames already
/// queued in the kernel's ring passed no filter. After attaching one, the device calls
/// [`UserFilter::catch_up`]; each queue then runs the same program here on what it reads
/// until it has seen its ring empty once (every frame read after that was queued after
/// the kernel filter), and a receive call that was already running when the filter was
/// attached filters what it read before returning. So once `set_filter` returns, no
/// frame the filter rejects reaches the reader.
#[derive(Debug, Default)]
pub struct UserFilter {
    program: RwLock<Option<Arc<Program>>>,
    rejected: AtomicU64,
    /// Bumped by every change of program or catch-up.
    generation: AtomicU64,
    /// Fast path: whether any queue is still catching up.
    catching_up: AtomicBool,
    catch_up: Mutex<CatchUp>,
    /// Frames the catch-up of a classic filter rejected (the kernel counts a classic
    /// filter's rejects as drops, so these are reported as drops too).
    dropped_by_catch_up: AtomicU64,
}

/// The program a newly attached kernel filter runs, and the queues that have not yet seen
/// their ring empty since.
#[derive(Debug, Default)]
struct CatchUp {
    program: Option<Arc<Program>>,
    pending: Vec<bool>,
    as_drops: bool,
}

impl UserFilter {
    fn lock_catch_up(&self) -> MutexGuard<'_, CatchUp> {
        self.catch_up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replace the program (`None`: deliver everything). Ends any catch-up.
    pub fn set(&self, program: Option<Arc<Program>>) {
        *self
            .program
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = program;
        *self.lock_catch_up() = CatchUp::default();
        self.catching_up.store(false, Release);
        self.generation.fetch_add(1, AcqRel);
    }

    /// A kernel filter running `program` was just attached to a device with `queues`
    /// queues: check here what was queued before it (see the type's docs). Call after
    /// the kernel filter is in place. `as_drops`: count rejects as drops (classic
    /// filters), else as filtered.
    pub fn catch_up(&self, program: Arc<Program>, queues: usize, as_drops: bool) {
        *self
            .program
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        *self.lock_catch_up() = CatchUp {
            program: Some(program),
            pending: vec![true; queues],
            as_drops,
        };
        self.catching_up.store(true, Release);
        self.generation.fetch_add(1, AcqRel);
    }

    /// Queue `queue` found its kernel ring empty: from now on it reads only frames the
    /// kernel filter has seen.
    pub fn ring_empty(&self, queue: usize) {
        if !self.catching_up.load(Acquire) {
            return;
        }
        let mut c = self.lock_catch_up();
        if let Some(p) = c.pending.get_mut(queue) {
            *p = false;
        }
        if c.pending.iter().all(|p| !p) {
            self.catching_up.store(false, Release);
        }
    }

    /// Whether a program is set (catch-ups do not count).
    pub fn is_set(&self) -> bool {
        self.program
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Frames rejected so far (by the program, and by catch-ups of eBPF filters).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Relaxed)
    }

    /// Frames rejected by catch-ups of classic filters.
    pub fn dropped_by_catch_up(&self) -> u64 {
        self.dropped_by_catch_up.load(Relaxed)
    }

    /// The program queue `queue` runs now: the user's, else a pending catch-up's.
    fn program_for(&self, queue: usize) -> Option<(Arc<Program>, bool)> {
        let user = self
            .program
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(p) = user {
            return Some((p, false));
        }
        if !self.catching_up.load(Acquire) {
            return None;
        }
        let c = self.lock_catch_up();
        let pending = c.pending.get(queue).copied().unwrap_or(false);
        c.program
            .clone()
            .filter(|_| pending)
            .map(|p| (p, c.as_drops))
    }

    fn count(&self, rejected: usize, as_drops: bool) {
        let counter = if as_drops {
            &self.dropped_by_catch_up
        } else {
            &self.rejected
        };
        counter.fetch_add(rejected as u64, Relaxed);
    }

    /// Receive through `recv` (queue `queue`'s unfiltered receive, which calls
    /// [`UserFilter::ring_empty`] when its ring runs dry) and keep only the frames the
    /// program accepts. Waits, within `wait`, until at least one frame is accepted.
    /// Returns (frames, bytes) appended.
    pub(crate) fn recv(
        &self,
        queue: usize,
        batch: &mut PacketBatch,
        max: usize,
        wait: Duration,
        mut recv: impl FnMut(&mut PacketBatch, usize, Duration) -> VnetResult<usize>,
    ) -> VnetResult<(usize, usize)> {
        let generation = self.generation.load(Acquire);
        let program = self.program_for(queue);
        let (start, before) = (batch.len(), batch.nbytes());
        let mut kept = match &program {
            None => recv(batch, max, wait)?,
            Some((program, as_drops)) => {
                let deadline = Instant::now() + wait;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let n = recv(batch, max, left)?;
                    if n == 0 {
                        break 0;
                    }
                    let dropped = batch.retain_from(start, |frame, _| program.run(frame));
                    self.count(dropped, *as_drops);
                    if dropped < n || Instant::now() >= deadline {
                        break n - dropped;
                    }
                }
            }
        };
        // A kernel filter attached while this call read: what it read may predate it.
        if kept > 0 && self.generation.load(Acquire) != generation {
            let (latest, as_drops) = {
                let c = self.lock_catch_up();
                (c.program.clone(), c.as_drops)
            };
            let used = program.map(|(p, _)| p);
            if let Some(p) = latest.filter(|p| !used.is_some_and(|u| Arc::ptr_eq(&u, p))) {
                let dropped = batch.retain_from(start, |frame, _| p.run(frame));
                self.count(dropped, as_drops);
                kept -= dropped;
            }
        }
        Ok((kept, batch.nbytes() - before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf::Insn;

    fn returning(k: u32) -> Arc<Program> {
        // BPF_RET | BPF_K: accept k bytes of every frame (0: reject).
        let ret = Insn {
            code: 0x06,
            jt: 0,
            jf: 0,
            k,
        };
        Arc::new(Program::new(vec![ret]).unwrap())
    }

    fn frames(batch: &mut PacketBatch, n: usize) -> usize {
        for i in 0..n {
            batch.push(&[i as u8; 60], 0);
        }
        n
    }

    #[test]
    fn catch_up_filters_until_each_queue_saw_its_ring_empty() {
        let f = UserFilter::default();
        f.catch_up(returning(0), 2, false);
        let mut b = PacketBatch::default();
        let got = f.recv(0, &mut b, 10, Duration::ZERO, |b, _, _| Ok(frames(b, 3)));
        assert_eq!(got.unwrap().0, 0);
        assert_eq!(f.rejected(), 3);
        f.ring_empty(0);
        // Queue 0 is done; queue 1 still checks what it reads.
        let got = f.recv(0, &mut b, 10, Duration::ZERO, |b, _, _| Ok(frames(b, 2)));
        assert_eq!(got.unwrap().0, 2);
        let got = f.recv(1, &mut b, 10, Duration::ZERO, |b, _, _| Ok(frames(b, 2)));
        assert_eq!(got.unwrap().0, 0);
        f.ring_empty(1);
        assert!(!f.catching_up.load(Acquire));
        assert_eq!(f.rejected(), 5);
        assert_eq!(f.dropped_by_catch_up(), 0);
    }

    #[test]
    fn a_filter_attached_during_a_read_judges_what_that_read_returns() {
        let f = UserFilter::default();
        let mut b = PacketBatch::default();
        let got = f.recv(0, &mut b, 10, Duration::ZERO, |b, _, _| {
            let n = frames(b, 4); // read before the kernel filter was attached ...
            f.catch_up(returning(0), 1, true); // ... which happens now
            Ok(n)
        });
        assert_eq!(got.unwrap(), (0, 0));
        assert_eq!(f.dropped_by_catch_up(), 4);
        assert_eq!(f.rejected(), 0);
        // Setting a program (or none) ends the catch-up.
        f.set(None);
        let got = f.recv(0, &mut b, 10, Duration::ZERO, |b, _, _| Ok(frames(b, 1)));
        assert_eq!(got.unwrap().0, 1);
    }
}
