//! Flow Q-Learning (FQL; Park, Li & Levine, ICML 2025), following the official
//! `agents/fql.py` (seohongpark/fql). Three networks trained together from one minibatch:
//! - the BC flow `v(s, x, t)`: flow-matching behaviour cloning ([`super::flow_bc`]);
//! - a one-step policy `μ_ω(s, z)`: `α·‖μ_ω(s, z) − f(s, z)‖² − Q(s, clip(μ_ω(s, z)))`, where
//!   `f(s, z)` is the BC flow integrated from the same noise `z` (no gradient into the flow) —
//!   distillation keeps the policy on the data's support without back-propagating through the
//!   ODE;
//! - twin critics `Q(s, a)` regressed onto `r + γ (1 − d) agg Q'(s', clip(μ_ω(s', z')))`, `agg` the
//!   mean of the two target critics (the code's default) or their minimum.
//!
//! The actor terms see the critics as they were before this update, without gradient into their
//! weights (as in the code, where the actor loss reads the critics outside `grad_params`).
//! Defaults are the code's (4 × 512 GELU MLPs, layer-normalised critics, Adam 3e-4, batch 256,
//! τ = 0.005, 10 flow steps, α = 10); its README tunes α per environment over 0.03 … 10 and gives no
//! value for D4RL locomotion, so choose α by a sweep on your data.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::common::{adam, column, normal, scalar, target_copy, NetConfig, TwinQ, TwinQScorer};
use super::flow_bc::{flow_matching_loss, integrate, VelocityField, FIELD_PART};
use crate::backend::Engine;
use crate::dataset::spec::{DataConfig, DataSpec, RewardNorm};
use crate::dataset::Batch;
use crate::error::Result;
use crate::nn::host::TrainingMlp;
use crate::nn::{Activation, Mlp};
use crate::policy::{ActionScorer, Policy};
use crate::train::{LoopConfig, Metrics, OfflineAlgorithm, Parts};

/// The algorithm's name in the registry and its checkpoints' kind.
pub const NAME: &str = "fql";

/// How the two target critics' values combine in the TD target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QAgg {
    Mean,
    Min,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FqlConfig {
    /// Weight of the distillation term against −Q.
    pub alpha: f64,
    /// Divide the Q term by mean|Q| (detached), which makes α independent of the reward scale.
    pub normalize_q_loss: bool,
    pub q_agg: QAgg,
    pub discount: f64,
    /// Polyak rate of the target critics.
    pub target_ema: f64,
    pub lr: f64,
    pub adam_eps: f64,
    /// Hidden activation of every network.
    pub activation: Activation,
    /// Euler steps of the BC flow (the distillation target and its own acting).
    pub flow_steps: usize,
    /// The BC flow's and the one-step policy's MLPs.
    pub actor_net: NetConfig,
    pub critic_net: NetConfig,
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for FqlConfig {
    /// The official code's `get_config()`.
    fn default() -> Self {
        let net = NetConfig::new(4, 512, false);
        Self {
            alpha: 10.0,
            normalize_q_loss: false,
            q_agg: QAgg::Mean,
            discount: 0.99,
            target_ema: 0.005,
            lr: 3e-4,
            adam_eps: 1e-8,
            activation: Activation::Gelu,
            flow_steps: 10,
            actor_net: net,
            critic_net: NetConfig {
                layer_norm: true,
                ..net
            },
            data: DataConfig {
                normalize_obs: true,
                reward_norm: RewardNorm::None,
            },
            train: LoopConfig::default(),
        }
    }
}

impl FqlConfig {
    /// Every setting in its allowed range, named as in the config, before any work.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::non_negative("alpha", self.alpha)?;
        check::discount("discount", self.discount)?;
        check::rate("target_ema", self.target_ema)?;
        check::positive("lr", self.lr)?;
        check::positive("adam_eps", self.adam_eps)?;
        check::count("flow_steps", self.flow_steps)?;
        self.actor_net.validate("actor_net")?;
        self.critic_net.validate("critic_net")?;
        self.train.validate()
    }
}

/// The one-step policy `μ_ω(s, z)`: an MLP on `[s, z]`, unit actions (clipped when used).
#[derive(Module, Debug)]
pub struct OneStepPolicy {
    pub net: Mlp,
}

fn with_activation(mut mlp: Mlp, activation: Activation) -> Mlp {
    mlp.activation = activation;
    mlp
}

