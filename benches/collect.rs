//! Collection throughput (transitions per second), to compare with raw gymnasium stepping
//! measured by `benches/reference/gym_step.py` in the same venv:
//!
//!     cargo bench --bench collect
//!     .venv/bin/python benches/reference/gym_step.py Hopper-v5
//!
//! Each iteration collects 5,000 transitions with `dataset::collect::rollout` (the code behind
//! `offrl collect` and `offrl dataset make`): policy call, bridged step, row appended.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use offrl::dataset::collect::rollout;
use offrl::dataset::DatasetBuilder;
use offrl::envs;
use offrl::policy;

const STEPS: usize = 5_000;

fn bench_collect(c: &mut Criterion) {
    let mut group = c.benchmark_group("collect");
    group.throughput(Throughput::Elements(STEPS as u64));
    group.sample_size(10);
    let cases: &[(&str, &str)] = &[
        ("Pendulum-v1", "pendulum-swingup"),
        ("Hopper-v5", "random"),
        ("Hopper-v5", "hopper-sac"),
    ];
    for &(env_id, policy_name) in cases {
        let mut env = match envs::make(env_id) {
            Ok(env) => env,
            Err(e) => {
                eprintln!("skipping {env_id}: {e}");
                continue;
            }
        };
        let mut pol = match policy::by_name(policy_name, env.as_ref(), false, 0.0, 0) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("skipping {policy_name}: {e}");
                continue;
            }
        };
        let (od, ad) = (env.observation_space().dim(), env.action_space().dim());
        let mut seed = 0;
        group.bench_function(format!("{env_id}/{policy_name}"), |b| {
            b.iter(|| {
                let mut builder = DatasetBuilder::with_capacity(od, ad, STEPS);
                seed += 10_000;
                rollout(env.as_mut(), &mut pol, STEPS, seed, &mut builder, || {}).unwrap();
                builder.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_collect);
criterion_main!(benches);
