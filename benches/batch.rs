//! Criterion benchmarks of the in-memory paths: batch fill/iterate and the loopback pair.
//! `cargo bench --bench batch`
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vnetio::device::loopback::{pair, Overflow};
use vnetio::{Device, Medium, PacketBatch};

fn batch_fill_iterate(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    for size in [64usize, 1514] {
        let frame = vec![0xabu8; size];
        g.throughput(Throughput::Elements(256));
        g.bench_with_input(BenchmarkId::new("push_256", size), &frame, |b, f| {
            let mut batch = PacketBatch::with_capacity(256, 256 * size);
            b.iter(|| {
                batch.clear();
                for _ in 0..256 {
                    batch.push(black_box(f), 0);
                }
            });
        });
        let batch = PacketBatch::from_frames(std::iter::repeat_n(&frame[..], 256));
        g.bench_with_input(BenchmarkId::new("iterate_256", size), &batch, |b, batch| {
            b.iter(|| batch.iter().map(|f| f[0] as usize).sum::<usize>());
        });
    }
    g.finish();
}

fn loopback_round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("loopback");
    for size in [64usize, 1514] {
        let (a, b) = pair(1024, Medium::Ethernet, 1500, Overflow::Drop).unwrap();
        let frame = vec![0u8; size];
        let frames: Vec<&[u8]> = vec![&frame[..]; 256];
        let mut batch = PacketBatch::with_capacity(256, 256 * 2048);
        g.throughput(Throughput::Elements(256));
        g.bench_function(BenchmarkId::new("send_recv_256", size), |bch| {
            bch.iter(|| {
                a.send_frames(&frames).unwrap();
                batch.clear();
                b.recv_batch(&mut batch, 256, Duration::ZERO).unwrap()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, batch_fill_iterate, loopback_round_trip);
criterion_main!(benches);
