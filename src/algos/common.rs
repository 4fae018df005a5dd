//! What the offline algorithms share: the data spec (dims, action bounds, observation
//! normalisation, reward scaling), minibatch → tensors, the Q/V/actor networks, soft target
//! updates, seeded noise, and saving a generator's state for exact resume.
//!
//! Conventions every algorithm follows:
//! - networks see *normalised* observations `(o − mean) / std` (identity when normalisation is off)
//!   and *unit* actions in [−1, 1] (`2 (a − low) / (high − low) − 1`; identity for infinite
//!   bounds), so tanh-squashed actors fit any box; the [`DataSpec`] converts both ways and is
//!   stored in every checkpoint;
//! - rewards are multiplied by `spec.reward_scale` (IQL's `1000 / (max return − min return)` for
//!   locomotion data, see [`RewardNorm`]).

use std::f32::consts::PI;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::backend;
use crate::dataset::{Batch, Dataset};
use crate::error::{Error, Result};
use crate::nn::{self, host, Mlp, MlpConfig};

// ---------------------------------------------------------------------------------------------
// Data spec
// ---------------------------------------------------------------------------------------------

/// How rewards are scaled before training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardNorm {
    /// Rewards as stored.
    #[default]
    None,
    /// IQL / CORL locomotion scaling: `r · 1000 / (max episode return − min episode return)`,
    /// which makes the critic's scale independent of the task's reward magnitude.
    ReturnRange,
}

/// Data-side options of a run (shared by every algorithm's config as its `[data]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Normalise observations with the dataset's per-dimension mean and std (+1e-3, as CORL).
    pub normalize_obs: bool,
    pub reward_norm: RewardNorm,
}

/// Everything about the data an algorithm needs to build its networks and to map between the
/// environment's spaces and the networks' (normalised) spaces. Stored in checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub obs_dim: usize,
    pub act_dim: usize,
    pub action_low: Vec<f32>,
    pub action_high: Vec<f32>,
    pub obs_mean: Vec<f32>,
    pub obs_std: Vec<f32>,
    pub reward_scale: f32,
}

/// Added to the observation std, as CORL does, so constant dimensions do not divide by zero.
const OBS_STD_EPS: f32 = 1e-3;

impl DataSpec {
    /// The spec of `data` under `cfg` (computes normalisation statistics and the reward scale).
    pub fn from_dataset(data: &Dataset, cfg: &DataConfig) -> Result<Self> {
        if data.is_empty() {
            return Err(Error::InvalidData("the dataset has no transitions".into()));
        }
        let (od, ad) = (data.obs_dim(), data.act_dim());
        let (low, high) = (&data.meta.action_low, &data.meta.action_high);
        if low.len() != ad || high.len() != ad {
            return Err(Error::InvalidData(format!(
                "action bounds have {} / {} entries, act_dim is {ad}",
                low.len(),
                high.len()
            )));
        }
        let (obs_mean, obs_std) = if cfg.normalize_obs {
            let (mean, std) = data.obs_stats();
            let std = std.iter().map(|s| s + OBS_STD_EPS).collect();
            (mean, std)
        } else {
            (vec![0.0; od], vec![1.0; od])
        };
        let reward_scale = match cfg.reward_norm {
            RewardNorm::None => 1.0,
            RewardNorm::ReturnRange => data.iql_reward_scale()?,
        };
        Ok(Self {
            obs_dim: od,
            act_dim: ad,
            action_low: low.clone(),
            action_high: high.clone(),
            obs_mean,
            obs_std,
            reward_scale,
        })
    }

    /// Center and half-width of each action dimension (0 and 1 where a bound is infinite).
    pub fn action_affine(&self) -> (Vec<f32>, Vec<f32>) {
        self.action_low
            .iter()
            .zip(&self.action_high)
            .map(|(&lo, &hi)| {
                if lo.is_finite() && hi.is_finite() && hi > lo {
                    ((hi + lo) / 2.0, (hi - lo) / 2.0)
                } else {
                    (0.0, 1.0)
                }
            })
            .unzip()
    }

