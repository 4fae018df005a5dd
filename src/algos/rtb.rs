//! Relative Trajectory Balance (RTB) fine-tuning of a diffusion policy with a Q-function as
//! reward (Venkatraman et al., NeurIPS 2024, "Amortizing intractable inference in diffusion
//! models…", offline-RL experiments, App. G).
//!
//! # Objective
//! The posterior π(a|s) ∝ μ(a|s) · r(s, a) is a second diffusion model on the prior μ's schedule.
//! For a denoising trajectory τ = (x_T → … → x_0) of state s,
//!
//! `L(τ; s) = ½ (log Z(s) + Σ_t log π(x_{t-1}|x_t, s) − Σ_t log μ(x_{t-1}|x_t, s) − log r(s, x_0))²`
//!
//! with `log r = Q(s, a)/α`. Both chains start from the same `x_T` distribution, so its density
//! cancels. By default `log Z(s)` is not learned: for each state, k trajectories give the batch
//! estimate `log Z(s) = mean_k(log r + log μ(τ) − log π(τ))` (detached) — the VarGrad loss, half
//! the per-state variance of the log-ratio. A learned `log Z(s)` network is an option
//! ([`LogZKind::Learned`]).
//!
//! Units: the paper's code minimises `½(α log π − α log μ + C − Q)²`, i.e. α² times this loss;
//! Adam is invariant to that scale (up to its ε), only the logged values differ.
//!
//! # Parameterisation
//! `ε_π(s, x_t, t) = ε_μ(s, x_t, t) (frozen) + NN(s, x_t, t) + c(t) ⊙ clip(∇_x log r(s, x_t), ±100)`
//! ([`Correction`]): NN has the prior network's shape ([`EpsNet`]); `c` is a small MLP of the
//! Fourier time features with one output per action dimension; the reward gradient is taken at
//! the noisy `x_t`, detached, and clamped (the "Langevin inductive bias").
//!
//! **Initialisation.** The paper's code copies the whole trained prior network into the
//! correction, so that at step 0 `ε_π ≈ 2 ε_μ`, and initialises `c` randomly: π does not start at
//! μ. Here the output layers of NN and of `c` are zero by default, so `ε_π = ε_μ` exactly and
//! `log π(τ) = log μ(τ)` at initialisation (tested). [`CorrectionInit`] offers `zero` (fresh hidden
//! layers), `prior_features` (hidden layers copied from the prior, zero output: starts at μ with
//! the prior's features) and `copy_prior` (the paper's code, for reproduction).
//!
//! **Pre-tanh actions.** When the prior models `u = atanh(a)` (its `PriorSpec::pre_tanh`),
//! the reward is evaluated at `a = tanh(u)`. With `tanh_jacobian = true` (the paper's code, the
//! default), `log r(s, u) = Q(s, tanh u)/α + Σ_i log(1 − tanh² u_i)`: the posterior over `a` is
//! then `μ_a(a) · Π_i(1 − a_i²) · exp(Q/α)`, which pushes mass away from the action bounds. With
//! `tanh_jacobian = false`, `log r = Q(s, tanh u)/α` and the posterior over `a` is exactly the
//! KL-regularised target `μ_a(a) exp(Q/α)` (a reward is a function, not a density: it needs no
//! change-of-variables term). The Jacobian uses the stable form
//! `log(1 − tanh² u) = 2(log 2 − |u| − log(1 + e^{−2|u|}))` (the paper adds 1e-7 inside the log,
//! which caps the penalty for |u| > 8).
//!
//! # Training
//! Every batch of states gets `on_policy` on-policy updates (k trajectories per state sampled
//! from π without gradient; `log μ` on the same trajectories; Q on the final actions) and
//! `off_policy` off-policy updates (the batch's dataset actions, each repeated k times and noised
//! along the forward process — the paper's "mixed" training).
//!
//! **Bounded memory.** The trajectories and every frozen term (`ε_μ(x_t)`, the Langevin gradient,
//! `log μ`, `log r`) are computed once, without gradient. Since on- and off-policy trajectories are
//! detached and the VarGrad `log Z` is detached, each trajectory's loss depends on the trained
//! parameters only through its own `log π(τ)`: the full-batch loss is the sum of per-chunk losses
//! `½ Σ_{i∈chunk} δ_i² / N` with each state's `log Z`, so backward passes over chunks of about
//! `chunk` trajectories (rounded up to whole states; all T steps of a chunk in one network call)
//! accumulate exactly the full-batch gradient (tested) while holding the graph of one chunk only.
//! A chunk holds all k trajectories of its states, so it computes their VarGrad `log Z` from its
//! own forward pass (detached) — which also spares the off-policy update a separate `log π` pass.
//! With a learned `log Z` each row's `log Z_φ(s_i)` is computed inside its chunk, exact too.
//! Cost: one more forward pass of the correction than keeping the whole graph (the paper's code),
//! in exchange for memory that does not grow with k · T.
//!
//! **Temperature units.** The paper sets α per task in the reward's units, so the same α tilts
//! μ strongly on a task whose Q varies widely across actions and hardly at all on another.
//! `alpha_scale = "q_spread"` measures α in units of the critic's spread instead: at the first
//! update, `σ_Q` = the mean over the batch's states of the standard deviation of `Q(s, a)` over
//! [`Q_SPREAD_SAMPLES`] actions `a ~ μ(·|s)`; then `log r = Q/(α σ_Q)`, so that with α = 1 the
//! log-weights `log r` of μ's actions at a state have a standard deviation of about one nat on
//! every task. `σ_Q` is kept in the checkpoint (a resumed run does not measure it again).
//!
//! The paper's extra Langevin steps at `t = 1` at evaluation (`--extra`) are `eval_extra_steps`.

use std::ops::Range;
use std::path::Path;

use burn::module::Module;
use burn::nn::{Initializer, LinearConfig};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::common::{repeat_rows, scalar, RngState};
use super::iql::IqlCritic;
use super::AlgoKind;
use crate::dataset::spec::{DataConfig, DataSpec, RewardNorm};
use crate::dataset::{Batch, Dataset};
use crate::diffusion::fused::{EpsRows, FusedEpsNet, LeafEps};
use crate::diffusion::{
    forward_noise_trajectory, normal_noise, reverse_log_prob_rows, reverse_step,
    sample_actions_scaled, sample_start, DiffusionPolicy, DiffusionPrior, EpsModel, EpsNet,
    NetConfig, NoiseSchedule, PriorSpec,
};
use crate::error::{Error, Result};
use crate::eval::probe::{Probe, POLICY_NAMES, PRIOR_NAMES};
use crate::nn::tensor1;
use crate::nn::{Activation, FourierTimeEmbedding, Mlp, MlpConfig};
use crate::policy::Policy;
use crate::train::checkpoint::Checkpoint;
use crate::train::{
    load_optim, module_parts, EvalHook, LoopConfig, Metrics, OfflineAlgorithm, Snapshot,
};

