//! Dataset layer speed: loading a 1M-transition Hopper-sized dataset (obs 11, act 3) from
//! Parquet (target ≤ 0.5 s) and sampling minibatches of 256 (target ≥ 1M transitions/s).
//!
//! `cargo bench --bench dataset`. The file is written once to target/bench-data/ and reused by
//! `examples/dataset_load.rs` (peak RSS, in a fresh process) and `benches/reference/h5py_load.py`
//! (the same data through h5py).

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use offrl::dataset::{io, random_dataset, sampler::Sampler};

const N: usize = 1_000_000;

fn bench_file() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/hopper-1m.parquet");
    if !path.exists() {
        io::save(&random_dataset(N, 11, 3, 1000, 0), &path).expect("write bench data");
    }
    path
}

fn load(c: &mut Criterion) {
    let path = bench_file();
    let mut g = c.benchmark_group("parquet");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(N as u64));
    g.bench_function("load 1M hopper-sized transitions", |b| {
        b.iter(|| io::load(&path).unwrap())
    });
    g.finish();
}

fn sample(c: &mut Criterion) {
    let data = io::load(&bench_file()).unwrap();
    let mut sampler = Sampler::new(&data, 0);
    let mut g = c.benchmark_group("sampler");
    g.throughput(Throughput::Elements(256));
    g.bench_function("minibatch 256 of 1M", |b| {
        b.iter(|| sampler.sample(256).rewards[0])
    });
    g.finish();
}

criterion_group!(benches, load, sample);
criterion_main!(benches);
