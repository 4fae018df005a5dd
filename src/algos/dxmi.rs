//! DxMI (Yoon, Hwang, Kwon, Noh & Park, NeurIPS 2024) and GCD (Yoon, Kwon, Hwang, Noh & Park,
//! 2023): an energy `E_θ(s, a)` and a `T`-step diffusion sampler `π_φ(a | s)` trained against
//! each other from demonstrations alone — no rewards. The energy is a negative reward, the
//! sampler a policy; contrastive divergence with a trainable sampler in place of MCMC:
//!
//! `min_θ max_φ  E_data[E_θ(s, a)] − E_π[E_θ(s, x_T)] + H(π)`.
//!
//! **The sampler** (this file's order is the paper's: `x_0 ~ N(0, I)` is noise, `x_T` the action):
//! `x_{t+1} = μ_φ(s, x_t, t) + σ_t ξ`, `ξ ~ N(0, I)`, with the mean of a `T`-step
//! DDPM chain (the network of [`crate::diffusion`] at its step `T − t`, predicting the action or
//! the noise: [`Prediction`]) and a learnt `log σ_t` per step, initialised at the chain's own σ_t
//! and kept at most it ([`SamplerChain::project`]). With `prediction = "noise"`, a plain DDPM
//! trained at the same `T` (`offrl train diffusion-bc --set schedule.steps=T`) is the same network
//! under another loss; `prior = RUN` starts from a trained one, its chain respaced to `T` steps.
//!
//! **Per update**, on a minibatch of dataset states and actions:
//! 1. roll the sampler out from noise at the batch's states (detached);
//! 2. the adaptive velocity scale `s_t² ← 0.99·s_t² + 0.01·mean‖x_{t+1} − x_t‖²` (the first
//!    update sets it to the measured value);
//! 3. one step on the energy's loss `mean E(data) − mean E(samples) + γ·(mean E(data)² +
//!    mean E(samples)²)` (γ = 1: its pointwise minimiser is `(π − p)/(2γ(p + π))`, bounded);
//! 4. the sampler, by one of:
//!    - **DxDP** (DxMI, `sampler_update = "value"`): value functions `V_t(s, x_t)` with
//!      `V_T = E` — one network on `[s, x, time]`, the energy its last time — fitted by temporal
//!      differences backwards over the steps, `V_t(s, x_t) ← V_{t+1}(s, x_{t+1})` (`+ c_t` with
//!      `cost_in_value`), then the
//!      sampler's reparameterised one-step loss `V_{t+1}(s, μ_φ + σ_t ξ) + c_t` on every step of
//!      the rollout at once;
//!    - **GCD** (`sampler_update = "backprop"`): `E(s, x_T) + Σ_t c_t` back-propagated through the
//!      whole chain (what DxDP replaces).
//!
//! The running cost `c_t = τ₂·mean_d (x_{t+1} − x_t)²/(2 s_t²) − τ₁·log σ_t` (per action
//! dimension) is the entropy bound of the paper: the velocity term keeps consecutive states
//! close, `−τ₁ log σ_t` rewards noise. Trainer defaults are the official code's
//! (`models/DxMI/trainer.py` and its configs: τ₁ = 0.1, τ₂ = 0.01, γ = 1, adaptive velocity
//! 0.99, the global gradient norm of the sampler's updates clipped at 0.1, the few-step chain:
//! σ_t² = β̃_t, a prior's steps kept quadratically) but in two places. The values' targets carry
//! the running cost, `V_t ← V_{t+1} + c_t` (`cost_in_value`, `entropy_in_value`; the code's
//! configs leave it out, `V_t` then the expected energy at the chain's end): without it DxMI
//! loses to the DDPM it starts from on 8 Gaussians. And the last step's σ is the chain's own, learnt (`last_sigma`,
//! `fix_last_sigma`; the code's VAR sampler fixes it at 0.001): fixed, a K-step DDPM's last
//! step loses the noise it needs, and imitation from one fails (README, issue 22).
//! `configs/dxmi-fewstep.toml` is the code's settings without the velocity cost, for fine-tuning
//! a long prior into a few-step policy, whose last step is near-deterministic anyway. The
//! networks and learning rates are this project's: the code's are U-Nets for images.
//!
//! Acting runs the chain (its noise × `act_noise_scale`) and clips to the action box.

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::common::{column, normal, scalar, NetConfig};
use crate::dataset::spec::{DataConfig, DataSpec, RewardNorm};
use crate::dataset::Batch;
use crate::diffusion::{
    ActingEps, DiffusionPrior, EpsModel, EpsNet, EpsNetConfig, NoiseSchedule, PriorConfig,
    PriorSpec, ScheduleConfig, ScheduleKind, Spacing, Variance,
};
use crate::error::{Error, Result};
use crate::eval::probe::{probability_greater, Probe};
use crate::nn::{clip_global_norm, FourierTimeEmbedding, Mlp};
use crate::policy::Policy;
use crate::train::checkpoint::Checkpoint;
use crate::train::{policy_diagnostics, LoopConfig, Metrics, OfflineAlgorithm, Parts};

/// The generator of the energy probe's perturbed and uniform actions.
const ENERGY_PROBE_SEED: u64 = 0x0e_0e;

/// DxMI's name in the registry and its checkpoints' kind.
pub const NAME: &str = "dxmi";
/// GCD's name: the same model, the sampler trained through its whole chain.
pub const GCD_NAME: &str = "gcd";
/// The kinds of checkpoint that hold an energy and a sampler (IDQL's `energy`, a few-step prior).
pub const KINDS: [&str; 2] = [NAME, GCD_NAME];

/// What the sampler's network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The clean action `x̂_T`; the step's mean is the DDPM posterior mean
    /// `μ̃(x_t, x̂_T)`, whose coefficients are at most 1: a fresh network's chain stays bounded.
    Action,
    /// The noise `ε̂` (a diffusion prior's network): the mean `(x − β/√(1−ᾱ)·ε̂)/√α`, whose
    /// `1/√α` is ≈ 30 at the first step of a chain that reaches noise — right for a trained
    /// prior, explosive for a fresh network (measured: a fresh 4-step sampler's actions all out
    /// of the box).
    Noise,
}