/// The algorithm's name in the registry and its checkpoints' kind.
pub const NAME: &str = "rtb";

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// RTB hyperparameters. Defaults: the paper's (`configs/rtb.toml`); `configs/rtb-cpu.toml` is an
/// affordable CPU profile. `train.batch_size` is the number of states per batch; each batch gets
/// `on_policy` + `off_policy` updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtbConfig {
    /// The behaviour prior μ: a checkpoint folder or run directory of `offrl train prior`.
    pub prior: String,
    /// The critic Q: a checkpoint folder or run directory of `offrl train critic` / `iql`.
    pub critic: String,
    /// Temperature α of `log r = Q/α` (the paper tunes it per task in 0.05 – 0.5), in the units
    /// of `alpha_scale`.
    pub alpha: f64,
    /// What α is measured in: the reward's own units (the paper) or the critic's spread over the
    /// prior's actions (see the module docs, "Temperature units").
    #[serde(default)]
    pub alpha_scale: AlphaScale,
    /// Trajectories per state, k.
    pub trajectories: usize,
    /// Trajectories per backward pass (bounds memory; 0 = the whole batch at once). The gradient
    /// does not depend on it (up to float rounding). 128 is also the fastest measured on the CPU
    /// (benches/rtb.rs): larger chunks' buffers exceed what the allocator keeps for reuse.
    pub chunk: usize,
    /// Adam learning rate of the correction.
    pub lr: f64,
    /// Adam ε (PyTorch's default 1e-8, as the paper's code; burn's default is 1e-5).
    pub adam_eps: f64,
    /// On-policy updates per batch.
    pub on_policy: usize,
    /// Off-policy updates per batch (dataset actions, forward-noised).
    pub off_policy: usize,
    pub log_z: LogZConfig,
    pub correction: CorrectionConfig,
    /// Add the tanh Jacobian to the reward when the prior models pre-tanh actions (see the module
    /// docs).
    pub tanh_jacobian: bool,
    /// When acting, repeat the final denoising step (t = 1, with its noise and reward gradient)
    /// this many more times: the paper's code's `--extra` (20 steps; off by default there).
    #[serde(default)]
    pub eval_extra_steps: usize,
    /// When acting, multiply the chain's noise draws by this (1 samples π; below 1 acts at a
    /// lower temperature, towards π's modes).
    #[serde(default = "crate::config::one")]
    pub act_noise_scale: f64,
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for RtbConfig {
    /// The paper's settings (App. G and its code): 64 states × 64 trajectories, Adam 5e-4, one
    /// on- and one off-policy update per batch, 150k batches, evaluation every 5000.
    fn default() -> Self {
        Self {
            prior: String::new(),
            critic: String::new(),
            alpha: 0.1,
            alpha_scale: AlphaScale::Absolute,
            trajectories: 64,
            chunk: 128,
            lr: 5e-4,
            adam_eps: 1e-8,
            on_policy: 1,
            off_policy: 1,
            log_z: LogZConfig::default(),
            correction: CorrectionConfig::default(),
            tanh_jacobian: true,
            eval_extra_steps: 0,
            act_noise_scale: 1.0,
            // Observations are normalised with the prior's statistics, Q has its own: the
            // data spec only checks dimensions.
            data: DataConfig {
                normalize_obs: false,
                reward_norm: RewardNorm::None,
            },
            train: LoopConfig {
                steps: 150_000,
                batch_size: 64,
                log_every: 100,
                checkpoint_every: 5000,
                eval_every: 5000,
                holdout: 0.0,
            },
        }
    }
}

/// The units of RTB's temperature α.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlphaScale {
    /// `log r = Q/α` (the paper).
    #[default]
    Absolute,
    /// `log r = Q/(α σ_Q)` with `σ_Q` the critic's spread over the prior's actions.
    QSpread,
}

/// Actions drawn from μ per state to measure the critic's spread `σ_Q`.
pub const Q_SPREAD_SAMPLES: usize = 16;

/// The mean over states of the (population) standard deviation of `q`, which holds `k`
/// consecutive values per state.
pub fn mean_spread(q: &[f32], k: usize) -> f64 {
    let states = q.len() / k;
    let sd = |row: &[f32]| {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / k as f64;
        (row.iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / k as f64)
            .sqrt()
    };
    q.chunks(k).map(sd).sum::<f64>() / states as f64
}

/// How `log Z(s)` is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogZKind {
    /// Per-state batch estimate from the k trajectories, detached (the paper's code).
    #[default]
    Vargrad,
    /// A network `log Z_φ(s)` trained by the same loss (its output bias starts at the first
    /// batch's estimate).
    Learned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogZConfig {
    pub kind: LogZKind,
    pub lr: f64,
    pub width: usize,
    pub hidden: usize,
}

impl Default for LogZConfig {
    fn default() -> Self {
        Self {
            kind: LogZKind::Vargrad,
            lr: 1e-3,
            width: 256,
            hidden: 2,
        }
    }
}

/// How the correction network starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionInit {
    /// Fresh hidden layers, zero output layers: π = μ at step 0.
    #[default]
    Zero,
    /// Hidden layers copied from the prior network, zero output layers: π = μ at step 0.
    PriorFeatures,
    /// The paper's code: the whole prior network copied (ε_π ≈ 2 ε_μ at step 0) and a random `c(t)`.
    CopyPrior,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrectionConfig {
    /// Shape of NN(s, x_t, t). Must equal the prior's for `prior_features` / `copy_prior`.
    pub net: NetConfig,
    pub init: CorrectionInit,
    /// The `c(t) ⊙ ∇ log r(s, x_t)` term.
    pub langevin: bool,
    /// The reward gradient is clamped to ±this.
    pub langevin_clip: f64,
    /// Hidden width / layers of `c(t)` (LayerNorm + GELU, as in the paper's code).
    pub langevin_width: usize,
    pub langevin_hidden: usize,
}

impl Default for CorrectionConfig {
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            init: CorrectionInit::Zero,
            langevin: true,
            langevin_clip: 100.0,
            langevin_width: 128,
            langevin_hidden: 2,
        }
    }
}

impl RtbConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return bad(format!(
                "alpha must be positive and finite, got {}",
                self.alpha
            ));
        }
        if self.trajectories == 0 {
            return bad("trajectories must be at least 1".into());
        }
        if self.on_policy + self.off_policy == 0 {
            return bad("on_policy + off_policy must be at least 1".into());
        }
        if self.lr.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || self.log_z.lr.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return bad("learning rates must be positive".into());
        }
        if self.correction.langevin_clip.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return bad("correction.langevin_clip must be positive".into());
        }
        crate::diffusion::check_noise_scale(self.act_noise_scale)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Reward
// ---------------------------------------------------------------------------------------------

