//! Evaluation throughput: environment steps per second of a diffusion policy (the paper's prior
//! network, 3 × 256, T = 75, untrained) over 10 environments stepped together, one batched policy
//! call per step (`offrl::eval::evaluate`, what training and the bench grid call): native
//! Pendulum-v1 and Hopper-v5 (gymnasium through the Python bridge; skipped when .venv lacks it).
//! One iteration evaluates 10 episodes (one per environment) with a freshly seeded policy, so
//! every iteration takes the same steps. Compare with `benches/reference/eval_torch.py`.
//!
//! `cargo bench --bench eval`

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use offrl::diffusion::{DiffusionPolicy, DiffusionPrior, PriorConfig};
use offrl::envs;

mod support;

const ENVS: usize = 10;

fn bench_eval(c: &mut Criterion) {
    let mut group = c.benchmark_group("eval_10envs");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5));
    for env_id in ["Pendulum-v1", "Hopper-v5"] {
        let env = match envs::make(env_id) {
            Ok(env) => env,
            Err(e) => {
                eprintln!("skipping {env_id}: {e}");
                continue;
            }
        };
        let (obs_dim, act) = (env.observation_space().dim(), env.action_space());
        let spec = support::spec_for(obs_dim, act.dim(), act.high[0]);
        let device = support::device();
        offrl::backend::seed(&device, 0);
        let prior = DiffusionPrior::new(PriorConfig::default().spec(spec).unwrap(), &device)
            .expect("prior");
        // Environments are made before the clock starts (making a gymnasium one takes ms).
        let run = || {
            let pool: Vec<_> = (0..ENVS).map(|_| envs::make(env_id).unwrap()).collect();
            let pool = RefCell::new(pool);
            let make = || Ok(pool.borrow_mut().pop().expect("one per environment"));
            let mut policy = DiffusionPolicy::new(&prior, 0);
            let start = Instant::now();
            let report =
                offrl::eval::evaluate(&mut policy, make, ENVS, ENVS, 0, None).expect("evaluation");
            (start.elapsed(), report.lengths.iter().sum::<usize>())
        };
        let (_, steps) = run();
        group.throughput(Throughput::Elements(steps as u64));
        let mut seconds = Vec::new();
        group.bench_function(env_id, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += run().0;
                }
                seconds.push(total.as_secs_f64() / iters as f64);
                total
            })
        });
        seconds.sort_by(f64::total_cmp);
        if let Some(median) = seconds.get(seconds.len() / 2) {
            eprintln!(
                "{env_id}: {steps} env steps per evaluation, {:.0} env steps/s",
                steps as f64 / median
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_eval);
criterion_main!(benches);
