//! The trainer: the prior, the reward, the correction and its optimizers, and one on- or
//! off-policy update.

use crate::backend::Engine;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor};
use rand::Rng;

use super::config::RtbConfig;
use super::loss::{rtb_gradients, UpdateStats};
use super::posterior::{ActingCorrection, Correction, Posterior, RtbModel};
use super::replay::ReplayBuffer;
use super::reward::LogReward;
use super::rollout::{rollout_off_policy, rollout_on_policy, Rollout};
use crate::diffusion::{EpsModel, EpsNet};
use crate::error::Result;
use crate::nn::{clip_global_norm, tensor1};
use crate::train::Parts;

/// The checkpoint part holding the replay buffer.
const REPLAY_PART: &str = "replay";

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
    /// Past on-policy samples (when `config.replay.updates > 0`).
    pub replay: Option<ReplayBuffer>,
    device: Device,
    engine: Engine,
}

impl<P: EpsModel, R: LogReward> Rtb<P, R> {
    /// A trainer whose model lives on the autodiff version of `device`; `prior` and `reward` stay
    /// where they are (use inference copies: they are frozen; a trained prior as its
    /// [`crate::diffusion::ActingEps`], which runs it on the engine of its device). `template` is the prior's network,
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
        let correction = Correction::new(
            &config.correction,
            obs_dim,
            prior.act_dim(),
            prior.schedule(),
            template,
            &device,
        )?;
        let model = RtbModel::new(correction, &config.log_z, obs_dim, &device);
        let adam = || crate::nn::adam(config.adam_eps, None);
        let replay = (config.replay.updates > 0).then(|| {
            ReplayBuffer::new(
                config.replay.capacity,
                obs_dim,
                config.trajectories,
                prior.act_dim(),
            )
        });
        Ok(Self {
            replay,
            optim: adam(),
            log_z_optim: adam(),
            config,
            prior,
            reward,
            model,
            log_z_ready: false,
            engine: Engine::for_device(&device),
            device,
        })
    }

    /// π for sampling, with the frozen `correction` ([`Rtb::acting_correction`]).
    pub fn posterior<'a>(&'a self, correction: &'a ActingCorrection) -> Posterior<'a, P, R> {
        Posterior {
            prior: &self.prior,
            correction,
            reward: &self.reward,
            langevin_clip: self.config.correction.langevin_clip,
        }
    }

    /// The correction frozen for sampling at its current weights, run by the trainer's engine.
    pub fn acting_correction(&self) -> ActingCorrection {
        self.model
            .correction
            .acting(self.prior.schedule(), self.engine)
    }

    /// The updates of one batch of states `obs`: `on_policy` on-policy ones, then `off_policy`
    /// ones on trajectories that end at `x0(prior, rng)` (dataset actions for RTB, reference draws
    /// for noise-space samplers), then `replay.updates` ones on replayed samples, and their
    /// metrics.
    pub fn batch_update<G: Rng>(
        &mut self,
        obs: Tensor<2>,
        mut x0: impl FnMut(&P, &mut G) -> Tensor<2>,
        rng: &mut G,
    ) -> crate::train::Metrics {
        let mut metrics = crate::train::Metrics::new();
        for _ in 0..self.config.on_policy {
            let (s, ends) = self.on_policy_rollout_update(obs.clone(), rng);
            if let Some(buffer) = self.replay.as_mut() {
                buffer.push(&obs, &ends);
            }
            metrics = vec![
                ("loss_on", s.loss),
                ("log_z", s.log_z),
                ("log_r", s.log_r),
                ("kl", s.log_ratio),
                ("log_ratio_var", s.log_ratio_var),
            ];
        }
        for _ in 0..self.config.off_policy {
            let ends = x0(&self.prior, rng);
            let s = self.off_policy_update(obs.clone(), ends, rng);
            metrics.retain(|(k, _)| *k != "loss_off");
            metrics.push(("loss_off", s.loss));
            if self.config.on_policy == 0 {
                metrics.extend([("log_z", s.log_z), ("log_r", s.log_r)]);
            }
        }
        let states = obs.dims()[0];
        let device = obs.device();
        for _ in 0..self.config.replay.updates {
            let Some((o, ends)) =
                (self.replay.as_ref()).and_then(|b| b.sample(states, rng, &device))
            else {
                break;
            };
            let s = self.off_policy_update(o, ends, rng);
            metrics.retain(|(k, _)| *k != "loss_replay");
            metrics.push(("loss_replay", s.loss));
        }
        metrics
    }

    /// One on-policy update on the states `obs` (`[b, obs_dim]`, normalised).
    pub fn on_policy_update(&mut self, obs: Tensor<2>, rng: &mut impl Rng) -> UpdateStats {
        self.on_policy_rollout_update(obs, rng).0
    }

    /// [`Rtb::on_policy_update`], also returning its trajectories' ends (`[b·k, act_dim]`).
    fn on_policy_rollout_update(
        &mut self,
        obs: Tensor<2>,
        rng: &mut impl Rng,
    ) -> (UpdateStats, Tensor<2>) {
        let correction = self.acting_correction();
        let pi = self.posterior(&correction);
        let rollout = rollout_on_policy(&pi, obs, self.config.trajectories, rng);
        let ends = rollout.xs.last().expect("T >= 1").clone();
        (self.apply(&rollout), ends)
    }

    /// One off-policy update on the states `obs` and their dataset actions `a0` (model space).
    pub fn off_policy_update(
        &mut self,
        obs: Tensor<2>,
        a0: Tensor<2>,
        rng: &mut impl Rng,
    ) -> UpdateStats {
        let correction = self.acting_correction();
        let pi = self.posterior(&correction);
        let rollout = rollout_off_policy(&pi, obs, a0, self.config.trajectories, rng);
        self.apply(&rollout)
    }

    /// Gradient step on a rollout.
    pub fn apply(&mut self, rollout: &Rollout) -> UpdateStats {
        if self.model.log_z.is_some() && !self.log_z_ready {
            self.init_log_z(rollout);
        }
        let (mut grads, z_grads, stats) = rtb_gradients(
            self.prior.schedule(),
            &self.model,
            rollout,
            self.config.chunk,
            self.config.loss_cutoff,
        );
        if self.config.grad_clip > 0.0 {
            grads = clip_global_norm(&self.model.correction, grads, self.config.grad_clip).0;
        }
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
        let correction = self.model.correction.valid();
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

    /// The parts of an algorithm built on this trainer (RTB, the outsourced sampler): the
    /// trainer's own ([`Rtb::parts`]), the algorithm's generator and its measured σ_Q. Returns
    /// the σ_Q a restore brought back, for the algorithm to set its reward's temperature from.
    pub fn parts_with(
        &mut self,
        parts: &mut Parts<'_>,
        rng: &mut rand_chacha::ChaCha8Rng,
        q_spread: &mut Option<f64>,
    ) -> Result<Option<f64>> {
        self.parts(parts)?;
        parts.rng(rng)?;
        parts.value("q_spread", q_spread)?;
        Ok(q_spread.filter(|_| parts.is_loading()))
    }

    /// The trained modules, optimizer states and replay buffer as checkpoint parts.
    pub fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()> {
        let model = &mut self.model;
        parts.module("correction", &mut model.correction, Some(&mut self.optim))?;
        if let Some(net) = model.log_z.as_mut() {
            parts.module("log_z", net, Some(&mut self.log_z_optim))?;
            // A restored log Z has been initialised already.
            self.log_z_ready |= parts.is_loading();
        }
        if let Some(buffer) = self.replay.as_mut() {
            let saved = buffer.to_bytes();
            parts.bytes(REPLAY_PART, || saved, |bytes| buffer.restore(bytes))?;
        }
        Ok(())
    }
}