/// `log r(s, x)` for chain outputs `x` (model space, `[n, act_dim]`) and the observations the
/// ε-models see (normalised, `[n, obs_dim]`): `[n]`, differentiable with respect to `x`.
pub trait LogReward {
    fn log_reward(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<1>;

    /// `∇_x log r(s, x)`, detached, on `x`'s device without autodiff. The default
    /// differentiates [`LogReward::log_reward`] with burn ([`reward_gradient`]); override it
    /// with a faster computation of the same values.
    fn gradient(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<2> {
        reward_gradient(self, obs, x)
    }
}

impl<R: LogReward + ?Sized> LogReward for &R {
    fn log_reward(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<1> {
        (**self).log_reward(obs, x)
    }

    fn gradient(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<2> {
        (**self).gradient(obs, x)
    }
}

/// An action-value function `Q(s, a)` on raw observations and environment actions: `[n]`,
/// differentiable with respect to `a`.
pub trait QFunction {
    fn q(&self, obs: Tensor<2>, actions: Tensor<2>) -> Tensor<1>;

    /// `∂Q/∂a` (row-major `[n, act_dim]`) at raw observations `obs` and environment actions
    /// `actions` (row-major host data), when the function can compute it on the host (the
    /// fused executors); `None` sends [`QReward`] to burn's autodiff.
    fn action_gradient(&self, _obs: &[f32], _actions: &[f32], _n: usize) -> Option<Vec<f32>> {
        None
    }
}

impl<F: Fn(Tensor<2>, Tensor<2>) -> Tensor<1>> QFunction for F {
    fn q(&self, obs: Tensor<2>, actions: Tensor<2>) -> Tensor<1> {
        self(obs, actions)
    }
}

/// `log r(s, x) = Q(s, a(x))/α [+ Σ log(1 − tanh² x)]`: maps the chain's observations back to raw
/// ones and its outputs to environment actions (both by the prior's [`PriorSpec`]) before
/// calling Q.
#[derive(Debug, Clone)]
pub struct QReward<Q> {
    pub q: Q,
    pub alpha: f64,
    /// The prior's spaces: observation normalisation and model-space actions.
    pub spaces: PriorSpec,
    /// Add the tanh Jacobian (only meaningful for pre-tanh action spaces).
    pub tanh_jacobian: bool,
}

impl<Q: QFunction> QReward<Q> {
    /// Raw observations from normalised ones (on tensors; [`DataSpec::denormalize_obs`] on host
    /// data).
    fn raw_obs(&self, obs: Tensor<2>) -> Tensor<2> {
        let maps = self.spaces.data.tensors(&obs.device());
        obs * maps.obs_std + maps.obs_mean
    }
}

/// `Σ_i log(1 − tanh² u_i)` per row, in the stable form `2(log 2 − |u| − log(1 + e^{−2|u|}))`.
pub fn tanh_log_jacobian(u: Tensor<2>) -> Tensor<1> {
    let n = u.dims()[0];
    let a = u.abs();
    let per_dim = (a.clone().mul_scalar(-2.0).exp().log1p() + a)
        .neg()
        .add_scalar(std::f64::consts::LN_2)
        .mul_scalar(2.0);
    per_dim.sum_dim(1).reshape([n])
}

impl<Q: QFunction> LogReward for QReward<Q> {
    fn log_reward(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<1> {
        let a = self.spaces.action_to_env_tensor(x.clone());
        let q = self.q.q(self.raw_obs(obs), a).div_scalar(self.alpha);
        if self.tanh_jacobian && self.spaces.pre_tanh {
            q + tanh_log_jacobian(x)
        } else {
            q
        }
    }

    /// The chain rule of [`QReward::log_reward`] on the host around Q's own action gradient,
    /// when Q has one ([`QFunction::action_gradient`]); burn's autodiff otherwise.
    fn gradient(&self, obs: Tensor<2>, x: Tensor<2>) -> Tensor<2> {
        let [n, ad] = x.dims();
        let device = x.device().without_autodiff();
        let xv = crate::nn::to_vec(x.clone());
        let raw = self
            .spaces
            .data
            .denormalize_obs(&crate::nn::to_vec(obs.clone()));
        let map = self.spaces.action_map(&xv);
        let Some(dq) = self.q.action_gradient(&raw, &map.env, n) else {
            return reward_gradient(self, obs, x);
        };
        let inv_alpha = 1.0 / self.alpha as f32;
        let mut grad: Vec<f32> = (dq.iter().zip(&map.derivative))
            .map(|(q, d)| q * d * inv_alpha)
            .collect();
        // The Jacobian term exists only for pre-tanh actions (where `tanh` is there).
        if let Some(tanh) = map.tanh.as_ref().filter(|_| self.tanh_jacobian) {
            // d/dx Σ log(1 − tanh² x) = −2 tanh x.
            (grad.iter_mut().zip(tanh)).for_each(|(g, t)| *g -= 2.0 * t);
        }
        crate::nn::tensor2(&grad, n, ad, &device)
    }
}

/// `∇_x log r(s, x)`, detached, on `x`'s device without autodiff. Works whatever device the reward
/// lives on: `x` is made a fresh autodiff leaf and everything else enters as a constant.
pub fn reward_gradient<R: LogReward + ?Sized>(
    reward: &R,
    obs: Tensor<2>,
    x: Tensor<2>,
) -> Tensor<2> {
    let leaf = x.clone().without_autodiff().autodiff().require_grad();
    let total = reward
        .log_reward(obs.without_autodiff(), leaf.clone())
        .sum();
    if !total.is_tracked() {
        return x.without_autodiff().zeros_like(); // r does not depend on x
    }
    let grads = total.backward();
    leaf.grad(&grads)
        .unwrap_or_else(|| x.without_autodiff().zeros_like())
}

// ---------------------------------------------------------------------------------------------
// Posterior parameterisation
// ---------------------------------------------------------------------------------------------

/// `c(t)`: one scale per action dimension from the Fourier features of the step's time.
#[derive(Module, Debug)]
pub struct LangevinScale {
    pub mlp: Mlp,
    /// Time features per step (`t − 1` row-major `[T, 2H]`).
    #[module(skip)]
    pub time_features: Vec<f32>,
    #[module(skip)]
    pub time_dim: usize,
    /// `c(t)` for every step, computed once by [`Correction::frozen`] for inference copies (a
    /// sampling chain asks for it at every step); `None` on the trained module, whose table
    /// must stay in the autodiff graph.
    #[module(skip)]
    frozen_table: Option<Tensor<2>>,
}

impl LangevinScale {
    /// `[T, act_dim]`: `c(t)` of every step, row `t − 1`.
    fn table(&self, device: &Device) -> Tensor<2> {
        if let Some(table) = &self.frozen_table {
            return table.clone();
        }
        let steps = self.time_features.len() / self.time_dim;
        self.mlp.forward(crate::nn::tensor2(
            &self.time_features,
            steps,
            self.time_dim,
            device,
        ))
    }

    /// `[rows, act_dim]` scales for per-row steps.
    fn rows(&self, t: &[usize], device: &Device) -> Tensor<2> {
        let table = self.table(device);
        if t.iter().all(|&s| s == t[0]) {
            return table.slice(t[0] - 1..t[0]); // broadcast over rows
        }
        let index: Vec<i64> = t.iter().map(|&s| s as i64 - 1).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [t.len()]), device);
        table.select(0, index)
    }
}

/// The trained part of π: `ε_π − ε_μ = NN(s, x_t, t) + c(t) ⊙ g` (g: the clamped reward gradient).
#[derive(Module, Debug)]
pub struct Correction {
    pub net: EpsNet,
    pub langevin: Option<LangevinScale>,
}

impl Correction {
    /// Build the correction for a prior with `obs_dim`/`act_dim` on `schedule`. `template` is the
    /// prior's network, required by the `prior_features` and `copy_prior` inits.
    pub fn new(
        config: &CorrectionConfig,
        obs_dim: usize,
        act_dim: usize,
        schedule: &NoiseSchedule,
        template: Option<&EpsNet>,
        device: &Device,
    ) -> Result<Self> {
        let mut net = EpsNet::new(&config.net, obs_dim, act_dim, schedule, device);
        if config.init != CorrectionInit::Zero {
            let template = template.ok_or_else(|| {
                Error::Config(format!(
                    "correction.init = {:?} needs a network prior to copy",
                    config.init
                ))
            })?;
            net = net
                .try_load_record(template.clone().into_record())
                .map_err(|e| {
                    Error::Config(format!(
                        "correction.init = {:?}: correction.net must have the prior's shape ({e})",
                        config.init
                    ))
                })?;
        }
        let zero_output = config.init != CorrectionInit::CopyPrior;
        if zero_output {
            net.trunk.output = zero_linear(config.net.width, act_dim, device);
        }
        let langevin = config.langevin.then(|| {
            let embedding = FourierTimeEmbedding::new(config.net.time_harmonics);
            let time_features = (1..=schedule.steps())
                .flat_map(|t| embedding.features(schedule.time_input(t)))
                .collect();
            let mut mlp = MlpConfig::new(embedding.dim(), act_dim)
                .with_width(config.langevin_width)
                .with_hidden(config.langevin_hidden)
                .with_activation(Activation::Gelu)
                .with_layer_norm(true)
                .init(device);
            if zero_output {
                let d_in = if config.langevin_hidden == 0 {
                    embedding.dim()
                } else {
                    config.langevin_width
                };
                mlp.output = zero_linear(d_in, act_dim, device);
            }
            LangevinScale {
                mlp,
                time_features,
                time_dim: embedding.dim(),
                frozen_table: None,
            }
        });
        Ok(Self { net, langevin })
    }

    /// The inference copy (`valid()`) with the table of `c(t)` computed once.
    pub fn frozen(&self) -> Correction {
        let mut copy = self.valid();
        if let Some(scale) = copy.langevin.as_mut() {
            let device = scale.mlp.output.weight.device();
            scale.frozen_table = Some(scale.table(&device));
        }
        copy
    }

    /// `ε_π − ε_μ` for rows with per-row steps `t`; `grad` is the clamped reward gradient at `x_t`
    /// (required when the Langevin term is on).
    pub fn forward_rows(
        &self,
        obs: Tensor<2>,
        x_t: Tensor<2>,
        t: &[usize],
        grad: Option<Tensor<2>>,
    ) -> Tensor<2> {
        let uniform = t.iter().all(|&s| s == t[0]);
        let nn = if uniform {
            self.net.forward_step(obs, x_t, t[0])
        } else {
            self.net.forward_rows(obs, x_t, t)
        };
        self.with_langevin(nn, t, grad)
    }

    /// `ε_π − ε_μ` from NN's output `nn` (computed elsewhere, e.g. by the fused executor).
    pub fn with_langevin(&self, nn: Tensor<2>, t: &[usize], grad: Option<Tensor<2>>) -> Tensor<2> {
        let device = nn.device();
        match (&self.langevin, grad) {
            (Some(scale), Some(g)) => nn + scale.rows(t, &device) * g,
            (Some(_), None) => panic!("the Langevin term needs the reward gradient"),
            (None, _) => nn,
        }
    }
}

fn zero_linear(d_in: usize, d_out: usize, device: &Device) -> burn::nn::Linear {
    LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

/// What RTB trains: the correction and, optionally, a `log Z_φ(s)` network.
#[derive(Module, Debug)]
pub struct RtbModel {
    pub correction: Correction,
    pub log_z: Option<Mlp>,
}

impl RtbModel {
    pub fn new(
        config: &RtbConfig,
        obs_dim: usize,
        act_dim: usize,
        schedule: &NoiseSchedule,
        template: Option<&EpsNet>,
        device: &Device,
    ) -> Result<Self> {
        let correction = Correction::new(
            &config.correction,
            obs_dim,
            act_dim,
            schedule,
            template,
            device,
        )?;
        let log_z = (config.log_z.kind == LogZKind::Learned).then(|| {
            MlpConfig::new(obs_dim, 1)
                .with_width(config.log_z.width)
                .with_hidden(config.log_z.hidden)
                .with_activation(Activation::Gelu)
                .with_layer_norm(true)
                .init(device)
        });
        Ok(Self { correction, log_z })
    }
}

/// The posterior π as an [`EpsModel`]: the frozen prior plus the correction. Everything written
/// against `EpsModel` (sampler, trajectory log-likelihood, policies) works on it unchanged.
pub struct Posterior<'a, P: ?Sized, R: ?Sized> {
    pub prior: &'a P,
    pub correction: &'a Correction,
    /// The fused executor of `correction.net` (the same function, on the CPU backend).
    pub fused: Option<&'a FusedEpsNet>,
    pub reward: &'a R,
    pub langevin_clip: f64,
}

impl<P: EpsModel + ?Sized, R: LogReward + ?Sized> Posterior<'_, P, R> {
    /// The clamped reward gradient at `x_t`, when the correction uses it.
    fn langevin_grad(&self, obs: Tensor<2>, x_t: Tensor<2>) -> Option<Tensor<2>> {
        self.correction.langevin.as_ref().map(|_| {
            let c = self.langevin_clip;
            self.reward.gradient(obs, x_t).clamp(-c, c)
        })
    }

    /// `ε_π − ε_μ` (no gradient through the correction when it runs fused).
    fn correction_rows(
        &self,
        obs: Tensor<2>,
        x_t: Tensor<2>,
        t: &[usize],
        g: Option<Tensor<2>>,
    ) -> Tensor<2> {
        match self.fused {
            Some(net) => self
                .correction
                .with_langevin(net.eps_rows(obs, x_t, t), t, g),
            None => self.correction.forward_rows(obs, x_t, t, g),
        }
    }
}

impl<P: EpsModel + ?Sized, R: LogReward + ?Sized> EpsModel for Posterior<'_, P, R> {
    fn schedule(&self) -> &NoiseSchedule {
        self.prior.schedule()
    }

    fn act_dim(&self) -> usize {
        self.prior.act_dim()
    }

    fn eps_rows(&self, obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2> {
        let eps_mu = self.prior.eps_rows(obs.clone(), x_t.clone(), t).detach();
        let g = self.langevin_grad(obs.clone(), x_t.clone());
        eps_mu + self.correction_rows(obs, x_t, t, g)
    }

    fn eps(&self, obs: Tensor<2>, x_t: Tensor<2>, t: usize) -> Tensor<2> {
        let eps_mu = self.prior.eps(obs.clone(), x_t.clone(), t).detach();
        let g = self.langevin_grad(obs.clone(), x_t.clone());
        eps_mu + self.correction_rows(obs, x_t, &[t], g)
    }
}

// ---------------------------------------------------------------------------------------------
// Rollouts: trajectories plus every term that carries no gradient
// ---------------------------------------------------------------------------------------------

/// A batch of trajectories, `n = states · k` rows (state-major: rows `i·k .. (i+1)·k` share state
/// `i`), with the frozen per-step terms. `xs`, `eps_prior` and `langevin` are indexed like the
/// prior's `Trajectory::xs`: entry `j` belongs to step `t = T − j` (`xs` has T + 1 entries).
pub struct Rollout {
    pub obs: Tensor<2>,
    pub k: usize,
    pub xs: Vec<Tensor<2>>,
    pub eps_prior: Vec<Tensor<2>>,
    pub langevin: Option<Vec<Tensor<2>>>,
    /// `Σ_t log π(x_{t-1}|x_t)` at the rollout's parameters (no gradient), when the rollout
    /// computed it anyway (on-policy sampling does; off-policy leaves it to the gradient pass).
    pub log_pi: Option<Vec<f32>>,
    pub log_mu: Vec<f32>,
    pub log_r: Vec<f32>,
}

impl Rollout {
    pub fn len(&self) -> usize {
        self.log_r.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log_r.is_empty()
    }

    /// Mean over rows of `log r + log μ − log π` (the average VarGrad log Z), computing `log π`
    /// with `correction` if the rollout has none.
    pub fn mean_log_z(&self, schedule: &NoiseSchedule, correction: &Correction) -> f64 {
        let log_pi = match &self.log_pi {
            Some(v) => v.clone(),
            None => {
                let (log_pi, _) = log_likelihoods(schedule, correction, self, 0..self.len(), None);
                crate::nn::to_vec(log_pi)
            }
        };
        let total: f64 = (0..self.len())
            .map(|i| f64::from(self.log_r[i]) + f64::from(self.log_mu[i]) - f64::from(log_pi[i]))
            .sum();
        total / self.len() as f64
    }
}

/// At most this many rows per network call in the off-policy rollout's no-gradient passes
/// (several steps per call for small batches, one step per call at the paper shape). Smaller
/// buffers are faster: a hidden layer of 4096 rows is 4 MiB, of which each thread's shard stays
/// in its caches between the GEMM and the row passes. Measured at the paper shape
/// (`rtb_memory paper 128 2`, same minutes): 16 384 rows per call 1.54–1.64 s per off-policy
/// update and 192–197 MiB peak RSS, 4096 rows 1.44–1.49 s and 130–133 MiB (32 768 rows, whose
/// buffers exceed glibc's mmap threshold and are page-faulted afresh on every call, took twice
/// as long as 16 384 in an earlier measurement).
const MAX_ROWS_PER_CALL: usize = 4096;

/// Sample `k` trajectories per state from π without gradient (noise order as the prior's sampler:
/// `x_T`, then one block per step), recording the frozen terms and both log-likelihoods.
pub fn rollout_on_policy<P, R>(
    pi: &Posterior<'_, P, R>,
    obs: Tensor<2>,
    k: usize,
    rng: &mut impl Rng,
) -> Rollout
where
    P: EpsModel + ?Sized,
    R: LogReward + ?Sized,
{
    let (prior, correction, reward) = (pi.prior, pi.correction, pi.reward);
    let schedule = prior.schedule();
    let obs = repeat_rows(obs.without_autodiff(), k);
    let (n, device) = (obs.dims()[0], obs.device());
    let ad = prior.act_dim();
    let mut x = sample_start(schedule, n, ad, rng, &device);
    let mut xs = vec![x.clone()];
    let mut eps_prior = Vec::with_capacity(schedule.steps());
    let mut langevin = correction.langevin.as_ref().map(|_| Vec::new());
    let mut log_pi: Option<Tensor<1>> = None;
    let mut log_mu: Option<Tensor<1>> = None;
    for t in (1..=schedule.steps()).rev() {
        let e_mu = prior.eps(obs.clone(), x.clone(), t);
        let g = pi.langevin_grad(obs.clone(), x.clone());
        let e_pi = e_mu.clone() + pi.correction_rows(obs.clone(), x.clone(), &[t], g.clone());
        let step_pi = reverse_step(schedule, x.clone(), e_pi, t);
        let step_mu = reverse_step(schedule, x.clone(), e_mu.clone(), t);
        let next = step_pi.clone().sample(normal_noise(rng, n, ad, &device));
        log_pi = Some(add(log_pi, step_pi.log_prob(next.clone())));
        log_mu = Some(add(log_mu, step_mu.log_prob(next.clone())));
        eps_prior.push(e_mu);
        if let (Some(list), Some(g)) = (langevin.as_mut(), g) {
            list.push(g);
        }
        xs.push(next.clone());
        x = next;
    }
    let log_r = crate::nn::to_vec(reward.log_reward(obs.clone(), x));
    Rollout {
        obs,
        k,
        xs,
        eps_prior,
        langevin,
        log_pi: Some(crate::nn::to_vec(log_pi.expect("T >= 1"))),
        log_mu: crate::nn::to_vec(log_mu.expect("T >= 1")),
        log_r,
    }
}

/// Noise the actions `a0` (`[states, act_dim]`, model space), each repeated `k` times, along the
/// forward process, and evaluate the frozen terms and both log-likelihoods without gradient.
pub fn rollout_off_policy<P, R>(
    pi: &Posterior<'_, P, R>,
    obs: Tensor<2>,
    a0: Tensor<2>,
    k: usize,
    rng: &mut impl Rng,
) -> Rollout
where
    P: EpsModel + ?Sized,
    R: LogReward + ?Sized,
{
    let (prior, correction, reward) = (pi.prior, pi.correction, pi.reward);
    let schedule = prior.schedule();
    let obs = repeat_rows(obs.without_autodiff(), k);
    let a0 = repeat_rows(a0.without_autodiff(), k);
    let n = obs.dims()[0];
    let traj = forward_noise_trajectory(schedule, a0, rng);
    let t_max = schedule.steps();
    // Frozen terms for all steps, several steps per call.
    let block = (MAX_ROWS_PER_CALL / n.max(1)).clamp(1, t_max);
    let mut eps_prior = Vec::with_capacity(t_max);
    let mut langevin = correction
        .langevin
        .as_ref()
        .map(|_| Vec::with_capacity(t_max));
    let mut j = 0;
    while j < t_max {
        let len = block.min(t_max - j);
        let x_in = Tensor::cat(traj.xs[j..j + len].to_vec(), 0);
        let obs_in = obs.clone().repeat_dim(0, len);
        let steps: Vec<usize> = (j..j + len)
            .flat_map(|i| std::iter::repeat_n(t_max - i, n))
            .collect();
        let e = prior.eps_rows(obs_in.clone(), x_in.clone(), &steps);
        let g = pi.langevin_grad(obs_in, x_in);
        for b in 0..len {
            eps_prior.push(e.clone().slice(b * n..(b + 1) * n));
            if let (Some(list), Some(g)) = (langevin.as_mut(), g.as_ref()) {
                list.push(g.clone().slice(b * n..(b + 1) * n));
            }
        }
        j += len;
    }
    // All steps' densities at once (block j = step t_max − j), summed per row.
    let log_mu = reverse_log_prob_rows(
        schedule,
        Tensor::cat(traj.xs[..t_max].to_vec(), 0),
        Tensor::cat(eps_prior.clone(), 0),
        Tensor::cat(traj.xs[1..].to_vec(), 0),
        &block_steps(t_max, n),
    )
    .reshape([t_max, n])
    .sum_dim(0)
    .reshape([n]);
    let log_r = crate::nn::to_vec(reward.log_reward(obs.clone(), traj.x0().clone()));
    // log π is left to the gradient pass, which computes it anyway (saves one network pass).
    Rollout {
        obs,
        k,
        xs: traj.xs,
        eps_prior,
        langevin,
        log_pi: None,
        log_mu: crate::nn::to_vec(log_mu),
        log_r,
    }
}

/// `(Σ_t log π, Σ_t log μ)` of the rollout's rows `rows`, `[rows.len()]` each; `log π` is
/// differentiable through `correction` (all T steps of the rows in one network call, and their
/// densities in one [`reverse_log_prob_rows`] each).
pub fn log_likelihoods(
    schedule: &NoiseSchedule,
    correction: &Correction,
    rollout: &Rollout,
    rows: Range<usize>,
    fused: Option<&LeafEps<'_>>,
) -> (Tensor<1>, Tensor<1>) {
    let t_max = schedule.steps();
    let m = rows.len();
    // The rows of every step stacked, block j = step t_max − j (the layout of `block_steps`).
    let stack = |list: &[Tensor<2>]| {
        Tensor::cat(
            list.iter().map(|v| v.clone().slice(rows.clone())).collect(),
            0,
        )
    };
    let steps = block_steps(t_max, m);
    let x_t = stack(&rollout.xs[..t_max]);
    let g = rollout.langevin.as_deref().map(stack);
    let corr = match fused {
        Some(leaf) => {
            let nn = fused_nn(leaf, rollout, rows.clone(), &x_t);
            correction.with_langevin(nn, &steps, g)
        }
        None => {
            let obs_in = rollout.obs.clone().slice(rows.clone()).repeat_dim(0, t_max);
            correction.forward_rows(obs_in, x_t.clone(), &steps, g)
        }
    };
    let x_prev = stack(&rollout.xs[1..]);
    let e_mu = stack(&rollout.eps_prior);
    let per_row = |v: Tensor<1>| v.reshape([t_max, m]).sum_dim(0).reshape([m]);
    let log_pi = reverse_log_prob_rows(
        schedule,
        x_t.clone(),
        e_mu.clone() + corr,
        x_prev.clone(),
        &steps,
    );
    let log_mu = reverse_log_prob_rows(schedule, x_t, e_mu, x_prev, &steps);
    (per_row(log_pi), per_row(log_mu))
}

/// The steps of `t_max` blocks of `m` rows, block `j` at step `t_max − j` (the layout of the
/// stacked `xs[0..T]`).
fn block_steps(t_max: usize, m: usize) -> Vec<usize> {
    (0..t_max)
        .flat_map(|j| std::iter::repeat_n(t_max - j, m))
        .collect()
}

/// NN(s, x_t, t) for the rollout's `rows` at all T steps (`x_t`: their chain states stacked,
/// block `j` = `xs[j]`), by the fused executor as a leaf of the autodiff graph. Each state's
/// first-layer part is computed once for its k trajectories and T steps.
fn fused_nn(
    leaf: &LeafEps<'_>,
    rollout: &Rollout,
    rows: Range<usize>,
    x_t: &Tensor<2>,
) -> Tensor<2> {
    let (k, m, t_max) = (rollout.k, rows.len(), rollout.xs.len() - 1);
    let od = rollout.obs.dims()[1];
    // Rows are state-major and chunks hold whole states: one observation per k rows.
    let obs = crate::nn::to_vec(rollout.obs.clone().slice(rows));
    let states: Vec<f32> = obs.chunks_exact(od).step_by(k).flatten().copied().collect();
    let state: Vec<usize> = (0..t_max * m).map(|r| (r % m) / k).collect();
    leaf.forward(&EpsRows {
        states: &states,
        state: Some(&state),
        x: &crate::nn::to_vec(x_t.clone()),
        t: &block_steps(t_max, m),
    })
}

fn add(acc: Option<Tensor<1>>, x: Tensor<1>) -> Tensor<1> {
    match acc {
        Some(a) => a + x,
        None => x,
    }
}

// ---------------------------------------------------------------------------------------------
// The loss and its chunked gradient
// ---------------------------------------------------------------------------------------------

/// Scalars of one update.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UpdateStats {
    /// `½ mean δ²` over the batch's trajectories.
    pub loss: f64,
    /// Mean `log Z` over rows.
    pub log_z: f64,
    pub log_r: f64,
    /// Mean `log π(τ) − log μ(τ)` (on-policy: a KL(π‖μ) estimate).
    pub log_ratio: f64,
    /// Mean over states of the variance over their k trajectories of
    /// `log π(τ) − log μ(τ) − log r` (0 when π is the target posterior).
    pub log_ratio_var: f64,
}

/// Gradients of the batch loss `½ mean_i δ_i²`, `δ = log Z + log π − log μ − log r`, accumulated
/// over chunks of about `chunk` rows (0: one chunk), rounded up to whole states so that each
/// chunk computes its states' VarGrad `log Z` from its own (detached) `log π`. `model` lives on
/// an autodiff device. Returns the correction's and (if learned) the log Z network's gradients.
pub fn rtb_gradients(
    schedule: &NoiseSchedule,
    model: &RtbModel,
    rollout: &Rollout,
    chunk: usize,
) -> (GradientsParams, Option<GradientsParams>, UpdateStats) {
    let device = model.correction.net.input.weight.val().device();
    // On the CPU backend the correction's network runs fused; burn differentiates the rest.
    let fused = crate::backend::host_kernels(&device)
        .then(|| LeafEps::new(&model.correction.net, schedule, &device));
    chunked_gradients(schedule, model, rollout, chunk, fused.as_ref())
}

/// [`rtb_gradients`] with the correction's network run by `fused` (its [`LeafEps`]) or, when
/// `None`, by burn.
pub fn chunked_gradients(
    schedule: &NoiseSchedule,
    model: &RtbModel,
    rollout: &Rollout,
    chunk: usize,
    fused: Option<&LeafEps<'_>>,
) -> (GradientsParams, Option<GradientsParams>, UpdateStats) {
    let (n, k) = (rollout.len(), rollout.k);
    let chunk = if chunk == 0 { n } else { chunk.div_ceil(k) * k }.min(n);
    let mut acc_corr = GradientsAccumulator::<Correction>::new();
    let mut acc_z = GradientsAccumulator::<Mlp>::new();
    let mut stats = UpdateStats::default();
    let mut start = 0;
    while start < n {
        let rows = start..(start + chunk).min(n);
        let m = rows.len();
        let device = rollout.obs.device();
        let (log_pi, log_mu) =
            log_likelihoods(schedule, &model.correction, rollout, rows.clone(), fused);
        let log_mu = log_mu.without_autodiff();
        let log_r = tensor1(&rollout.log_r[rows.clone()], &device);
        let log_z = match &model.log_z {
            Some(net) => {
                let obs = rollout.obs.clone().slice(rows.clone());
                net.forward(obs).reshape([m])
            }
            None => {
                // mean_k(log r + log μ − log π) per state, repeated over its k rows.
                let c = log_r.clone() + log_mu.clone() - log_pi.clone().without_autodiff();
                c.reshape([m / k, k])
                    .mean_dim(1)
                    .repeat_dim(1, k)
                    .reshape([m])
            }
        };
        let delta = log_z.clone() + log_pi.clone() - log_mu.clone() - log_r.clone();
        let loss = delta.square().sum().mul_scalar(0.5 / n as f64);
        stats.loss += scalar(&loss);
        stats.log_z += scalar(&log_z.sum()) / n as f64;
        let ratio = log_pi.clone().without_autodiff() - log_mu.clone() - log_r.clone();
        stats.log_ratio_var +=
            scalar(&ratio.reshape([m / k, k]).var_bias(1).sum()) * k as f64 / n as f64;
        stats.log_r += scalar(&log_r.sum()) / n as f64;
        stats.log_ratio += scalar(&(log_pi - log_mu).sum()) / n as f64;
        let mut grads = loss.backward();
        let mut params = GradientsParams::from_module(&mut grads, &model.correction);
        if let Some(leaf) = fused {
            leaf.gradients(&grads, &mut params);
        }
        acc_corr.accumulate(&model.correction, params);
        if let Some(net) = &model.log_z {
            acc_z.accumulate(net, GradientsParams::from_module(&mut grads, net));
        }
        start = rows.end;
    }
    let z = model.log_z.as_ref().map(|_| acc_z.grads());
    (acc_corr.grads(), z, stats)
}

// ---------------------------------------------------------------------------------------------
// The trainer
// ---------------------------------------------------------------------------------------------

/// RTB state: the frozen prior and reward, the trained model and its optimizers.
pub struct Rtb<P, R> {
    pub config: RtbConfig,
    /// Frozen μ (on the inference device).
    pub prior: P,
    pub reward: R,
    /// Trained (on the autodiff device).
    pub model: RtbModel,
    optim: ModuleOptimizer,
    log_z_optim: ModuleOptimizer,
    /// The learned log Z's bias has been set from a first batch.
    log_z_ready: bool,
    /// The fused executor of the frozen prior (CPU backend): rollouts use it in place of `prior`.
    fused_prior: Option<FusedEpsNet>,
    device: Device,
}

impl<P: EpsModel, R: LogReward> Rtb<P, R> {
    /// A trainer whose model lives on the autodiff version of `device`; `prior` and `reward` stay
    /// where they are (use inference copies: they are frozen). `template` is the prior's network,
    /// for the `prior_features` / `copy_prior` inits. Parameters are drawn from the device's
    /// generator (seed it first).
    pub fn new(
        config: RtbConfig,
        prior: P,
        reward: R,
        obs_dim: usize,
        template: Option<&EpsNet>,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let device = device.clone().without_autodiff().autodiff();
        let model = RtbModel::new(
            &config,
            obs_dim,
            prior.act_dim(),
            prior.schedule(),
            template,
            &device,
        )?;
        let adam = || crate::nn::adam(config.adam_eps, None);
        Ok(Self {
            optim: adam(),
            log_z_optim: adam(),
            fused_prior: prior.fused(),
            config,
            prior,
            reward,
            model,
            log_z_ready: false,
            device,
        })
    }

