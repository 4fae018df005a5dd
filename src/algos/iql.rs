//! Implicit Q-Learning (Kostrikov, Nair & Levine, ICLR 2022), following CORL's single-file
//! implementation: the critic never queries actions outside the dataset.
//!
//! Per update, on a minibatch `(s, a, r, s', d)`:
//! 1. `V` regresses the (target, min-of-twins) `Q(s, a)` with the expectile loss
//!    `|τ − 1(u < 0)| u²`, `u = Q(s,a) − V(s)`: with τ → 1 `V(s)` tends to the best in-support
//!    action value; τ = 0.5 is the behaviour policy's value;
//! 2. both `Q`s regress `r + γ (1 − d) V(s')` (with `V` from before step 1, as CORL), then the
//!    target twin moves by Polyak averaging (rate `target_ema`);
//! 3. the actor (advantage-weighted regression) maximises `exp(β · (Q − V)) · log π(a|s)`,
//!    weights clipped at `exp_adv_max`; Gaussian policy with a state-independent log-std and a
//!    tanh-squashed mean (the IQL reference's `NormalTanhPolicy(tanh_squash_distribution=False)`:
//!    the mean is squashed, the distribution is not; log-std clamped to [−5, 2] as there); the
//!    actor's learning rate decays with a cosine schedule over the run (IQL / CORL).
//!
//! [`IqlCritic`] is the trained critic as RTB and IDQL use it: frozen target twin Q and V on raw
//! observations and environment actions, differentiable w.r.t. the action.

use std::path::Path;
use std::sync::OnceLock;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::common::{
    adam, check_log_std, column, scalar, target_copy, GaussianActor, NetConfig, NetPolicy,
    SampledNetPolicy, TwinQ, ValueNet,
};
use crate::backend::Engine;
use crate::dataset::spec::{BatchTensors, DataConfig, DataSpec, RewardNorm, SpecTensors};
use crate::dataset::Batch;
use crate::error::{Error, Result};
use crate::eval::probe::Probe;
use crate::nn::host::{HostMlp, TrainingMlp};
use crate::policy::{ActionScorer, Policy};
use crate::train::checkpoint::Checkpoint;
use crate::train::{policy_diagnostics, LoopConfig, Metrics, OfflineAlgorithm, Parts};
use offrl_kernels::Shards;

/// The algorithm's name in the registry and its checkpoints' kind.
pub const NAME: &str = "iql";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IqlConfig {
    /// Expectile τ of the value loss (0.5: mean; → 1: max over in-support actions).
    pub expectile: f64,
    /// Inverse temperature β of advantage-weighted regression (small: BC, large: greedy).
    pub beta: f64,
    /// Clip of the AWR weights `exp(β · A)`.
    pub exp_adv_max: f64,
    pub discount: f64,
    /// Polyak rate of the target twin Q.
    pub target_ema: f64,
    /// Adam learning rate of V and of the twin Q.
    pub critic_lr: f64,
    pub actor_lr: f64,
    /// Cosine decay of the actor's learning rate to 0 over `train.steps`.
    pub actor_cosine_schedule: bool,
    /// Train the AWR actor; false trains the critic only (`offrl train critic`).
    pub train_actor: bool,
    /// Adam ε (PyTorch / optax default 1e-8).
    pub adam_eps: f64,
    pub critic_net: NetConfig,
    pub actor_net: NetConfig,
    /// Squash the policy mean with tanh (the distribution itself is a plain Gaussian).
    pub tanh_mean: bool,
    pub log_std_min: f32,
    pub log_std_max: f32,
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for IqlConfig {
    /// IQL's locomotion settings (paper, App. B; CORL `iql.py`).
    fn default() -> Self {
        let net = NetConfig::default();
        Self {
            expectile: 0.7,
            beta: 3.0,
            exp_adv_max: 100.0,
            discount: 0.99,
            target_ema: 0.005,
            critic_lr: 3e-4,
            actor_lr: 3e-4,
            actor_cosine_schedule: true,
            train_actor: true,
            adam_eps: 1e-8,
            critic_net: net,
            actor_net: net,
            tanh_mean: true,
            log_std_min: -5.0,
            log_std_max: 2.0,
            data: DataConfig {
                normalize_obs: true,
                reward_norm: RewardNorm::ReturnRange,
            },
            train: LoopConfig::default(),
        }
    }
}

pub struct Iql {
    cfg: IqlConfig,
    spec: DataSpec,
    device: Device,
    engine: Engine,
    q: TwinQ,
    q_target: TwinQ,
    v: ValueNet,
    actor: GaussianActor,
    q_optim: ModuleOptimizer,
    v_optim: ModuleOptimizer,
    actor_optim: ModuleOptimizer,
}

impl IqlConfig {
    /// Every setting in its allowed range, named as in the config, before any work.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::open_unit("expectile", self.expectile)?;
        check::non_negative("beta", self.beta)?;
        check::positive("exp_adv_max", self.exp_adv_max)?;
        check::discount("discount", self.discount)?;
        check::rate("target_ema", self.target_ema)?;
        check::positive("critic_lr", self.critic_lr)?;
        check::positive("actor_lr", self.actor_lr)?;
        check::positive("adam_eps", self.adam_eps)?;
        self.critic_net.validate("critic_net")?;
        self.actor_net.validate("actor_net")?;
        check_log_std(self.log_std_min, self.log_std_max)?;
        self.train.validate()
    }
}