/// How the sampler learns from the energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerUpdate {
    /// DxDP: per-step values by temporal differences, a one-step loss per step (DxMI).
    Value,
    /// Back-propagation through the whole chain (GCD).
    Backprop,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DxmiConfig {
    pub sampler_update: SamplerUpdate,
    /// A trained diffusion-BC run or checkpoint to start the sampler from: its network (which
    /// predicts the noise), its chain respaced to `schedule.steps` steps (the rest of `schedule`
    /// and `sampler_net` are then the prior's), its observation normalisation. Empty: a fresh
    /// sampler.
    #[serde(default)]
    pub prior: String,
    /// What the sampler's network predicts; a prior's network predicts the noise (`"noise"`
    /// is required with a prior).
    pub prediction: Prediction,
    /// The sampler's chain: `schedule.steps` = T (4 or 10); a schedule that reaches noise.
    /// With a prior only `steps` and `variance` are read (its chain respaced to `steps`, its σ_t
    /// by `variance`). `variance = "posterior"`, σ_t² = β̃_t and 0.001 at the last step, is the
    /// code's VAR sampler; `"beta"` adds σ_t² = β_t, on a respaced chain far more noise. The
    /// T = 75 prior of hopper-medium respaced evenly to 4 steps, untrained: 26.1 with β, 40.5
    /// with β̃ (20 episodes × 3 seeds, full noise; README, issue 22's use 2).
    pub schedule: ScheduleConfig,
    /// With a prior: where its respaced chain keeps its steps; quadratic puts the last step at a
    /// small noise level (the 4-step chain of a T = 75 prior: steps 0, 5, 19, 42, 75 instead of
    /// 0, 19, 38, 56, 75). Measured as above, 100 episodes × 3 seeds: 43.3 quadratic against
    /// 40.2 even (the prior itself 43.5 at half noise). Runs saved before the setting existed
    /// kept them evenly.
    #[serde(default)]
    pub respacing: Spacing,
    /// A fresh sampler's ε-network.
    pub sampler_net: EpsNetConfig,
    /// The value/energy network on `[s, x, fourier(t)]`.
    pub value_net: NetConfig,
    /// Fourier harmonics of the value network's time input.
    pub value_time_harmonics: usize,
    /// γ of the energy's square penalty.
    pub gamma: f64,
    /// τ₁: weight of the entropy term `−log σ_t`.
    pub tau1: f64,
    /// τ₂: weight of the velocity term `‖x_{t+1} − x_t‖²/(2 s_t²)`. Fine-tuning a prior's
    /// respaced chain on hopper-medium at sampler_lr 1e-5 for 3000 updates (README, issue 22's
    /// use 2) it costs return: 40.0 at 0.01 against 43.7 at 0 (100 episodes × 3 seeds; the chain
    /// before fine-tuning 43.3, the T = 75 prior 43.5).
    pub tau2: f64,
    /// Decay of the adaptive velocity scale `s_t²`.
    pub velocity_decay: f64,
    /// Adam's learning rate for the sampler's network. 1e-5: from a trained DDPM or prior it beat
    /// 1e-4 everywhere it was measured (issue 22, README: reward-free imitation on six expert
    /// datasets, the few-step prior on two, 8 Gaussians at K = 4 and 10); a fresh sampler learns
    /// at either (8 Gaussians: 0.151 / 0.139 sliced Wasserstein against the DDPM's 0.173).
    pub sampler_lr: f64,
    /// Adam's learning rate for its `log σ_t` (the code's `beta_lr`, which it sets at 100× its
    /// network's: at the network's rate a step's σ moves by at most `lr` in log per update). 1e-2,
    /// as measured with both network rates.
    pub sigma_lr: f64,
    pub value_lr: f64,
    pub adam_eps: f64,
    /// The global gradient norm of each sampler update (network and `log σ_t` together), at most
    /// this: the code's `clip_grad_norm_(sampler.parameters(), 0.1)`.
    pub sampler_clip: f64,
    /// DxDP: whether the values' temporal-difference targets add the running cost,
    /// `V_t ← V_{t+1} + c_t` (the cost-to-go, what the code's `entropy_in_value` /
    /// `velocity_in_value` = 0 switch on), or not, `V_t ← V_{t+1}` (the expected energy at the
    /// chain's end; the sampler's step still pays its own `c_t`), as every config of the code.
    /// On 8 Gaussians from a DDPM (sliced Wasserstein; the DDPM's 0.173 / 0.092 at K = 4 / 10)
    /// without the cost the modes' weights drift apart and DxMI loses to the DDPM (README,
    /// issue 22). Runs saved before the setting existed added it.
    #[serde(default = "crate::config::on")]
    pub cost_in_value: bool,
    /// With `cost_in_value`, whether the cost in the targets includes the entropy term
    /// `−τ₁ log σ_t` (the code's `entropy_in_value`) or only the velocity term (its
    /// `velocity_in_value`). The entropy term does not depend on `x`, so it changes no gradient
    /// of the sampler directly; it adds to each `V_t` the entropy of the steps after it, offsets
    /// that the one network which is also the energy has to fit. With the last σ fixed at 0.001
    /// they are large (about 0.7 per value) and a 2 × 64 network lost the energy on 8 Gaussians
    /// at K = 10 (AUROC against uniform actions 0.52; `tests/ebm_known_answers.rs`); with the
    /// chain's own last σ learnt (the default) the full-size run needed them at K = 10 (sliced
    /// Wasserstein 0.041 with, 0.123 without; the DDPM 0.092; README, issue 22). Runs saved
    /// before the setting existed included it.
    #[serde(default = "crate::config::on")]
    pub entropy_in_value: bool,
    /// Keep the last step's σ where it starts (`last_sigma`) instead of learning it (the code's
    /// `trainable_beta = "fix_last"`, in all its configs). Runs saved before the setting existed
    /// learnt it.
    #[serde(default)]
    pub fix_last_sigma: bool,
    /// The last step's σ, where the sampler starts and the most it may learn: 0 keeps the
    /// chain's own (by `schedule.variance`: β̃_2 under "posterior", as a DDPM chain samples);
    /// the code's VAR sampler sets 0.001, a near-deterministic last step. On a K = 4 DDPM
    /// (β̃_2: σ = 0.36) 0.001 and fixed loses the noise its last step needs: reward-free
    /// imitation of the CS285 hopper and walker2d experts fell to 34.2 / 9.3 (seed 0; 101.0 /
    /// 111.1 before). On a T = 75 prior respaced quadratically (β̃_2: 0.055) it acts better:
    /// hopper-medium 43.7 ± 2.4 against 40.8 ± 2.0 learnt (`configs/dxmi-fewstep.toml`, 100
    /// episodes × 3 seeds; README, issue 22). Runs saved before the setting existed kept the own.
    #[serde(default)]
    pub last_sigma: f64,
    /// Acting: the chain's noise × this.
    pub act_noise_scale: f64,
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for DxmiConfig {
    /// The official code's trainer settings; networks and learning rates sized for state-
    /// conditioned actions.
    fn default() -> Self {
        Self {
            sampler_update: SamplerUpdate::Value,
            prior: String::new(),
            prediction: Prediction::Action,
            schedule: ScheduleConfig {
                steps: 4,
                kind: ScheduleKind::Cosine,
                variance: Variance::Posterior,
                ..ScheduleConfig::default()
            },
            respacing: Spacing::Quadratic,
            sampler_net: EpsNetConfig::default(),
            value_net: NetConfig::default(),
            value_time_harmonics: 8,
            gamma: 1.0,
            tau1: 0.1,
            tau2: 0.01,
            velocity_decay: 0.99,
            sampler_lr: 1e-5,
            sigma_lr: 1e-2,
            value_lr: 1e-4,
            adam_eps: 1e-8,
            sampler_clip: 0.1,
            cost_in_value: true,
            entropy_in_value: true,
            fix_last_sigma: false,
            last_sigma: 0.0,
            act_noise_scale: 1.0,
            data: DataConfig {
                normalize_obs: true,
                reward_norm: RewardNorm::None,
            },
            train: LoopConfig::default(),
        }
    }
}

impl DxmiConfig {
    /// GCD's defaults: DxMI's with the sampler trained through its chain. At DxMI's former
    /// sampler rate, 1e-4, GCD collapses on 8 Gaussians (K = 4 from a DDPM at sliced Wasserstein
    /// 0.173: 1.307, no sample near a mode) where DxMI does not (0.145); at 1e-5 both reach 0.136
    /// (`bindings/python/benches/dxmi_eight_gaussians.py`) — the instability DxDP removes.
    pub fn gcd() -> Self {
        Self {
            sampler_update: SamplerUpdate::Backprop,
            ..Self::default()
        }
    }

    /// Every setting in its allowed range, named as in the config, before any work.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::count("schedule.steps", self.schedule.steps)?;
        check::count("sampler_net.hidden", self.sampler_net.hidden)?;
        check::count("sampler_net.width", self.sampler_net.width)?;
        self.value_net.validate("value_net")?;
        check::non_negative("gamma", self.gamma)?;
        check::non_negative("tau1", self.tau1)?;
        check::non_negative("tau2", self.tau2)?;
        check::rate("velocity_decay", self.velocity_decay)?;
        check::positive("sampler_lr", self.sampler_lr)?;
        check::positive("sigma_lr", self.sigma_lr)?;
        check::positive("value_lr", self.value_lr)?;
        check::positive("adam_eps", self.adam_eps)?;
        check::positive("sampler_clip", self.sampler_clip)?;
        check::non_negative("last_sigma", self.last_sigma)?;
        crate::diffusion::check_noise_scale(self.act_noise_scale)?;
        self.train.validate()
    }
}

