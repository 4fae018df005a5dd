//! Conservative Q-Learning for continuous actions (Kumar et al., NeurIPS 2020), SAC-based,
//! following CORL's `cql.py` (itself from young-geng/CQL) with its D4RL locomotion config.
//!
//! Per update, on `(s, a, r, s', d)`, everything computed with the current networks first:
//! 1. tanh-Gaussian actor (state-dependent log-std, `log σ = m · raw + o` with trainable m, o,
//!    clamped to [−20, 2]) samples `ã ~ π(·|s)` with its log-probability;
//! 2. entropy temperature: `L(log α) = −log α · (log π(ã|s) + H̄)`, `H̄ = −act_dim` (auto-tuned);
//! 3. actor: `α log π(ã|s) − min Q(s, ã)` (or `α log π − log π(a|s)` for the first `bc_steps`);
//! 4. critics: Bellman error to `r + γ (1 − d) min Q'(s', ã')` plus the CQL term
//!    `cql_alpha · (T log Σ exp(Q(s, ·)/T) − Q(s, a))`, the log-sum-exp over `n_actions` uniform
//!    actions and `n_actions` policy actions drawn at s and at s', all scored at s and
//!    importance-weighted by their densities: Q is pushed down away from the data, up on it;
//! 5. targets move by Polyak averaging every update.
//!
//! The policy acts with `tanh(mean)`. Not implemented (off in CORL's configs): the Lagrange
//! variant, max-target backup and clipping of the CQL difference.

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::common::{
    adam, diagonal_gaussian_log_prob, logsumexp_rows, normal, orthogonal_init, repeat_rows, scalar,
    target_copy, uniform, xavier_output, NetConfig, NetPolicy, SampledNetPolicy, TwinQ,
    TwinQScorer,
};
use crate::dataset::spec::{DataConfig, DataSpec, RewardNorm};
use crate::dataset::Batch;
use crate::error::{Error, Result};
use crate::nn::Mlp;
use crate::policy::{ActionScorer, Policy};
use crate::train::{LoopConfig, Metrics, OfflineAlgorithm, Parts};

/// The algorithm's name in the registry and its checkpoints' kind.
pub const NAME: &str = "cql";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CqlConfig {
    pub discount: f64,
    /// Polyak rate of the target critics (every update).
    pub target_ema: f64,
    /// Adam lr of the actor and of the entropy temperature.
    pub policy_lr: f64,
    pub critic_lr: f64,
    /// Tune the SAC temperature α towards the target entropy.
    pub auto_entropy: bool,
    /// α = exp(log α) · multiplier (the fixed α when `auto_entropy` is off).
    pub alpha_multiplier: f64,
    /// Target entropy per action dimension (SAC: −1, i.e. H̄ = −act_dim).
    pub target_entropy_per_dim: f64,
    /// Subtract α log π' in the Bellman target.
    pub backup_entropy: bool,
    /// Weight of the conservative term (CORL's `cql_alpha`, the paper's min_q_weight).
    pub cql_alpha: f64,
    /// Sampled actions per state for the log-sum-exp (each of: uniform, π at s, π at s').
    pub cql_n_actions: usize,
    pub cql_temp: f64,
    /// Importance-weight the sampled actions by their densities (CQL(H) estimator).
    pub cql_importance_sample: bool,
    /// Updates with the behaviour-cloning actor loss before the SAC one.
    pub bc_steps: usize,
    /// Orthogonal init of the critics (hidden gain √2, output 1e-2).
    pub orthogonal_init: bool,
    pub adam_eps: f64,
    pub actor_net: NetConfig,
    pub critic_net: NetConfig,
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for CqlConfig {
    /// CORL's `configs/offline/cql/hopper/medium_v2.yaml`.
    fn default() -> Self {
        let net = NetConfig::new(3, 256, false);
        Self {
            discount: 0.99,
            target_ema: 5e-3,
            policy_lr: 3e-5,
            critic_lr: 3e-4,
            auto_entropy: true,
            alpha_multiplier: 1.0,
            target_entropy_per_dim: -1.0,
            backup_entropy: false,
            cql_alpha: 10.0,
            cql_n_actions: 10,
            cql_temp: 1.0,
            cql_importance_sample: true,
            bc_steps: 0,
            orthogonal_init: true,
            adam_eps: 1e-8,
            actor_net: net,
            critic_net: net,
            data: DataConfig {
                normalize_obs: true,
                reward_norm: RewardNorm::ReturnRange,
            },
            train: LoopConfig::default(),
        }
    }
}

/// SAC's tanh-Gaussian policy: the MLP outputs mean and raw log-std.
#[derive(Module, Debug)]
pub struct TanhGaussianActor {
    pub net: Mlp,
    pub log_std_multiplier: Param<Tensor<1>>,
    pub log_std_offset: Param<Tensor<1>>,
    #[module(skip)]
    pub act_dim: usize,
}

const LOG_STD_MIN: f32 = -20.0;
const LOG_STD_MAX: f32 = 2.0;

impl TanhGaussianActor {
    fn mean_log_std(&self, obs: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let out = self.net.forward(obs);
        let d = self.act_dim;
        let mean = out.clone().narrow(1, 0, d);
        let raw = out.narrow(1, d, d);
        let log_std = raw * self.log_std_multiplier.val().reshape([1, 1])
            + self.log_std_offset.val().reshape([1, 1]);
        (mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX))
    }

    /// `tanh(mean)`: the evaluation action.
    pub fn deterministic(&self, obs: Tensor<2>) -> Tensor<2> {
        self.mean_log_std(obs).0.tanh()
    }

    /// Reparameterised sample `tanh(μ + σ ε)` for standard-normal `eps`, and its log-density.
    pub fn sample(&self, obs: Tensor<2>, eps: Tensor<2>) -> (Tensor<2>, Tensor<1>) {
        let (mean, log_std) = self.mean_log_std(obs);
        let u = mean.clone() + log_std.clone().exp() * eps;
        let log_prob = diagonal_gaussian_log_prob(u.clone(), mean, log_std)
            - crate::nn::tanh_log_det(u.clone());
        (u.tanh(), log_prob)
    }

    /// `log π(a|s)` of given actions in (−1, 1) (clipped just inside, as atanh needs).
    pub fn log_prob(&self, obs: Tensor<2>, act: Tensor<2>) -> Tensor<1> {
        let (mean, log_std) = self.mean_log_std(obs);
        let u = act.clamp(-0.999_999, 0.999_999).atanh();
        diagonal_gaussian_log_prob(u.clone(), mean, log_std) - crate::nn::tanh_log_det(u)
    }
}

