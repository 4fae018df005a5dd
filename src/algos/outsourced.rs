//! Outsourced diffusion sampling (Venkatraman, Hasan, Kim et al., ICML 2025, arXiv 2502.06999;
//! code: HyperPotatoNeo/CNF_RTB_posterior): posterior inference in the **noise space** of a
//! deterministic generator.
//!
//! A behaviour policy written as a map of Gaussian noise, `a = f(s, z)`, `z ~ N(0, I)` (the
//! Euler-integrated BC flow, [`super::flow_bc::FlowMap`]; DDIM of the diffusion prior is another),
//! pushes `N(0, I)` forward to μ(a|s). The target
//!
//! `p(z | s) ∝ N(z; 0, I) · exp(Q(s, f(s, z)) / α)`
//!
//! pushes forward to exactly `μ(a|s)·exp(Q(s, a)/α)` — the posterior RTB targets in action space —
//! and is smoother than it (the prior factor is a fixed Gaussian, whatever shape μ has). The
//! sampler is a diffusion over `z` whose reference process is the DDPM chain of `N(0, I)` data
//! ([`crate::diffusion::StandardNormal`]: with reverse variance β_t it keeps `N(0, I)` invariant exactly), fine-tuned
//! with relative trajectory balance against that reference: the same machinery as action-space
//! RTB ([`super::rtb::Rtb`]: correction network, Langevin term, VarGrad `log Z`, chunked
//! gradients), with the reward [`MapReward`] `log r(s, z) = Q(s, f(s, z))/α`. Reference
//! trajectories are the off-policy ones (forward-noised draws of `N(0, I)`).
//!
//! Using it for control is this project's own: the paper has no control experiment.
//!
//! As an algorithm (`offrl train outsourced --behavior RUN --critic RUN`), each update takes a
//! batch of dataset states and runs `on_policy` updates on the sampler's own trajectories and
//! `off_policy` updates on reference trajectories; α is in the units of `alpha_scale`, as RTB's
//! (`q_spread`: the critic's spread over the behaviour map's actions). Acting: `z` from the
//! sampler's chain (with the Langevin term when `correction.langevin` is on), then `a = f(s, z)`.
//!
//! Behaviour maps: flow-BC's Euler map (`behavior_kind = "flow-bc"`) or the DDIM map of a
//! diffusion-BC prior (`"diffusion-bc"`, [`crate::diffusion::DdimMap`], `ddim_steps` of its
//! chain). Off-policy trajectories end at reference draws `z ~ N(0, I)` (`off_policy_from =
//! "reference"`) or at the batch's dataset actions inverted through the map (`"data"`: DDIM or
//! Euler inversion, [`NoiseMap::invert`]); a replay buffer of past on-policy z's adds a third
//! source (`replay.updates`). As the official code: the loss `½·max(δ² − 0.1, 0)`
//! (`loss_cutoff`) and the gradient's global norm clipped at 0.1 (`grad_clip`).

use std::path::Path;

use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::flow_bc::{FlowMap, MapPolicy};
use super::iql::IqlCritic;
use super::rtb::{
    q_spread, scaled_alpha, AlphaScale, CorrectionConfig, LogReward, LogZConfig, Posterior,
    QFunction, ReplayConfig, Rtb, RtbConfig,
};
use crate::dataset::spec::{DataConfig, DataSpec, RewardNorm};
use crate::dataset::Batch;
use crate::diffusion::{
    sample_actions, sample_actions_scaled, DdimMap, NoiseSchedule, ScheduleConfig, ScheduleKind,
    StandardNormal, Variance,
};
use crate::error::{Error, Result};
use crate::eval::probe::Probe;
use crate::policy::{ActionScorer, Policy};
use crate::train::checkpoint::Checkpoint;
use crate::train::{LoopConfig, Metrics, OfflineAlgorithm, Parts};

/// The algorithm's name in the registry and its checkpoints' kind.
pub const NAME: &str = "outsourced";

/// Mixed into the run's seed for the draws that measure `σ_Q` (their own stream).
const Q_SPREAD_SEED: u64 = 0x5152_5351;

pub use super::flow_bc::NoiseMap;

/// `log r(s, z) = Q(s, f(s, z))/α`: the chain's (normalised) observations back to raw ones and
/// the map's unit actions to environment actions, both by `spec`, before calling Q.
#[derive(Debug, Clone)]
pub struct MapReward<M, Q> {
    pub map: M,
    pub q: Q,
    pub alpha: f64,
    pub spec: DataSpec,
}