    /// π as an [`EpsModel`] (inference copy of the correction inside `correction`; the prior's
    /// fused executor when there is one).
    pub fn posterior<'a>(
        &'a self,
        correction: &'a Correction,
    ) -> Posterior<'a, dyn EpsModel + 'a, R> {
        let prior: &dyn EpsModel = match &self.fused_prior {
            Some(fused) => fused,
            None => &self.prior,
        };
        Posterior {
            prior,
            correction,
            fused: None,
            reward: &self.reward,
            langevin_clip: self.config.correction.langevin_clip,
        }
    }

    /// The inference copy of the correction and, on the CPU backend, its fused executor.
    fn frozen_correction(&self) -> (Correction, Option<FusedEpsNet>) {
        let correction = self.model.correction.frozen();
        let fused = crate::backend::host_kernels(&self.device)
            .then(|| FusedEpsNet::new(&correction.net, self.prior.schedule()));
        (correction, fused)
    }

    /// One on-policy update on the states `obs` (`[b, obs_dim]`, normalised).
    pub fn on_policy_update(&mut self, obs: Tensor<2>, rng: &mut impl Rng) -> UpdateStats {
        let (correction, fused) = self.frozen_correction();
        let pi = Posterior {
            fused: fused.as_ref(),
            ..self.posterior(&correction)
        };
        let rollout = rollout_on_policy(&pi, obs, self.config.trajectories, rng);
        self.apply(&rollout)
    }

