//! Shared by `benches/rtb.rs` and `examples/rtb_memory.rs`: the benchmarked shapes, an RTB
//! trainer at Hopper dims with random (untrained) prior and twin Q, and the FLOP count.

#![allow(dead_code)]

use burn::tensor::{Device, Tensor};
use offrl::algos::common::{DataSpec, NetConfig as QNet, TwinQ};
use offrl::algos::rtb::{QReward, Rtb, RtbConfig};
use offrl::diffusion::{DiffusionPrior, NetConfig, PriorSpec, ScheduleConfig};
use offrl::nn::tensor2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const OBS: usize = 11;
pub const ACT: usize = 3;

/// One benchmarked shape.
pub struct Shape {
    pub name: &'static str,
    pub states: usize,
    pub k: usize,
    pub steps: usize,
}

pub const SHAPES: [Shape; 2] = [
    Shape {
        name: "paper",
        states: 64,
        k: 64,
        steps: 75,
    },
    Shape {
        name: "cpu",
        states: 32,
        k: 16,
        steps: 20,
    },
];

pub type QFn = Box<dyn Fn(Tensor<2>, Tensor<2>) -> Tensor<1>>;
pub type BenchRtb = Rtb<DiffusionPrior, QReward<QFn>>;

/// An RTB trainer at `shape` (prior schedule rescaled to keep ᾱ_T), `chunk` trajectories per
/// backward pass.
pub fn build(shape: &Shape, chunk: usize) -> BenchRtb {
    let device = Device::flex();
    offrl::backend::seed(&device, 0);
    let scale = 75.0 / shape.steps as f64;
    let schedule = ScheduleConfig {
        steps: shape.steps,
        beta_start: 1e-4 * scale,
        beta_end: 0.02 * scale,
        ..Default::default()
    };
    // Pre-tanh actions in ±1 and identity observation statistics (the paper's Hopper setup).
    let spec = PriorSpec::new(data_spec(), schedule, NetConfig::default(), true, 0.99).unwrap();
    let prior = DiffusionPrior::new(spec, &device).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let net = QNet {
        hidden: 2,
        width: 256,
        layer_norm: false,
    };
    let twin = TwinQ::new(&net, OBS, ACT, &mut rng, &device);
    let q: QFn = Box::new(move |o, a| twin.min(o, a));
    let reward = QReward {
        q,
        alpha: 0.1,
        spaces: prior.spec.clone(),
        tanh_jacobian: true,
    };
    let config = RtbConfig {
        trajectories: shape.k,
        chunk,
        ..Default::default()
    };
    let template = prior.net.clone();
    Rtb::new(config, prior, reward, OBS, Some(&template), &device).unwrap()
}

/// Hopper dims, actions in ±1, identity observation normalisation.
pub fn data_spec() -> DataSpec {
    DataSpec {
        obs_dim: OBS,
        act_dim: ACT,
        action_low: vec![-1.0; ACT],
        action_high: vec![1.0; ACT],
        obs_mean: vec![0.0; OBS],
        obs_std: vec![1.0; OBS],
        reward_scale: 1.0,
    }
}

/// Random states `[states, OBS]` and actions `[states, ACT]`.
pub fn batch(shape: &Shape, seed: u64) -> (Tensor<2>, Tensor<2>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let device = Device::flex();
    let obs: Vec<f32> = (0..shape.states * OBS)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let act: Vec<f32> = (0..shape.states * ACT)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    (
        tensor2(&obs, shape.states, OBS, &device),
        tensor2(&act, shape.states, ACT, &device),
    )
}

/// FLOPs of one update, counting 2 per multiply-add of the networks' matrix products per
/// row-step (biases, LayerNorm, activations and the per-step time projections not counted):
/// prior ε forward; correction forward in the no-grad pass (on-policy only: off-policy leaves
/// log π to the gradient pass); ∇_x log r (twin Q forward + input backward ≈ 2 × forward); the
/// correction's forward + backward (activations and weights ≈ 3 × forward) in the gradient pass.
pub fn flops(shape: &Shape, on_policy: bool) -> f64 {
    let w = 256.0;
    let eps = (OBS + ACT) as f64 * w + 2.0 * w * w + w * ACT as f64;
    let twin_q = 2.0 * ((OBS + ACT) as f64 * w + w * w + w);
    let rows = (shape.states * shape.k * shape.steps) as f64;
    let nograd_corr = if on_policy { eps } else { 0.0 };
    2.0 * rows * (eps + nograd_corr + 2.0 * twin_q + 3.0 * eps)
}
