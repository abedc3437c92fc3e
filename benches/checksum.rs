//! Criterion benchmarks of the Internet checksum. `cargo bench --bench checksum`
//! Target (issue 3): ≥ 15 GB/s per core on 1500-byte frames.
//!
//! Two clocks (`benches/clock/`): `checksum/sum/…` is criterion's wall clock;
//! `checksum-cpu/sum/…` the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), i.e.
//! per core, which other work on a shared machine does not inflate by taking the CPU away
//! (it still slows the code through shared caches and the sibling hyperthread).
mod clock;

use std::hint::black_box;

use clock::ThreadCpu;
use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, Throughput};
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

fn wall(c: &mut Criterion) {
    sum(c, "checksum");
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    sum(c, "checksum-cpu");
}

clock::main_with_both_clocks!(wall, cpu);