// ---------------------------------------------------------------------------------------------
// The sampler
// ---------------------------------------------------------------------------------------------

/// `x_{t+1} = μ_φ(s, x_t, t) + σ_t ξ` for `t = 0..T` (see the module docs).
#[derive(Module, Debug)]
pub struct Sampler {
    pub eps: EpsNet,
    pub sigma: StepSigma,
}

/// The sampler's `log σ_t`, `t = 0..T` in the paper's order (`t = 0` leaves the noise), kept at
/// most the chain's own value ([`SamplerChain::project`]); a module of its own for its own
/// learning rate.
#[derive(Module, Debug)]
pub struct StepSigma {
    pub log_sigma: Param<Tensor<1>>,
}

impl StepSigma {
    /// `σ_t` read on the host: tensor operations on the tracked parameter that no backward pass
    /// consumes stay in its autodiff graph, and a resumed run then differs from the
    /// uninterrupted one (measured with the resume test).
    pub fn values(&self) -> Vec<f32> {
        crate::nn::to_vec(self.log_sigma.val())
            .iter()
            .map(|l| l.exp())
            .collect()
    }
}

/// The per-step constants of the sampler's mean, `μ = a_t·x + b_t·f_φ(s, x, T − t)` with the
/// network `f_φ` predicting the action or the noise ([`Prediction`]).
#[derive(Debug, Clone)]
pub struct SamplerChain {
    schedule: NoiseSchedule,
    prediction: Prediction,
    /// The chain's own `log σ_t` per paper step: where a fresh sampler starts, and the most it
    /// may learn. With a bounded energy (γ > 0) nothing opposes `−τ₁ log σ_t` above it —
    /// measured: mean σ 1.15 → 2.94 over 1,500 updates on two-mode 1-D data, a third of the
    /// actions outside the box, without the bound.
    log_sigma_max: Vec<f32>,
    /// The network's step for each DDPM step of this chain (`0..=T`): the identity for a fresh
    /// sampler, the kept steps of a prior's chain respaced to this one.
    net_steps: Vec<usize>,
    /// The chain the network was built on (its time features): this one, or the prior's.
    net_schedule: NoiseSchedule,
}

impl SamplerChain {
    /// A fresh sampler's chain.
    pub fn new(config: &ScheduleConfig, prediction: Prediction) -> Result<Self> {
        let schedule = NoiseSchedule::new(config)?;
        let net_steps = (0..=schedule.steps()).collect();
        Ok(Self::on(schedule.clone(), prediction, net_steps, schedule))
    }

    /// A prior's chain respaced to `steps` steps placed by `spacing`
    /// ([`NoiseSchedule::respaced_by`]), its network predicting the noise at the kept steps, its
    /// σ_t by `variance` (not the prior's rule).
    pub fn from_prior(
        prior: &NoiseSchedule,
        steps: usize,
        spacing: Spacing,
        variance: Variance,
    ) -> Result<Self> {
        let (schedule, kept) = prior.respaced_by(steps, spacing)?;
        let schedule = schedule.with_variance(variance);
        Ok(Self::on(schedule, Prediction::Noise, kept, prior.clone()))
    }

    fn on(
        schedule: NoiseSchedule,
        prediction: Prediction,
        net_steps: Vec<usize>,
        net_schedule: NoiseSchedule,
    ) -> Self {
        let steps = schedule.steps();
        // The chain's own σ at DDPM step k: its reverse standard deviation by
        // `schedule.variance`, as a DDPM chain of this schedule samples (under "posterior"
        // β̃_1 = 0 is replaced by β̃_2). `DxmiConfig::last_sigma` may set the last one.
        let log_sigma_max = (0..steps)
            .map(|t| (schedule.std[steps - t].max(1e-3) as f32).ln())
            .collect();
        Self {
            schedule,
            prediction,
            log_sigma_max,
            net_steps,
            net_schedule,
        }
    }

    /// This chain with its last step's σ (where a sampler starts, and the most it may learn) set
    /// to `sigma` instead of its own; 0 keeps its own.
    pub fn with_last_sigma(mut self, sigma: f64) -> Self {
        if sigma > 0.0 {
            if let Some(last) = self.log_sigma_max.last_mut() {
                *last = (sigma as f32).ln();
            }
        }
        self
    }

    /// `σ_t` of a sampler that starts where this chain does: the chain's own.
    pub fn initial_sigma(&self, device: &Device) -> StepSigma {
        StepSigma {
            log_sigma: Param::from_tensor(crate::nn::tensor1(&self.log_sigma_max, device)),
        }
    }

    /// T, the number of sampler steps.
    pub fn steps(&self) -> usize {
        self.schedule.steps()
    }

    /// The DDPM step of the paper's step `t` (`t = 0` is the noisiest, DDPM's `T`).
    fn ddpm_step(&self, t: usize) -> usize {
        self.steps() - t
    }

    /// A fresh sampler: the ε-network from `seed` (via the backend's generator, as the prior's),
    /// `σ_t` at the chain's own reverse standard deviations.
    pub fn sampler(
        &self,
        net: &EpsNetConfig,
        obs_dim: usize,
        act_dim: usize,
        device: &Device,
    ) -> Sampler {
        Sampler {
            eps: EpsNet::new(net, obs_dim, act_dim, &self.schedule, device),
            sigma: self.initial_sigma(device),
        }
    }

    /// `μ_φ(s, x, t)` for rows each at its own paper step `t[i]`; differentiable through the
    /// sampler when its parameters are tracked.
    pub fn mean(&self, sampler: &Sampler, obs: Tensor<2>, x: Tensor<2>, t: &[usize]) -> Tensor<2> {
        let out = sampler
            .eps
            .forward_rows(obs, x.clone(), &self.net_steps_of(t));
        self.combine(x, out, t)
    }

    /// The network's steps of rows at paper steps `t`.
    fn net_steps_of(&self, t: &[usize]) -> Vec<usize> {
        t.iter()
            .map(|&t| self.net_steps[self.ddpm_step(t)])
            .collect()
    }

    /// The step's mean from the network's output `out` (the action or the noise) at `x`.
    fn combine(&self, x: Tensor<2>, out: Tensor<2>, t: &[usize]) -> Tensor<2> {
        let (n, device) = (t.len(), x.device());
        let coef = |c: &[f64]| {
            let v: Vec<f32> = t.iter().map(|&t| c[self.ddpm_step(t)] as f32).collect();
            crate::nn::tensor2(&v, n, 1, &device)
        };
        let s = &self.schedule;
        match self.prediction {
            Prediction::Action => x * coef(&s.posterior_coef_xt) + out * coef(&s.posterior_coef_x0),
            Prediction::Noise => x * coef(&s.mean_coef_xt) - out * coef(&s.mean_coef_eps),
        }
    }