    /// `[n, obs_dim]` raw observations → normalised, row-major.
    pub fn normalize_obs(&self, obs: &[f32]) -> Vec<f32> {
        standardize(obs, &self.obs_mean, &self.obs_std)
    }

    /// Normalised observations → raw, row-major (the inverse of [`DataSpec::normalize_obs`]).
    pub fn denormalize_obs(&self, obs: &[f32]) -> Vec<f32> {
        let d = self.obs_dim;
        obs.iter()
            .enumerate()
            .map(|(i, &v)| v * self.obs_std[i % d] + self.obs_mean[i % d])
            .collect()
    }

    /// Environment actions → unit actions in [−1, 1].
    pub fn action_to_unit(&self, act: &[f32]) -> Vec<f32> {
        let (c, h) = self.action_affine();
        standardize(act, &c, &h)
    }

    /// Unit actions → environment actions, clipped to the bounds.
    pub fn action_from_unit(&self, unit: &[f32]) -> Vec<f32> {
        let (c, h) = self.action_affine();
        let d = self.act_dim;
        unit.iter()
            .enumerate()
            .map(|(i, &u)| {
                let j = i % d;
                (c[j] + h[j] * u).clamp(self.action_low[j], self.action_high[j])
            })
            .collect()
    }

    /// The same maps as tensors, for callers holding tensors (RTB differentiates Q through them):
    /// `(obs_mean [1, od], obs_std [1, od], act_center [1, ad], act_half [1, ad])`.
    pub fn tensors(&self, device: &Device) -> SpecTensors {
        let (c, h) = self.action_affine();
        SpecTensors {
            obs_mean: nn::tensor2(&self.obs_mean, 1, self.obs_dim, device),
            obs_std: nn::tensor2(&self.obs_std, 1, self.obs_dim, device),
            act_center: nn::tensor2(&c, 1, self.act_dim, device),
            act_half: nn::tensor2(&h, 1, self.act_dim, device),
        }
    }

    /// A minibatch as tensors in the networks' spaces (normalised obs, unit actions, scaled rewards).
    pub fn batch_tensors(&self, b: &Batch, device: &Device) -> BatchTensors {
        let n = b.size;
        let rewards: Vec<f32> = b.rewards.iter().map(|r| r * self.reward_scale).collect();
        BatchTensors {
            obs: nn::tensor2(
                &self.normalize_obs(&b.observations),
                n,
                self.obs_dim,
                device,
            ),
            act: nn::tensor2(&self.action_to_unit(&b.actions), n, self.act_dim, device),
            reward: tensor1(&rewards, device),
            next_obs: nn::tensor2(
                &self.normalize_obs(&b.next_observations),
                n,
                self.obs_dim,
                device,
            ),
            done: tensor1(&b.terminals, device),
        }
    }
}

/// Row-major `x` with `(x − shift) / scale` applied per column.
fn standardize(x: &[f32], shift: &[f32], scale: &[f32]) -> Vec<f32> {
    let d = shift.len();
    x.iter()
        .enumerate()
        .map(|(i, &v)| (v - shift[i % d]) / scale[i % d])
        .collect()
}

/// [`DataSpec`]'s maps as broadcastable `[1, d]` tensors.
#[derive(Debug, Clone)]
pub struct SpecTensors {
    pub obs_mean: Tensor<2>,
    pub obs_std: Tensor<2>,
    pub act_center: Tensor<2>,
    pub act_half: Tensor<2>,
}

impl SpecTensors {
    pub fn normalize_obs(&self, obs: Tensor<2>) -> Tensor<2> {
        (obs - self.obs_mean.clone()) / self.obs_std.clone()
    }
    pub fn action_to_unit(&self, act: Tensor<2>) -> Tensor<2> {
        (act - self.act_center.clone()) / self.act_half.clone()
    }
}

/// A minibatch on a device: `obs`/`next_obs` `[B, od]`, `act` `[B, ad]`, `reward`/`done` `[B]`.
#[derive(Debug, Clone)]
pub struct BatchTensors {
    pub obs: Tensor<2>,
    pub act: Tensor<2>,
    pub reward: Tensor<1>,
    pub next_obs: Tensor<2>,
    pub done: Tensor<1>,
}

