//! Diffusion prior speed at the paper's shapes (Hopper: obs 11, act 3; MLP 3 × 256, T = 75):
//! training steps at batch 512, and sampling latency for 10 states and for 4096 states.
//! `cargo bench --bench prior` (add `-- --quick` for a short run). Compare with
//! `benches/reference/prior_torch.py` (PyTorch, same shapes, 2 threads).

use std::time::Duration;

use burn::module::Module;
use burn::tensor::Device;
use criterion::{criterion_group, criterion_main, Criterion};
use offrl::algos::common::DataSpec;
use offrl::diffusion::train::gradient_step;
use offrl::diffusion::{sample_actions, DiffusionPrior, PriorConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const OBS: usize = 11;
const ACT: usize = 3;

fn prior(config: &PriorConfig, device: &Device) -> DiffusionPrior {
    let data = DataSpec {
        obs_dim: OBS,
        act_dim: ACT,
        action_low: vec![-1.0; ACT],
        action_high: vec![1.0; ACT],
        obs_mean: vec![0.0; OBS],
        obs_std: vec![1.0; OBS],
        reward_scale: 1.0,
    };
    offrl::backend::seed(device, 0);
    DiffusionPrior::new(config.spec(data).unwrap(), device).unwrap()
}

fn uniform(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    use rand::Rng;
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn bench_train_step(c: &mut Criterion) {
    let config = PriorConfig::default();
    let device = Device::flex().autodiff();
    let mut model = Some(prior(&config, &device));
    let mut optim = config.optimizer();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let b = config.train.batch_size;
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
    let device = Device::flex();
    let prior = prior(&PriorConfig::default(), &device).valid();
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
