//! What the offline algorithms share: the Q/V/actor networks, soft target updates, seeded
//! noise, and saving a generator's state for exact resume. The data's preprocessing (the
//! [`DataSpec`]) lives with the dataset, in [`crate::dataset::spec`].

use std::f32::consts::PI;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::backend::Engine;
use crate::dataset::spec::DataSpec;
use crate::error::Result;
use crate::nn::{self, Mlp, MlpConfig};
use crate::policy::Policy;

// ---------------------------------------------------------------------------------------------
// Tensors and noise
// ---------------------------------------------------------------------------------------------

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

/// Sum over action dims of the log-density of `N(mean, diag(exp(log_std))²)` at `x`: `[n, d] →
/// [n]` (the actors' Gaussian; a chain step's isotropic one, whose σ is a schedule constant, is
/// [`crate::diffusion::gaussian_log_prob`]).
pub fn diagonal_gaussian_log_prob(x: Tensor<2>, mean: Tensor<2>, log_std: Tensor<2>) -> Tensor<1> {
    let z = (x - mean) / log_std.clone().exp();
    let log_norm = 0.5 * (2.0 * PI).ln();
    column((z.powi_scalar(2) * (-0.5) - log_std - log_norm).sum_dim(1))
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

impl NetConfig {
    /// `hidden` layers of `width`, with LayerNorm after each when `layer_norm`.
    pub const fn new(hidden: usize, width: usize, layer_norm: bool) -> Self {
        Self {
            hidden,
            width,
            layer_norm,
        }
    }
}

impl Default for NetConfig {
    /// 2 hidden layers of 256 (IQL, TD3+BC, BC in the papers and CORL).
    fn default() -> Self {
        Self::new(2, 256, false)
    }
}

/// Adam with ε = `eps` (the references use PyTorch's / optax's 1e-8; burn's default is 1e-5).
pub fn adam(eps: f64) -> burn::optim::ModuleOptimizer {
    nn::adam(eps, None)
}

impl NetConfig {
    /// At least one hidden layer of at least one unit (`name` is the config key, e.g.
    /// `actor_net`).
    pub fn validate(&self, name: &str) -> Result<()> {
        crate::config::check::count(&format!("{name}.hidden"), self.hidden)?;
        crate::config::check::count(&format!("{name}.width"), self.width)
    }

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
        bias: Some(Param::from_tensor(nn::tensor1(&bias, device))),
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
        let on_host = Engine::for_device(&self.q1.output.weight.val().device()).is_host();
        let (q1, q2) = offrl_kernels::join(
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
        diagonal_gaussian_log_prob(act, mean, log_std)
    }
}

impl GaussianActor {
    /// A draw `clamp(μ(s) + σ ⊙ eps, −1, 1)` for standard-normal `eps` `[n, ad]`: the
    /// distribution is not squashed (IQL's), so the unit box clips it.
    pub fn sample_with(&self, obs: Tensor<2>, eps: Tensor<2>) -> Tensor<2> {
        let mean = self.mean(obs);
        let [n, d] = mean.dims();
        let std = self.log_std().exp().reshape([1, d]).repeat_dim(0, n);
        (mean + std * eps).clamp(-1.0, 1.0)
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

/// The Gaussian actors' log-std clamp: finite bounds, `log_std_min` below `log_std_max`.
pub fn check_log_std(min: f32, max: f32) -> Result<()> {
    crate::config::check::ordered("log_std_min", min.into(), "log_std_max", max.into())
}

/// A deterministic policy from an actor network: normalise observations, run the actor on the
/// plain (non-autodiff) device, map unit actions back to the environment's bounds.
pub struct NetPolicy<A: Module> {
    actor: A,
    forward: fn(&A, Tensor<2>) -> Tensor<2>,
    spec: DataSpec,
    device: Device,
}

impl<A: Module> NetPolicy<A> {
    /// `actor` is any (training) copy; the policy keeps a `valid()` copy of it.
    pub fn new(actor: &A, forward: fn(&A, Tensor<2>) -> Tensor<2>, spec: &DataSpec) -> Self {
        let (actor, device) = crate::nn::inference_copy(actor);
        Self {
            actor,
            forward,
            spec: spec.clone(),
            device,
        }
    }
}

impl<A: Module> Policy for NetPolicy<A> {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let od = self.spec.obs_dim;
        crate::policy::check_obs("policy", obs, n, od)?;
        let x = crate::nn::tensor2(&self.spec.normalize_obs(obs), n, od, &self.device);
        let unit = crate::nn::to_vec((self.forward)(&self.actor, x));
        Ok(self.spec.action_from_unit(&unit))
    }
}

/// A stochastic actor acting: `draw(actor, normalised obs, eps)` with standard-normal `eps`
/// from its own seeded generator, in unit actions; environment actions out. What `sample`
/// returns for the Gaussian-actor algorithms.
pub struct SampledNetPolicy<A: Module> {
    actor: A,
    draw: fn(&A, Tensor<2>, Tensor<2>) -> Tensor<2>,
    spec: DataSpec,
    device: Device,
    rng: ChaCha8Rng,
}

impl<A: Module> SampledNetPolicy<A> {
    pub fn new(
        actor: &A,
        draw: fn(&A, Tensor<2>, Tensor<2>) -> Tensor<2>,
        spec: &DataSpec,
        seed: u64,
    ) -> Self {
        let (actor, device) = crate::nn::inference_copy(actor);
        Self {
            actor,
            draw,
            spec: spec.clone(),
            device,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl<A: Module> Policy for SampledNetPolicy<A> {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let (od, ad) = (self.spec.obs_dim, self.spec.act_dim);
        crate::policy::check_obs("policy", obs, n, od)?;
        let x = crate::nn::tensor2(&self.spec.normalize_obs(obs), n, od, &self.device);
        let eps = normal(&mut self.rng, n, ad, &self.device);
        let unit = crate::nn::to_vec((self.draw)(&self.actor, x, eps));
        Ok(self.spec.action_from_unit(&unit))
    }
}

/// A twin critic scoring raw observations and environment actions: `min(Q1, Q2)`, or their
/// mean where the algorithm acts on that (FQL's `q_agg = "mean"`), on the spec's normalised
/// observations and unit actions (`predict_value`).
pub struct TwinQScorer {
    q: TwinQ,
    mean: bool,
    spec: DataSpec,
    device: Device,
}

impl TwinQScorer {
    pub fn new(q: &TwinQ, mean: bool, spec: &DataSpec) -> Self {
        let (q, device) = crate::nn::inference_copy(q);
        Self {
            q,
            mean,
            spec: spec.clone(),
            device,
        }
    }
}

impl crate::policy::ActionScorer for TwinQScorer {
    fn score(&self, obs: &[f32], act: &[f32], n: usize) -> Result<Vec<f32>> {
        let (od, ad) = (self.spec.obs_dim, self.spec.act_dim);
        let obs = crate::nn::tensor2(&self.spec.normalize_obs(obs), n, od, &self.device);
        let act = crate::nn::tensor2(&self.spec.action_to_unit(act), n, ad, &self.device);
        let q = if self.mean {
            let (q1, q2) = self.q.both(obs, act);
            (q1 + q2) / 2.0
        } else {
            self.q.min(obs, act)
        };
        Ok(crate::nn::to_vec(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn gaussian_log_prob_matches_formula() {
        let device = Device::flex();
        let x = nn::tensor2(&[0.5, -1.0], 1, 2, &device);
        let m = nn::tensor2(&[0.0, 0.0], 1, 2, &device);
        let ls = nn::tensor2(&[0.0, (2.0f32).ln()], 1, 2, &device);
        let got = nn::to_vec(diagonal_gaussian_log_prob(x, m, ls))[0] as f64;
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
        let net = NetConfig::new(1, 3, false);
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
        let net = NetConfig::new(2, 8, false);
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
}