    /// `σ_t` per row, `[n, 1]`: the learnt `log σ_t` (kept at most the chain's own by
    /// [`SamplerChain::project`] after every step).
    pub fn sigma(&self, sampler: &Sampler, t: &[usize]) -> Tensor<2> {
        let device = sampler.sigma.log_sigma.val().device();
        let index: Vec<i64> = t.iter().map(|&t| t as i64).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [t.len()]), &device);
        let log_sigma = sampler.sigma.log_sigma.val().select(0, index);
        log_sigma.exp().reshape([t.len(), 1])
    }

    /// `log σ_t ← min(log σ_t, the chain's own)`: a projection after each step, not a `min` in
    /// the forward pass — a fresh sampler starts at the bound, `−τ₁ log σ_t` pushes it past at
    /// the first step, and past the bound a `min` passes no gradient: σ_t could never learn to
    /// shrink again (measured: the mean σ stayed at its initial 0.7194 through 1,000 updates on
    /// 8 Gaussians).
    pub fn project(&self, sampler: Sampler) -> Sampler {
        let max = &self.log_sigma_max;
        let log_sigma = sampler.sigma.log_sigma;
        Sampler {
            sigma: StepSigma {
                log_sigma: log_sigma.map(|log_sigma| {
                    let device = log_sigma.device();
                    let tracked = log_sigma.is_require_grad();
                    let v: Vec<f32> = crate::nn::to_vec(log_sigma)
                        .iter()
                        .zip(max)
                        .map(|(l, m)| l.min(*m))
                        .collect();
                    crate::nn::tensor1(&v, &device).set_require_grad(tracked)
                }),
            },
            eps: sampler.eps,
        }
    }

    /// The sampler as a `T`-step DDPM chain: its network with the time features of the steps it
    /// runs at (a respaced prior's kept steps), and this chain's schedule with the learnt σ_t as
    /// its reverse standard deviations. [`crate::diffusion::reverse_step`] at DDPM step `T − t`
    /// is then this sampler's step `t`: the same mean and σ. A network that predicts the action
    /// has no such form.
    pub fn prior_parts(&self, sampler: &Sampler) -> Result<(EpsNet, NoiseSchedule)> {
        if self.prediction != Prediction::Noise {
            return Err(Error::Config(
                "a sampler whose network predicts the action is not a diffusion prior (its chain \
                 needs prediction = \"noise\": start it from a diffusion-BC run)"
                    .into(),
            ));
        }
        let steps = self.steps();
        let mut net = sampler.eps.clone();
        let d = net.time_dim;
        net.time_features = (1..=steps)
            .flat_map(|k| {
                let row = self.net_steps[k] - 1;
                sampler.eps.time_features[row * d..(row + 1) * d].to_vec()
            })
            .collect();
        let mut schedule = self.schedule.clone();
        for (t, sigma) in sampler.sigma.values().into_iter().enumerate() {
            schedule.std[self.ddpm_step(t)] = f64::from(sigma);
        }
        Ok((net, schedule))
    }

    /// The chain from noise at `obs` (`[n, obs_dim]`): its `T + 1` states, detached, and the
    /// `σ_t` it used. The noise is `ξ × noise_scale` (1 in training).
    pub fn rollout(
        &self,
        sampler: &Sampler,
        obs: Tensor<2>,
        act_dim: usize,
        noise_scale: f32,
        rng: &mut ChaCha8Rng,
    ) -> Rollout {
        let net = |obs, x, steps: &[usize]| sampler.eps.forward_rows(obs, x, steps).detach();
        self.rollout_with(net, sampler.sigma.values(), obs, act_dim, noise_scale, rng)
    }

    /// The chain run by `net` (the network's output for rows at the given network steps) with
    /// the steps' `σ_t` in `sigma`: what [`SamplerChain::rollout`] and the acting policy share.
    pub fn rollout_with(
        &self,
        net: impl Fn(Tensor<2>, Tensor<2>, &[usize]) -> Tensor<2>,
        sigma: Vec<f32>,
        obs: Tensor<2>,
        act_dim: usize,
        noise_scale: f32,
        rng: &mut ChaCha8Rng,
    ) -> Rollout {
        let n = obs.dims()[0];
        let device = obs.device();
        let mut x = normal(rng, n, act_dim, &device);
        let mut states = vec![x.clone()];
        for (t, &s) in sigma.iter().enumerate() {
            let rows = vec![t; n];
            let out = net(obs.clone(), x.clone(), &self.net_steps_of(&rows));
            x = self.combine(x, out, &rows) + normal(rng, n, act_dim, &device) * (s * noise_scale);
            states.push(x.clone());
        }
        Rollout { states, sigma }
    }
}

/// A sampler rollout: `states[t]` is `x_t` (`[n, act_dim]`, `t = 0..=T`), `sigma[t]` is `σ_t`.
pub struct Rollout {
    pub states: Vec<Tensor<2>>,
    pub sigma: Vec<f32>,
}

impl Rollout {
    /// The final states: the sampler's actions (unclipped).
    pub fn actions(&self) -> Tensor<2> {
        self.states.last().expect("a chain has a state").clone()
    }