pub struct Fql {
    cfg: FqlConfig,
    spec: DataSpec,
    device: Device,
    engine: Engine,
    seed: u64,
    rng: ChaCha8Rng,
    field: VelocityField,
    actor: OneStepPolicy,
    critic: TwinQ,
    critic_target: TwinQ,
    field_optim: ModuleOptimizer,
    actor_optim: ModuleOptimizer,
    critic_optim: ModuleOptimizer,
}

impl Fql {
    pub fn new(cfg: FqlConfig, spec: DataSpec, device: &Device, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (od, ad, act) = (spec.obs_dim, spec.act_dim, cfg.activation);
        let field = VelocityField::new(&cfg.actor_net, act, od, ad, &mut rng, device);
        let actor = OneStepPolicy {
            net: with_activation(cfg.actor_net.mlp(od + ad, ad, &mut rng, device), act),
        };
        let twin = |rng: &mut ChaCha8Rng| {
            let TwinQ { q1, q2 } = TwinQ::new(&cfg.critic_net, od, ad, rng, device);
            TwinQ {
                q1: with_activation(q1, act),
                q2: with_activation(q2, act),
            }
        };
        let critic = twin(&mut rng);
        // The code starts the target as a copy of the critic.
        let critic_target = target_copy(twin(&mut rng), &critic);
        Ok(Self {
            field_optim: adam(cfg.adam_eps),
            actor_optim: adam(cfg.adam_eps),
            critic_optim: adam(cfg.adam_eps),
            cfg,
            spec,
            device: device.clone(),
            engine: Engine::for_device(device),
            seed,
            rng,
            field,
            actor,
            critic,
            critic_target,
        })
    }
}

impl OfflineAlgorithm for Fql {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self) -> &DataSpec {
        &self.spec
    }

    fn update(&mut self, batch: &Batch, _step: usize) -> Result<Metrics> {
        let (cfg, device, engine) = (&self.cfg, &self.device, self.engine);
        let b = self.spec.batch_tensors(batch, device);
        let [n, ad] = b.act.dims();
        let field = TrainingMlp::new(&self.field.net, engine);
        let actor = TrainingMlp::new(&self.actor.net, engine);
        let critic_before = self.critic.clone().no_grad();

        // Critic: regression onto r + γ (1 − d) agg Q'(s', clip(μ_ω(s', z'))).
        let z_next = normal(&mut self.rng, n, ad, device);
        let next_act = actor
            .eval(Tensor::cat(vec![b.next_obs.clone(), z_next], 1))
            .clamp(-1.0, 1.0);
        let next_in = Tensor::cat(vec![b.next_obs, next_act], 1);
        let [t1, t2] = [&self.critic_target.q1, &self.critic_target.q2]
            .map(|q| column(TrainingMlp::new(q, engine).eval(next_in.clone())));
        let next_q = match cfg.q_agg {
            QAgg::Mean => (t1 + t2) * 0.5,
            QAgg::Min => t1.min_pair(t2),
        };
        let target = (b.reward + (b.done * -1.0 + 1.0) * next_q * cfg.discount).detach();
        let obs_act = Tensor::cat(vec![b.obs.clone(), b.act.clone()], 1);
        let [q1, q2] = [&self.critic.q1, &self.critic.q2].map(|q| TrainingMlp::new(q, engine));
        let q1_value = column(q1.forward(obs_act.clone()));
        let q2_value = column(q2.forward(obs_act));
        let critic_loss = ((q1_value.clone() - target.clone()).powi_scalar(2).mean()
            + (q2_value - target).powi_scalar(2).mean())
            * 0.5;
        let mut critic_grads = GradientsParams::new();
        let mut g = critic_loss.backward();
        q1.register_grads(&mut g, &mut critic_grads);
        q2.register_grads(&mut g, &mut critic_grads);

        // BC flow, then the one-step policy distilled from it against −Q.
        let flow_loss = flow_matching_loss(&field, b.obs.clone(), b.act.clone(), &mut self.rng);
        let z = normal(&mut self.rng, n, ad, device);
        let flow_act = integrate(|x| field.eval(x), b.obs.clone(), z.clone(), cfg.flow_steps);
        let policy_act = actor.forward(Tensor::cat(vec![b.obs.clone(), z], 1));
        let distill_loss = (policy_act.clone() - flow_act).powi_scalar(2).mean();
        let policy_in = Tensor::cat(vec![b.obs, policy_act.clamp(-1.0, 1.0)], 1);
        let q = (column(critic_before.q1.forward(policy_in.clone()))
            + column(critic_before.q2.forward(policy_in)))
            * 0.5;
        let q_mean = q.clone().mean();
        let mut q_loss = q_mean.clone() * -1.0;
        if cfg.normalize_q_loss {
            q_loss = q_loss * q.abs().mean().detach().recip();
        }
        let actor_loss = distill_loss.clone() * cfg.alpha + q_loss.clone();
        let mut g = (flow_loss.clone() + actor_loss.clone()).backward();
        let (mut field_grads, mut actor_grads) = (GradientsParams::new(), GradientsParams::new());
        field.register_grads(&mut g, &mut field_grads);
        actor.register_grads(&mut g, &mut actor_grads);

        self.critic = self
            .critic_optim
            .step(cfg.lr, self.critic.clone(), critic_grads);
        self.field = self
            .field_optim
            .step(cfg.lr, self.field.clone(), field_grads);
        self.actor = self
            .actor_optim
            .step(cfg.lr, self.actor.clone(), actor_grads);
        self.critic_target = self
            .critic_target
            .clone()
            .soft_update(&self.critic, cfg.target_ema);
        Ok(vec![
            ("critic_loss", scalar(&critic_loss)),
            ("q_mean", scalar(&q1_value.mean())),
            ("flow_loss", scalar(&flow_loss)),
            ("distill_loss", scalar(&distill_loss)),
            ("q_policy", scalar(&q_mean)),
            ("actor_loss", scalar(&actor_loss)),
        ])
    }

    fn policy(&self) -> Result<Box<dyn Policy>> {
        Ok(Box::new(FqlPolicy {
            actor: crate::nn::inference_copy(&self.actor),
            spec: self.spec.clone(),
            rng: ChaCha8Rng::seed_from_u64(self.seed),
        }))
    }

    fn value_function(&self) -> Option<Box<dyn ActionScorer>> {
        let mean = self.cfg.q_agg == QAgg::Mean;
        Some(Box::new(TwinQScorer::new(&self.critic, mean, &self.spec)))
    }

    fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()> {
        parts.module(FIELD_PART, &mut self.field, Some(&mut self.field_optim))?;
        parts.module("actor", &mut self.actor, Some(&mut self.actor_optim))?;
        parts.module("critic", &mut self.critic, Some(&mut self.critic_optim))?;
        parts.target("critic_target", &mut self.critic_target)?;
        parts.rng(&mut self.rng)
    }
}