/// The SAC temperature's logarithm.
#[derive(Module, Debug)]
pub struct LogAlpha {
    pub value: Param<Tensor<1>>,
}

pub struct Cql {
    cfg: CqlConfig,
    spec: DataSpec,
    device: Device,
    rng: ChaCha8Rng,
    actor: TanhGaussianActor,
    critic: TwinQ,
    critic_target: TwinQ,
    log_alpha: LogAlpha,
    actor_optim: ModuleOptimizer,
    critic_optim: ModuleOptimizer,
    alpha_optim: ModuleOptimizer,
}

impl CqlConfig {
    /// Every setting in its allowed range, named as in the config, before any work.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::discount("discount", self.discount)?;
        check::rate("target_ema", self.target_ema)?;
        check::positive("policy_lr", self.policy_lr)?;
        check::positive("critic_lr", self.critic_lr)?;
        check::non_negative("alpha_multiplier", self.alpha_multiplier)?;
        check::non_negative("cql_alpha", self.cql_alpha)?;
        check::count("cql_n_actions", self.cql_n_actions)?;
        check::positive("cql_temp", self.cql_temp)?;
        check::positive("adam_eps", self.adam_eps)?;
        if !self.target_entropy_per_dim.is_finite() {
            return Err(Error::Config(format!(
                "`target_entropy_per_dim` = {}: must be finite",
                self.target_entropy_per_dim
            )));
        }
        self.actor_net.validate("actor_net")?;
        self.critic_net.validate("critic_net")?;
        self.train.validate()
    }
}

impl Cql {
    pub fn new(cfg: CqlConfig, spec: DataSpec, device: &Device, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (od, ad) = (spec.obs_dim, spec.act_dim);
        let param = |v: f32| Param::from_tensor(Tensor::<1>::from_floats([v], device));
        let net = cfg.actor_net.mlp(od, 2 * ad, &mut rng, device);
        let actor = TanhGaussianActor {
            net: xavier_output(net, 1e-2, &mut rng, device),
            log_std_multiplier: param(1.0),
            log_std_offset: param(-1.0),
            act_dim: ad,
        };
        let mut critic = || {
            let q = TwinQ::new(&cfg.critic_net, od, ad, &mut rng, device);
            if cfg.orthogonal_init {
                TwinQ {
                    q1: orthogonal_init(q.q1, 1e-2, &mut rng, device),
                    q2: orthogonal_init(q.q2, 1e-2, &mut rng, device),
                }
            } else {
                q
            }
        };
        let critic_net = critic();
        let critic_target = target_copy(critic(), &critic_net);
        Ok(Self {
            actor_optim: adam(cfg.adam_eps),
            critic_optim: adam(cfg.adam_eps),
            alpha_optim: adam(cfg.adam_eps),
            log_alpha: LogAlpha { value: param(0.0) },
            cfg,
            spec,
            device: device.clone(),
            rng,
            actor,
            critic: critic_net,
            critic_target,
        })
    }