impl<M: NoiseMap, Q: QFunction> LogReward for MapReward<M, Q> {
    fn log_reward(&self, obs: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
        let maps = self.spec.tensors(&obs.device());
        let unit = self.map.map(obs.clone(), z);
        let raw = obs * maps.obs_std + maps.obs_mean;
        let act = unit * maps.act_half + maps.act_center;
        self.q.q(raw, act).div_scalar(self.alpha)
    }

    /// On the host when both the map and Q can: Q's action gradient at the map's actions, chained
    /// through the unit-to-environment affine map and the map's own vector-Jacobian product.
    fn gradient(&self, obs: Tensor<2>, z: Tensor<2>) -> Tensor<2> {
        let [n, ad] = z.dims();
        let device = z.device().without_autodiff();
        let (ov, zv) = (crate::nn::to_vec(obs.clone()), crate::nn::to_vec(z.clone()));
        let raw = self.spec.denormalize_obs(&ov);
        let (_, half) = self.spec.action_affine();
        let inv_alpha = 1.0 / self.alpha as f32;
        let outer = |unit: &[f32]| -> Option<Vec<f32>> {
            let env = self.spec.action_from_unit(unit);
            let dq = self.q.action_gradient(&raw, &env, n)?;
            Some(
                dq.iter()
                    .enumerate()
                    .map(|(i, g)| g * half[i % ad] * inv_alpha)
                    .collect(),
            )
        };
        match self.map.vjp(&ov, &zv, n, &outer) {
            Some(g) => crate::nn::tensor2(&g, n, ad, &device),
            None => super::rtb::reward_gradient(self, obs, z),
        }
    }
}

/// The kind of run a behaviour map comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BehaviorKind {
    /// Flow-BC's Euler map.
    #[default]
    #[serde(rename = "flow-bc")]
    FlowBc,
    /// The DDIM map of a diffusion-BC prior.
    #[serde(rename = "diffusion-bc")]
    DiffusionBc,
}