impl Iql {
    /// Fresh networks for `spec` on a training (autodiff) `device`, initialised from `seed`.
    pub fn new(cfg: IqlConfig, spec: DataSpec, device: &Device, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let rng = &mut ChaCha8Rng::seed_from_u64(seed);
        let (od, ad) = (spec.obs_dim, spec.act_dim);
        let q = TwinQ::new(&cfg.critic_net, od, ad, rng, device);
        let q_target = target_copy(TwinQ::new(&cfg.critic_net, od, ad, rng, device), &q);
        let v = ValueNet::new(&cfg.critic_net, od, rng, device);
        let actor = GaussianActor::new(
            &cfg.actor_net,
            od,
            ad,
            cfg.tanh_mean,
            (cfg.log_std_min, cfg.log_std_max),
            rng,
            device,
        );
        Ok(Self {
            q_optim: adam(cfg.adam_eps),
            v_optim: adam(cfg.adam_eps),
            actor_optim: adam(cfg.adam_eps),
            cfg,
            spec,
            device: device.clone(),
            engine: Engine::for_device(device),
            q,
            q_target,
            v,
            actor,
        })
    }

    /// The trained actor; a critic-only run (`train_actor = false`) has none.
    fn actor(&self) -> Result<&GaussianActor> {
        if !self.cfg.train_actor {
            return Err(Error::Config(
                "this IQL run trained the critic only (train_actor = false): it has no policy"
                    .into(),
            ));
        }
        Ok(&self.actor)
    }

    /// The trained critic (frozen copies of the target twin Q and of V).
    pub fn critic(&self) -> IqlCritic {
        IqlCritic::from_parts(
            self.q_target.clone(),
            self.v.clone(),
            self.spec.clone(),
            &self.device,
        )
    }

    /// Actor learning rate at `step` (cosine decay to 0 over the run, as torch's CosineAnnealingLR).
    fn actor_lr(&self, step: usize) -> f64 {
        if !self.cfg.actor_cosine_schedule {
            return self.cfg.actor_lr;
        }
        let t = step.min(self.cfg.train.steps) as f64 / self.cfg.train.steps.max(1) as f64;
        self.cfg.actor_lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }

    fn update_tensors(&mut self, b: BatchTensors, step: usize) -> Metrics {
        let (cfg, engine) = (&self.cfg, self.engine);
        let obs_act = Tensor::cat(vec![b.obs.clone(), b.act.clone()], 1);
        let (reward, not_done) = (b.reward.clone(), b.done.clone() * -1.0 + 1.0);

        // Steps 1 and 2 are independent but for V(s') (from before V's update, as CORL), which
        // the V task computes first and hands over: on the CPU each task runs on a thread of its
        // own.
        let (v_optim, q_optim) = (&mut self.v_optim, &mut self.q_optim);
        let (next_v_tx, next_v_rx) = std::sync::mpsc::channel();
        let (v_step, q_step) = offrl_kernels::join(
            engine.is_host(),
            || {
                let v = TrainingMlp::new(&self.v.net, engine);
                let next_v = column(v.eval(b.next_obs.clone()));
                next_v_tx.send(next_v).expect("the Q task waits for V(s')");
                let target =
                    [&self.q_target.q1, &self.q_target.q2].map(|q| TrainingMlp::new(q, engine));
                let (v_loss, adv) = value_loss(&v, &target, b.obs.clone(), obs_act.clone(), cfg);
                let mut grads = GradientsParams::new();
                v.register_grads(&mut v_loss.backward(), &mut grads);
                let updated = v_optim.step(cfg.critic_lr, self.v.clone(), grads);
                (updated, v_loss, adv)
            },
            || {
                let q = [&self.q.q1, &self.q.q2].map(|q| TrainingMlp::new(q, engine));
                let next_v_rx = next_v_rx; // moved in: a receiver is not shared between threads
                let next_v = || next_v_rx.recv().expect("the V task sends V(s')");
                let (q_loss, q1_value) =
                    twin_q_loss(&q, obs_act.clone(), reward, not_done, next_v, cfg);
                let mut grads = GradientsParams::new();
                let mut q_grads = q_loss.backward();
                for net in &q {
                    net.register_grads(&mut q_grads, &mut grads);
                }
                let updated = q_optim.step(cfg.critic_lr, self.q.clone(), grads);
                (updated, q_loss, q1_value)
            },
        );
        let ((v, v_loss, adv), (q, q_loss, q1_value)) = (v_step, q_step);
        (self.v, self.q) = (v, q);
        self.q_target = self.q_target.clone().soft_update(&self.q, cfg.target_ema);

        let mut metrics = vec![
            ("v_loss", scalar(&v_loss)),
            ("q_loss", scalar(&q_loss)),
            ("q_mean", scalar(&q1_value.mean())),
            ("adv_mean", scalar(&adv.clone().mean())),
        ];
        if cfg.train_actor {
            let actor_loss = awr_loss(&self.actor, b.obs, b.act, adv, cfg);
            let lr = self.actor_lr(step);
            let grads = GradientsParams::from_grads(actor_loss.backward(), &self.actor);
            self.actor = self.actor_optim.step(lr, self.actor.clone(), grads);
            metrics.push(("actor_loss", scalar(&actor_loss)));
            metrics.push(("actor_lr", lr));
        }
        metrics
    }
}

/// Step 1, V: expectile regression of `V(s)` onto the target twin's `min(Q̄₁, Q̄₂)(s, a)`.
/// Returns the loss and the advantage `Q̄ − V(s)` (`[n]`).
fn value_loss(
    v: &TrainingMlp,
    target: &[TrainingMlp; 2],
    obs: Tensor<2>,
    obs_act: Tensor<2>,
    cfg: &IqlConfig,
) -> (Tensor<1>, Tensor<1>) {
    let target_q =
        column(target[0].eval(obs_act.clone())).min_pair(column(target[1].eval(obs_act)));
    let adv = target_q - column(v.forward(obs));
    let weight = (adv.clone().lower_elem(0.0).float() * -1.0 + cfg.expectile).abs();
    ((weight * adv.clone().powi_scalar(2)).mean(), adv)
}

/// Step 2, the twin Q: both regress `r + γ (1 − d) V(s')`; `next_v` gives `V(s')` when it is needed
/// (after the twin's forward passes). Returns the loss and `Q₁(s, a)`.
fn twin_q_loss(
    q: &[TrainingMlp; 2],
    obs_act: Tensor<2>,
    reward: Tensor<1>,
    not_done: Tensor<1>,
    next_v: impl FnOnce() -> Tensor<1>,
    cfg: &IqlConfig,
) -> (Tensor<1>, Tensor<1>) {
    let (q1_value, q2_value) = (
        column(q[0].forward(obs_act.clone())),
        column(q[1].forward(obs_act)),
    );
    let target = reward + not_done * next_v() * cfg.discount;
    let loss = ((q1_value.clone() - target.clone()).powi_scalar(2).mean()
        + (q2_value - target).powi_scalar(2).mean())
        * 0.5;
    (loss, q1_value)
}

