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
//! ([`Correction`]): NN has the prior network's shape ([`crate::diffusion::EpsNet`]); `c` is a small MLP of the
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
//! along the forward process — the paper's "mixed" training). Options from the outsourced-sampling
//! code, off by default here: `replay.updates` more updates on a buffer of past on-policy samples
//! (each state with its k chain ends, [`ReplayBuffer`], checkpointed), the loss cutoff
//! `½·max(δ² − c, 0)` (`loss_cutoff`) and global gradient-norm clipping (`grad_clip`).
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
//!
//! # Files
//! In the order of the method: `config.rs` (hyperparameters), `reward.rs` (`log r` and its
//! gradient), `posterior.rs` (the correction and π's ε), `rollout.rs` (trajectories and their
//! frozen terms), `loss.rs` (the chunked RTB gradient), `trainer.rs` (one update); this file
//! makes RTB an offline algorithm: a trained prior, an IQL critic and the shared training loop.

mod config;
mod loss;
mod posterior;
mod replay;
mod reward;
mod rollout;
mod trainer;

pub use config::*;
pub use loss::*;
pub use posterior::*;
pub use replay::ReplayBuffer;
pub use reward::*;
pub use rollout::*;
pub use trainer::*;

use std::path::Path;

use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::algos::iql::IqlCritic;
use crate::dataset::spec::DataSpec;
use crate::dataset::{Batch, Dataset};
use crate::diffusion::{
    normal_noise, reverse_step, sample_actions_scaled, ActingEps, DiffusionPolicy, DiffusionPrior,
    EpsModel,
};
use crate::error::{Error, Result};
use crate::eval::probe::Probe;
use crate::policy::{ActionScorer, Policy};
use crate::train::checkpoint::Checkpoint;
use crate::train::{EvalHook, Metrics, OfflineAlgorithm, Parts};

/// The algorithm's name in the registry and its checkpoints' kind.
pub const NAME: &str = "rtb";

/// Mixed into the run's seed for the prior's samples that measure `σ_Q`: their own stream, so
/// measuring leaves the training's draws as they were.
const Q_SPREAD_SEED: u64 = 0x5152_5350;

impl QFunction for IqlCritic {
    fn q(&self, obs: Tensor<2>, actions: Tensor<2>) -> Tensor<1> {
        IqlCritic::q(self, obs, actions)
    }

    fn action_gradient(&self, obs: &[f32], actions: &[f32], n: usize) -> Option<Vec<f32>> {
        IqlCritic::action_gradient(self, obs, actions, n)
    }
}

/// RTB with a trained [`DiffusionPrior`] (run by its engine) and `log r = Q_IQL/α`.
pub type QRtb = Rtb<ActingEps, QReward<IqlCritic>>;

/// RTB fine-tuning as an [`OfflineAlgorithm`] (`offrl train rtb`): each update takes a batch of
/// dataset transitions and runs `on_policy` on-policy updates on its states and `off_policy`
/// off-policy updates on its states and actions.
pub struct RtbAlgo {
    pub rtb: QRtb,
    /// μ (its spaces, and its own policy for the probes and σ_Q).
    pub prior: DiffusionPrior,
    spec: DataSpec,
    rng: ChaCha8Rng,
    seed: u64,
    /// The critic's spread over μ's actions, measured at the first update (every run logs it;
    /// `alpha_scale = "q_spread"` divides α by it).
    q_spread: Option<f64>,
}

