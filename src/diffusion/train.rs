//! Training the behaviour prior μ(a|s) (`offrl train prior`): the config at the top, then the
//! update. The loop itself (minibatches, NaN stop, metrics, plots, checkpoints, exact resume) is
//! the one every algorithm shares, [`crate::algos::fit`]; the prior plugs into it as an
//! [`OfflineAlgorithm`] of kind [`AlgoKind::Prior`].
//!
//! Per update, on a minibatch `(s, a)`: normalise `s`, map `a` to model space, draw per row a
//! step `t ~ U{1..T}` and `ε ~ N(0, I)`, and take one Adam step on the (Min-SNR-weighted)
//! ε-prediction loss ([`denoising_loss`]). The noise of update `k` comes from ChaCha8 seeded with
//! the run's seed on stream `k`, so it is a function of the step: a resumed run draws exactly what
//! the uninterrupted run would have (the minibatch sampler is made resumable by `fit`).

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chain::{denoising_loss, LossWeighting};
use super::fused::LeafEps;
use super::model::{EpsModel, EpsNet, NetConfig};
use super::prior::{DiffusionPolicy, DiffusionPrior, PriorSpec, EMA_PART, MODEL_PART};
use super::schedule::{NoiseSchedule, ScheduleConfig, StartDistribution};
use crate::algos::common::{soft_update, target_copy, DataConfig, DataSpec, RewardNorm};
use crate::algos::{
    load_optim, module_parts, policy_diagnostics, AlgoKind, LoopConfig, Metrics, OfflineAlgorithm,
    Snapshot,
};
use crate::dataset::{Batch, Dataset};
use crate::error::{Error, Result};
use crate::eval::probe::Probe;
use crate::policy::Policy;
use crate::train::checkpoint::Checkpoint;

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