// ---------------------------------------------------------------------------------------------
// Tensors and noise
// ---------------------------------------------------------------------------------------------

/// A `[n]` tensor from a slice.
pub fn tensor1(data: &[f32], device: &Device) -> Tensor<1> {
    nn::tensor2(data, 1, data.len(), device).reshape([data.len()])
}

/// `[n, 1] → [n]`.
pub fn column(x: Tensor<2>) -> Tensor<1> {
    let [n, _] = x.dims();
    x.reshape([n])
}

/// A scalar tensor's value (forces the computation; used for logged metrics).
pub fn scalar<const D: usize>(x: &Tensor<D>) -> f64 {
    f64::from(x.clone().into_scalar::<f32>())
}

/// Standard normal noise `[rows, cols]` from a seeded rust generator (same numbers on every backend).
pub fn normal(rng: &mut ChaCha8Rng, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect();
    nn::tensor2(&v, rows, cols, device)
}

/// Uniform noise in `[low, high)`, `[rows, cols]`, from a seeded rust generator.
pub fn uniform(
    rng: &mut ChaCha8Rng,
    rows: usize,
    cols: usize,
    low: f32,
    high: f32,
    device: &Device,
) -> Tensor<2> {
    let v: Vec<f32> = (0..rows * cols)
        .map(|_| rng.random_range(low..high))
        .collect();
    nn::tensor2(&v, rows, cols, device)
}

/// Each row repeated `k` times in place: `[n, d] → [n·k, d]` (rows `i·k .. i·k+k` are copies of row i).
pub fn repeat_rows(x: Tensor<2>, k: usize) -> Tensor<2> {
    let [n, d] = x.dims();
    x.unsqueeze_dim::<3>(1).repeat_dim(1, k).reshape([n * k, d])
}

/// `log Σ exp` along dim 1 of `[n, k]` → `[n]`, stabilised by the (detached) row maximum.
pub fn logsumexp_rows(x: Tensor<2>) -> Tensor<1> {
    let max = x.clone().max_dim(1).detach();
    column((x - max.clone()).exp().sum_dim(1).log() + max)
}

/// Sum over action dims of the log-density of `N(mean, std²)` at `x`: `[n, d] → [n]`.
pub fn gaussian_log_prob(x: Tensor<2>, mean: Tensor<2>, log_std: Tensor<2>) -> Tensor<1> {
    let z = (x - mean) / log_std.clone().exp();
    let log_norm = 0.5 * (2.0 * PI).ln();
    column((z.powi_scalar(2) * (-0.5) - log_std - log_norm).sum_dim(1))
}

/// Serialisable state of a ChaCha generator (seed, stream, position): resume continues the
/// exact random sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    seed: [u8; 32],
    stream: u64,
    /// u128 as a string (JSON numbers are f64).
    word_pos: String,
}

