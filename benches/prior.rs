//! Diffusion prior speed at the paper's shapes (Hopper: obs 11, act 3; MLP 3 × 256, T = 75):
//! training steps at batch 512, and sampling latency for 10 states and for 4096 states.
//! `cargo bench --bench prior` (add `-- --quick` for a short run). Compare with
//! `benches/reference/prior_torch.py` (PyTorch, same shapes, 2 threads).

use std::time::Duration;

use burn::module::Module;
use burn::tensor::Device;
use criterion::{criterion_group, criterion_main, Criterion};
use offrl::diffusion::train::{gradient_step, optimizer, PriorConfig};
use offrl::diffusion::{
    sample_actions, ActionTransform, DiffusionPrior, LossWeighting, NoiseSchedule, PriorSpec,
};
use offrl::nn::Normalizer;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const OBS: usize = 11;
const ACT: usize = 3;

fn spec(config: &PriorConfig) -> PriorSpec {
    PriorSpec {
        obs_dim: OBS,
        act_dim: ACT,
        schedule: config.schedule.clone(),
        net: config.net.clone(),
        start: NoiseSchedule::new(&config.schedule)
            .unwrap()
            .start_for(&[0.0; ACT], &[1.0; ACT]),
        obs_norm: Normalizer::identity(OBS),
        actions: ActionTransform::new(&[-1.0; ACT], &[1.0; ACT], true, 0.99).unwrap(),
    }
}

fn uniform(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    use rand::Rng;
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn bench_train_step(c: &mut Criterion) {
    let config = PriorConfig::default();
    let device = Device::flex().autodiff();
    offrl::backend::seed(&device, 0);
    let mut prior = Some(DiffusionPrior::new(spec(&config), &device).unwrap());
    let mut optim = optimizer(&config);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let b = config.batch_size;
    let obs = uniform(&mut rng, b * OBS);
    let actions = uniform(&mut rng, b * ACT);
    let mut group = c.benchmark_group("prior_train");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("step_batch512_hopper", |bench| {
        bench.iter(|| {
            let obs = offrl::nn::tensor2(&obs, b, OBS, &device);
            let (next, loss) = gradient_step(
                prior.take().unwrap(),
                &mut optim,
                obs,
                &actions,
                config.lr,
                LossWeighting::MinSnr(config.min_snr_gamma),
                &mut rng,
            );
            prior = Some(next);
            loss
        })
    });
    group.finish();
}

fn bench_sampling(c: &mut Criterion) {
    let config = PriorConfig::default();
    let device = Device::flex();
    offrl::backend::seed(&device, 0);
    let prior = DiffusionPrior::new(spec(&config), &device).unwrap().valid();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut group = c.benchmark_group("prior_sample_T75");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for n in [10usize, 4096] {
        let obs = uniform(&mut rng, n * OBS);
        group.bench_function(format!("states_{n}"), |bench| {
            bench.iter(|| {
                let obs = offrl::nn::tensor2(&obs, n, OBS, &device);
                offrl::nn::to_vec(sample_actions(&prior, obs, &mut rng))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_train_step, bench_sampling);
criterion_main!(benches);