    /// One off-policy update on the states `obs` and their dataset actions `a0` (model space).
    pub fn off_policy_update(
        &mut self,
        obs: Tensor<2>,
        a0: Tensor<2>,
        rng: &mut impl Rng,
    ) -> UpdateStats {
        let (correction, fused) = self.frozen_correction();
        let pi = Posterior {
            fused: fused.as_ref(),
            ..self.posterior(&correction)
        };
        let rollout = rollout_off_policy(&pi, obs, a0, self.config.trajectories, rng);
        self.apply(&rollout)
    }

    /// Gradient step on a rollout.
    pub fn apply(&mut self, rollout: &Rollout) -> UpdateStats {
        if self.model.log_z.is_some() && !self.log_z_ready {
            self.init_log_z(rollout);
        }
        let (grads, z_grads, stats) = rtb_gradients(
            self.prior.schedule(),
            &self.model,
            rollout,
            self.config.chunk,
        );
        // Modules are handles: cloning one is cheap, and the optimizer returns the updated copy.
        self.model.correction =
            self.optim
                .step(self.config.lr, self.model.correction.clone(), grads);
        if let (Some(net), Some(g)) = (self.model.log_z.as_mut(), z_grads) {
            *net = self.log_z_optim.step(self.config.log_z.lr, net.clone(), g);
        }
        stats
    }

