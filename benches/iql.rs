//! IQL critic update speed at Hopper dims (obs 11, act 3; twin Q and V of 2 × 256, ReLU):
//! one update at batch 256 — V expectile step, twin-Q TD step, Polyak target update, each with
//! its Adam step (`offrl train critic`; the actor off). Compare with
//! `benches/reference/iql_torch.py` (PyTorch, the same networks and steps, 2 threads).
//!
//! `cargo bench --bench iql`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use offrl::algos::iql::{Iql, IqlConfig};
use offrl::dataset::Batch;
use offrl::train::OfflineAlgorithm;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod support;
use support::{data_spec, uniform, ACT, OBS};

const BATCH: usize = 256;

fn bench_critic_step(c: &mut Criterion) {
    let config = IqlConfig {
        train_actor: false,
        ..Default::default()
    };
    let mut iql = Iql::new(config, data_spec(), &support::device().autodiff(), 0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let batch = Batch {
        size: BATCH,
        obs_dim: OBS,
        act_dim: ACT,
        observations: uniform(&mut rng, BATCH * OBS),
        actions: uniform(&mut rng, BATCH * ACT),
        rewards: uniform(&mut rng, BATCH),
        next_observations: uniform(&mut rng, BATCH * OBS),
        terminals: (0..BATCH)
            .map(|_| f32::from(rng.random_bool(0.01)))
            .collect(),
    };
    let mut group = c.benchmark_group("iql_critic");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    let mut step = 0;
    group.bench_function("step_batch256_hopper", |b| {
        b.iter(|| {
            step += 1;
            iql.update(&batch, step).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_critic_step);
criterion_main!(benches);