/// Step 3, the actor: advantage-weighted regression, `−exp(β A) log π(a|s)` with the weights clipped at
/// `exp_adv_max` (no gradient through the advantage).
fn awr_loss(
    actor: &GaussianActor,
    obs: Tensor<2>,
    act: Tensor<2>,
    adv: Tensor<1>,
    cfg: &IqlConfig,
) -> Tensor<1> {
    let exp_adv = (adv.detach() * cfg.beta).exp().clamp_max(cfg.exp_adv_max);
    let bc = actor.log_prob(obs, act) * -1.0;
    (exp_adv * bc).mean()
}

impl OfflineAlgorithm for Iql {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self) -> &DataSpec {
        &self.spec
    }

    fn update(&mut self, batch: &Batch, step: usize) -> Result<Metrics> {
        let b = self.spec.batch_tensors(batch, &self.device);
        Ok(self.update_tensors(b, step))
    }

    fn policy(&self) -> Result<Box<dyn Policy>> {
        Ok(Box::new(NetPolicy::new(
            self.actor()?,
            GaussianActor::mean,
            &self.spec,
        )))
    }

    fn sampling_policy(&self, seed: u64) -> Result<Box<dyn Policy>> {
        Ok(Box::new(SampledNetPolicy::new(
            self.actor()?,
            GaussianActor::sample_with,
            &self.spec,
            seed,
        )))
    }

    fn value_function(&self) -> Option<Box<dyn ActionScorer>> {
        Some(Box::new(self.critic()))
    }

    /// A critic-only run has no policy to probe.
    fn diagnostics(&self, probe: &Probe) -> Result<Metrics> {
        if !self.cfg.train_actor {
            return Ok(Metrics::new());
        }
        policy_diagnostics(self, probe)
    }

    fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()> {
        parts.module("q", &mut self.q, Some(&mut self.q_optim))?;
        parts.target("q_target", &mut self.q_target)?;
        parts.module("v", &mut self.v, Some(&mut self.v_optim))?;
        parts.module("actor", &mut self.actor, Some(&mut self.actor_optim))
    }
}

/// A trained IQL critic for RTB / IDQL: the target twin Q (min of the two; IQL extracts its
/// policy with the target critic) and V, frozen (no parameter gradients), on raw observations and
/// environment actions (normalisation and action scaling happen inside, so gradients w.r.t. the
/// action are w.r.t. the environment action). Values are in the critic's training units:
/// rewards multiplied by [`reward_scale`](Self::reward_scale).
#[derive(Debug, Clone)]
pub struct IqlCritic {
    q: TwinQ,
    v: ValueNet,
    spec: DataSpec,
    maps: SpecTensors,
    /// Host copies of the twin Q for [`IqlCritic::action_gradient`], made on first use (the
    /// critic is frozen); `None` inside when the networks are not on the CPU backend.
    host_q: OnceLock<Option<(HostMlp, HostMlp)>>,
    engine: Engine,
}

/// `∇ₓ min(Q1, Q2)` at the rows of `x` (`[n, d_in]`). The minimum passes the gradient of the
/// smaller network (the first on ties): each row goes back through that network only, half the
/// backward work of sending a zero gradient through the other.
fn min_q_input_grad(q1: &HostMlp, q2: &HostMlp, x: &[f32]) -> Vec<f32> {
    let d_in = q1.d_in();
    let n = x.len() / d_in;
    let (v1, tape1) = q1.forward_tape(x.to_vec(), n);
    let (v2, tape2) = q2.forward_tape(x.to_vec(), n);
    let (rows1, rows2): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| v1[i] <= v2[i]);
    let mut grad = vec![0.0f32; n * d_in];
    for (net, tape, rows) in [(q1, &tape1, &rows1), (q2, &tape2, &rows2)] {
        if rows.is_empty() {
            continue;
        }
        let ones = vec![1.0f32; rows.len()];
        let (g, _) = net.backward(&tape.select(rows), &ones, true, false);
        let g = g.expect("the input gradient was asked for");
        for (&row, g) in rows.iter().zip(g.chunks_exact(d_in)) {
            grad[row * d_in..(row + 1) * d_in].copy_from_slice(g);
        }
    }
    grad
}

impl IqlCritic {
    fn from_parts(q: TwinQ, v: ValueNet, spec: DataSpec, device: &Device) -> Self {
        Self {
            q: q.no_grad(),
            v: v.no_grad(),
            maps: spec.tensors(device),
            spec,
            host_q: OnceLock::new(),
            engine: Engine::for_device(device),
        }
    }

