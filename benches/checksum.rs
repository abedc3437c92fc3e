//! Criterion benchmarks of the Internet checksum. `cargo bench --bench checksum`
//! Target (issue 3): ≥ 15 GB/s per core on 1500-byte frames.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vnetio::wire::checksum;

fn sum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for size in [64usize, 576, 1500, 9000, 65_535] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("sum", size), &data, |b, d| {
            b.iter(|| checksum::sum(black_box(d)));
        });
    }
    g.finish();
}

criterion_group!(benches, sum);
criterion_main!(benches);
