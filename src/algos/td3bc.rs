//! TD3+BC (Fujimoto & Gu, NeurIPS 2021), following CORL's `td3_bc.py`: TD3 with a behaviour-
//! cloning term in the actor loss, `−λ Q1(s, π(s)) + (π(s) − a)²`, `λ = α / mean|Q1|` (detached).
//! Critic targets use target-policy smoothing (Gaussian noise 0.2, clipped at 0.5, in unit
//! action space where max_action = 1); the actor and all targets update every `policy_freq`
//! critic updates. Observations are normalised (the paper's one data-side change).

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::common::{
    adam, column, normal, scalar, soft_update, target_copy, NetConfig, NetPolicy, TwinQ,
    TwinQScorer,
};
use crate::dataset::spec::{DataConfig, DataSpec, RewardNorm};
use crate::dataset::Batch;
use crate::error::Result;
use crate::nn::Mlp;
use crate::policy::{ActionScorer, Policy};
use crate::train::{LoopConfig, Metrics, OfflineAlgorithm, Parts};

/// The algorithm's name in the registry and its checkpoints' kind.
pub const NAME: &str = "td3bc";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Td3BcConfig {
    /// α of λ = α / mean|Q|: weight of the RL term against behaviour cloning.
    pub alpha: f64,
    pub discount: f64,
    /// Polyak rate of the target actor and critics.
    pub target_ema: f64,
    /// Std of the target-policy smoothing noise (unit action space).
    pub policy_noise: f64,
    pub noise_clip: f64,
    /// Actor and target updates every this many critic updates.
    pub policy_freq: usize,
    pub actor_lr: f64,
    pub critic_lr: f64,
    pub adam_eps: f64,
    pub actor_net: NetConfig,
    pub critic_net: NetConfig,
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for Td3BcConfig {
    /// The paper's / CORL's settings.
    fn default() -> Self {
        let net = NetConfig::default();
        Self {
            alpha: 2.5,
            discount: 0.99,
            target_ema: 0.005,
            policy_noise: 0.2,
            noise_clip: 0.5,
            policy_freq: 2,
            actor_lr: 3e-4,
            critic_lr: 3e-4,
            adam_eps: 1e-8,
            actor_net: net,
            critic_net: net,
            data: DataConfig {
                normalize_obs: true,
                reward_norm: RewardNorm::None,
            },
            train: LoopConfig::default(),
        }
    }
}

/// Deterministic actor `tanh(mlp(s))` in unit action space.
#[derive(Module, Debug)]
pub struct TanhActor {
    pub net: Mlp,
}

impl TanhActor {
    pub fn forward(&self, obs: Tensor<2>) -> Tensor<2> {
        self.net.forward(obs).tanh()
    }
}

pub struct Td3Bc {
    cfg: Td3BcConfig,
    spec: DataSpec,
    device: Device,
    rng: ChaCha8Rng,
    actor: TanhActor,
    actor_target: TanhActor,
    critic: TwinQ,
    critic_target: TwinQ,
    actor_optim: ModuleOptimizer,
    critic_optim: ModuleOptimizer,
}

impl Td3BcConfig {
    /// Every setting in its allowed range, named as in the config, before any work.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::non_negative("alpha", self.alpha)?;
        check::discount("discount", self.discount)?;
        check::rate("target_ema", self.target_ema)?;
        check::non_negative("policy_noise", self.policy_noise)?;
        check::non_negative("noise_clip", self.noise_clip)?;
        check::count("policy_freq", self.policy_freq)?;
        check::positive("actor_lr", self.actor_lr)?;
        check::positive("critic_lr", self.critic_lr)?;
        check::positive("adam_eps", self.adam_eps)?;
        self.actor_net.validate("actor_net")?;
        self.critic_net.validate("critic_net")?;
        self.train.validate()
    }
}

impl Td3Bc {
    pub fn new(cfg: Td3BcConfig, spec: DataSpec, device: &Device, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (od, ad) = (spec.obs_dim, spec.act_dim);
        let mut actor_net = || TanhActor {
            net: cfg.actor_net.mlp(od, ad, &mut rng, device),
        };
        let actor = actor_net();
        let actor_target = target_copy(actor_net(), &actor);
        let critic = TwinQ::new(&cfg.critic_net, od, ad, &mut rng, device);
        let critic_target = target_copy(
            TwinQ::new(&cfg.critic_net, od, ad, &mut rng, device),
            &critic,
        );
        Ok(Self {
            actor_optim: adam(cfg.adam_eps),
            critic_optim: adam(cfg.adam_eps),
            cfg,
            spec,
            device: device.clone(),
            rng,
            actor,
            actor_target,
            critic,
            critic_target,
        })
    }
}