/// The one-step policy acting: `clip(μ_ω(s, z))`, `z ~ N(0, I)` from its own generator.
struct FqlPolicy {
    actor: (OneStepPolicy, Device),
    spec: DataSpec,
    rng: ChaCha8Rng,
}

impl Policy for FqlPolicy {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let (od, ad) = (self.spec.obs_dim, self.spec.act_dim);
        crate::policy::check_obs("fql policy", obs, n, od)?;
        let (actor, device) = &self.actor;
        let obs = crate::nn::tensor2(&self.spec.normalize_obs(obs), n, od, device);
        let z = normal(&mut self.rng, n, ad, device);
        let act = TrainingMlp::new(&actor.net, Engine::for_device(device))
            .eval(Tensor::cat(vec![obs, z], 1));
        Ok(self
            .spec
            .action_from_unit(&crate::nn::to_vec(act.clamp(-1.0, 1.0))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::testing;

    /// The bandit of every Q-learning test: in each state both ±0.5 are in the data, one pays.
    /// The one-step policy must leave the data's two-mode BC flow for the paying mode.
    #[test]
    fn prefers_the_best_in_support_action_per_state() {
        let data = testing::two_state_bandit();
        let net = NetConfig::new(2, 32, false);
        let cfg = FqlConfig {
            alpha: 1.0,
            lr: 3e-3,
            target_ema: 0.05,
            actor_net: net,
            critic_net: net,
            data: DataConfig {
                normalize_obs: false,
                reward_norm: RewardNorm::None,
            },
            ..FqlConfig::default()
        };
        let spec = DataSpec::from_dataset(&data, &cfg.data).unwrap();
        let mut algo = Fql::new(cfg, spec, &Device::flex().autodiff(), 3).unwrap();
        let batch = testing::full_batch(&data);
        for step in 0..600 {
            algo.update(&batch, step).unwrap();
        }
        testing::assert_prefers_best(algo.policy().unwrap().as_mut(), 0.25);
    }
}
