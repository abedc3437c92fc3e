//! Criterion benchmarks of the Internet checksum. `cargo bench --bench checksum`
//! Target (issue 3): ≥ 15 GB/s per core on 1500-byte frames.
//!
//! Two clocks, as in `benches/vhost_ring.rs`: `checksum/sum/…` is criterion's wall clock;
//! `checksum-cpu/sum/…` the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), i.e.
//! per core, which other work on a shared machine does not inflate by taking the CPU away
//! (it still slows the code through shared caches and the sibling hyperthread).
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rustix::time::{clock_gettime, ClockId};
use vnetio::wire::checksum;

fn sum<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut g = c.benchmark_group(group);
    for size in [64usize, 576, 1500, 9000, 65_535] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("sum", size), &data, |b, d| {
            b.iter(|| checksum::sum(black_box(d)));
        });
    }
    g.finish();
}

/// The benchmark thread's CPU time, as a criterion measurement (values in ns, shown as
/// durations; throughput per CPU second).
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_secs_f64() * 1e9
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn wall(c: &mut Criterion) {
    sum(c, "checksum");
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    sum(c, "checksum-cpu");
}

criterion_group!(wall_clock, wall);
criterion_group! {
    name = cpu_clock;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu
}
criterion_main!(wall_clock, cpu_clock);
