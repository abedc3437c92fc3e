//! The writer thread and its page-aligned buffers: whole pages go to the file with
//! O_DIRECT (or ordinary writes where the filesystem refuses it) while the capture loop
//! fills the next buffer.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{pad4, ALIGN};

/// A page-aligned buffer of fixed capacity, and the file offset of its first byte.
///
/// Safe code: an over-allocated `Vec` and the aligned window inside it. The `Vec` never
/// grows, so the window never moves (also not when the block moves between threads).
#[derive(Debug)]
pub(super) struct Block {
    pub(super) mem: Vec<u8>,
    pub(super) off: usize,
    pub(super) cap: usize,
    pub(super) len: usize,
    pub(super) base: u64,
}

impl Block {
    pub(super) fn new(cap: usize) -> Block {
        let mem = vec![0u8; cap + ALIGN];
        let off = mem.as_ptr().align_offset(ALIGN);
        Block {
            mem,
            off,
            cap,
            len: 0,
            base: 0,
        }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.mem[self.off..self.off + self.len]
    }

    /// File offset just past the block's bytes.
    pub(super) fn end(&self) -> u64 {
        self.base + self.len as u64
    }

    pub(super) fn put(&mut self, bytes: &[u8]) {
        let at = self.off + self.len;
        self.mem[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    pub(super) fn put_u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }

    pub(super) fn put_u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }

    pub(super) fn put_zeros(&mut self, n: usize) {
        let at = self.off + self.len;
        self.mem[at..at + n].fill(0);
        self.len += n;
    }