    /// Start the learned log Z at the batch estimate (its output bias), so that it does not
    /// have to travel from 0 to |Q/α| ~ 10³ first.
    fn init_log_z(&mut self, rollout: &Rollout) {
        let correction = self.model.correction.frozen();
        let mean = rollout.mean_log_z(self.prior.schedule(), &correction);
        if let Some(net) = self.model.log_z.as_mut() {
            let bias = burn::module::Param::from_tensor(tensor1(&[mean as f32], &self.device));
            net.output.bias = Some(bias);
        }
        self.log_z_ready = true;
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The trained modules and optimizer states as checkpoint parts.
    pub fn parts(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut parts = module_parts("correction", &self.model.correction, Some(&self.optim))?;
        if let Some(net) = &self.model.log_z {
            parts.extend(module_parts("log_z", net, Some(&self.log_z_optim))?);
        }
        Ok(parts)
    }

    /// Restore what [`Rtb::parts`] saved.
    pub fn restore_parts(&mut self, ck: &Checkpoint) -> Result<()> {
        self.model.correction = ck.load_module("correction", self.model.correction.clone())?;
        self.optim = load_optim(ck, "correction", self.optim.clone())?;
        if let Some(net) = self.model.log_z.as_mut() {
            *net = ck.load_module("log_z", net.clone())?;
            self.log_z_optim = load_optim(ck, "log_z", self.log_z_optim.clone())?;
            self.log_z_ready = true;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// RTB as an offline algorithm: a trained prior, an IQL critic, the shared training loop
// ---------------------------------------------------------------------------------------------

impl QFunction for IqlCritic {
    fn q(&self, obs: Tensor<2>, actions: Tensor<2>) -> Tensor<1> {
        IqlCritic::q(self, obs, actions)
    }

    fn action_gradient(&self, obs: &[f32], actions: &[f32], n: usize) -> Option<Vec<f32>> {
        IqlCritic::action_gradient(self, obs, actions, n)
    }
}

/// RTB with a trained [`DiffusionPrior`] and `log r = Q_IQL/α`.
pub type QRtb = Rtb<DiffusionPrior, QReward<IqlCritic>>;

/// RTB fine-tuning as an [`OfflineAlgorithm`] (`offrl train rtb`): each update takes a batch of
/// dataset transitions and runs `on_policy` on-policy updates on its states and `off_policy`
/// off-policy updates on its states and actions.
pub struct RtbAlgo {
    pub rtb: QRtb,
    spec: DataSpec,
    rng: ChaCha8Rng,
    seed: u64,
    /// The critic's spread over μ's actions, measured at the first update (every run logs it;
    /// `alpha_scale = "q_spread"` divides α by it).
    q_spread: Option<f64>,
}

impl RtbAlgo {
    /// Load the prior and the critic named by `config` and build a fresh correction.
    pub fn new(config: RtbConfig, spec: DataSpec, device: &Device, seed: u64) -> Result<Self> {
        config.validate()?;
        let plain = device.clone().without_autodiff();
        let path = |p: &str, what: &str| -> Result<std::path::PathBuf> {
            if p.is_empty() {
                return Err(Error::Config(format!(
                    "rtb: no {what} given (--{what} RUN_OR_CHECKPOINT, or `{what} = \"...\"` in the config)"
                )));
            }
            Checkpoint::resolve(Path::new(p))
        };
        let prior = DiffusionPrior::load(&path(&config.prior, "prior")?, &plain)?;
        let critic = IqlCritic::load(&path(&config.critic, "critic")?, &plain)?;
        let (ps, cs) = (&prior.spec, critic.spec());
        if ps.obs_dim() != spec.obs_dim || ps.act_dim() != spec.act_dim {
            return Err(Error::InvalidData(format!(
                "rtb: the prior was trained on obs {} / act {}, the dataset has obs {} / act {}",
                ps.obs_dim(),
                ps.act_dim(),
                spec.obs_dim,
                spec.act_dim
            )));
        }
        if cs.obs_dim != spec.obs_dim || cs.act_dim != spec.act_dim {
            return Err(Error::InvalidData(format!(
                "rtb: the critic was trained on obs {} / act {}, the dataset has obs {} / act {}",
                cs.obs_dim, cs.act_dim, spec.obs_dim, spec.act_dim
            )));
        }
        let reward = QReward {
            q: critic,
            alpha: config.alpha,
            spaces: prior.spec.clone(),
            tanh_jacobian: config.tanh_jacobian,
        };
        crate::backend::seed(&plain, seed);
        let template = prior.net.clone();
        let rtb = Rtb::new(config, prior, reward, spec.obs_dim, Some(&template), device)?;
        Ok(Self {
            rtb,
            spec,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            q_spread: None,
        })
    }

    /// `σ_Q` at the raw states `obs` (`n` rows): [`mean_spread`] of the critic's Q over
    /// [`Q_SPREAD_SAMPLES`] of μ's actions per state, drawn with their own generator so that
    /// measuring leaves the training's random stream as it was.
    fn measure_q_spread(&self, obs: &[f32], n: usize) -> Result<f64> {
        let k = Q_SPREAD_SAMPLES;
        let repeated: Vec<f32> = obs
            .chunks(self.spec.obs_dim)
            .flat_map(|o| std::iter::repeat_n(o, k).flatten().copied())
            .collect();
        let mut mu = DiffusionPolicy::new(&self.rtb.prior, self.seed ^ 0x5152_5350);
        let actions = mu.act(&repeated, n * k)?;
        let q = crate::policy::ActionScorer::score(&self.rtb.reward.q, &repeated, &actions, n * k)?;
        Ok(mean_spread(&q, k))
    }

    /// Record `σ_Q` and, under `alpha_scale = "q_spread"`, set the reward's temperature from it.
    fn set_q_spread(&mut self, spread: f64) -> Result<()> {
        let config = &self.rtb.config;
        if config.alpha_scale == AlphaScale::QSpread {
            if !(spread > 0.0 && spread.is_finite()) {
                return Err(Error::InvalidData(format!(
                    "rtb: alpha_scale = \"q_spread\", but the critic's spread over the prior's actions is {spread}: \
                     Q does not tell μ's actions apart at these states; set alpha in absolute units"
                )));
            }
            self.rtb.reward.alpha = config.alpha * spread;
        }
        self.q_spread = Some(spread);
        Ok(())
    }
}

impl OfflineAlgorithm for RtbAlgo {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self) -> &DataSpec {
        &self.spec
    }

    fn update(&mut self, batch: &Batch, _step: usize) -> Result<Metrics> {
        let plain = self.rtb.device().clone().without_autodiff();
        let prior = &self.rtb.prior;
        let n = batch.size;
        let obs = prior.obs_tensor(&batch.observations, n, &plain);
        let a0 = prior.spec.action_to_model(&batch.actions);
        let a0 = crate::nn::tensor2(&a0, n, batch.act_dim, &plain);
        if self.q_spread.is_none() {
            let spread = self.measure_q_spread(&batch.observations, n)?;
            self.set_q_spread(spread)?;
        }
        let mut metrics = Metrics::new();
        for _ in 0..self.rtb.config.on_policy {
            let s = self.rtb.on_policy_update(obs.clone(), &mut self.rng);
            metrics = vec![
                ("loss_on", s.loss),
                ("log_z", s.log_z),
                ("log_r", s.log_r),
                ("kl", s.log_ratio),
                ("log_ratio_var", s.log_ratio_var),
            ];
        }
        for _ in 0..self.rtb.config.off_policy {
            let s = self
                .rtb
                .off_policy_update(obs.clone(), a0.clone(), &mut self.rng);
            metrics.retain(|(k, _)| *k != "loss_off");
            metrics.push(("loss_off", s.loss));
            if self.rtb.config.on_policy == 0 {
                metrics.extend([("log_z", s.log_z), ("log_r", s.log_r)]);
            }
        }
        metrics.push(("alpha", self.rtb.reward.alpha));
        metrics.extend(self.q_spread.map(|s| ("q_spread", s)));
        Ok(metrics)
    }

    fn policy(&self) -> Result<Box<dyn Policy>> {
        if self.rtb.config.alpha_scale == AlphaScale::QSpread && self.q_spread.is_none() {
            return Err(Error::Config(
                "rtb: alpha_scale = \"q_spread\" sets α at the first update; this model has had none"
                    .into(),
            ));
        }
        Ok(Box::new(RtbPolicy::new(&self.rtb, self.seed)))
    }

    /// The probes of π's and of μ's actions, and the critic's mean Q of the data's, π's and μ's
    /// actions at the same states: a policy whose Q rises far above the data's while its actions
    /// leave the data's range is exploiting the critic.
    fn diagnostics(&self, probe: &Probe) -> Result<Metrics> {
        let critic = &self.rtb.reward.q;
        let a_pi = probe.act(self.policy()?.as_mut())?;
        let a_mu = probe.act(&mut DiffusionPolicy::new(&self.rtb.prior, self.seed))?;
        let mut metrics = probe.stats(&a_pi).metrics(POLICY_NAMES);
        metrics.extend(probe.stats(&a_mu).metrics(PRIOR_NAMES));
        metrics.extend([
            ("diag/q_data", probe.mean_score(critic, &probe.actions)?),
            ("diag/q_policy", probe.mean_score(critic, &a_pi)?),
            ("diag/q_prior", probe.mean_score(critic, &a_mu)?),
        ]);
        Ok(metrics)
    }

    fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            parts: self.rtb.parts()?,
            state: json!({ "rng": RngState::of(&self.rng), "q_spread": self.q_spread }),
        })
    }