    /// `∂ min(Q1, Q2) / ∂a` (row-major `[n, act_dim]`) at raw observations and environment
    /// actions (host data), computed by the fused host executors; `None` when the critic is not
    /// on the CPU backend. Equals burn's autodiff of [`IqlCritic::q`] (tested).
    pub fn action_gradient(&self, obs: &[f32], actions: &[f32], n: usize) -> Option<Vec<f32>> {
        let (q1, q2) = self
            .host_q
            .get_or_init(|| {
                self.engine
                    .is_host()
                    .then(|| (HostMlp::from_mlp(&self.q.q1), HostMlp::from_mlp(&self.q.q2)))
            })
            .as_ref()?;
        let (od, ad) = (self.spec.obs_dim, self.spec.act_dim);
        let (obs, act) = (
            self.spec.normalize_obs(obs),
            self.spec.action_to_unit(actions),
        );
        let x: Vec<f32> = (0..n)
            .flat_map(|i| {
                obs[i * od..(i + 1) * od]
                    .iter()
                    .chain(&act[i * ad..(i + 1) * ad])
                    .copied()
            })
            .collect();
        // Each thread takes its block of rows through both networks and back (kernels unsplit).
        let d_in = od + ad;
        let g = Shards::of(n)
            .map_concat(|_, rows| min_q_input_grad(q1, q2, &x[rows.start * d_in..rows.end * d_in]));
        let (_, half) = self.spec.action_affine();
        let grad = g
            .chunks_exact(d_in)
            .flat_map(|g| g[od..].iter().zip(&half).map(|(g, h)| g / h))
            .collect();
        Some(grad)
    }

    /// Load from a checkpoint folder (`.../checkpoints/step-N`) or a run directory (its newest
    /// checkpoint) of an `iql` or `critic` run. Use an autodiff `device` to differentiate Q.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let dir = Checkpoint::resolve(path)?;
        let ck = Checkpoint::open(&dir, Some(NAME))?;
        let bad = |message: String| Error::Checkpoint {
            path: dir.clone(),
            message,
        };
        let cfg: IqlConfig =
            serde_json::from_value(ck.meta.config.get("config").cloned().unwrap_or_default())
                .map_err(|e| bad(format!("bad IQL config: {e}")))?;
        let spec: DataSpec =
            serde_json::from_value(ck.meta.extra.get("spec").cloned().unwrap_or_default())
                .map_err(|e| bad(format!("bad data spec: {e}")))?;
        // Parameters are overwritten by the checkpoint's; the generator only shapes the networks.
        let rng = &mut ChaCha8Rng::seed_from_u64(0);
        let q = TwinQ::new(&cfg.critic_net, spec.obs_dim, spec.act_dim, rng, device);
        let v = ValueNet::new(&cfg.critic_net, spec.obs_dim, rng, device);
        let q = ck.load_module("q_target", q)?;
        let v = ck.load_module("v", v)?;
        Ok(Self::from_parts(q, v, spec, device))
    }

    /// `min(Q1, Q2)(s, a)`, `[n]`, for raw observations `[n, obs_dim]` and environment actions
    /// `[n, act_dim]`; differentiable w.r.t. `act` (make it `require_grad()` on an autodiff device).
    pub fn q(&self, obs: Tensor<2>, act: Tensor<2>) -> Tensor<1> {
        self.q
            .min(self.maps.normalize_obs(obs), self.maps.action_to_unit(act))
    }

    /// The device of its parameters.
    pub fn device(&self) -> Device {
        self.q.q1.output.weight.val().device()
    }

    /// `V(s)`, `[n]`, for raw observations `[n, obs_dim]`.
    pub fn v(&self, obs: Tensor<2>) -> Tensor<1> {
        self.v.forward(self.maps.normalize_obs(obs))
    }

    /// The factor rewards were multiplied by in training (Q and V are in those units).
    pub fn reward_scale(&self) -> f32 {
        self.spec.reward_scale
    }

    pub fn spec(&self) -> &DataSpec {
        &self.spec
    }
}

