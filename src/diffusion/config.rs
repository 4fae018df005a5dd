//! What defines a behaviour prior besides its weights ([`PriorSpec`]); its config
//! (`configs/diffusion-bc.toml`): the model (noise schedule, ε-network, action space) and how
//! diffusion-BC trains it; and the state a prior run keeps in its checkpoints. Training itself
//! is an algorithm among the others, [`crate::algos::diffusion_bc`].

use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use super::chain::LossWeighting;
use super::model::EpsNetConfig;
use super::schedule::{NoiseSchedule, ScheduleConfig, StartDistribution};
use crate::dataset::spec::{DataConfig, DataSpec, RewardNorm};
use crate::error::{Error, Result};
use crate::train::LoopConfig;

/// Everything besides the network weights that defines a prior: the data spaces
/// (normalisation, action bounds), the chain, the network shape and the action parameterisation.
/// Transforms between spaces are in [`super::transform`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorSpec {
    pub data: DataSpec,
    pub schedule: ScheduleConfig,
    pub net: EpsNetConfig,
    /// The chain models pre-tanh actions `atanh(clip(unit action, ±pre_tanh_clip))`.
    pub pre_tanh: bool,
    pub pre_tanh_clip: f64,
    pub start: StartDistribution,
}

/// How per-step denoising errors are weighted in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Min-SNR-γ (Hang et al. 2023): `min(γ / SNR_t, 1)`, γ = `min_snr_gamma`.
    #[default]
    MinSnr,
    Uniform,
}

/// Learning-rate schedule over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// `lr` throughout (the paper).
    #[default]
    Constant,
    /// `lr · ½(1 + cos(π · step / train.steps))`: decays to 0 at the end of the run.
    Cosine,
}

/// How a prior acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActSampler {
    /// The ancestral (stochastic) chain.
    #[default]
    Ddpm,
    /// DDIM with η = 0: the chain's deterministic map of its start noise.
    Ddim,
}

/// Prior training config (`configs/diffusion-bc.toml`). Defaults: the RTB paper's offline-RL setup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorConfig {
    pub schedule: ScheduleConfig,
    pub net: EpsNetConfig,
    pub loss_weighting: Weighting,
    pub min_snr_gamma: f64,
    /// Model `atanh(clip(a, ±pre_tanh_clip))` and act with `tanh` (the paper's code does).
    pub pre_tanh: bool,
    pub pre_tanh_clip: f64,
    pub lr: f64,
    pub lr_schedule: LrSchedule,
    /// Adam ε (PyTorch's default 1e-8, which the paper's code uses; burn's default is 1e-5).
    pub adam_eps: f64,
    /// Clip the global gradient norm to this; 0 disables (the paper does not clip).
    pub grad_clip_norm: f64,
    /// Decay of an exponential moving average of the network's weights, updated every step
    /// with the warm-up `min(decay, (1 + step) / (10 + step))`; the policy, the checkpoint's
    /// prior and everything built on it (IDQL, RTB) use the average. 0 = off (the RTB paper's
    /// code); IDQL uses 0.999 (`actor_tau = 0.001`), Diffusion-QL 0.995.
    #[serde(default)]
    pub ema_decay: f64,
    /// Diffusion-BC acting: the chain's noise draws multiplied by this (1 samples μ, as the
    /// papers evaluate; below 1 acts at a lower temperature, towards μ's modes). Proposals
    /// for IDQL and RTB's prior are always μ itself.
    #[serde(default = "crate::config::one")]
    pub act_noise_scale: f64,
    /// Diffusion-BC acting: the ancestral chain (`"ddpm"`, what the papers evaluate) or its
    /// deterministic DDIM map of the start noise (`"ddim"`, [`super::ddim`]).
    #[serde(default)]
    pub act_sampler: ActSampler,
    /// Steps of the DDIM map when acting with it (0: all of the chain's).
    #[serde(default)]
    pub act_steps: usize,
    /// Observation normalisation (`reward_norm` is unused by the prior).
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for PriorConfig {
    fn default() -> Self {
        Self {
            schedule: ScheduleConfig::default(),
            net: EpsNetConfig::default(),
            loss_weighting: Weighting::MinSnr,
            min_snr_gamma: 5.0,
            pre_tanh: true,
            pre_tanh_clip: 0.99,
            lr: 5e-4,
            lr_schedule: LrSchedule::Constant,
            adam_eps: 1e-8,
            grad_clip_norm: 0.0,
            ema_decay: 0.0,
            act_noise_scale: 1.0,
            act_sampler: ActSampler::Ddpm,
            act_steps: 0,
            data: DataConfig {
                normalize_obs: true,
                reward_norm: RewardNorm::None,
            },
            train: LoopConfig {
                steps: 1_000_000,
                batch_size: 512,
                log_every: 1000,
                checkpoint_every: 50_000,
                eval_every: 0,
                holdout: 0.05,
            },
        }
    }
}

impl PriorConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.train.steps == 0 || self.train.batch_size == 0 {
            return bad("train.steps and train.batch_size must be positive".into());
        }
        if self.net.hidden == 0 || self.net.width == 0 || self.net.time_harmonics == 0 {
            return bad("net.hidden, net.width and net.time_harmonics must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr must be a positive number, got {}", self.lr));
        }
        crate::diffusion::check_noise_scale(self.act_noise_scale)?;
        if self.act_steps > self.schedule.steps {
            return bad(format!(
                "act_steps = {} exceeds the chain's schedule.steps = {} (0: all of them)",
                self.act_steps, self.schedule.steps
            ));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad(format!(
                "ema_decay must be in [0, 1), got {}",
                self.ema_decay
            ));
        }
        if self.loss_weighting == Weighting::MinSnr && self.min_snr_gamma <= 0.0 {
            return bad(format!(
                "min_snr_gamma must be positive, got {}",
                self.min_snr_gamma
            ));
        }
        NoiseSchedule::new(&self.schedule).map(|_| ())
    }

    /// The prior's spec for data described by `data` (start distribution `N(0, I)` until
    /// [`crate::train::OfflineAlgorithm::prepare`] sees the actions).
    pub fn spec(&self, data: DataSpec) -> Result<PriorSpec> {
        PriorSpec::new(
            data,
            self.schedule.clone(),
            self.net.clone(),
            self.pre_tanh,
            self.pre_tanh_clip,
        )
    }

    /// The learning rate of update `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        match self.lr_schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Cosine => {
                let progress = step as f64 / self.train.steps as f64;
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    pub fn weighting(&self) -> LossWeighting {
        match self.loss_weighting {
            Weighting::MinSnr => LossWeighting::MinSnr(self.min_snr_gamma),
            Weighting::Uniform => LossWeighting::Uniform,
        }
    }

    /// The weight of the new parameters in the moving average after update `step` (0-based).
    pub fn ema_rate(&self, step: usize) -> f64 {
        let warm = (1.0 + step as f64) / (10.0 + step as f64);
        1.0 - self.ema_decay.min(warm)
    }

    /// Adam with this config's ε and optional gradient-norm clipping.
    pub fn optimizer(&self) -> ModuleOptimizer {
        crate::nn::adam(
            self.adam_eps,
            (self.grad_clip_norm > 0.0).then_some(self.grad_clip_norm as f32),
        )
    }
}

/// JSON state of a prior run kept in checkpoints: the start distribution fitted on the data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PriorState {
    #[serde(default)]
    pub start: StartDistribution,
}