/// Prior training config (`configs/prior.toml`). Defaults: the RTB paper's offline-RL setup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorConfig {
    pub schedule: ScheduleConfig,
    pub net: NetConfig,
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
    /// Observation normalisation (`reward_norm` is unused by the prior).
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for PriorConfig {
    fn default() -> Self {
        Self {
            schedule: ScheduleConfig::default(),
            net: NetConfig::default(),
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
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.train.steps == 0 || self.train.batch_size == 0 {
            return bad("train.steps and train.batch_size must be positive".into());
        }
        if self.net.layers == 0 || self.net.width == 0 || self.net.time_harmonics == 0 {
            return bad("net.layers, net.width and net.time_harmonics must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr must be a positive number, got {}", self.lr));
        }
        crate::diffusion::check_noise_scale(self.act_noise_scale)?;
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
    /// [`OfflineAlgorithm::prepare`] sees the actions).
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

/// Noise of the held-out loss (fixed: the diagnostic compares weights, not draws).
const HELDOUT_NOISE_SEED: u64 = 0x5eed_4e1d;

impl PriorAlgo {
    /// A network of the prior's shape (values to be overwritten), for the moving average.
    fn fresh_net(&self) -> EpsNet {
        let spec = &self.prior.spec;
        EpsNet::new(
            &spec.net,
            spec.obs_dim(),
            spec.act_dim(),
            &self.prior.schedule,
            &self.device,
        )
    }

    /// The prior that acts: the moving average of the weights when there is one.
    pub fn acting(&self) -> DiffusionPrior {
        match &self.ema {
            Some(ema) => DiffusionPrior {
                net: ema.clone(),
                ..self.prior.clone()
            },
            None => self.prior.clone(),
        }
    }
}

/// The prior as a trainable [`OfflineAlgorithm`].
pub struct PriorAlgo {
    pub prior: DiffusionPrior,
    /// The moving average of `prior.net` (when `ema_decay > 0`): what acts and is loaded.
    ema: Option<EpsNet>,
    optim: ModuleOptimizer,
    cfg: PriorConfig,
    seed: u64,
    device: Device,
}

impl PriorAlgo {
    /// A fresh prior for data described by `spec`; parameters from `seed`. `device` is the
    /// training (autodiff) device.
    pub fn new(cfg: PriorConfig, spec: DataSpec, device: &Device, seed: u64) -> Result<Self> {
        cfg.validate()?;
        crate::backend::seed(device, seed);
        let prior = DiffusionPrior::new(cfg.spec(spec)?, device)?;
        Ok(Self {
            prior,
            // Made at the first update: building a network draws from the device's generator,
            // which must first initialise the prior exactly as without the average.
            ema: None,
            optim: cfg.optimizer(),
            cfg,
            seed,
            device: device.clone(),
        })
    }
}

/// One Adam step on the denoising loss of a minibatch (`obs` normalised `[n, obs_dim]`, `actions`
/// row-major in model space); returns the updated prior and the loss before the update.
pub fn gradient_step<R: Rng>(
    prior: DiffusionPrior,
    optim: &mut ModuleOptimizer,
    obs: Tensor<2>,
    actions: &[f32],
    lr: f64,
    weighting: LossWeighting,
    rng: &mut R,
) -> (DiffusionPrior, f64) {
    // On the CPU backend the network runs on the host and burn differentiates the loss up to ε̂.
    let device = obs.device();
    let leaf = crate::backend::host_kernels(&device)
        .then(|| LeafEps::new(&prior.net, &prior.schedule, &device));
    let loss = match &leaf {
        Some(leaf) => denoising_loss(leaf, obs, actions, weighting, rng),
        None => denoising_loss(&prior, obs, actions, weighting, rng),
    };
    let value = f64::from(loss.clone().into_scalar::<f32>());
    let grads = match leaf {
        Some(leaf) => {
            let mut grads = GradientsParams::new();
            leaf.gradients(&loss.backward(), &mut grads);
            grads
        }
        None => GradientsParams::from_grads(loss.backward(), &prior),
    };
    (optim.step(lr, prior, grads), value)
}

impl OfflineAlgorithm for PriorAlgo {
    fn kind(&self) -> AlgoKind {
        AlgoKind::Prior
    }

    fn spec(&self) -> &DataSpec {
        &self.prior.spec.data
    }

    fn update(&mut self, batch: &Batch, step: usize) -> Result<Metrics> {
        let spec = &self.prior.spec;
        let obs = crate::nn::tensor2(
            &spec.data.normalize_obs(&batch.observations),
            batch.size,
            spec.obs_dim(),
            &self.device,
        );
        let actions = spec.action_to_model(&batch.actions);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(step as u64);
        let prior = self.prior.clone();
        let (prior, loss) = gradient_step(
            prior,
            &mut self.optim,
            obs,
            &actions,
            self.cfg.lr_at(step),
            self.cfg.weighting(),
            &mut rng,
        );
        self.prior = prior;
        if self.cfg.ema_decay > 0.0 {
            let rate = self.cfg.ema_rate(step);
            self.ema = Some(match self.ema.take() {
                Some(ema) => soft_update(ema, &self.prior.net, rate),
                None => target_copy(self.fresh_net(), &self.prior.net),
            });
        }
        Ok(vec![("loss", loss)])
    }

    fn policy(&self) -> Result<Box<dyn Policy>> {
        let mut policy = DiffusionPolicy::new(&self.acting(), self.seed);
        policy.noise_scale = self.cfg.act_noise_scale;
        Ok(Box::new(policy))
    }

    /// The policy's probe plus `diag/heldout_loss`: the denoising loss of the acting weights on
    /// the probe's (held-out) transitions, with the same `t` and `ε` at every checkpoint so that
    /// its curve moves only with the weights.
    fn diagnostics(&self, probe: &Probe) -> Result<Metrics> {
        let mut metrics = policy_diagnostics(self, probe)?;
        let (prior, device) = crate::nn::inference_copy(&self.acting());
        let spec = &prior.spec;
        let obs = prior.obs_tensor(&probe.obs, probe.n, &device);
        let actions = spec.action_to_model(&probe.actions);
        let mut rng = ChaCha8Rng::seed_from_u64(HELDOUT_NOISE_SEED);
        let loss = match prior.fused() {
            Some(fused) => denoising_loss(&fused, obs, &actions, self.cfg.weighting(), &mut rng),
            None => denoising_loss(&prior, obs, &actions, self.cfg.weighting(), &mut rng),
        };
        metrics.push(("diag/heldout_loss", f64::from(loss.into_scalar::<f32>())));
        Ok(metrics)
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let state = PriorState {
            start: self.prior.spec.start.clone(),
        };
        let mut parts = module_parts(MODEL_PART, &self.prior.net, Some(&self.optim))?;
        if let Some(ema) = &self.ema {
            parts.extend(module_parts(EMA_PART, ema, None)?);
        }
        Ok(Snapshot {
            parts,
            state: serde_json::to_value(state).expect("state serialises"),
        })
    }

    fn restore(&mut self, ck: &Checkpoint, state: &Value) -> Result<()> {
        let state: PriorState =
            serde_json::from_value(state.clone()).map_err(|e| Error::Checkpoint {
                path: ck.dir.clone(),
                message: format!("unreadable prior state: {e}"),
            })?;
        let net = ck.load_module(MODEL_PART, self.prior.net.clone())?;
        if self.cfg.ema_decay > 0.0 {
            self.ema = Some(ck.load_module(EMA_PART, self.fresh_net())?);
        }
        self.prior = DiffusionPrior {
            net,
            ..self.prior.clone().with_start(state.start)
        };
        self.optim = load_optim(ck, MODEL_PART, self.cfg.optimizer())?;
        Ok(())
    }

    /// The start distribution needs the actions' model-space statistics (for
    /// `schedule.start = "marginal"`; nothing changes for `"standard_normal"`).
    fn prepare(&mut self, data: &Dataset) -> Result<()> {
        let spec = &self.prior.spec;
        let actions = spec.action_to_model(&data.actions);
        let (mean, std) = crate::nn::column_stats(&actions, spec.act_dim(), "actions")?;
        let start = self.prior.schedule.start_for(&mean, &std);
        self.prior = self.prior.clone().with_start(start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn shipped_config_is_the_default() {
        let kind = AlgoKind::Prior;
        assert_eq!(
            kind.default_config(),
            serde_json::to_value(PriorConfig::default()).unwrap()
        );
        // configs/prior.toml is checked key by key in `algos::tests::config_files_match_defaults`.
        assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs/prior.toml")
            .is_file());
    }

    #[test]
    fn bad_configs_are_refused() {
        let defaults = PriorConfig::default();
        for set in [
            "train.batch_size=0",
            "lr=-1",
            "net.layers=0",
            "min_snr_gamma=0",
            "schedule.steps=0",
        ] {
            let cfg: PriorConfig = crate::config::resolve(&defaults, None, &[set.into()]).unwrap();
            assert!(cfg.validate().is_err(), "{set}");
        }
        let e = crate::config::resolve(&defaults, None, &["schedule.kind=quadratic".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("quadratic"), "{e}");
    }

    #[test]
    fn cosine_lr_decays_to_zero() {
        let cfg = PriorConfig {
            lr_schedule: LrSchedule::Cosine,
            ..Default::default()
        };
        assert_eq!(cfg.lr_at(0), cfg.lr);
        assert!((cfg.lr_at(cfg.train.steps / 2) - cfg.lr / 2.0).abs() < 1e-12);
        assert!(cfg.lr_at(cfg.train.steps - 1) < 1e-9);
    }
}