/// The critic as a scorer of (raw observation, environment action) pairs: `Q(s, a)`, the min of
/// the twin heads (what IDQL chooses proposals by and the probes report).
impl ActionScorer for IqlCritic {
    fn score(&self, obs: &[f32], act: &[f32], n: usize) -> Result<Vec<f32>> {
        let device = self.device();
        let obs = crate::nn::tensor2(obs, n, self.spec.obs_dim, &device);
        let act = crate::nn::tensor2(act, n, self.spec.act_dim, &device);
        Ok(crate::nn::to_vec(self.q(obs, act)))
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // index loops mirror the math of the chain
mod tests {
    use super::*;
    use crate::dataset::testing;
    use crate::dataset::Dataset;
    use crate::nn;

    /// A 3-state chain with one-hot observations: in state k every action of `ACTIONS` is in the
    /// data with reward `R[k][i]`; state k moves to k+1 whatever the action; state 2 is terminal.
    const ACTIONS: [f32; 3] = [-0.5, 0.0, 0.5];
    const R: [[f32; 3]; 3] = [[0.0, 1.0, 0.2], [0.5, -0.5, 0.0], [0.3, 1.0, -0.2]];
    const GAMMA: f64 = 0.9;

    fn chain_dataset(copies: usize) -> Dataset {
        let one_hot = |k: usize| {
            let mut v = vec![0.0f32; 4];
            v[k] = 1.0;
            v
        };
        let mut d = testing::empty(4, 1, -1.0, 1.0);
        for _ in 0..copies {
            for k in 0..3 {
                for (i, &a) in ACTIONS.iter().enumerate() {
                    testing::push(&mut d, &one_hot(k), &[a], R[k][i], &one_hot(k + 1), k == 2);
                }
            }
        }
        d
    }

    /// The τ-expectile of equally weighted values: the v solving Σ |τ − 1(q < v)| (q − v) = 0
    /// (piecewise linear and decreasing in v; bisection).
    fn expectile(values: &[f64], tau: f64) -> f64 {
        let f = |v: f64| -> f64 {
            values
                .iter()
                .map(|&q| if q < v { 1.0 - tau } else { tau } * (q - v))
                .sum()
        };
        let (mut lo, mut hi) = (-10.0, 10.0);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if f(mid) > 0.0 {
                lo = mid
            } else {
                hi = mid
            }
        }
        0.5 * (lo + hi)
    }

    /// Analytic Q(k, a_i) and V(k) of the chain under expectile τ (backward induction).
    fn analytic(tau: f64) -> ([[f64; 3]; 3], [f64; 3]) {
        let mut q = [[0.0; 3]; 3];
        let mut v = [0.0; 3];
        for k in (0..3).rev() {
            let next = if k == 2 { 0.0 } else { GAMMA * v[k + 1] };
            for i in 0..3 {
                q[k][i] = f64::from(R[k][i]) + next;
            }
            v[k] = expectile(&q[k], tau);
        }
        (q, v)
    }

    fn test_config(tau: f64, steps: usize) -> IqlConfig {
        let net = NetConfig::new(2, 32, false);
        IqlConfig {
            expectile: tau,
            discount: GAMMA,
            target_ema: 0.05,
            critic_lr: 3e-3,
            actor_lr: 3e-3,
            actor_cosine_schedule: false,
            critic_net: net,
            actor_net: net,
            data: DataConfig {
                normalize_obs: false,
                reward_norm: RewardNorm::None,
            },
            train: LoopConfig {
                steps,
                batch_size: 64,
                log_every: 100,
                checkpoint_every: 0,
                eval_every: 0,
                holdout: 0.0,
            },
            ..IqlConfig::default()
        }
    }

    fn train_chain(cfg: IqlConfig, seed: u64) -> Iql {
        let data = chain_dataset(1);
        let spec = DataSpec::from_dataset(&data, &cfg.data).unwrap();
        let steps = cfg.train.steps;
        let mut iql = Iql::new(cfg, spec, &Device::flex().autodiff(), seed).unwrap();
        let batch = testing::full_batch(&data);
        for step in 0..steps {
            let m = iql.update(&batch, step).unwrap();
            assert!(m.iter().all(|(_, v)| v.is_finite()), "step {step}: {m:?}");
        }
        iql
    }

    fn critic_values(critic: &IqlCritic) -> ([[f64; 3]; 3], [f64; 3]) {
        let device = Device::flex();
        let mut obs = vec![];
        let mut act = vec![];
        for k in 0..3 {
            for &a in &ACTIONS {
                let mut o = vec![0.0f32; 4];
                o[k] = 1.0;
                obs.extend(o);
                act.push(a);
            }
        }
        let critic = IqlCritic::from_parts(
            critic.q.valid(),
            critic.v.valid(),
            critic.spec.clone(),
            &device,
        );
        let qs = nn::to_vec(critic.q(
            nn::tensor2(&obs, 9, 4, &device),
            nn::tensor2(&act, 9, 1, &device),
        ));
        let vs = nn::to_vec(critic.v(nn::tensor2(&obs, 9, 4, &device)));
        let mut q = [[0.0; 3]; 3];
        let mut v = [0.0; 3];
        for k in 0..3 {
            for i in 0..3 {
                q[k][i] = f64::from(qs[3 * k + i]);
            }
            v[k] = f64::from(vs[3 * k]);
        }
        (q, v)
    }

    /// Known answer: on the chain, learned V(k) and Q(k, a) match the analytic expectile values
    /// (backward induction through γ) within 0.01 (rewards are O(1)); for τ = 0.9 V(k) sits well
    /// above the mean and below the max of the in-support Q, as analytic. 5000 full-batch steps:
    /// at 2500 the τ = 0.9 expectile V is still 0.009–0.014 short of converged.
    #[test]
    fn critic_matches_analytic_expectile_values_on_a_chain() {
        for tau in [0.7, 0.9] {
            let iql = train_chain(test_config(tau, 5000), 1);
            let (q, v) = critic_values(&iql.critic());
            let (q_star, v_star) = analytic(tau);
            for k in 0..3 {
                assert!(
                    (v[k] - v_star[k]).abs() < 0.01,
                    "tau {tau}: V({k}) = {} vs analytic {}",
                    v[k],
                    v_star[k]
                );
                for i in 0..3 {
                    assert!(
                        (q[k][i] - q_star[k][i]).abs() < 0.01,
                        "tau {tau}: Q({k}, {}) = {} vs analytic {}",
                        ACTIONS[i],
                        q[k][i],
                        q_star[k][i]
                    );
                }
            }
        }
    }

    /// AWR's weighted maximum likelihood: with a flexible mean the policy mean in state k is the
    /// exp(β A)-weighted average of the in-support actions (A from the analytic critic).
    #[test]
    fn awr_actor_mean_is_the_advantage_weighted_action() {
        let tau = 0.7;
        let mut cfg = test_config(tau, 2500);
        cfg.beta = 3.0;
        let iql = train_chain(cfg, 2);
        let (q_star, v_star) = analytic(tau);
        let mut policy = iql.policy().unwrap();
        let mut obs = vec![0.0f32; 12];
        for k in 0..3 {
            obs[4 * k + k] = 1.0;
        }
        let act = policy.act(&obs, 3).unwrap();
        for k in 0..3 {
            let w: Vec<f64> = (0..3)
                .map(|i| (3.0 * (q_star[k][i] - v_star[k])).exp().min(100.0))
                .collect();
            let want: f64 = w
                .iter()
                .zip(ACTIONS)
                .map(|(w, a)| w * f64::from(a))
                .sum::<f64>()
                / w.iter().sum::<f64>();
            assert!(
                (f64::from(act[k]) - want).abs() < 0.01,
                "state {k}: mean action {} vs weighted {want}",
                act[k]
            );
        }
    }

    /// RTB needs ∇_a Q: the critic's gradient w.r.t. the action equals a finite difference.
    #[test]
    fn critic_is_differentiable_wrt_the_action() {
        let iql = train_chain(test_config(0.7, 200), 3);
        let device = Device::flex().autodiff();
        let critic = iql.critic();
        let obs = nn::tensor2(&[0.0, 1.0, 0.0, 0.0], 1, 4, &device);
        let a0 = 0.2f32;
        let act = nn::tensor2(&[a0], 1, 1, &device).require_grad();
        let q = critic.q(obs.clone(), act.clone());
        let grads = q.sum().backward();
        let g = nn::to_vec(act.grad(&grads).expect("gradient w.r.t. the action"))[0];
        let eps = 1e-2;
        let qa = |a: f32| nn::to_vec(critic.q(obs.clone(), nn::tensor2(&[a], 1, 1, &device)))[0];
        let fd = (qa(a0 + eps) - qa(a0 - eps)) / (2.0 * eps);
        assert!(
            (g - fd).abs() < 1e-2 * (1.0 + fd.abs()),
            "grad {g} vs fd {fd}"
        );
    }

    /// `algos::train` (run directory, checkpoints, resume) for an IQL config.
    fn train_run(
        cfg: &IqlConfig,
        data: &Dataset,
        dir: &Path,
        seed: u64,
    ) -> Result<Box<dyn OfflineAlgorithm>> {
        let config = serde_json::to_value(cfg).unwrap();
        let device = Device::flex().autodiff();
        super::super::train(
            crate::algos::AlgoKind::Iql,
            &config,
            data,
            Some(dir),
            seed,
            &device,
            None,
        )
        .map(|t| t.algo)
    }

    #[test]
    fn nan_reward_stops_training_naming_step_and_loss() {
        let mut data = chain_dataset(1);
        data.rewards.iter_mut().for_each(|r| *r = f32::NAN);
        let mut cfg = test_config(0.7, 10);
        cfg.train.log_every = 1;
        let dir = tempfile::tempdir().unwrap();
        let err = train_run(&cfg, &data, dir.path(), 0)
            .err()
            .expect("NaN must stop training");
        let msg = err.to_string();
        assert!(
            matches!(err, Error::NonFinite { step: 0, ref what, .. } if what == "q_loss"),
            "{msg}"
        );
        assert!(msg.contains("step 0") && msg.contains("q_loss"), "{msg}");
    }

    /// Save → load gives bit-identical critics and policies, and a run resumed from a checkpoint
    /// ends with exactly the parameters of the uninterrupted run.
    #[test]
    fn checkpoint_round_trip_and_resume_are_exact() {
        let data = chain_dataset(2);
        let device = Device::flex().autodiff();
        let mut cfg = test_config(0.7, 40);
        cfg.train.checkpoint_every = 20;
        let train = |dir: &Path| train_run(&cfg, &data, dir, 5).unwrap();

        // Uninterrupted.
        let full_dir = tempfile::tempdir().unwrap();
        let full = train(full_dir.path());

        // Interrupted after the step-20 checkpoint: delete the final one and train again.
        let part_dir = tempfile::tempdir().unwrap();
        train(part_dir.path());
        let ck40 = Checkpoint::dir_for_step(&part_dir.path().join("checkpoints"), 40);
        std::fs::remove_dir_all(&ck40).unwrap();
        let resumed = train(part_dir.path());

        let probe = |algo: &dyn OfflineAlgorithm| {
            let mut p = algo.policy().unwrap();
            p.act(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0], 2).unwrap()
        };
        assert_eq!(probe(full.as_ref()), probe(resumed.as_ref()));

        // The critic loaded from disk equals the trained one exactly.
        let ck = Checkpoint::dir_for_step(&full_dir.path().join("checkpoints"), 40);
        let loaded = IqlCritic::load(full_dir.path(), &device).unwrap();
        let from_ck = IqlCritic::load(&ck, &device).unwrap();
        let reloaded = super::super::load(&ck, &device).unwrap();
        assert_eq!(probe(full.as_ref()), probe(reloaded.as_ref()));
        let obs = nn::tensor2(&[0.0, 0.0, 1.0, 0.0], 1, 4, &device);
        let act = nn::tensor2(&[0.3], 1, 1, &device);
        let q_of = |c: &IqlCritic| nn::to_vec(c.q(obs.clone(), act.clone()));
        assert_eq!(q_of(&loaded), q_of(&from_ck));
        let resumed_ck = Checkpoint::dir_for_step(&part_dir.path().join("checkpoints"), 40);
        assert_eq!(
            q_of(&loaded),
            q_of(&IqlCritic::load(&resumed_ck, &device).unwrap())
        );
        // A different config refuses to resume into the same run directory.
        let mut other = cfg.clone();
        other.beta = 1.0;
        let err = train_run(&other, &data, full_dir.path(), 5)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("config.beta"), "{err}");
    }
}