/// Where off-policy trajectories end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffPolicyFrom {
    /// Draws of the reference `N(0, I)`.
    #[default]
    Reference,
    /// The batch's dataset actions inverted through the behaviour map.
    Data,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutsourcedConfig {
    /// The behaviour map f(s, z): a run directory or checkpoint of `offrl train flow-bc`, or of
    /// `offrl train diffusion-bc` with `behavior_kind = "diffusion-bc"`.
    pub behavior: String,
    #[serde(default)]
    pub behavior_kind: BehaviorKind,
    /// Steps of a diffusion prior's chain the DDIM map uses (0: all).
    #[serde(default)]
    pub ddim_steps: usize,
    /// The critic Q: a run directory or checkpoint of `offrl train critic` / `iql`.
    pub critic: String,
    /// Temperature of `log r = Q/α`, in the units of `alpha_scale`.
    pub alpha: f64,
    pub alpha_scale: AlphaScale,
    /// The reference chain over z. Its variance must be β_t (`N(0, I)` invariant); its schedule
    /// should reach noise (ᾱ_T ≈ 0), or the start z_T informs z_0 and the sampler falls short of
    /// the target (tests/rtb_posteriors.rs). Each step's kernel is Gaussian: where the target
    /// jumps (a map that is not invertible, as sign(z)) the steps' count bounds the error —
    /// 0.044 of the mass on the wrong side at 25 steps, 0.025 at 100 (tests/outsourced_posteriors.rs).
    pub schedule: ScheduleConfig,
    /// Trajectories per state, k (VarGrad log Z over them).
    pub trajectories: usize,
    /// Trajectories per backward pass (memory bound; the gradient does not depend on it).
    pub chunk: usize,
    pub lr: f64,
    pub adam_eps: f64,
    /// On-policy updates per batch of states.
    pub on_policy: usize,
    /// Off-policy updates per batch (trajectories ending where `off_policy_from` says).
    pub off_policy: usize,
    #[serde(default)]
    pub off_policy_from: OffPolicyFrom,
    /// Updates on replayed past on-policy z's per batch, and the buffer's size in states.
    #[serde(default)]
    pub replay: ReplayConfig,
    /// `½·max(δ² − loss_cutoff, 0)` per trajectory (the official code: 0.1).
    #[serde(default)]
    pub loss_cutoff: f64,
    /// The correction's gradient clipped to this global norm (the official code: 0.1; 0: off).
    #[serde(default)]
    pub grad_clip: f64,
    pub log_z: LogZConfig,
    pub correction: CorrectionConfig,
    /// When acting, multiply the sampler's noise draws by this.
    pub act_noise_scale: f64,
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for OutsourcedConfig {
    /// The official code's sampler shape (25 steps, a schedule that reaches noise) with RTB's
    /// offline-RL training settings.
    fn default() -> Self {
        let rtb = RtbConfig::default();
        Self {
            behavior: String::new(),
            behavior_kind: BehaviorKind::FlowBc,
            ddim_steps: 0,
            critic: String::new(),
            alpha: 0.5,
            alpha_scale: AlphaScale::QSpread,
            schedule: ScheduleConfig {
                steps: 25,
                kind: ScheduleKind::Cosine,
                variance: Variance::Beta,
                ..ScheduleConfig::default()
            },
            trajectories: rtb.trajectories,
            chunk: rtb.chunk,
            lr: rtb.lr,
            adam_eps: rtb.adam_eps,
            on_policy: 1,
            off_policy: 1,
            off_policy_from: OffPolicyFrom::Reference,
            replay: ReplayConfig {
                updates: 1,
                ..ReplayConfig::default()
            },
            loss_cutoff: 0.1,
            grad_clip: 0.1,
            log_z: rtb.log_z,
            correction: rtb.correction,
            act_noise_scale: 1.0,
            // Observations are normalised with the map's statistics, Q has its own: the data spec
            // only checks dimensions.
            data: DataConfig {
                normalize_obs: false,
                reward_norm: RewardNorm::None,
            },
            train: rtb.train,
        }
    }
}

impl OutsourcedConfig {
    /// The RTB settings of the sampler (the same machinery, on the reference chain).
    fn rtb(&self) -> RtbConfig {
        RtbConfig {
            alpha: self.alpha,
            alpha_scale: self.alpha_scale,
            trajectories: self.trajectories,
            chunk: self.chunk,
            lr: self.lr,
            adam_eps: self.adam_eps,
            on_policy: self.on_policy,
            off_policy: self.off_policy,
            replay: self.replay.clone(),
            loss_cutoff: self.loss_cutoff,
            grad_clip: self.grad_clip,
            log_z: self.log_z.clone(),
            correction: self.correction.clone(),
            tanh_jacobian: false,
            act_noise_scale: self.act_noise_scale,
            data: self.data.clone(),
            train: self.train.clone(),
            ..RtbConfig::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.rtb().validate()?;
        if self.schedule.variance != Variance::Beta {
            return Err(Error::Config(
                "outsourced: `schedule.variance` must be \"beta\": only then does the reference \
                 chain keep N(0, I)"
                    .into(),
            ));
        }
        self.train.validate()
    }
}

/// A trained behaviour map: flow-BC's or a diffusion prior's DDIM map.
#[derive(Clone)]
pub enum BehaviorMap {
    Flow(Box<FlowMap>),
    Ddim(Box<DdimMap>),
}

impl BehaviorMap {
    /// The map of a trained run of `kind` (refused, naming the kinds, when the checkpoint holds
    /// another) and the data spec its observations are normalised by.
    pub fn load(
        path: &Path,
        kind: BehaviorKind,
        ddim_steps: usize,
        device: &Device,
    ) -> Result<(Self, DataSpec)> {
        match kind {
            BehaviorKind::FlowBc => {
                let (map, spec) = FlowMap::load(path, device)?;
                Ok((Self::Flow(Box::new(map)), spec))
            }
            BehaviorKind::DiffusionBc => {
                let map = DdimMap::load(path, ddim_steps, device)?;
                let spec = map.prior.spec.data.clone();
                Ok((Self::Ddim(Box::new(map)), spec))
            }
        }
    }
}

impl NoiseMap for DdimMap {
    fn noise_dim(&self) -> usize {
        self.act_dim()
    }

    fn map(&self, obs: Tensor<2>, z: Tensor<2>) -> Tensor<2> {
        DdimMap::map(self, obs, z)
    }

    fn device(&self) -> Device {
        DdimMap::device(self).clone()
    }

    fn invert(&self, obs: Tensor<2>, a: Tensor<2>) -> Option<(Tensor<2>, f64)> {
        Some(DdimMap::invert(self, obs, a))
    }
}

impl BehaviorMap {
    fn inner(&self) -> &dyn NoiseMap {
        match self {
            Self::Flow(m) => m.as_ref(),
            Self::Ddim(m) => m.as_ref(),
        }
    }
}

impl NoiseMap for BehaviorMap {
    fn noise_dim(&self) -> usize {
        self.inner().noise_dim()
    }

    fn map(&self, obs: Tensor<2>, z: Tensor<2>) -> Tensor<2> {
        self.inner().map(obs, z)
    }

    fn device(&self) -> Device {
        self.inner().device()
    }

    fn vjp(
        &self,
        obs: &[f32],
        z: &[f32],
        n: usize,
        outer: &dyn Fn(&[f32]) -> Option<Vec<f32>>,
    ) -> Option<Vec<f32>> {
        self.inner().vjp(obs, z, n, outer)
    }

    fn invert(&self, obs: Tensor<2>, a: Tensor<2>) -> Option<(Tensor<2>, f64)> {
        self.inner().invert(obs, a)
    }
}

/// The noise-space sampler with a behaviour map and an IQL critic.
pub type MapSampler = Rtb<StandardNormal, MapReward<BehaviorMap, IqlCritic>>;

/// Outsourced posterior sampling as an [`OfflineAlgorithm`] (`offrl train outsourced`).
pub struct Outsourced {
    pub sampler: MapSampler,
    off_policy_from: OffPolicyFrom,
    spec: DataSpec,
    rng: ChaCha8Rng,
    seed: u64,
    q_spread: Option<f64>,
}

impl Outsourced {
    /// Load the behaviour map and the critic named by `config` and build a fresh sampler.
    pub fn new(
        config: OutsourcedConfig,
        spec: DataSpec,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        let plain = device.clone().without_autodiff();
        let path = |p: &str, what: &str| -> Result<std::path::PathBuf> {
            if p.is_empty() {
                return Err(Error::Config(format!(
                    "outsourced: no {what} given (--{what} RUN_OR_CHECKPOINT, or `{what} = \"...\"` in the config)"
                )));
            }
            Checkpoint::resolve(Path::new(p))
        };
        let (map, map_spec) = BehaviorMap::load(
            &path(&config.behavior, "behavior")?,
            config.behavior_kind,
            config.ddim_steps,
            &plain,
        )?;
        let critic = IqlCritic::load(&path(&config.critic, "critic")?, &plain)?;
        let cs = critic.spec();
        for (what, od, ad) in [
            ("behaviour map", map_spec.obs_dim, map_spec.act_dim),
            ("critic", cs.obs_dim, cs.act_dim),
        ] {
            if (od, ad) != (spec.obs_dim, spec.act_dim) {
                return Err(Error::InvalidData(format!(
                    "outsourced: the {what} was trained on obs {od} / act {ad}, the dataset has obs {} / act {}",
                    spec.obs_dim, spec.act_dim
                )));
            }
        }
        let reference = StandardNormal {
            schedule: NoiseSchedule::new(&config.schedule)?,
            dim: spec.act_dim,
        };
        let reward = MapReward {
            map,
            q: critic,
            alpha: config.alpha,
            spec: map_spec,
        };
        crate::backend::seed(&plain, seed);
        let sampler = Rtb::new(config.rtb(), reference, reward, spec.obs_dim, None, device)?;
        Ok(Self {
            sampler,
            off_policy_from: config.off_policy_from,
            spec,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            q_spread: None,
        })
    }

    /// Normalised observations as the behaviour map sees them.
    fn obs_tensor(&self, obs: &[f32], n: usize) -> Tensor<2> {
        let map_spec = &self.sampler.reward.spec;
        let device = self.sampler.reward.map.device();
        crate::nn::tensor2(&map_spec.normalize_obs(obs), n, map_spec.obs_dim, &device)
    }

    /// The behaviour map acting on its own (`z ~ N(0, I)` from `seed`).
    fn behavior(&self, seed: u64) -> MapPolicy<BehaviorMap> {
        let reward = &self.sampler.reward;
        MapPolicy::new(reward.map.clone(), &reward.spec, seed)
    }

    /// `σ_Q` at the raw states `obs` ([`q_spread`] over the behaviour map's actions).
    fn measure_q_spread(&self, obs: &[f32], n: usize) -> Result<f64> {
        let mut mu = self.behavior(self.seed ^ Q_SPREAD_SEED);
        q_spread(&mut mu, &self.sampler.reward.q, obs, self.spec.obs_dim, n)
    }

    fn set_q_spread(&mut self, spread: f64) -> Result<()> {
        let config = &self.sampler.config;
        self.sampler.reward.alpha =
            scaled_alpha(config.alpha, config.alpha_scale, spread, "behaviour map")?;
        self.q_spread = Some(spread);
        Ok(())
    }
}

impl OfflineAlgorithm for Outsourced {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self) -> &DataSpec {
        &self.spec
    }

    fn update(&mut self, batch: &Batch, _step: usize) -> Result<Metrics> {
        let n = batch.size;
        let obs = self.obs_tensor(&batch.observations, n);
        if self.q_spread.is_none() {
            let spread = self.measure_q_spread(&batch.observations, n)?;
            self.set_q_spread(spread)?;
        }
        // Off-policy: z_0 ~ N(0, I) or the data's actions inverted, noised along the forward chain.
        let mut inverted = None;
        if self.sampler.config.off_policy > 0 && self.off_policy_from == OffPolicyFrom::Data {
            let map_spec = &self.sampler.reward.spec;
            let unit = crate::nn::tensor2(
                &map_spec.action_to_unit(&batch.actions),
                n,
                map_spec.act_dim,
                &obs.device(),
            );
            let (z, residual) = (self.sampler.reward.map)
                .invert(obs.clone(), unit)
                .expect("flow and DDIM maps both invert");
            inverted = Some((z, residual));
        }
        let mut metrics = self.sampler.batch_update(
            obs.clone(),
            |reference, rng| match &inverted {
                Some((z, _)) => z.clone(),
                None => sample_actions(reference, obs.clone(), rng),
            },
            &mut self.rng,
        );
        metrics.extend(inverted.map(|(_, r)| ("inversion_residual", r)));
        metrics.push(("alpha", self.sampler.reward.alpha));
        metrics.extend(self.q_spread.map(|s| ("q_spread", s)));
        Ok(metrics)
    }

    fn policy(&self) -> Result<Box<dyn Policy>> {
        if self.sampler.config.alpha_scale == AlphaScale::QSpread && self.q_spread.is_none() {
            return Err(Error::Config(
                "outsourced: alpha_scale = \"q_spread\" sets α at the first update; this model has had none"
                    .into(),
            ));
        }
        Ok(Box::new(OutsourcedPolicy::new(&self.sampler, self.seed)))
    }

    /// The policy against the behaviour map ([`Probe::fine_tuning`]).
    fn diagnostics(&self, probe: &Probe) -> Result<Metrics> {
        let mut mu = self.behavior(self.seed);
        probe.fine_tuning(self.policy()?.as_mut(), &mut mu, &self.sampler.reward.q)
    }

    fn value_function(&self) -> Option<Box<dyn ActionScorer>> {
        Some(Box::new(self.sampler.reward.q.clone()))
    }

    fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()> {
        match self
            .sampler
            .parts_with(parts, &mut self.rng, &mut self.q_spread)?
        {
            Some(spread) => self.set_q_spread(spread),
            None => Ok(()),
        }
    }
}

/// The sampler acting: `z` from its chain (with the Langevin term), then `a = f(s, z)`.
pub struct OutsourcedPolicy {
    reference: StandardNormal,
    correction: super::rtb::ActingCorrection,
    reward: MapReward<BehaviorMap, IqlCritic>,
    langevin_clip: f64,
    noise_scale: f64,
    rng: ChaCha8Rng,
}

impl OutsourcedPolicy {
    pub fn new(sampler: &MapSampler, seed: u64) -> Self {
        Self {
            reference: sampler.prior.clone(),
            correction: sampler.acting_correction(),
            reward: sampler.reward.clone(),
            langevin_clip: sampler.config.correction.langevin_clip,
            noise_scale: sampler.config.act_noise_scale,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Policy for OutsourcedPolicy {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let spec = &self.reward.spec;
        crate::policy::check_obs("outsourced policy", obs, n, spec.obs_dim)?;
        let device = self.reward.map.device();
        let o = crate::nn::tensor2(&spec.normalize_obs(obs), n, spec.obs_dim, &device);
        let posterior = Posterior {
            prior: &self.reference,
            correction: &self.correction,
            reward: &self.reward,
            langevin_clip: self.langevin_clip,
        };
        let z = sample_actions_scaled(&posterior, o.clone(), &mut self.rng, self.noise_scale);
        let unit = self.reward.map.map(o, z);
        Ok(spec.action_from_unit(&crate::nn::to_vec(unit)))
    }
}
