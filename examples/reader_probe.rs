//! Where a batch reader's time goes: one process, one TAP, the same frames, drained by
//! several receive loops taking turns every few batches, so that other work on a shared
//! machine weighs on every loop alike. Each loop's figure is the reading thread's CPU time
//! per frame (`CLOCK_THREAD_CPUTIME_ID`), summed over its turns; one JSON line per loop.
//!
//! Run inside a bridge loop's namespace (`benches/bridge_loop.py --probe N` runs it N times
//! per frame size and reports the medians). It fills the loop itself: it attaches to TAP B,
//! raises B's queue, then `--rounds` times writes `--frames` frames into TAP A and drains
//! them.
//!
//! The loops (every one reads one frame per `read()` and checks size and signature, as
//! `native_bridge` does):
//!
//! * `buf`: into one reused buffer (`native_bridge`'s reader).
//! * `keep`: back to back into an arena of 256 frames, two arenas in turn (a program that
//!   keeps each batch while it reads the next, as a caller of `recv_batch` does).
//! * `batch`: into vnetio's `PacketBatch` (`recv_slot`/`commit` with a `BurstClock`
//!   timestamp), two batches of 256 in turn: the library's receive loop without the device
//!   wrapper.
//! * `batch-pf`: `batch` with the library's hint (`vnetio::sys::cache::prefetch`): the
//!   next frame's destination, as long as the last frame, prefetched before each `read()`.
//!   This is what `tuntap::Queue`'s receive loop does.
//! * `lib`: vnetio's own receive path, `tuntap::Queue::recv_batch` (its filter hook,
//!   counters, the prefetch), two batches of 256 in turn, on the same queue.
//! * `batch1`: `batch` with one batch reused (a caller that drops each batch before the
//!   next receive).

#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

#[path = "common/tuntap.rs"]
mod tuntap;

use std::fs::File;
use std::io::{Read, Write};
use std::time::Duration;

use rustix::time::{clock_gettime, ClockId};
use std::sync::Arc;
use vnetio::batch::MAX_FRAME;
use vnetio::device::tuntap::{Adapter, OpenOptions, Queue};
use vnetio::device::BurstClock;
use vnetio::sys::cache::prefetch;
use vnetio::{Device, Medium, PacketBatch};

const SRC_MAC: [u8; 6] = [0x02, 0x76, 0x6e, 0x10, 0x00, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0x76, 0x6e, 0x10, 0x00, 0x02];
const BATCH: usize = 256;
/// Batches per turn of one loop.
const TURN: usize = 4;

fn thread_cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

struct Loops {
    /// vnetio's queue on TAP B, and a second descriptor of it for the plain loops.
    queue: Arc<Queue>,
    tap: File,
    size: usize,
    sig: [u8; 8],
    buf: Vec<u8>,
    arenas: [Vec<u8>; 2],
    arena_turn: usize,
    batches: [PacketBatch; 2],
    batch_turn: usize,
}

impl Loops {
    fn own(&self, frame: &[u8]) -> bool {
        frame.len() == self.size && frame[6..14] == self.sig
    }