    /// Q values of the current critics, `(Q1, Q2)`; for tests and diagnostics.
    pub fn q_values(&self, obs: Tensor<2>, act: Tensor<2>) -> (Tensor<1>, Tensor<1>) {
        self.critic.both(obs, act)
    }
}

impl OfflineAlgorithm for Cql {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self) -> &DataSpec {
        &self.spec
    }

    fn update(&mut self, batch: &Batch, step: usize) -> Result<Metrics> {
        let cfg = &self.cfg;
        let device = &self.device;
        let b = self.spec.batch_tensors(batch, device);
        let [n, ad] = b.act.dims();
        let k = cfg.cql_n_actions;

        // All actor samples come from the networks as they are before this update.
        let (new_act, log_pi) = self
            .actor
            .sample(b.obs.clone(), normal(&mut self.rng, n, ad, device));
        let (next_act, next_log_pi) = self
            .actor
            .sample(b.next_obs.clone(), normal(&mut self.rng, n, ad, device));
        let obs_k = repeat_rows(b.obs.clone(), k);
        let (cur_k, cur_lp_k) = self
            .actor
            .sample(obs_k.clone(), normal(&mut self.rng, n * k, ad, device));
        let (nxt_k, nxt_lp_k) = self.actor.sample(
            repeat_rows(b.next_obs.clone(), k),
            normal(&mut self.rng, n * k, ad, device),
        );
        let rand_k = uniform(&mut self.rng, n * k, ad, -1.0, 1.0, device);

        // Temperature (the actor and critic losses see it as a constant).
        let (alpha, alpha_loss) = if cfg.auto_entropy {
            let log_alpha = self.log_alpha.value.val();
            let target_entropy = cfg.target_entropy_per_dim * ad as f64;
            let loss = (log_alpha.clone() * (log_pi.clone().detach() + target_entropy)).mean();
            (
                log_alpha.detach().exp() * cfg.alpha_multiplier,
                Some(loss * -1.0),
            )
        } else {
            let fixed = Tensor::from_floats([cfg.alpha_multiplier as f32], device);
            (fixed, None)
        };

        // Actor.
        let policy_target = if step < cfg.bc_steps {
            self.actor.log_prob(b.obs.clone(), b.act.clone())
        } else {
            self.critic.min(b.obs.clone(), new_act)
        };
        let policy_loss = (log_pi.clone() * alpha.clone() - policy_target).mean();

        // Critics: Bellman error + conservative term, with one critic pass over
        // [data actions; uniform; π(s); π(s')] at the batch states.
        let mut next_q = self.critic_target.min(b.next_obs, next_act.detach());
        if cfg.backup_entropy {
            next_q = next_q - next_log_pi.detach() * alpha.clone();
        }
        let td_target = (b.reward + (b.done * -1.0 + 1.0) * next_q * cfg.discount).detach();
        let all_obs = Tensor::cat(vec![b.obs, obs_k.clone(), obs_k.clone(), obs_k], 0);
        let all_act = Tensor::cat(vec![b.act, rand_k, cur_k.detach(), nxt_k.detach()], 0);
        let (q1_all, q2_all) = self.critic.both(all_obs, all_act);
        let rows = |lp: Tensor<1>| lp.detach().reshape([n, k]);
        let (cur_lp, nxt_lp) = (rows(cur_lp_k), rows(nxt_lp_k));
        let random_density = (0.5f64.powi(ad as i32)).ln();
        let conservative = |q_all: Tensor<1>| {
            let q_data = q_all.clone().narrow(0, 0, n);
            let part = |i: usize| {
                q_all
                    .clone()
                    .narrow(0, n + i * n * k, n * k)
                    .reshape([n, k])
            };
            let (q_rand, q_cur, q_nxt) = (part(0), part(1), part(2));
            let cat = if cfg.cql_importance_sample {
                Tensor::cat(
                    vec![
                        q_rand - random_density,
                        q_nxt - nxt_lp.clone(),
                        q_cur - cur_lp.clone(),
                    ],
                    1,
                )
            } else {
                let data_col = q_data.clone().reshape([n, 1]);
                Tensor::cat(vec![q_rand, data_col, q_nxt, q_cur], 1)
            };
            let ood = logsumexp_rows(cat / cfg.cql_temp) * cfg.cql_temp;
            let bellman = (q_data.clone() - td_target.clone()).powi_scalar(2).mean();
            (bellman, (ood - q_data).mean())
        };
        let (qf1_loss, diff1) = conservative(q1_all);
        let (qf2_loss, diff2) = conservative(q2_all);
        let critic_loss =
            qf1_loss.clone() + qf2_loss.clone() + (diff1.clone() + diff2.clone()) * cfg.cql_alpha;

        // Steps: temperature, actor, critics, targets.
        let metrics = vec![
            ("critic_loss", scalar(&critic_loss)),
            ("qf1_loss", scalar(&qf1_loss)),
            ("qf2_loss", scalar(&qf2_loss)),
            ("cql_diff", 0.5 * (scalar(&diff1) + scalar(&diff2))),
            ("policy_loss", scalar(&policy_loss)),
            ("alpha_loss", alpha_loss.as_ref().map_or(0.0, scalar)),
            ("alpha", scalar(&alpha)),
            ("log_pi", scalar(&log_pi.mean())),
        ];
        if let Some(alpha_loss) = alpha_loss {
            let grads = GradientsParams::from_grads(alpha_loss.backward(), &self.log_alpha);
            self.log_alpha = self
                .alpha_optim
                .step(cfg.policy_lr, self.log_alpha.clone(), grads);
        }
        let grads = GradientsParams::from_grads(policy_loss.backward(), &self.actor);
        self.actor = self
            .actor_optim
            .step(cfg.policy_lr, self.actor.clone(), grads);
        let grads = GradientsParams::from_grads(critic_loss.backward(), &self.critic);
        self.critic = self
            .critic_optim
            .step(cfg.critic_lr, self.critic.clone(), grads);
        self.critic_target = self
            .critic_target
            .clone()
            .soft_update(&self.critic, cfg.target_ema);
        Ok(metrics)
    }

    fn policy(&self) -> Result<Box<dyn Policy>> {
        Ok(Box::new(NetPolicy::new(
            &self.actor,
            TanhGaussianActor::deterministic,
            &self.spec,
        )))
    }

    fn sampling_policy(&self, seed: u64) -> Result<Box<dyn Policy>> {
        Ok(Box::new(SampledNetPolicy::new(
            &self.actor,
            |actor: &TanhGaussianActor, obs, eps| actor.sample(obs, eps).0,
            &self.spec,
            seed,
        )))
    }

    fn value_function(&self) -> Option<Box<dyn ActionScorer>> {
        Some(Box::new(TwinQScorer::new(&self.critic, false, &self.spec)))
    }

    fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()> {
        parts.module("actor", &mut self.actor, Some(&mut self.actor_optim))?;
        parts.module("critic", &mut self.critic, Some(&mut self.critic_optim))?;
        parts.target("critic_target", &mut self.critic_target)?;
        parts.module(
            "log_alpha",
            &mut self.log_alpha,
            Some(&mut self.alpha_optim),
        )?;
        parts.rng(&mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::testing;
    use crate::nn;

    #[test]
    fn tanh_gaussian_log_prob_matches_the_change_of_variables() {
        let device = Device::flex();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let cfg = CqlConfig {
            actor_net: NetConfig::new(1, 4, false),
            ..CqlConfig::default()
        };
        let spec = DataSpec::from_dataset(&testing::two_state_bandit(), &cfg.data).unwrap();
        let cql = Cql::new(cfg, spec, &device, 0).unwrap();
        let obs = nn::tensor2(&[1.0, 0.0], 1, 2, &device);
        let eps = normal(&mut rng, 1, 1, &device);
        let (a, lp) = cql.actor.sample(obs.clone(), eps.clone());
        // By hand: u = μ + σ ε, log N(u; μ, σ) − log(1 − tanh²u).
        let (mean, log_std) = cql.actor.mean_log_std(obs.clone());
        let (m, s, e) = (
            nn::to_vec(mean)[0] as f64,
            nn::to_vec(log_std)[0].exp() as f64,
            nn::to_vec(eps)[0] as f64,
        );
        let u = m + s * e;
        let want = -0.5 * e * e
            - s.ln()
            - 0.5 * (2.0 * std::f64::consts::PI).ln()
            - (1.0 - u.tanh().powi(2)).ln();
        assert!((nn::to_vec(lp)[0] as f64 - want).abs() < 1e-4);
        assert!((nn::to_vec(a.clone())[0] as f64 - u.tanh()).abs() < 1e-6);
        // log_prob of the sampled action agrees with sample's.
        let again = nn::to_vec(cql.actor.log_prob(obs, a))[0] as f64;
        assert!((again - want).abs() < 1e-3, "{again} vs {want}");
    }

    /// The one-step two-state bandit with rewards scaled to 10 (best) / 0 (worst), full-batch.
    /// CQL's fixed point is known there: with the log-sum-exp mass on the best data action,
    /// `∂/∂Q_i [½ (Q_i − r_i)² + α (lse − ½ Σ Q)] = 0` gives `Q_i = r_i − α (p_i − ½)`, i.e.
    /// Q(best) = 10 − α/2 and Q(worst) = α/2; actions the data never took are pushed below both,
    /// and the policy stays on the best in-support action. (Plain SAC, `cql_alpha = 0`, gives
    /// Q = 10 / 0 on the data, Q ≈ 12 out of support and actions near ±0.9.)
    #[test]
    fn prefers_the_best_in_support_action_and_is_conservative() {
        let data = testing::two_state_bandit();
        let net = NetConfig::new(2, 32, false);
        let cql_alpha = 5.0;
        let cfg = CqlConfig {
            policy_lr: 1e-3,
            critic_lr: 3e-3,
            target_ema: 0.05,
            cql_alpha,
            actor_net: net,
            critic_net: net,
            data: DataConfig {
                normalize_obs: false,
                reward_norm: RewardNorm::None,
            },
            ..CqlConfig::default()
        };
        let mut spec = DataSpec::from_dataset(&data, &cfg.data).unwrap();
        // A reward gap large against α, so the fixed point separates the two data actions.
        spec.reward_scale = 10.0;
        let device = Device::flex().autodiff();
        let mut algo = Cql::new(cfg, spec, &device, 0).unwrap();
        let batch = testing::full_batch(&data);
        for step in 0..1000 {
            algo.update(&batch, step).unwrap();
        }
        let mut policy = algo.policy().unwrap();
        testing::assert_prefers_best(policy.as_mut(), 0.25);
        let act = policy.act(&[1.0, 0.0, 0.0, 1.0], 2).unwrap();
        assert!(
            (act[0] - 0.5).abs() < 0.1 && (act[1] + 0.5).abs() < 0.1,
            "actions leave the data's support: {act:?}"
        );

        let q = |state: [f32; 2], acts: &[f32]| {
            let obs: Vec<f32> = acts.iter().flat_map(|_| state).collect();
            let (q1, q2) = algo.q_values(
                nn::tensor2(&obs, acts.len(), 2, &device),
                nn::tensor2(acts, acts.len(), 1, &device),
            );
            nn::to_vec(q1.min_pair(q2))
        };
        let grid: Vec<f32> = (0..21).map(|i| -1.0 + 0.1 * i as f32).collect();
        let out_of_support: Vec<f32> = grid
            .into_iter()
            .filter(|a| (a - 0.5).abs() > 0.25 && (a + 0.5).abs() > 0.25)
            .collect();
        for (state, best) in [([1.0, 0.0], 0.5f32), ([0.0, 1.0], -0.5)] {
            let data_q = q(state, &[best, -best]);
            let (q_best, q_worst) = (f64::from(data_q[0]), f64::from(data_q[1]));
            let want_best = 10.0 - cql_alpha / 2.0;
            let want_worst = cql_alpha / 2.0;
            assert!(
                (q_best - want_best).abs() < 0.6 && (q_worst - want_worst).abs() < 0.6,
                "{state:?}: Q(best) {q_best:.2} (want {want_best}), Q(worst) {q_worst:.2} (want {want_worst})"
            );
            let ood = q(state, &out_of_support);
            let max_ood = ood.iter().copied().fold(f32::MIN, f32::max);
            assert!(
                f64::from(max_ood) < q_worst,
                "{state:?}: out-of-support Q up to {max_ood:.2}, above Q(worst data) {q_worst:.2}"
            );
        }
    }
}