impl OfflineAlgorithm for Td3Bc {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self) -> &DataSpec {
        &self.spec
    }

    fn update(&mut self, batch: &Batch, step: usize) -> Result<Metrics> {
        let cfg = &self.cfg;
        let b = self.spec.batch_tensors(batch, &self.device);
        let [n, ad] = b.act.dims();

        // Critic: twin regression onto r + γ (1 − d) min Q'(s', π'(s') + clipped noise).
        let noise = (normal(&mut self.rng, n, ad, &self.device) * cfg.policy_noise)
            .clamp(-cfg.noise_clip, cfg.noise_clip);
        let next_act = (self.actor_target.forward(b.next_obs.clone()) + noise).clamp(-1.0, 1.0);
        let next_q = self.critic_target.min(b.next_obs, next_act);
        let target = (b.reward + (b.done * -1.0 + 1.0) * next_q * cfg.discount).detach();
        let (q1, q2) = self.critic.both(b.obs.clone(), b.act.clone());
        let critic_loss = (q1.clone() - target.clone()).powi_scalar(2).mean()
            + (q2 - target).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(critic_loss.backward(), &self.critic);
        self.critic = self
            .critic_optim
            .step(cfg.critic_lr, self.critic.clone(), grads);
        let mut metrics = vec![
            ("critic_loss", scalar(&critic_loss)),
            ("q_mean", scalar(&q1.mean())),
        ];

        // Delayed actor: −λ Q1(s, π(s)) + BC, then all targets.
        if (step + 1).is_multiple_of(cfg.policy_freq) {
            let pi = self.actor.forward(b.obs.clone());
            let x = Tensor::cat(vec![b.obs, pi.clone()], 1);
            let q = column(self.critic.q1.forward(x));
            let lambda = (q.clone().abs().mean().detach().recip() * cfg.alpha).reshape([1]);
            let bc = (pi - b.act).powi_scalar(2).mean();
            let actor_loss = (lambda * q.mean()) * -1.0 + bc.clone();
            let grads = GradientsParams::from_grads(actor_loss.backward(), &self.actor);
            self.actor = self
                .actor_optim
                .step(cfg.actor_lr, self.actor.clone(), grads);
            self.critic_target = self
                .critic_target
                .clone()
                .soft_update(&self.critic, cfg.target_ema);
            self.actor_target = soft_update(self.actor_target.clone(), &self.actor, cfg.target_ema);
            metrics.push(("actor_loss", scalar(&actor_loss)));
            metrics.push(("bc_mse", scalar(&bc)));
        }
        Ok(metrics)
    }

    fn policy(&self) -> Result<Box<dyn Policy>> {
        Ok(Box::new(NetPolicy::new(
            &self.actor,
            TanhActor::forward,
            &self.spec,
        )))
    }

    fn value_function(&self) -> Option<Box<dyn ActionScorer>> {
        Some(Box::new(TwinQScorer::new(&self.critic, false, &self.spec)))
    }

    fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()> {
        parts.module("actor", &mut self.actor, Some(&mut self.actor_optim))?;
        parts.target("actor_target", &mut self.actor_target)?;
        parts.module("critic", &mut self.critic, Some(&mut self.critic_optim))?;
        parts.target("critic_target", &mut self.critic_target)?;
        parts.rng(&mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::testing;

    /// Two one-step bandit states (one-hot), actions ±0.5 equally often in both; the better one
    /// is +0.5 in state A and −0.5 in state B. The policy must pick the better side in each.
    #[test]
    fn prefers_the_best_in_support_action_per_state() {
        let data = testing::two_state_bandit();
        let net = NetConfig::new(2, 32, false);
        let cfg = Td3BcConfig {
            actor_lr: 3e-3,
            critic_lr: 3e-3,
            target_ema: 0.05,
            actor_net: net,
            critic_net: net,
            data: DataConfig {
                normalize_obs: false,
                reward_norm: RewardNorm::None,
            },
            ..Td3BcConfig::default()
        };
        let spec = DataSpec::from_dataset(&data, &cfg.data).unwrap();
        let mut algo = Td3Bc::new(cfg, spec, &Device::flex().autodiff(), 3).unwrap();
        let batch = testing::full_batch(&data);
        for step in 0..600 {
            algo.update(&batch, step).unwrap();
        }
        testing::assert_prefers_best(algo.policy().unwrap().as_mut(), 0.25);
    }
}