    /// Read up to `BATCH` frames with loop `which`; frames read (0: ring empty).
    fn batch(&mut self, which: &str) -> usize {
        let mut n = 0;
        let mut own = 0;
        let mut clock = BurstClock::default();
        match which {
            "buf" => {
                while n < BATCH {
                    let Ok(len) = (&self.tap).read(&mut self.buf) else {
                        break;
                    };
                    own += usize::from(len == self.size && self.buf[6..14] == self.sig);
                    n += 1;
                }
            }
            "keep" => {
                self.arena_turn ^= 1;
                let arena = &mut self.arenas[self.arena_turn];
                let mut at = 0;
                while n < BATCH {
                    let Ok(len) = (&self.tap).read(&mut arena[at..at + MAX_FRAME]) else {
                        break;
                    };
                    own += usize::from(len == self.size && arena[at + 6..at + 14] == self.sig);
                    at += len;
                    n += 1;
                }
            }
            "batch-pf" => {
                self.batch_turn ^= 1;
                let mut b = std::mem::take(&mut self.batches[self.batch_turn]);
                b.clear();
                let mut last_len = 0;
                while n < BATCH {
                    let slot = b.recv_slot(MAX_FRAME);
                    prefetch(&slot[..last_len]);
                    let Ok(len) = (&self.tap).read(slot) else {
                        break;
                    };
                    last_len = len;
                    b.commit(len, clock.stamp());
                    n += 1;
                }
                own += b.iter().filter(|f| self.own(f)).count();
                self.batches[self.batch_turn] = b;
            }
            "lib" => {
                self.batch_turn ^= 1;
                let mut b = std::mem::take(&mut self.batches[self.batch_turn]);
                b.clear();
                n = self
                    .queue
                    .recv_batch(&mut b, BATCH, Duration::ZERO)
                    .unwrap_or(0);
                own += b.iter().filter(|f| self.own(f)).count();
                self.batches[self.batch_turn] = b;
            }
            "batch" | "batch1" => {
                if which == "batch" {
                    self.batch_turn ^= 1;
                }
                let mut b = std::mem::take(&mut self.batches[self.batch_turn]);
                b.clear();
                while n < BATCH {
                    let Ok(len) = (&self.tap).read(b.recv_slot(MAX_FRAME)) else {
                        break;
                    };
                    b.commit(len, clock.stamp());
                    n += 1;
                }
                own += b.iter().filter(|f| self.own(f)).count();
                self.batches[self.batch_turn] = b;
            }
            _ => unreachable!(),
        }
        std::hint::black_box(own);
        n
    }
}

fn main() -> std::io::Result<()> {
    let mut size = 1514;
    let mut frames = 250_000usize;
    let mut rounds = 3;
    let mut loops_arg = "buf,keep,batch,batch-pf,batch1,lib".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().expect("a value");
        match a.as_str() {
            "--size" => size = v.parse().expect("a size"),
            "--frames" => frames = v.parse().expect("a count"),
            "--rounds" => rounds = v.parse().expect("a count"),
            "--loops" => loops_arg = v,
            _ => panic!("unknown option {a}"),
        }
    }
    let names: Vec<&str> = loops_arg.split(',').collect();
    let adapter = Adapter::open(&OpenOptions::new("vnB", Medium::Ethernet)).expect("vnB opens");
    let queue = Arc::clone(&adapter.queues()[0]);
    let tap = tuntap::dup_fd(queue.raw_fd().expect("open"))?;
    tuntap::set_nonblocking(&tap)?;
    let status = std::process::Command::new("ip")
        .args(["link", "set", "vnB", "txqueuelen", "262144"])
        .status()?;
    assert!(status.success(), "ip link set txqueuelen failed");
    let mut writer = tuntap::attach("vnA", tuntap::Kind::Tap, false)?;
    for name in ["vnA", "vnB"] {
        let path = format!("/sys/class/net/{name}/brport/state");
        while std::fs::read_to_string(&path).map_or(true, |s| s.trim() != "3") {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut frame = Vec::with_capacity(size);
    frame.extend_from_slice(&DST_MAC);
    frame.extend_from_slice(&SRC_MAC);
    frame.extend_from_slice(&0x88B5u16.to_be_bytes());
    frame.resize(size, 0xA5);
    let mut sig = [0u8; 8];
    sig.copy_from_slice(&frame[6..14]);
    let mut l = Loops {
        queue,
        tap,
        size,
        sig,
        buf: vec![0; 65_536],
        arenas: [vec![0; BATCH * MAX_FRAME], vec![0; BATCH * MAX_FRAME]],
        arena_turn: 0,
        batches: [PacketBatch::default(), PacketBatch::default()],
        batch_turn: 0,
    };
    let mut cpu = vec![0u64; names.len()];
    let mut got = vec![0usize; names.len()];
    for _ in 0..rounds {
        for _ in 0..frames {
            let _ = writer.write(&frame);
        }
        let mut turn = 0;
        loop {
            let k = turn % names.len();
            let t0 = thread_cpu_ns();
            let mut n = 0;
            for _ in 0..TURN {
                n += l.batch(names[k]);
            }
            cpu[k] += thread_cpu_ns() - t0;
            got[k] += n;
            if n == 0 {
                break;
            }
            turn += 1;
        }
    }
    for (k, name) in names.iter().enumerate() {
        println!(
            "{{\"loop\":\"{name}\",\"size\":{size},\"ns_per_frame\":{:.1},\"frames\":{}}}",
            cpu[k] as f64 / got[k].max(1) as f64,
            got[k]
        );
    }
    Ok(())
}