    fn restore(&mut self, ck: &Checkpoint, state: &Value) -> Result<()> {
        self.rtb.restore_parts(ck)?;
        if let Some(spread) = state.get("q_spread").and_then(Value::as_f64) {
            self.set_q_spread(spread)?;
        }
        let rng: RngState = serde_json::from_value(state.get("rng").cloned().unwrap_or_default())
            .map_err(|e| Error::Checkpoint {
            path: ck.dir.clone(),
            message: format!("bad rtb state: {e}"),
        })?;
        self.rng = rng.restore()?;
        Ok(())
    }
}

/// The fine-tuned posterior acting in an environment: raw observations in, environment actions
/// out, one chain per row (with the Langevin term, so Q is evaluated at every step), noise from
/// its own seeded generator. Holds inference copies.
pub struct RtbPolicy {
    prior: DiffusionPrior,
    correction: Correction,
    /// Fused executors of the prior and of the correction's network (CPU backend).
    fused: Option<(FusedEpsNet, FusedEpsNet)>,
    reward: QReward<IqlCritic>,
    langevin_clip: f64,
    extra_steps: usize,
    noise_scale: f64,
    device: Device,
    rng: ChaCha8Rng,
}

impl RtbPolicy {
    pub fn new(rtb: &QRtb, seed: u64) -> Self {
        let (correction, fused_correction) = rtb.frozen_correction();
        Self {
            prior: rtb.prior.clone(),
            fused: rtb.prior.fused().zip(fused_correction),
            correction,
            reward: rtb.reward.clone(),
            langevin_clip: rtb.config.correction.langevin_clip,
            extra_steps: rtb.config.eval_extra_steps,
            noise_scale: rtb.config.act_noise_scale,
            device: rtb.device().clone().without_autodiff(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Policy for RtbPolicy {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let od = self.prior.spec.obs_dim();
        if obs.len() != n * od {
            return Err(Error::InvalidData(format!(
                "rtb policy: {} observation values for {n} rows of {od}",
                obs.len()
            )));
        }
        let x = self.prior.obs_tensor(obs, n, &self.device);
        let (prior, fused): (&dyn EpsModel, _) = match &self.fused {
            Some((prior, correction)) => (prior, Some(correction)),
            None => (&self.prior, None),
        };
        let posterior = Posterior {
            prior,
            correction: &self.correction,
            fused,
            reward: &self.reward,
            langevin_clip: self.langevin_clip,
        };
        let mut x0 = sample_actions_scaled(&posterior, x.clone(), &mut self.rng, self.noise_scale);
        let schedule = self.prior.schedule();
        for _ in 0..self.extra_steps {
            let eps = posterior.eps(x.clone(), x0.clone(), 1);
            let noise = normal_noise(&mut self.rng, n, self.prior.act_dim(), &self.device)
                .mul_scalar(self.noise_scale);
            x0 = reverse_step(schedule, x0, eps, 1).sample(noise);
        }
        Ok(self.prior.spec.action_to_env(&crate::nn::to_vec(x0)))
    }
}

/// Train RTB on `data` into the run directory `out` (resuming from its newest checkpoint), with
/// the shared loop of [`super::fit`]: what `offrl train rtb` and the pipeline call.
pub fn train(
    config: &RtbConfig,
    data: &Dataset,
    out: &Path,
    seed: u64,
    device: &Device,
    eval: Option<EvalHook<'_>>,
) -> Result<Box<dyn OfflineAlgorithm>> {
    config.validate()?;
    let value = serde_json::to_value(config).map_err(|e| Error::Config(e.to_string()))?;
    super::train(AlgoKind::Rtb, &value, data, out, seed, device, eval)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two states of four values each: standard deviations 1 (±1 around 5) and 0 (constant).
    #[test]
    fn spread_is_the_mean_per_state_standard_deviation() {
        let q = [4.0, 6.0, 4.0, 6.0, 7.0, 7.0, 7.0, 7.0];
        assert!((mean_spread(&q, 4) - 0.5).abs() < 1e-12);
        // A shift of Q changes nothing, a scale scales it.
        let shifted: Vec<f32> = q.iter().map(|v| 3.0 * v + 100.0).collect();
        assert!((mean_spread(&shifted, 4) - 1.5).abs() < 1e-9);
    }
}