impl RtbAlgo {
    /// Load the prior and the critic named by `config` (`prior`, `critic`: run directories or
    /// checkpoints) and build a fresh correction ([`RtbAlgo::from_models`]).
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
        let prior = crate::algos::load_prior(&path(&config.prior, "prior")?, &plain)?;
        let critic = IqlCritic::load(&path(&config.critic, "critic")?, &plain)?;
        Self::from_models(config, prior, critic, spec, device, seed)
    }

    /// RTB on a trained prior and critic (frozen here: inference copies are kept), for data
    /// described by `spec`; the correction is trained on the autodiff version of `device`. The
    /// config's `prior` and `critic` paths are not read.
    pub fn from_models(
        config: RtbConfig,
        prior: DiffusionPrior,
        critic: IqlCritic,
        spec: DataSpec,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        let (prior, plain) = crate::nn::inference_copy(&prior);
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
        let eps = prior.acting_eps();
        let rtb = Rtb::new(config, eps, reward, spec.obs_dim, Some(&prior.net), device)?;
        Ok(Self {
            rtb,
            prior,
            spec,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            q_spread: None,
        })
    }

    /// `σ_Q` at the raw states `obs` ([`q_spread`] over μ's actions).
    fn measure_q_spread(&self, obs: &[f32], n: usize) -> Result<f64> {
        let mut mu = DiffusionPolicy::new(&self.prior, self.seed ^ Q_SPREAD_SEED);
        q_spread(&mut mu, &self.rtb.reward.q, obs, self.spec.obs_dim, n)
    }

    /// Record `σ_Q` and, under `alpha_scale = "q_spread"`, set the reward's temperature from it.
    fn set_q_spread(&mut self, spread: f64) -> Result<()> {
        let config = &self.rtb.config;
        self.rtb.reward.alpha = scaled_alpha(config.alpha, config.alpha_scale, spread, "prior")?;
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
        let prior = &self.prior;
        let n = batch.size;
        let obs = prior.obs_tensor(&batch.observations, n, &plain);
        let a0 = prior.spec.action_to_model(&batch.actions);
        let a0 = crate::nn::tensor2(&a0, n, batch.act_dim, &plain);
        if self.q_spread.is_none() {
            let spread = self.measure_q_spread(&batch.observations, n)?;
            self.set_q_spread(spread)?;
        }
        let mut metrics = self.rtb.batch_update(obs, |_, _| a0.clone(), &mut self.rng);
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
        Ok(Box::new(RtbPolicy::new(&self.prior, &self.rtb, self.seed)))
    }

    /// π against μ ([`Probe::fine_tuning`]).
    fn diagnostics(&self, probe: &Probe) -> Result<Metrics> {
        let mut mu = DiffusionPolicy::new(&self.prior, self.seed);
        probe.fine_tuning(self.policy()?.as_mut(), &mut mu, &self.rtb.reward.q)
    }

    fn value_function(&self) -> Option<Box<dyn ActionScorer>> {
        Some(Box::new(self.rtb.reward.q.clone()))
    }

    fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()> {
        match self
            .rtb
            .parts_with(parts, &mut self.rng, &mut self.q_spread)?
        {
            Some(spread) => self.set_q_spread(spread),
            None => Ok(()),
        }
    }
}

/// The fine-tuned posterior acting in an environment: raw observations in, environment actions
/// out, one chain per row (with the Langevin term, so Q is evaluated at every step), noise from
/// its own seeded generator. Holds inference copies.
pub struct RtbPolicy {
    prior: DiffusionPrior,
    prior_eps: ActingEps,
    correction: ActingCorrection,
    reward: QReward<IqlCritic>,
    langevin_clip: f64,
    extra_steps: usize,
    noise_scale: f64,
    device: Device,
    rng: ChaCha8Rng,
}

impl RtbPolicy {
    /// π of `rtb` at its current weights, on `prior` (the μ that `rtb` was built on).
    pub fn new(prior: &DiffusionPrior, rtb: &QRtb, seed: u64) -> Self {
        Self {
            prior: prior.clone(),
            prior_eps: prior.acting_eps(),
            correction: rtb.acting_correction(),
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
        crate::policy::check_obs("rtb policy", obs, n, od)?;
        let x = self.prior.obs_tensor(obs, n, &self.device);
        let posterior = Posterior {
            prior: &self.prior_eps,
            correction: &self.correction,
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
/// the shared loop of [`crate::train::fit`]: what `offrl train rtb` and the pipeline call.
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
    super::train(
        super::AlgoKind::Rtb,
        &value,
        data,
        Some(out),
        seed,
        device,
        eval,
    )
    .map(|t| t.algo)
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
