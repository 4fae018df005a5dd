//! Shared by the benches (`mod support;`) and `benches/rtb_memory.rs`: Hopper dims (obs 11,
//! act 3), random inputs, an RTB trainer at the benchmarked shapes and FLOP counts.

#![allow(dead_code)]

use burn::tensor::{Device, Tensor};
use offrl::algos::iql::{Iql, IqlConfig};
use offrl::algos::rtb::{QReward, QRtb, Rtb, RtbConfig};
use offrl::dataset::spec::DataSpec;
use offrl::diffusion::{DiffusionPrior, EpsNetConfig, PriorSpec, ScheduleConfig};
use offrl::nn::tensor2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const OBS: usize = 11;
pub const ACT: usize = 3;

/// The device the benches run on: `OFFRL_BENCH_BACKEND` names the backend (`flex`, the default;
/// `tch` with `--features tch`; the others of `offrl --backend`), so that one bench compares
/// backends: `OFFRL_BENCH_BACKEND=tch cargo bench --features tch --bench prior`.
pub fn device() -> Device {
    use clap::ValueEnum;
    // As the binary does at start-up.
    offrl::backend::init_cpu_runtime();
    let name = std::env::var("OFFRL_BENCH_BACKEND").unwrap_or_else(|_| "flex".into());
    let kind = offrl::backend::BackendKind::from_str(&name, true)
        .unwrap_or_else(|e| panic!("OFFRL_BENCH_BACKEND={name}: {e}"));
    kind.device()
        .unwrap_or_else(|e| panic!("OFFRL_BENCH_BACKEND={name}: {e}"))
}

/// `n` values uniform in [−1, 1).
pub fn uniform(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Hopper dims, actions in ±1, identity observation normalisation.
pub fn data_spec() -> DataSpec {
    spec_for(OBS, ACT, 1.0)
}

/// `obs_dim` / `act_dim` with actions in ±`bound` and identity observation normalisation.
pub fn spec_for(obs_dim: usize, act_dim: usize, bound: f32) -> DataSpec {
    DataSpec {
        obs_dim,
        act_dim,
        action_low: vec![-bound; act_dim],
        action_high: vec![bound; act_dim],
        obs_mean: vec![0.0; obs_dim],
        obs_std: vec![1.0; obs_dim],
        reward_scale: 1.0,
    }
}

/// An untrained IQL critic (target twin Q 2 × 256 and V) at Hopper dims.
pub fn critic(seed: u64) -> offrl::algos::iql::IqlCritic {
    let config = IqlConfig {
        train_actor: false,
        ..Default::default()
    };
    Iql::new(config, data_spec(), &device(), seed)
        .expect("valid IQL config")
        .critic()
}

/// One benchmarked shape.
pub struct Shape {
    pub name: &'static str,
    pub states: usize,
    pub k: usize,
    pub steps: usize,
    /// Trajectories per backward pass, as its config sets it.
    pub chunk: usize,
}

pub const SHAPES: [Shape; 2] = [
    Shape {
        name: "paper",
        states: 64,
        k: 64,
        steps: 75,
        chunk: 128,
    },
    Shape {
        name: "cpu",
        states: 32,
        k: 16,
        steps: 20,
        chunk: 512,
    },
];

/// An RTB trainer at `shape` (prior schedule rescaled to keep ᾱ_T), `chunk` trajectories per
/// backward pass.
pub fn build(shape: &Shape, chunk: usize) -> QRtb {
    build_with_prior(shape, chunk).0
}

/// [`build`] and the prior it fine-tunes.
pub fn build_with_prior(shape: &Shape, chunk: usize) -> (QRtb, DiffusionPrior) {
    let device = device();
    offrl::backend::seed(&device, 0);
    let scale = 75.0 / shape.steps as f64;
    let schedule = ScheduleConfig {
        steps: shape.steps,
        beta_start: 1e-4 * scale,
        beta_end: 0.02 * scale,
        ..Default::default()
    };
    // Pre-tanh actions in ±1 and identity observation statistics (the paper's Hopper setup).
    let spec = PriorSpec::new(data_spec(), schedule, EpsNetConfig::default(), true, 0.99).unwrap();
    let prior = DiffusionPrior::new(spec, &device).unwrap();
    let reward = QReward {
        q: critic(0),
        alpha: 0.1,
        spaces: prior.spec.clone(),
        tanh_jacobian: true,
    };
    let config = RtbConfig {
        trajectories: shape.k,
        chunk,
        ..Default::default()
    };
    let rtb = Rtb::new(
        config,
        prior.acting_eps(),
        reward,
        OBS,
        Some(&prior.net),
        &device,
    )
    .unwrap();
    (rtb, prior)
}

/// Random states `[states, OBS]` and actions `[states, ACT]`.
pub fn batch(shape: &Shape, seed: u64) -> (Tensor<2>, Tensor<2>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let device = device();
    let obs = uniform(&mut rng, shape.states * OBS);
    let act = uniform(&mut rng, shape.states * ACT);
    (
        tensor2(&obs, shape.states, OBS, &device),
        tensor2(&act, shape.states, ACT, &device),
    )
}

/// Multiply-adds of one ε-network forward per row (3 × 256, Hopper dims): the state/action part
/// of the first layer, two hidden layers, the output. The time part of the first layer is one
/// projection per diffusion step, not per row, and is not counted.
pub fn eps_macs() -> f64 {
    let w = 256.0;
    (OBS + ACT) as f64 * w + 2.0 * w * w + w * ACT as f64
}

/// Multiply-adds of one twin-Q forward per row (2 × (2 × 256), ReLU).
pub fn twin_q_macs() -> f64 {
    let w = 256.0;
    2.0 * ((OBS + ACT) as f64 * w + w * w + w)
}

/// FLOPs (2 per multiply-add of the matrix products; biases, LayerNorm, activations not counted)
/// that one RTB update needs, on- or off-policy alike, per row-step (states × k × T rows): the
/// prior's ε forward, ∇ₓ log r (twin Q forward + input backward ≈ 2 × forward), and the
/// correction's forward and backward (input and weight gradients: ≈ 3 × forward). PyTorch, which
/// keeps the whole graph, does exactly this; offrl's bounded-memory path may do more (a no-grad
/// pass), which then counts as overhead, not as achieved FLOP/s.
pub fn flops(shape: &Shape) -> f64 {
    let rows = (shape.states * shape.k * shape.steps) as f64;
    2.0 * rows * (eps_macs() + 2.0 * twin_q_macs() + 3.0 * eps_macs())
}
