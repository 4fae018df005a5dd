//! Diffusion prior speed at the paper's shapes (Hopper: obs 11, act 3; MLP 3 × 256, T = 75):
//! training steps at batch 512, and sampling latency for 10 states (one evaluation step of 10
//! environments) and for 4096 states, through [`DiffusionPolicy`] (what evaluation calls).
//! `cargo bench --bench prior`. Compare with `benches/reference/prior_torch.py` (PyTorch, same
//! shapes, 2 threads).

use std::time::Duration;

use burn::tensor::Device;
use criterion::{criterion_group, criterion_main, Criterion};
use offrl::diffusion::gradient_step;
use offrl::diffusion::{DiffusionPolicy, DiffusionPrior, PriorConfig};
use offrl::policy::Policy;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod support;
use support::{data_spec, uniform, ACT, OBS};

fn prior(config: &PriorConfig, device: &Device) -> DiffusionPrior {
    offrl::backend::seed(device, 0);
    DiffusionPrior::new(config.spec(data_spec()).unwrap(), device).unwrap()
}

fn bench_train_step(c: &mut Criterion) {
    let config = PriorConfig::default();
    let device = support::device().autodiff();
    let mut model = Some(prior(&config, &device));
    let mut optim = config.optimizer();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let b = config.train.batch_size;
    let obs = uniform(&mut rng, b * OBS);
    let actions = uniform(&mut rng, b * ACT);
    let mut group = c.benchmark_group("prior_train");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("step_batch512_hopper", |bench| {
        bench.iter(|| {
            let obs = offrl::nn::tensor2(&obs, b, OBS, &device);
            let (next, loss) = gradient_step(
                model.take().unwrap(),
                &mut optim,
                obs,
                &actions,
                config.lr,
                config.weighting(),
                &mut rng,
            );
            model = Some(next);
            loss
        })
    });
    group.finish();
}

fn bench_sampling(c: &mut Criterion) {
    let prior = prior(&PriorConfig::default(), &support::device());
    let mut policy = DiffusionPolicy::new(&prior, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut group = c.benchmark_group("prior_sample_T75");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for n in [10usize, 4096] {
        let obs = uniform(&mut rng, n * OBS);
        group.bench_function(format!("states_{n}"), |bench| {
            bench.iter(|| policy.act(&obs, n).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_train_step, bench_sampling);
criterion_main!(benches);