    pub(super) fn patch_u32(&mut self, at: usize, v: u32) {
        let at = self.off + at;
        self.mem[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub(super) fn put_option(&mut self, code: u16, value: &[u8]) {
        self.put_u16(code);
        self.put_u16(value.len() as u16);
        self.put(value);
        self.put_zeros(pad4(value.len()));
    }

    /// Patch a pcapng block's two length fields once its body (from `start`) is in place.
    pub(super) fn finish_pcapng_block(&mut self, start: usize) {
        let total = (self.len - start + 4) as u32;
        self.patch_u32(start + 4, total);
        self.put_u32(total);
    }
}

/// Where bytes go: the file, through its `O_DIRECT` descriptor when there is one and the
/// write is aligned; a pipe or a character device (`-w /dev/stdout`) takes plain
/// sequential writes.
pub(super) struct Sink {
    pub(super) file: Arc<File>,
    pub(super) direct: Option<File>,
    pub(super) direct_used: Arc<AtomicBool>,
    /// Not a regular file: no offsets, no direct I/O, nothing is ever rewritten.
    pub(super) stream: bool,
}

impl Sink {
    /// A second sink on the same file that never uses direct I/O (for unaligned tails).
    pub(super) fn cached(&self) -> Sink {
        Sink {
            file: Arc::clone(&self.file),
            direct: None,
            direct_used: Arc::clone(&self.direct_used),
            stream: self.stream,
        }
    }

    /// Write all of `data` at `at`. Returns how many bytes reached the file with the error.
    pub(super) fn write_all_at(
        &mut self,
        mut data: &[u8],
        mut at: u64,
    ) -> Result<(), (u64, io::Error)> {
        let start = at;
        while !data.is_empty() {
            let aligned = at % ALIGN as u64 == 0
                && data.len() % ALIGN == 0
                && data.as_ptr().align_offset(ALIGN) == 0;
            let direct = match self.direct.as_ref() {
                Some(d) if aligned => Some(d),
                _ => None,
            };
            let result = match direct {
                Some(d) => d.write_at(data, at),
                None if self.stream => (&*self.file).write(data),
                None => self.file.write_at(data, at),
            };
            match result {
                Ok(0) => return Err((at - start, io::Error::from(io::ErrorKind::WriteZero))),
                Ok(n) => {
                    data = &data[n..];
                    at += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The filesystem takes O_DIRECT opens but not these writes: plain writes
                // from now on.
                Err(e) if direct.is_some() && e.raw_os_error() == Some(libc::EINVAL) => {
                    self.direct = None;
                    self.direct_used.store(false, Relaxed);
                }
                Err(e) => return Err((at - start, e)),
            }
        }
        Ok(())
    }
}

/// A buffer for the writer thread: write `len` bytes of `block` at its base.
pub(super) struct Job {
    pub(super) block: Block,
    pub(super) len: usize,
}

/// A written (or failed, or skipped) job, and its block back for reuse.
pub(super) struct Done {
    pub(super) block: Block,
    /// Every byte of the file before this offset was written.
    pub(super) upto: u64,
    pub(super) error: Option<io::Error>,
}

/// How often a wait for the writer thread checks that the thread still exists.
const ALIVE_CHECK: Duration = Duration::from_millis(200);

/// The writer thread and its channels.
pub(super) struct Spool {
    pub(super) jobs: Option<Sender<Job>>,
    pub(super) done: Receiver<Done>,
    pub(super) thread: Option<JoinHandle<()>>,
    pub(super) in_flight: usize,
    /// Hands the thread its file (the thread starts before the file is created).
    sink: Option<Sender<Sink>>,
    /// The thread's kernel task id (0: not known). A thread killed on its own (seccomp's
    /// SECCOMP_RET_KILL_THREAD) drops nothing, so its channels never report its end: waits
    /// look for its `/proc/self/task` entry instead of blocking forever.
    tid: Arc<AtomicU64>,
}

/// This thread's kernel task id, from `/proc/thread-self` ("PID/task/TID"); 0 without /proc.
fn current_tid() -> u64 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

impl Spool {
    /// Start the writer thread. It starts before the file is created, so a thread that
    /// cannot start leaves nothing behind; [`Spool::begin`] hands it the file.
    pub(super) fn start() -> io::Result<Spool> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done) = mpsc::channel::<Done>();
        let (sink_tx, sink_rx) = mpsc::channel::<Sink>();
        let tid = Arc::new(AtomicU64::new(0));
        let thread_tid = Arc::clone(&tid);
        let thread = std::thread::Builder::new()
            .name("vnetio-capture-writer".into())
            .spawn(move || {
                thread_tid.store(current_tid(), Relaxed);
                let Ok(mut sink) = sink_rx.recv() else {
                    return; // the file could not be created
                };
                let mut failed = false;
                for job in job_rx {
                    let at = job.block.base;
                    let (upto, error) = if failed {
                        (
                            at,
                            Some(io::Error::other("not written after an earlier error")),
                        )
                    } else {
                        let data = &job.block.bytes()[..job.len];
                        match sink.write_all_at(data, at) {
                            Ok(()) => (at + job.len as u64, None),
                            Err((n, e)) => {
                                failed = true;
                                (at + n, Some(e))
                            }
                        }
                    };
                    let done = Done {
                        block: job.block,
                        upto,
                        error,
                    };
                    if done_tx.send(done).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Spool {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            in_flight: 0,
            sink: Some(sink_tx),
            tid,
        })
    }

    /// Give the thread the file to write to.
    pub(super) fn begin(&mut self, sink: Sink) {
        if let Some(tx) = self.sink.take() {
            // A thread that is gone already shows up at the first job.
            let _ = tx.send(sink);
        }
    }

    /// Whether the thread still exists (true when that cannot be told).
    fn alive(&self) -> bool {
        match self.tid.load(Relaxed) {
            0 => true,
            tid => Path::new(&format!("/proc/self/task/{tid}")).exists(),
        }
    }

    /// The next job the thread finished, waiting for it; None once the thread is gone
    /// (ended, or killed).
    pub(super) fn wait_done(&self) -> Option<Done> {
        loop {
            match self.done.recv_timeout(ALIVE_CHECK) {
                Ok(done) => return Some(done),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) if !self.alive() => {
                    return self.done.try_recv().ok(); // what it sent before it went
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Stop the thread once it has written what it was given.
    pub(super) fn stop(&mut self) {
        self.jobs = None;
        self.sink = None;
        if let Some(t) = self.thread.take() {
            // A killed thread cannot be joined (std would wait for a result that never
            // comes): it is left detached; its kernel task is gone already.
            if t.is_finished() || self.alive() {
                let _ = t.join();
            }
        }
    }
}