impl RngState {
    pub fn of(rng: &ChaCha8Rng) -> Self {
        Self {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }
    pub fn restore(&self) -> Result<ChaCha8Rng> {
        use rand::SeedableRng;
        let pos: u128 = self
            .word_pos
            .parse()
            .map_err(|_| Error::InvalidData(format!("bad rng position `{}`", self.word_pos)))?;
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }

    /// The generator saved as `state.rng` by an algorithm's snapshot.
    pub fn restore_from(
        ck: &crate::train::checkpoint::Checkpoint,
        state: &serde_json::Value,
    ) -> Result<ChaCha8Rng> {
        let bad = |message: String| Error::Checkpoint {
            path: ck.dir.clone(),
            message,
        };
        let saved: RngState = serde_json::from_value(state.get("rng").cloned().unwrap_or_default())
            .map_err(|e| bad(format!("bad generator state: {e}")))?;
        saved.restore().map_err(|e| bad(e.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Networks
// ---------------------------------------------------------------------------------------------

/// Hidden-layer shape of an MLP (the `[network]`-style keys of algorithm configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub hidden: usize,
    pub width: usize,
    #[serde(default)]
    pub layer_norm: bool,
}

impl Default for NetConfig {
    /// 2 hidden layers of 256 (IQL, TD3+BC, BC in the papers and CORL).
    fn default() -> Self {
        Self {
            hidden: 2,
            width: 256,
            layer_norm: false,
        }
    }
}

/// Adam with ε = `eps` (the references use PyTorch's / optax's 1e-8; burn's default is 1e-5).
pub fn adam(eps: f64) -> burn::optim::ModuleOptimizer {
    nn::adam(eps, None)
}

impl NetConfig {
    /// An MLP whose linear layers get PyTorch's default init, `U(−1/√fan_in, 1/√fan_in)` for
    /// weights and biases, drawn from `rng` (not the backend's global generator, which tests and
    /// parallel trainings share): same seed → same network on every backend.
    pub fn mlp(&self, d_in: usize, d_out: usize, rng: &mut ChaCha8Rng, device: &Device) -> Mlp {
        // The config's layers are lazily initialised and replaced before any is materialised.
        let mut mlp = MlpConfig::new(d_in, d_out)
            .with_hidden(self.hidden)
            .with_width(self.width)
            .with_layer_norm(self.layer_norm)
            .init(device);
        let mut fan_in = d_in;
        for layer in mlp.layers.iter_mut() {
            *layer = uniform_linear(fan_in, self.width, rng, device);
            fan_in = self.width;
        }
        mlp.output = uniform_linear(fan_in, d_out, rng, device);
        mlp
    }
}

fn param2(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Param<Tensor<2>> {
    Param::from_tensor(nn::tensor2(&values, rows, cols, device))
}

fn uniform_linear(d_in: usize, d_out: usize, rng: &mut ChaCha8Rng, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f32).sqrt();
    let mut draw =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let weight = draw(d_in * d_out);
    let bias = draw(d_out);
    Linear {
        weight: param2(weight, d_in, d_out, device),
        bias: Some(Param::from_tensor(tensor1(&bias, device))),
    }
}

/// A `[d_in, d_out]` (burn's layout) weight distributed as PyTorch's `orthogonal_` on the
/// `[d_out, d_in]` matrix: Gram–Schmidt on a Gaussian matrix (Haar-distributed), times `gain`.
fn orthogonal_weight(d_in: usize, d_out: usize, gain: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    // Orthonormal columns of a tall [m, k] matrix; W = Q (d_out ≥ d_in) or Qᵀ.
    let (m, k) = (d_in.max(d_out), d_in.min(d_out));
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(k);
    while cols.len() < k {
        let mut v: Vec<f64> = (0..m)
            .map(|_| rng.sample::<f64, _>(StandardNormal))
            .collect();
        for q in &cols {
            let dot: f64 = q.iter().zip(&v).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(q).for_each(|(x, q)| *x -= dot * q);
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-6 {
            cols.push(v.into_iter().map(|x| x / norm).collect());
        }
    }
    // burn weight w[i][o] = W[o][i].
    let mut w = vec![0.0f32; d_in * d_out];
    for i in 0..d_in {
        for o in 0..d_out {
            let value = if d_out >= d_in {
                cols[i][o]
            } else {
                cols[o][i]
            };
            w[i * d_out + o] = (gain * value) as f32;
        }
    }
    w
}

/// Two independent Q networks on `[obs, act]`; their minimum counters over-estimation.
#[derive(Module, Debug)]
pub struct TwinQ {
    pub q1: Mlp,
    pub q2: Mlp,
}

impl TwinQ {
    pub fn new(
        net: &NetConfig,
        obs_dim: usize,
        act_dim: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Self {
        Self {
            q1: net.mlp(obs_dim + act_dim, 1, rng, device),
            q2: net.mlp(obs_dim + act_dim, 1, rng, device),
        }
    }
    /// `(Q1, Q2)`, each `[n]`.
    pub fn both(&self, obs: Tensor<2>, act: Tensor<2>) -> (Tensor<1>, Tensor<1>) {
        let x = Tensor::cat(vec![obs, act], 1);
        (
            column(self.q1.forward(x.clone())),
            column(self.q2.forward(x)),
        )
    }
    /// `min(Q1, Q2)`, `[n]`.
    pub fn min(&self, obs: Tensor<2>, act: Tensor<2>) -> Tensor<1> {
        let (a, b) = self.both(obs, act);
        a.min_pair(b)
    }

    /// This twin as a target network moved towards `source` by [`soft_update`]; on the CPU the
    /// two networks are blended at once, one per thread (each tensor alone is too small to split).
    pub fn soft_update(self, source: &TwinQ, tau: f64) -> TwinQ {
        let on_host = backend::host_kernels(&self.q1.output.weight.val().device());
        let (q1, q2) = host::join(
            on_host,
            || soft_update(self.q1, &source.q1, tau),
            || soft_update(self.q2, &source.q2, tau),
        );
        TwinQ { q1, q2 }
    }
}

/// A state-value network `V(s)`.
#[derive(Module, Debug)]
pub struct ValueNet {
    pub net: Mlp,
}

impl ValueNet {
    pub fn new(net: &NetConfig, obs_dim: usize, rng: &mut ChaCha8Rng, device: &Device) -> Self {
        Self {
            net: net.mlp(obs_dim, 1, rng, device),
        }
    }
    pub fn forward(&self, obs: Tensor<2>) -> Tensor<1> {
        column(self.net.forward(obs))
    }
}

/// Gaussian policy with a state-independent log-std (IQL's actor, Gaussian BC):
/// `a ~ N(μ(s), σ²)`, `μ(s) = tanh(mlp(s))` when `tanh_mean` (IQL reference: the mean is squashed,
/// the distribution is not), `log σ` clamped to `[log_std_min, log_std_max]`.
#[derive(Module, Debug)]
pub struct GaussianActor {
    pub mean: Mlp,
    pub log_std: Param<Tensor<1>>,
    #[module(skip)]
    pub tanh_mean: bool,
    #[module(skip)]
    pub log_std_min: f32,
    #[module(skip)]
    pub log_std_max: f32,
}

impl GaussianActor {
    pub fn new(
        net: &NetConfig,
        obs_dim: usize,
        act_dim: usize,
        tanh_mean: bool,
        (log_std_min, log_std_max): (f32, f32),
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Self {
        Self {
            mean: net.mlp(obs_dim, act_dim, rng, device),
            log_std: Param::from_tensor(Tensor::zeros([act_dim], device)),
            tanh_mean,
            log_std_min,
            log_std_max,
        }
    }
    /// The mean action `[n, ad]` (the deterministic action used for evaluation).
    pub fn mean(&self, obs: Tensor<2>) -> Tensor<2> {
        let m = self.mean.forward(obs);
        if self.tanh_mean {
            m.tanh()
        } else {
            m
        }
    }
    /// Clamped log-std `[ad]`.
    pub fn log_std(&self) -> Tensor<1> {
        self.log_std.val().clamp(self.log_std_min, self.log_std_max)
    }
    /// `log π(a|s)` summed over action dims, `[n]`.
    pub fn log_prob(&self, obs: Tensor<2>, act: Tensor<2>) -> Tensor<1> {
        let mean = self.mean(obs);
        let [n, d] = mean.dims();
        let log_std = self.log_std().reshape([1, d]).repeat_dim(0, n);
        gaussian_log_prob(act, mean, log_std)
    }
}

/// A linear layer with the given `[d_in, d_out]` weights and zero bias.
fn linear_zero_bias(weight: Vec<f32>, d_in: usize, d_out: usize, device: &Device) -> Linear {
    Linear {
        weight: param2(weight, d_in, d_out, device),
        bias: Some(Param::from_tensor(Tensor::zeros([d_out], device))),
    }
}

/// Replace an MLP's linear layers with orthogonally initialised ones (hidden gain √2, output
/// gain `out_gain`, zero biases), as CORL's CQL does for its critics.
pub fn orthogonal_init(mut mlp: Mlp, out_gain: f64, rng: &mut ChaCha8Rng, device: &Device) -> Mlp {
    let mut linear = |old: &Linear, gain: f64| {
        let shape = old.weight.lazy_shape();
        let (d_in, d_out) = (shape[0], shape[1]);
        linear_zero_bias(
            orthogonal_weight(d_in, d_out, gain, rng),
            d_in,
            d_out,
            device,
        )
    };
    mlp.layers = mlp.layers.iter().map(|l| linear(l, 2f64.sqrt())).collect();
    mlp.output = linear(&mlp.output, out_gain);
    mlp
}

/// Replace an MLP's output layer with a Xavier-uniform one of gain `gain` and zero bias (CORL's
/// CQL actor: gain 1e-2, so the initial policy is close to N(0, e^{−1}) before the tanh).
pub fn xavier_output(mut mlp: Mlp, gain: f64, rng: &mut ChaCha8Rng, device: &Device) -> Mlp {
    let shape = mlp.output.weight.lazy_shape();
    let (d_in, d_out) = (shape[0], shape[1]);
    let bound = (gain * (6.0 / (d_in + d_out) as f64).sqrt()) as f32;
    let w = (0..d_in * d_out)
        .map(|_| rng.random_range(-bound..=bound))
        .collect();
    mlp.output = linear_zero_bias(w, d_in, d_out, device);
    mlp
}

// ---------------------------------------------------------------------------------------------
// Target networks
// ---------------------------------------------------------------------------------------------

/// Polyak averaging `target ← (1 − τ)·target + τ·source`, parameter by parameter (both modules
/// must have the same structure, e.g. the target is a clone of the source). The target stays
/// without gradients.
pub fn soft_update<M: Module>(target: M, source: &M, tau: f64) -> M {
    struct Collect(Vec<Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val().detach();
            let n = t.shape().num_elements();
            self.0.push(t.reshape([n]));
        }
    }
    struct Blend {
        sources: std::vec::IntoIter<Tensor<1>>,
        tau: f64,
    }
    impl ModuleMapper for Blend {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let src = self
                .sources
                .next()
                .expect("target and source have the same parameters");
            let tau = self.tau;
            param.map(|t| {
                let shape = t.shape();
                (t.detach() * (1.0 - tau) + src.reshape(shape) * tau).set_require_grad(false)
            })
        }
    }
    let mut collect = Collect(Vec::new());
    source.visit(&mut collect);
    target.map(&mut Blend {
        sources: collect.0.into_iter(),
        tau,
    })
}

/// A target network equal to `source`: `fresh` (a second, independently built module of the same
/// structure) with gradients off and `source`'s values copied in. (Not `source.clone().no_grad()`:
/// clones share lazily initialised parameters, so that would switch off the source's gradients.)
pub fn target_copy<M: Module>(fresh: M, source: &M) -> M {
    soft_update(fresh.no_grad(), source, 1.0)
}

/// Toy datasets for the algorithms' tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::dataset::{Batch, Dataset, Metadata, FORMAT_VERSION};

    /// An empty dataset with the given dims and action bounds.
    pub fn empty(obs_dim: usize, act_dim: usize, low: f32, high: f32) -> Dataset {
        Dataset {
            meta: Metadata {
                format_version: FORMAT_VERSION,
                env_id: "Toy-v0".into(),
                obs_dim,
                act_dim,
                action_low: vec![low; act_dim],
                action_high: vec![high; act_dim],
                source: serde_json::Value::Null,
                reference_scores: None,
            },
            observations: vec![],
            actions: vec![],
            rewards: vec![],
            next_observations: vec![],
            terminals: vec![],
            timeouts: vec![],
        }
    }

    /// Append one transition.
    pub fn push(d: &mut Dataset, obs: &[f32], act: &[f32], r: f32, next: &[f32], terminal: bool) {
        d.observations.extend_from_slice(obs);
        d.actions.extend_from_slice(act);
        d.rewards.push(r);
        d.next_observations.extend_from_slice(next);
        d.terminals.push(terminal);
        d.timeouts.push(false);
    }

    /// A one-step bandit with two one-hot states A = (1, 0) and B = (0, 1); actions ±0.5 appear
    /// equally often in both; reward 1 for +0.5 in A and for −0.5 in B, else 0; terminal.
    pub fn two_state_bandit() -> Dataset {
        let mut d = empty(2, 1, -1.0, 1.0);
        for (obs, best) in [([1.0, 0.0], 0.5f32), ([0.0, 1.0], -0.5)] {
            for a in [-0.5f32, 0.5] {
                push(
                    &mut d,
                    &obs,
                    &[a],
                    if a == best { 1.0 } else { 0.0 },
                    &obs,
                    true,
                );
            }
        }
        d
    }

    /// The policy acts on the better side of [`two_state_bandit`]'s states: above `margin` in
    /// A, below −`margin` in B.
    pub fn assert_prefers_best(policy: &mut dyn crate::policy::Policy, margin: f32) {
        let act = policy.act(&[1.0, 0.0, 0.0, 1.0], 2).unwrap();
        assert!(act[0] > margin, "state A (best +0.5): action {}", act[0]);
        assert!(act[1] < -margin, "state B (best −0.5): action {}", act[1]);
    }

    /// The whole dataset as one batch: full-batch updates remove minibatch noise, so learned
    /// values converge to the fixed point an analytic answer describes.
    pub fn full_batch(data: &Dataset) -> Batch {
        Batch {
            size: data.len(),
            obs_dim: data.obs_dim(),
            act_dim: data.act_dim(),
            observations: data.observations.clone(),
            actions: data.actions.clone(),
            rewards: data.rewards.clone(),
            next_observations: data.next_observations.clone(),
            terminals: data
                .terminals
                .iter()
                .map(|&t| f32::from(u8::from(t)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn tiny_dataset() -> Dataset {
        // Two episodes: returns 1+2 = 3 (terminal) and 4 (time-out).
        let mut d = testing::empty(2, 1, -2.0, 2.0);
        testing::push(&mut d, &[0.0, 1.0], &[-2.0], 1.0, &[2.0, 1.0], false);
        testing::push(&mut d, &[2.0, 1.0], &[0.0], 2.0, &[0.0, 0.0], true);
        testing::push(&mut d, &[4.0, 1.0], &[1.0], 4.0, &[0.0, 0.0], false);
        d.timeouts[2] = true;
        d
    }

    #[test]
    fn spec_maps_and_reward_scale() {
        let data = tiny_dataset();
        let spec = DataSpec::from_dataset(
            &data,
            &DataConfig {
                normalize_obs: true,
                reward_norm: RewardNorm::ReturnRange,
            },
        )
        .unwrap();
        assert_eq!(spec.reward_scale, 1000.0);
        // mean (2, 1), population std (√(8/3), 0) + 1e-3.
        assert_eq!(spec.obs_mean, vec![2.0, 1.0]);
        assert!((spec.obs_std[0] - ((8.0f64 / 3.0).sqrt() + 1e-3) as f32).abs() < 1e-6);
        assert!((spec.obs_std[1] - 1e-3).abs() < 1e-9);
        assert_eq!(spec.action_to_unit(&[-2.0, 0.0, 1.0]), vec![-1.0, 0.0, 0.5]);
        assert_eq!(
            spec.action_from_unit(&[-1.0, 0.5, 3.0]),
            vec![-2.0, 1.0, 2.0]
        );

        let single = Dataset {
            timeouts: vec![false, false, false],
            terminals: vec![false, false, false],
            ..data
        };
        let e = DataSpec::from_dataset(
            &single,
            &DataConfig {
                normalize_obs: false,
                reward_norm: RewardNorm::ReturnRange,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("1 episode(s)"), "{e}");
    }

    #[test]
    fn gaussian_log_prob_matches_formula() {
        let device = Device::flex();
        let x = nn::tensor2(&[0.5, -1.0], 1, 2, &device);
        let m = nn::tensor2(&[0.0, 0.0], 1, 2, &device);
        let ls = nn::tensor2(&[0.0, (2.0f32).ln()], 1, 2, &device);
        let got = nn::to_vec(gaussian_log_prob(x, m, ls))[0] as f64;
        let lp = |x: f64, s: f64| {
            -0.5 * (x / s).powi(2) - s.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
        };
        assert!((got - (lp(0.5, 1.0) + lp(-1.0, 2.0))).abs() < 1e-5);
    }

    #[test]
    fn logsumexp_and_repeat_rows() {
        let device = Device::flex();
        let x = nn::tensor2(&[0.0, 1.0, 1000.0, 1000.0], 2, 2, &device);
        let got = nn::to_vec(logsumexp_rows(x));
        assert!((got[0] - (1.0f32.exp() + 1.0).ln()).abs() < 1e-5);
        assert!((got[1] - (1000.0 + 2f32.ln())).abs() < 1e-3);
        let r = repeat_rows(nn::tensor2(&[1.0, 2.0, 3.0, 4.0], 2, 2, &device), 2);
        assert_eq!(nn::to_vec(r), vec![1., 2., 1., 2., 3., 4., 3., 4.]);
    }

    #[test]
    fn soft_update_blends_every_parameter() {
        let device = Device::flex().autodiff();
        let net = NetConfig {
            hidden: 1,
            width: 3,
            layer_norm: false,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let a = TwinQ::new(&net, 2, 1, &mut rng, &device);
        let b = TwinQ::new(&net, 2, 1, &mut rng, &device);
        let x = nn::tensor2(&[0.3, -0.2], 1, 2, &device);
        let u = nn::tensor2(&[0.1], 1, 1, &device);
        let mixed = target_copy(TwinQ::new(&net, 2, 1, &mut rng, &device), &b);
        assert_eq!(
            nn::to_vec(mixed.min(x.clone(), u.clone())),
            nn::to_vec(b.min(x.clone(), u.clone()))
        );
        let same = soft_update(a.clone(), &b, 0.0);
        assert_eq!(
            nn::to_vec(same.min(x.clone(), u.clone())),
            nn::to_vec(a.min(x, u))
        );
    }

    #[test]
    fn seeded_init_is_reproducible_and_orthogonal_init_is_orthogonal() {
        let device = Device::flex();
        let net = NetConfig {
            hidden: 2,
            width: 8,
            layer_norm: false,
        };
        let make = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            net.mlp(3, 2, &mut rng, &device)
        };
        let x = nn::tensor2(&[0.1, 0.2, 0.3], 1, 3, &device);
        assert_eq!(
            nn::to_vec(make(4).forward(x.clone())),
            nn::to_vec(make(4).forward(x.clone()))
        );
        assert_ne!(
            nn::to_vec(make(4).forward(x.clone())),
            nn::to_vec(make(5).forward(x))
        );
        let bound = 1.0 / 3f32.sqrt();
        let w = nn::to_vec(make(4).layers[0].weight.val());
        assert!(w.iter().all(|v| v.abs() <= bound));

        // [d_in = 3, d_out = 8]: W = wᵀ is 8×3 with orthonormal columns, scaled by the gain.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (d_in, d_out) in [(3, 8), (8, 3)] {
            let w = orthogonal_weight(d_in, d_out, 2.0, &mut rng);
            let k = d_in.min(d_out);
            // Gram matrix over the longer axis.
            for a in 0..k {
                for b in 0..k {
                    let dot: f32 = (0..d_in.max(d_out))
                        .map(|l| {
                            let at = |s: usize| {
                                if d_out >= d_in {
                                    w[s * d_out + l]
                                } else {
                                    w[l * d_out + s]
                                }
                            };
                            at(a) * at(b)
                        })
                        .sum();
                    let want = if a == b { 4.0 } else { 0.0 };
                    assert!(
                        (dot - want).abs() < 1e-4,
                        "({d_in},{d_out}) [{a},{b}] = {dot}"
                    );
                }
            }
        }
    }

    #[test]
    fn rng_state_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let _: u64 = rng.random();
        let state = RngState::of(&rng);
        let json = serde_json::to_value(&state).unwrap();
        let mut back = serde_json::from_value::<RngState>(json)
            .unwrap()
            .restore()
            .unwrap();
        assert_eq!(rng.random::<u64>(), back.random::<u64>());
    }
}