    /// `mean ‖x_{t+1} − x_t‖²` per step, over rows and dimensions.
    pub fn squared_velocity(&self) -> Vec<f64> {
        self.states
            .windows(2)
            .map(|w| scalar(&(w[1].clone() - w[0].clone()).powi_scalar(2).mean()))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Values and energy
// ---------------------------------------------------------------------------------------------

/// `V(s, x, t)` for `t = 0..=T`; the energy is `E(s, a) = V(s, a, T)`.
#[derive(Module, Debug)]
pub struct ValueNet {
    pub net: Mlp,
    /// Fourier features of `t / (T + 1)`, row `t`: `[(T + 1) × dim]` row-major.
    #[module(skip)]
    time_features: Vec<f32>,
    #[module(skip)]
    time_dim: usize,
}

impl ValueNet {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        net: &NetConfig,
        harmonics: usize,
        steps: usize,
        obs_dim: usize,
        act_dim: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Self {
        let embedding = FourierTimeEmbedding::new(harmonics);
        let time_features = (0..=steps)
            .flat_map(|t| embedding.features(t as f64 / (steps + 1) as f64))
            .collect();
        Self {
            net: net.mlp(obs_dim + act_dim + embedding.dim(), 1, rng, device),
            time_features,
            time_dim: embedding.dim(),
        }
    }

    /// The last time: where `V` is the energy.
    pub fn energy_time(&self) -> usize {
        self.time_features.len() / self.time_dim - 1
    }

    /// `V(s, x, t[i])` per row, `[n]`.
    pub fn value(&self, obs: Tensor<2>, x: Tensor<2>, t: &[usize]) -> Tensor<1> {
        let d = self.time_dim;
        let features: Vec<f32> = t
            .iter()
            .flat_map(|&t| self.time_features[t * d..(t + 1) * d].iter().copied())
            .collect();
        let time = crate::nn::tensor2(&features, t.len(), d, &x.device());
        column(self.net.forward(Tensor::cat(vec![obs, x, time], 1)))
    }

    /// `E(s, a)`, `[n]`.
    pub fn energy(&self, obs: Tensor<2>, act: Tensor<2>) -> Tensor<1> {
        let n = act.dims()[0];
        self.value(obs, act, &vec![self.energy_time(); n])
    }
}

/// `−E(s, a)` of a trained energy for raw observations and environment actions.
struct NegativeEnergy {
    value: ValueNet,
    spec: DataSpec,
    device: Device,
}

impl crate::policy::ActionScorer for NegativeEnergy {
    fn score(&self, obs: &[f32], act: &[f32], n: usize) -> Result<Vec<f32>> {
        let (od, ad) = (self.spec.obs_dim, self.spec.act_dim);
        let obs = crate::nn::tensor2(&self.spec.normalize_obs(obs), n, od, &self.device);
        let act = crate::nn::tensor2(&self.spec.action_to_unit(act), n, ad, &self.device);
        Ok(crate::nn::to_vec(self.value.energy(obs, act).neg()))
    }
}

/// The energy's contrastive loss with DxMI's square penalty:
/// `mean E(data) − mean E(samples) + γ·(mean E(data)² + mean E(samples)²)`.
pub fn energy_loss(e_data: Tensor<1>, e_sample: Tensor<1>, gamma: f64) -> Tensor<1> {
    let penalty = e_data.clone().powi_scalar(2).mean() + e_sample.clone().powi_scalar(2).mean();
    e_data.mean() - e_sample.mean() + penalty * gamma
}

/// The running cost `c_t = τ₂·mean_d (x' − x)²/(2 s_t²) − τ₁·log σ_t` per row (`[n]`);
/// `velocity` and `sigma` are `[n, 1]` (`s_t²` and `σ_t` of each row's step).
pub fn running_cost(
    x: Tensor<2>,
    next: Tensor<2>,
    velocity: Tensor<2>,
    sigma: Tensor<2>,
    tau1: f64,
    tau2: f64,
) -> Tensor<1> {
    let moved = ((next - x).powi_scalar(2) / (velocity * 2.0)).mean_dim(1);
    column(moved * tau2 - sigma.log() * tau1)
}

/// DxDP's sampler loss on transitions from `x` (rows at paper steps `t`, states `obs`): each
/// row moved by the sampler, `x̂ = μ_φ(s, x, t) + σ_t ξ` (reparameterised), scored by the
/// value `to_go(s, x̂, t + 1)` plus its running cost. Returns the mean loss
/// (differentiable through the sampler) and the running costs. `velocity` is `s_t²` per row
/// (`[n, 1]`), `taus` is `(τ₁, τ₂)`.
#[allow(clippy::too_many_arguments)]
pub fn one_step_loss(
    chain: &SamplerChain,
    sampler: &Sampler,
    obs: Tensor<2>,
    x: Tensor<2>,
    t: &[usize],
    velocity: Tensor<2>,
    to_go: impl Fn(Tensor<2>, Tensor<2>, &[usize]) -> Tensor<1>,
    (tau1, tau2): (f64, f64),
    rng: &mut ChaCha8Rng,
) -> (Tensor<1>, Tensor<1>) {
    let [n, act_dim] = x.dims();
    let sigma = chain.sigma(sampler, t);
    let noise = normal(rng, n, act_dim, &x.device());
    let next = chain.mean(sampler, obs.clone(), x.clone(), t) + noise * sigma.clone();
    let cost = running_cost(x, next.clone(), velocity, sigma, tau1, tau2);
    let next_t: Vec<usize> = t.iter().map(|t| t + 1).collect();
    let loss = (to_go(obs, next, &next_t) + cost.clone()).mean();
    (loss, cost)
}

/// DxDP's value fit on one rollout: backwards over its steps, one Adam step each of
/// `V(s, x_t, t)` onto the temporal-difference target `V(s, x_{t+1}, t + 1) [+ c_t]`. With
/// `cost = Some((τ₁, τ₂))` the target adds the running cost (with `velocity[t]` = `s_t²` and the
/// rollout's σ_t: `V_t` is the cost-to-go); with `None` it does not (`V_t` is the expected
/// energy at the chain's end). The energy (`V` at the last time) is the first target and is not
/// fitted here. Returns the last step's loss.
pub fn td_sweep(
    value: &mut ValueNet,
    optim: &mut ModuleOptimizer,
    lr: f64,
    obs: Tensor<2>,
    rollout: &Rollout,
    velocity: &[f64],
    cost: Option<(f64, f64)>,
) -> f64 {
    let (n, device) = (obs.dims()[0], obs.device());
    let column = |v: f64| crate::nn::tensor2(&vec![v as f32; n], n, 1, &device);
    let mut loss_value = 0.0;
    for t in (0..rollout.states.len() - 1).rev() {
        let (x, next) = (rollout.states[t].clone(), rollout.states[t + 1].clone());
        let mut target = value.value(obs.clone(), next.clone(), &vec![t + 1; n]);
        if let Some((tau1, tau2)) = cost {
            let sigma = column(f64::from(rollout.sigma[t]));
            target = target + running_cost(x.clone(), next, column(velocity[t]), sigma, tau1, tau2);
        }
        let target = target.detach();
        let loss = (value.value(obs.clone(), x, &vec![t; n]) - target)
            .powi_scalar(2)
            .mean();
        loss_value = scalar(&loss);
        let grads = GradientsParams::from_grads(loss.backward(), &*value);
        *value = optim.step(lr, value.clone(), grads);
    }
    loss_value
}

// ---------------------------------------------------------------------------------------------
// The algorithm
// ---------------------------------------------------------------------------------------------

/// Energies at a probe's states ([`Dxmi::probe_energies`]).
struct ProbeEnergies {
    data: Vec<f64>,
    near: Vec<f64>,
    uniform: Vec<f64>,
    sampled: Vec<f64>,
}

pub struct Dxmi {
    cfg: DxmiConfig,
    spec: DataSpec,
    device: Device,
    rng: ChaCha8Rng,
    chain: SamplerChain,
    sampler: Sampler,
    /// The sampler network's shape (the fresh sampler's, or its prior's): a prior's spec.
    net_config: EpsNetConfig,
    value: ValueNet,
    /// `s_t²`, one per step; empty until the first update measures it.
    velocity: Vec<f64>,
    sampler_optim: ModuleOptimizer,
    sigma_optim: ModuleOptimizer,
    value_optim: ModuleOptimizer,
}

impl Dxmi {
    pub fn new(cfg: DxmiConfig, spec: DataSpec, device: &Device, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let (chain, sampler, spec, net_config) = if cfg.prior.is_empty() {
            let chain =
                SamplerChain::new(&cfg.schedule, cfg.prediction)?.with_last_sigma(cfg.last_sigma);
            crate::backend::seed(device, seed);
            let sampler = chain.sampler(&cfg.sampler_net, spec.obs_dim, spec.act_dim, device);
            (chain, sampler, spec, cfg.sampler_net.clone())
        } else {
            sampler_from_prior(&cfg, &spec, device)?
        };
        let (od, ad) = (spec.obs_dim, spec.act_dim);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let value = ValueNet::new(
            &cfg.value_net,
            cfg.value_time_harmonics,
            chain.steps(),
            od,
            ad,
            &mut rng,
            device,
        );
        Ok(Self {
            sampler_optim: crate::nn::adam(cfg.adam_eps, None),
            sigma_optim: crate::nn::adam(cfg.adam_eps, None),
            value_optim: crate::nn::adam(cfg.adam_eps, None),
            cfg,
            spec,
            device: device.clone(),
            rng,
            chain,
            sampler,
            net_config,
            value,
            velocity: Vec::new(),
        })
    }

    /// The energy network (`V` at its last time): `E(s, a)` on normalised observations and unit
    /// actions; lower is more like the data.
    pub fn value_net(&self) -> &ValueNet {
        &self.value
    }

    /// The energy at the probe's states of the dataset's actions, of those moved by N(0, 0.1²)
    /// in the unit box (clipped), of uniform actions, and of the sampler's own (its chain at full
    /// noise); the draws come from fixed generators, so they only change with the models.
    fn probe_energies(&self, probe: &Probe) -> Result<ProbeEnergies> {
        let (value, device) = crate::nn::inference_copy(&self.value);
        let (n, od, ad) = (probe.n, self.spec.obs_dim, self.spec.act_dim);
        let obs = crate::nn::tensor2(&self.spec.normalize_obs(&probe.obs), n, od, &device);
        let data = self.spec.action_to_unit(&probe.actions);
        let mut rng = ChaCha8Rng::seed_from_u64(ENERGY_PROBE_SEED);
        let near: Vec<f32> = data
            .iter()
            .map(|a| (a + 0.1 * rng.sample::<f32, _>(StandardNormal)).clamp(-1.0, 1.0))
            .collect();
        let uniform: Vec<f32> = (0..data.len())
            .map(|_| rng.random_range(-1.0f32..=1.0))
            .collect();
        let mut sampler = self.acting_policy(1.0, ENERGY_PROBE_SEED);
        let sampled = self.spec.action_to_unit(&probe.act(&mut sampler)?);
        let energy = |a: &[f32]| -> Vec<f64> {
            let a = crate::nn::tensor2(a, n, ad, &device);
            crate::nn::to_vec(value.energy(obs.clone(), a))
                .into_iter()
                .map(f64::from)
                .collect()
        };
        Ok(ProbeEnergies {
            data: energy(&data),
            near: energy(&near),
            uniform: energy(&uniform),
            sampled: energy(&sampled),
        })
    }

    /// The sampler as a `T`-step diffusion prior — what RTB and IDQL take as their μ (issue 22's
    /// few-step prior): the transitions of [`SamplerChain::prior_parts`], this run's data spec,
    /// actions in the box. Only a sampler whose network predicts the noise is one. The spec's
    /// schedule config names the chain (its step count); the schedule itself is the respaced
    /// one with the learnt σ_t — load it with [`crate::algos::load_prior`], not from the config.
    pub fn as_prior(&self) -> Result<DiffusionPrior> {
        let (net, schedule) = self.chain.prior_parts(&self.sampler)?;
        let spec = PriorSpec::new(
            self.spec.clone(),
            schedule.config.clone(),
            self.net_config.clone(),
            false,
            PriorConfig::default().pre_tanh_clip,
        )?;
        Ok(DiffusionPrior {
            net,
            schedule,
            spec,
        })
    }

    /// The sampler as a policy: its chain's noise × `noise_scale`, its own generator from `seed`.
    pub fn acting_policy(&self, noise_scale: f64, seed: u64) -> SamplerPolicy {
        SamplerPolicy::new(
            &self.sampler,
            self.chain.clone(),
            &self.spec,
            noise_scale,
            seed,
        )
    }

    /// `s_t²` per row for rows at steps `t`, `[n, 1]`.
    fn velocity_rows(&self, t: &[usize]) -> Tensor<2> {
        let v: Vec<f32> = t.iter().map(|&t| self.velocity[t] as f32).collect();
        crate::nn::tensor2(&v, t.len(), 1, &self.device)
    }

    /// One Adam step of the sampler: its network at `sampler_lr`, its `log σ_t` at `sigma_lr`,
    /// their gradients clipped together to the global norm `sampler_clip` (the last σ's left out
    /// when it is fixed, as it is no parameter in the code).
    fn step_sampler(&mut self, loss: Tensor<1>) {
        let mut grads = GradientsParams::from_grads(loss.backward(), &self.sampler);
        let sigma_id = self.sampler.sigma.log_sigma.id;
        let mut sigma_grad = grads.remove::<1>(sigma_id);
        if self.cfg.fix_last_sigma {
            sigma_grad = sigma_grad.map(|g| {
                let mut mask = vec![1.0; self.chain.steps()];
                mask[self.chain.steps() - 1] = 0.0;
                g * crate::nn::tensor1(&mask, &self.device)
            });
        }
        if let Some(g) = sigma_grad {
            grads.register(sigma_id, g);
        }
        let mut eps_grads = clip_global_norm(&self.sampler, grads, self.cfg.sampler_clip).0;
        let mut sigma_grads = GradientsParams::new();
        if let Some(g) = eps_grads.remove::<1>(sigma_id) {
            sigma_grads.register(sigma_id, g);
        }
        let Sampler { eps, sigma } = self.sampler.clone();
        let stepped = Sampler {
            eps: self.sampler_optim.step(self.cfg.sampler_lr, eps, eps_grads),
            sigma: self.sigma_optim.step(self.cfg.sigma_lr, sigma, sigma_grads),
        };
        self.sampler = self.chain.project(stepped);
    }

    /// DxDP: the values backwards over the rollout's steps, then the sampler's one-step loss on
    /// all of its transitions at once.
    fn dxdp(&mut self, obs: Tensor<2>, rollout: &Rollout) -> Metrics {
        let (taus, lr, steps) = (
            (self.cfg.tau1, self.cfg.tau2),
            self.cfg.value_lr,
            self.chain.steps(),
        );
        // The entropy term is constant in x: it moves no gradient of the sampler directly,
        // only what the shared value/energy network has to fit.
        let tau1_in_value = if self.cfg.entropy_in_value {
            taus.0
        } else {
            0.0
        };
        let value_loss = td_sweep(
            &mut self.value,
            &mut self.value_optim,
            lr,
            obs.clone(),
            rollout,
            &self.velocity,
            self.cfg.cost_in_value.then_some((tau1_in_value, taus.1)),
        );
        let n = obs.dims()[0];
        // Every (state, step) of the rollout, each moved once more by the current sampler.
        let t: Vec<usize> = (0..steps).flat_map(|t| vec![t; n]).collect();
        let obs_rows = Tensor::cat(vec![obs; steps], 0);
        let x = Tensor::cat(rollout.states[..steps].to_vec(), 0);
        let value = &self.value;
        let (loss, cost) = one_step_loss(
            &self.chain,
            &self.sampler,
            obs_rows,
            x,
            &t,
            self.velocity_rows(&t),
            |obs, next, t| value.value(obs, next, t),
            taus,
            &mut self.rng,
        );
        let metrics = vec![
            ("value_loss", value_loss),
            ("sampler_loss", scalar(&loss)),
            ("running_cost", scalar(&cost.mean())),
        ];
        self.step_sampler(loss);
        metrics
    }

    /// GCD: `E(s, x_T) + Σ_t c_t` back-propagated through a fresh rollout of the whole chain.
    fn backprop(&mut self, obs: Tensor<2>) -> Metrics {
        let (taus, steps) = ((self.cfg.tau1, self.cfg.tau2), self.chain.steps());
        let [n, _] = obs.dims();
        let ad = self.spec.act_dim;
        let mut x = normal(&mut self.rng, n, ad, &self.device);
        let mut cost_sum = Tensor::<1>::zeros([n], &self.device);
        for t in 0..steps {
            let rows = vec![t; n];
            let sigma = self.chain.sigma(&self.sampler, &rows);
            let noise = normal(&mut self.rng, n, ad, &self.device);
            let next = self
                .chain
                .mean(&self.sampler, obs.clone(), x.clone(), &rows)
                + noise * sigma.clone();
            cost_sum = cost_sum
                + running_cost(
                    x,
                    next.clone(),
                    self.velocity_rows(&rows),
                    sigma,
                    taus.0,
                    taus.1,
                );
            x = next;
        }
        let loss = (self.value.energy(obs, x) + cost_sum.clone()).mean();
        let metrics = vec![
            ("sampler_loss", scalar(&loss)),
            ("running_cost", scalar(&cost_sum.mean()) / steps as f64),
        ];
        self.step_sampler(loss);
        metrics
    }
}

/// The sampler of a trained diffusion-BC run (`cfg.prior`): its ε-network (trained further),
/// its chain respaced to `schedule.steps`, σ_t starting at the short chain's own; and the data
/// spec the network was trained with (observations normalised as the prior saw them).
fn sampler_from_prior(
    cfg: &DxmiConfig,
    spec: &DataSpec,
    device: &Device,
) -> Result<(SamplerChain, Sampler, DataSpec, EpsNetConfig)> {
    let path = Checkpoint::resolve(std::path::Path::new(&cfg.prior))?;
    let prior = DiffusionPrior::load(&path, device)?;
    let refuse = |why: &str| Err(Error::Config(format!("prior {}: {why}", path.display())));
    if cfg.prediction != Prediction::Noise {
        return refuse("its network predicts the noise: set prediction = \"noise\"");
    }
    if prior.spec.pre_tanh {
        return refuse(
            "it models pre-tanh actions (pre_tanh = true); the sampler works in the action box",
        );
    }
    if !prior.schedule.start.is_standard() {
        return refuse("its chain starts at the data's marginal (schedule.start); the sampler's starts at N(0, I)");
    }
    let ps = &prior.spec.data;
    if ps.obs_dim != spec.obs_dim || ps.act_dim != spec.act_dim {
        return Err(Error::InvalidData(format!(
            "dxmi: the prior {} was trained on obs {} / act {}, the dataset has obs {} / act {}",
            path.display(),
            ps.obs_dim,
            ps.act_dim,
            spec.obs_dim,
            spec.act_dim
        )));
    }
    let chain = SamplerChain::from_prior(
        &prior.schedule,
        cfg.schedule.steps,
        cfg.respacing,
        cfg.schedule.variance,
    )?
    .with_last_sigma(cfg.last_sigma);
    let sampler = Sampler {
        sigma: chain.initial_sigma(device),
        eps: prior.net,
    };
    Ok((chain, sampler, prior.spec.data, prior.spec.net))
}

impl OfflineAlgorithm for Dxmi {
    fn name(&self) -> &'static str {
        match self.cfg.sampler_update {
            SamplerUpdate::Value => NAME,
            SamplerUpdate::Backprop => GCD_NAME,
        }
    }

    fn spec(&self) -> &DataSpec {
        &self.spec
    }

    fn update(&mut self, batch: &Batch, _step: usize) -> Result<Metrics> {
        let b = self.spec.batch_tensors(batch, &self.device);
        let ad = self.spec.act_dim;
        // 1. The sampler's chain at the batch's states (detached). Not through a `no_grad()`
        // clone: it switches off the gradients of the parameters it shares with the sampler.
        let rollout = self
            .chain
            .rollout(&self.sampler, b.obs.clone(), ad, 1.0, &mut self.rng);
        // 2. The adaptive velocity scale.
        let measured = rollout.squared_velocity();
        if self.velocity.is_empty() {
            self.velocity = measured.iter().map(|v| v.max(1e-8)).collect();
        } else {
            let d = self.cfg.velocity_decay;
            for (s, m) in self.velocity.iter_mut().zip(&measured) {
                *s = (d * *s + (1.0 - d) * m).max(1e-8);
            }
        }
        // 3. The energy: data down, samples up, squares penalised.
        let e_data = self.value.energy(b.obs.clone(), b.act);
        let e_sample = self.value.energy(b.obs.clone(), rollout.actions());
        let loss = energy_loss(e_data.clone(), e_sample.clone(), self.cfg.gamma);
        let mut metrics = vec![
            ("energy_loss", scalar(&loss)),
            ("energy_data", scalar(&e_data.mean())),
            ("energy_sample", scalar(&e_sample.mean())),
        ];
        let grads = GradientsParams::from_grads(loss.backward(), &self.value);
        self.value = self
            .value_optim
            .step(self.cfg.value_lr, self.value.clone(), grads);
        // 4. The sampler.
        metrics.extend(match self.cfg.sampler_update {
            SamplerUpdate::Value => self.dxdp(b.obs, &rollout),
            SamplerUpdate::Backprop => self.backprop(b.obs),
        });
        let sigma = rollout.sigma.iter().map(|&s| f64::from(s)).sum::<f64>();
        metrics.push(("sigma_mean", sigma / self.chain.steps() as f64));
        // The last step's σ bounds how sharp the actions can be.
        metrics.push((
            "sigma_last",
            f64::from(*rollout.sigma.last().expect("T ≥ 1")),
        ));
        Ok(metrics)
    }

    /// The policy's probe plus the energy as an in-distribution score: `diag/energy_auroc_near`
    /// and `_uniform`, the probability that a dataset action has a lower energy than an action
    /// of the same states moved by N(0, 0.1²) in the unit box (clipped to it), or drawn uniformly
    /// in it (0.5: chance); `_sampler`, the same against the sampler's own actions (0.5 when the
    /// energy no longer tells them from the data: DxMI's equilibrium). The draws are fixed, so
    /// the curves move only with the models.
    fn diagnostics(&self, probe: &Probe) -> Result<Metrics> {
        let mut metrics = policy_diagnostics(self, probe)?;
        let e = self.probe_energies(probe)?;
        let auroc = |other: &[f64]| probability_greater(other, &e.data);
        metrics.push(("diag/energy_auroc_near", auroc(&e.near)));
        metrics.push(("diag/energy_auroc_uniform", auroc(&e.uniform)));
        metrics.push(("diag/energy_auroc_sampler", auroc(&e.sampled)));
        Ok(metrics)
    }

    /// `plots/energy_scores.png`: the distributions of the energy over the probe's states for
    /// the dataset's actions and the three contrasts of [`Self::diagnostics`].
    fn figures(&self, probe: &Probe, step: usize, plots: &std::path::Path) -> Result<()> {
        let e = self.probe_energies(probe)?;
        crate::train::plot::histogram_chart(
            &plots.join("energy_scores.png"),
            &format!("energy E(s, a) at {} dataset states, step {step}", probe.n),
            "E(s, a) (lower: more like the data)",
            &[
                ("dataset actions", &e.data),
                ("dataset + N(0, 0.1²)", &e.near),
                ("uniform", &e.uniform),
                ("sampler", &e.sampled),
            ],
        )
    }

    fn policy(&self) -> Result<Box<dyn Policy>> {
        Ok(Box::new(self.acting_policy(self.cfg.act_noise_scale, 0)))
    }

    /// `−E(s, a)`: the energy is a negative reward (what IRL learns), so higher is more like
    /// the data — IDQL's `energy` penalty scores proposals with it.
    fn value_function(&self) -> Option<Box<dyn crate::policy::ActionScorer>> {
        let (value, device) = crate::nn::inference_copy(&self.value);
        Some(Box::new(NegativeEnergy {
            value,
            spec: self.spec.clone(),
            device,
        }))
    }

    fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()> {
        let sampler = &mut self.sampler;
        parts.module("sampler", &mut sampler.eps, Some(&mut self.sampler_optim))?;
        parts.module("sigma", &mut sampler.sigma, Some(&mut self.sigma_optim))?;
        parts.module("value", &mut self.value, Some(&mut self.value_optim))?;
        parts.rng(&mut self.rng)?;
        // As bits: serde_json's default float parsing is not always exact, resume must be.
        let mut bits: Vec<u64> = self.velocity.iter().map(|v| v.to_bits()).collect();
        parts.value("velocity_bits", &mut bits)?;
        self.velocity = bits.into_iter().map(f64::from_bits).collect();
        Ok(())
    }
}

/// The sampler acting: raw observations in, environment actions out (the chain's noise from its
/// own seeded generator, × `noise_scale`, clipped to the box); the network run by its engine
/// ([`ActingEps`], as the prior's policy).
pub struct SamplerPolicy {
    eps: ActingEps,
    sigma: Vec<f32>,
    chain: SamplerChain,
    spec: DataSpec,
    device: Device,
    noise_scale: f32,
    rng: ChaCha8Rng,
}

impl SamplerPolicy {
    pub fn new(
        sampler: &Sampler,
        chain: SamplerChain,
        spec: &DataSpec,
        noise_scale: f64,
        seed: u64,
    ) -> Self {
        let (sampler, device) = crate::nn::inference_copy(sampler);
        Self {
            eps: ActingEps::new(&sampler.eps, &chain.net_schedule),
            sigma: sampler.sigma.values(),
            chain,
            spec: spec.clone(),
            device,
            noise_scale: noise_scale as f32,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Policy for SamplerPolicy {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let (od, ad) = (self.spec.obs_dim, self.spec.act_dim);
        crate::policy::check_obs("sampler policy", obs, n, od)?;
        let obs = crate::nn::tensor2(&self.spec.normalize_obs(obs), n, od, &self.device);
        let eps = &self.eps;
        let rollout = self.chain.rollout_with(
            |obs, x, steps: &[usize]| eps.eps_rows(obs, x, steps),
            self.sigma.clone(),
            obs,
            ad,
            self.noise_scale,
            &mut self.rng,
        );
        let unit = crate::nn::to_vec(rollout.actions().clamp(-1.0, 1.0));
        Ok(self.spec.action_from_unit(&unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::reverse_step;

    /// A 20-step chain respaced to 4 steps (evenly or quadratically), with learnt σ_t below its
    /// own, is the DDPM chain of [`SamplerChain::prior_parts`]: at every step the same mean (to
    /// float error) and σ.
    #[test]
    fn a_respaced_sampler_is_a_ddpm_chain_with_the_same_transitions() {
        let device = Device::flex();
        let long = NoiseSchedule::new(&ScheduleConfig {
            steps: 20,
            ..ScheduleConfig::default()
        })
        .unwrap();
        let net = EpsNetConfig {
            width: 16,
            hidden: 2,
            ..EpsNetConfig::default()
        };
        crate::backend::seed(&device, 3);
        let learnt = [-0.5f32, -1.0, -1.5, -2.0];
        let sampler = Sampler {
            eps: EpsNet::new(&net, 3, 2, &long, &device),
            sigma: StepSigma {
                log_sigma: Param::from_tensor(crate::nn::tensor1(&learnt, &device)),
            },
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let obs = normal(&mut rng, 5, 3, &device);
        let x = normal(&mut rng, 5, 2, &device);
        for (spacing, variance) in [
            (Spacing::Even, Variance::Beta),
            (Spacing::Quadratic, Variance::Posterior),
        ] {
            let chain = SamplerChain::from_prior(&long, 4, spacing, variance).unwrap();
            let (net, schedule) = chain.prior_parts(&sampler).unwrap();
            assert_eq!(schedule.steps(), 4);
            for (t, log_sigma) in learnt.iter().enumerate() {
                let k = 4 - t;
                let want = crate::nn::to_vec(chain.mean(&sampler, obs.clone(), x.clone(), &[t; 5]));
                let eps = net.forward_rows(obs.clone(), x.clone(), &[k; 5]);
                let step = reverse_step(&schedule, x.clone(), eps, k);
                let got = crate::nn::to_vec(step.mean);
                let gap = want
                    .iter()
                    .zip(&got)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(gap < 1e-4, "{spacing:?}, step {t}: mean differs by {gap}");
                assert!((step.std - f64::from(log_sigma.exp())).abs() < 1e-6);
            }
        }
        let fresh = SamplerChain::new(&ScheduleConfig::default(), Prediction::Action).unwrap();
        let err = fresh.prior_parts(&sampler).err().unwrap().to_string();
        assert!(err.contains("predicts the action"), "{err}");
    }

    /// A sampler starts at its chain's own σ_t, a DDPM chain's reverse standard deviations
    /// (under "posterior" the last, β̃_1 = 0, replaced by β̃_2), unless `last_sigma` sets the last.
    #[test]
    fn a_sampler_starts_at_the_chains_own_sigma_or_the_set_last_one() {
        let device = Device::flex();
        let long = NoiseSchedule::new(&ScheduleConfig {
            steps: 75,
            ..ScheduleConfig::default()
        })
        .unwrap();
        let chain =
            SamplerChain::from_prior(&long, 4, Spacing::Quadratic, Variance::Posterior).unwrap();
        let own: Vec<f32> = (0..4).map(|t| chain.schedule.std[4 - t] as f32).collect();
        let beta_tilde_2 = chain.schedule.posterior_variance[2].sqrt() as f32;
        assert!(
            (own[3] - beta_tilde_2).abs() < 1e-7 && own[3] > 0.01,
            "{own:?}"
        );
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-6);
        let start = |chain: &SamplerChain| chain.initial_sigma(&device).values();
        assert!(close(&start(&chain), &own), "{:?}", start(&chain));
        assert!(close(&start(&chain.clone().with_last_sigma(0.0)), &own));
        let code = start(&chain.with_last_sigma(1e-3));
        assert!(
            close(&code[..3], &own[..3]) && (code[3] - 1e-3).abs() < 1e-9,
            "{code:?}"
        );
    }

    /// `configs/dxmi-fewstep.toml` (built in, by name) is the defaults without the velocity cost:
    /// the code's few-step settings.
    #[test]
    fn the_fewstep_config_is_the_codes_few_step_settings() {
        let defaults = DxmiConfig::default();
        let cfg =
            crate::config::resolve(&defaults, Some(std::path::Path::new("dxmi-fewstep")), &[])
                .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.prediction, Prediction::Noise);
        assert_eq!(
            (cfg.schedule.steps, cfg.tau2, cfg.last_sigma),
            (4, 0.0, 1e-3)
        );
        // No running cost in the values' targets: the code's values.
        assert!(cfg.fix_last_sigma && !cfg.cost_in_value);
        assert_eq!((cfg.train.steps, cfg.value_lr), (3000, 1e-3));
        assert_eq!(cfg.schedule.variance, defaults.schedule.variance);
        assert_eq!(cfg.respacing, defaults.respacing);
    }
}
