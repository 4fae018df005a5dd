//! Diffusion prior speed at the paper's shapes (Hopper: obs 11, act 3; MLP 3 × 256, T = 75):
//! training steps at batch 512, and sampling latency for 10 states (one evaluation step of 10
//! environments) and for 4096 states, through [`DiffusionPolicy`] (what evaluation calls); and
//! the few-step samplers DxMI trains from such a prior (its chain respaced to K = 4 and 10
//! steps, through [`SamplerPolicy`]) at the same states. `cargo bench --bench prior`. Compare with `benches/reference/prior_torch.py` (PyTorch, same
//! shapes, 2 threads).

use std::time::Duration;

use burn::tensor::Device;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use offrl::algos::dxmi::{DxmiConfig, Sampler, SamplerChain, SamplerPolicy};
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

/// Sampling for 10 states (one evaluation step of 10 environments) and for 4096, named
/// `{prefix}states_{n}` in `group`.
fn bench_act(
    group: &mut BenchmarkGroup<'_, WallTime>,
    prefix: &str,
    policy: &mut dyn Policy,
    rng: &mut ChaCha8Rng,
) {
    for n in [10usize, 4096] {
        let obs = uniform(rng, n * OBS);
        group.bench_function(format!("{prefix}states_{n}"), |bench| {
            bench.iter(|| policy.act(&obs, n).unwrap())
        });
    }
}

fn bench_sampling(c: &mut Criterion) {
    let prior = prior(&PriorConfig::default(), &support::device());
    let mut policy = DiffusionPolicy::new(&prior, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut group = c.benchmark_group("prior_sample_T75");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    bench_act(&mut group, "", &mut policy, &mut rng);
    group.finish();
}

/// DxMI's few-step use: the T = 75 prior's network on its chain respaced to K steps.
fn bench_few_step_sampling(c: &mut Criterion) {
    let device = support::device();
    let prior = prior(&PriorConfig::default(), &device);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut group = c.benchmark_group("few_step_sample");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let defaults = DxmiConfig::default();
    for k in [4usize, 10] {
        let chain = SamplerChain::from_prior(
            &prior.schedule,
            k,
            defaults.respacing,
            defaults.schedule.variance,
        )
        .unwrap();
        let sampler = Sampler {
            sigma: chain.initial_sigma(&device),
            eps: prior.net.clone(),
        };
        let mut policy = SamplerPolicy::new(&sampler, chain, &data_spec(), 1.0, 1);
        bench_act(&mut group, &format!("K{k}_"), &mut policy, &mut rng);
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_train_step,
    bench_sampling,
    bench_few_step_sampling
);
criterion_main!(benches);
