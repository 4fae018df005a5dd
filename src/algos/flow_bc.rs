//! Flow-matching behaviour cloning (rectified flow: Liu et al. 2023, Lipman et al. 2023), as the
//! `actor_bc_flow` of Flow Q-Learning (Park, Li & Levine, ICML 2025; seohongpark/fql).
//!
//! A velocity field `v(s, x, t)` carries Gaussian noise `x₀ ~ N(0, I)` at `t = 0` to the data's
//! actions at `t = 1`. Per update, on a minibatch `(s, a)` in unit action space: draw
//! `x₀ ~ N(0, I)`, `t ~ U[0, 1]`, set `x_t = (1 − t)·x₀ + t·a` and regress `v(s, x_t, t)` onto
//! `a − x₀` (mean squared error over rows and dimensions). Acting integrates
//! `dx/dt = v(s, x, t)` from `x₀ = z` with `flow_steps` Euler steps and clips to the box: a
//! **deterministic map** `a = f(s, z)` of the noise ([`FlowMap`]), which FQL distils into a
//! one-step policy and noise-space samplers tilt.
//!
//! Defaults are FQL's: 4 × 512 GELU MLP, Adam 3e-4, batch 256, 10 Euler steps; observations
//! normalised (this project's data-side default, as for every other algorithm).

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::common::{adam, normal, scalar, uniform, NetConfig};
use crate::backend::Engine;
use crate::dataset::spec::{DataConfig, DataSpec, RewardNorm};
use crate::dataset::Batch;
use crate::error::{Error, Result};
use crate::nn::host::TrainingMlp;
use crate::nn::{Activation, Mlp};
use crate::policy::Policy;
use crate::train::checkpoint::Checkpoint;
use crate::train::{LoopConfig, Metrics, OfflineAlgorithm, Parts};

/// The algorithm's name in the registry and its checkpoints' kind.
pub const NAME: &str = "flow-bc";

/// The checkpoint part holding the velocity field.
pub const FIELD_PART: &str = "field";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowBcConfig {
    pub lr: f64,
    pub adam_eps: f64,
    /// The velocity field's MLP on `[s, x, t]`.
    pub net: NetConfig,
    pub activation: Activation,
    /// Euler steps from noise to action when acting.
    pub flow_steps: usize,
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for FlowBcConfig {
    /// FQL's `actor_bc_flow` settings (`agents/fql.py`, `get_config`).
    fn default() -> Self {
        Self {
            lr: 3e-4,
            adam_eps: 1e-8,
            net: NetConfig::new(4, 512, false),
            activation: Activation::Gelu,
            flow_steps: 10,
            data: DataConfig {
                normalize_obs: true,
                reward_norm: RewardNorm::None,
            },
            train: LoopConfig::default(),
        }
    }
}

impl FlowBcConfig {
    /// Every setting in its allowed range, named as in the config, before any work.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::positive("lr", self.lr)?;
        check::positive("adam_eps", self.adam_eps)?;
        check::count("flow_steps", self.flow_steps)?;
        self.net.validate("net")?;
        self.train.validate()
    }
}

/// The velocity field `v(s, x, t)`: an MLP on the concatenation `[s, x, t]`.
#[derive(Module, Debug)]
pub struct VelocityField {
    pub net: Mlp,
}

impl VelocityField {
    pub fn new(
        net: &NetConfig,
        activation: Activation,
        obs_dim: usize,
        act_dim: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Self {
        let mut net = net.mlp(obs_dim + act_dim + 1, act_dim, rng, device);
        net.activation = activation;
        Self { net }
    }
}

/// `[s, x, t]` rows for the field; `t` is one value per row (`[n, 1]`).
fn field_input(obs: Tensor<2>, x: Tensor<2>, t: Tensor<2>) -> Tensor<2> {
    Tensor::cat(vec![obs, x, t], 1)
}

/// The flow-matching loss of `field` on `(obs, act)` (normalised observations, unit actions),
/// noise and times from `rng`; differentiable through `field` (record it with
/// [`TrainingMlp::forward`], then take its gradients).
pub fn flow_matching_loss(
    field: &TrainingMlp,
    obs: Tensor<2>,
    act: Tensor<2>,
    rng: &mut ChaCha8Rng,
) -> Tensor<1> {
    let [n, ad] = act.dims();
    let device = act.device();
    let x0 = normal(rng, n, ad, &device);
    let t = uniform(rng, n, 1, 0.0, 1.0, &device);
    let xt = x0.clone() * (t.clone() * -1.0 + 1.0) + act.clone() * t.clone();
    let predicted = field.forward(field_input(obs, xt, t));
    (predicted - (act - x0)).powi_scalar(2).mean()
}

/// `K` Euler steps of `dx/dt = v(s, x, t)` from `x = z` at `t = 0`, then clipped to `[−1, 1]`:
/// actions in unit space. `field` maps `[s, x, t]` rows to velocities: differentiable through it
/// or not, as the caller runs the network.
pub fn integrate(
    field: impl Fn(Tensor<2>) -> Tensor<2>,
    obs: Tensor<2>,
    z: Tensor<2>,
    steps: usize,
) -> Tensor<2> {
    let [n, _] = z.dims();
    let device = z.device();
    let dt = 1.0 / steps as f32;
    let mut x = z;
    for k in 0..steps {
        let t = crate::nn::tensor2(&vec![k as f32 * dt; n], n, 1, &device);
        let v = field(field_input(obs.clone(), x.clone(), t));
        x = x + v * dt;
    }
    x.clamp(-1.0, 1.0)
}

/// The deterministic behaviour map `a = f(s, z)` of a trained field: normalised observations and
/// noise in, unit actions out (inference copy on the plain device).
#[derive(Clone)]
pub struct FlowMap {
    pub field: VelocityField,
    pub steps: usize,
    device: Device,
    engine: Engine,
}

impl FlowMap {
    pub fn new(field: &VelocityField, steps: usize) -> Self {
        let (field, device) = crate::nn::inference_copy(field);
        Self {
            field,
            steps,
            engine: Engine::for_device(&device),
            device,
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The map of a trained flow-BC run (a run directory or checkpoint folder) on `device`, with
    /// the data spec it was trained in (its observations are normalised by that spec). Any other
    /// kind of checkpoint is refused, naming it.
    pub fn load(path: &std::path::Path, device: &Device) -> Result<(Self, DataSpec)> {
        let dir = Checkpoint::resolve(path)?;
        let ck = Checkpoint::open(&dir, Some(NAME))?;
        let bad = |message: String| Error::Checkpoint {
            path: dir.clone(),
            message,
        };
        let cfg: FlowBcConfig =
            serde_json::from_value(ck.meta.config.get("config").cloned().unwrap_or_default())
                .map_err(|e| bad(format!("bad flow-bc config: {e}")))?;
        let spec: DataSpec =
            serde_json::from_value(ck.meta.extra.get("spec").cloned().unwrap_or_default())
                .map_err(|e| bad(format!("bad data spec: {e}")))?;
        // Parameters are overwritten by the checkpoint's; the generator only shapes the network.
        let rng = &mut ChaCha8Rng::seed_from_u64(0);
        let field = VelocityField::new(
            &cfg.net,
            cfg.activation,
            spec.obs_dim,
            spec.act_dim,
            rng,
            device,
        );
        let field = ck.load_module(FIELD_PART, field)?;
        Ok((Self::new(&field, cfg.flow_steps), spec))
    }

    /// `f(s, z)` for `[n, obs_dim]` normalised observations and `[n, act_dim]` noise, without
    /// gradient (on the host on the CPU backend).
    pub fn map(&self, obs: Tensor<2>, z: Tensor<2>) -> Tensor<2> {
        let field = TrainingMlp::new(&self.field.net, self.engine);
        integrate(|x| field.eval(x), obs, z, self.steps)
    }

    /// `f⁻¹(s, a)`: the Euler steps backwards, each `x_k + dt·v(s, x_k, t_k) = x_{k+1}` solved
    /// by Newton steps ([`crate::nn::newton_inverse`]) from `x_{k+1} − dt·v(s, x_{k+1}, t_k)`,
    /// and the largest residual over the steps. A clipped action inverts from the box's edge.
    pub fn invert(&self, obs: Tensor<2>, a: Tensor<2>) -> (Tensor<2>, f64) {
        let field = TrainingMlp::new(&self.field.net, self.engine);
        let [n, _] = a.dims();
        let dt = 1.0 / self.steps as f32;
        let velocity = |x: Tensor<2>, k: usize| {
            let rows = x.dims()[0];
            let t = crate::nn::tensor2(&vec![k as f32 * dt; rows], rows, 1, &x.device());
            let o = obs.clone().repeat_dim(0, rows / n);
            field.eval(field_input(o, x, t))
        };
        let mut x = a.detach();
        let mut residual = 0.0f64;
        for k in (0..self.steps).rev() {
            let guess = x.clone() - velocity(x.clone(), k) * dt;
            let step = |y: Tensor<2>| y.clone() + velocity(y, k) * dt;
            let iterations = crate::diffusion::ddim::INVERSION_ITERATIONS;
            let (prev, err) = crate::nn::newton_inverse(step, x, guess, iterations);
            residual = residual.max(err);
            x = prev;
        }
        (x, residual)
    }
}

impl FlowMap {
    /// `uᵀ ∂f/∂z` on the host (CPU backend; `None` elsewhere): `obs` normalised `[n, od]` and `z`
    /// `[n, ad]` row-major, `outer` the gradient of a scalar with respect to the map's (clipped)
    /// actions, given those actions. The Euler steps run forward with their tapes, then backward:
    /// `g_k = g_{k+1} + dt·(∂v/∂x)ᵀ g_{k+1}`, zero where the final clip was active.
    pub fn host_vjp(
        &self,
        obs: &[f32],
        z: &[f32],
        n: usize,
        outer: impl FnOnce(&[f32]) -> Option<Vec<f32>>,
    ) -> Option<Vec<f32>> {
        use crate::nn::host::HostMlp;
        use offrl_kernels::Shards;
        if !self.engine.is_host() {
            return None;
        }
        let field = HostMlp::from_mlp(&self.field.net);
        let (od, ad) = (obs.len() / n.max(1), z.len() / n.max(1));
        let (k_steps, dt) = (self.steps, 1.0 / self.steps as f32);
        let shards = Shards::of(n);
        // Forward: every step's tape, and the final (unclipped) x, per shard.
        let forward = shards.map(|_, rows| {
            let mut x = z[rows.start * ad..rows.end * ad].to_vec();
            let mut tapes = Vec::with_capacity(k_steps);
            for k in 0..k_steps {
                let t = k as f32 * dt;
                let input: Vec<f32> = rows
                    .clone()
                    .enumerate()
                    .flat_map(|(j, i)| {
                        obs[i * od..(i + 1) * od]
                            .iter()
                            .chain(&x[j * ad..(j + 1) * ad])
                            .copied()
                            .chain([t])
                    })
                    .collect();
                let (v, tape) = field.forward_tape(input, rows.len());
                x.iter_mut().zip(&v).for_each(|(x, v)| *x += v * dt);
                tapes.push(tape);
            }
            (x, tapes)
        });
        let x_final: Vec<f32> = forward
            .iter()
            .flat_map(|(x, _)| x.iter().copied())
            .collect();
        let clipped: Vec<f32> = x_final.iter().map(|x| x.clamp(-1.0, 1.0)).collect();
        let mut g = outer(&clipped)?;
        (g.iter_mut().zip(&x_final)).for_each(|(g, x)| {
            if x.abs() > 1.0 {
                *g = 0.0;
            }
        });
        // Backward through the Euler steps, shard by shard.
        let d_in = od + ad + 1;
        let back = shards.map(|i, rows| {
            let mut g = g[rows.start * ad..rows.end * ad].to_vec();
            for tape in forward[i].1.iter().rev() {
                // The step is x + dt·v(x): its Jacobian-transpose product is linear in g.
                let (dx, _) = field.backward(tape, &g, true, false);
                let dx = dx.expect("input gradient");
                for (j, row) in dx.chunks_exact(d_in).enumerate() {
                    (g[j * ad..(j + 1) * ad].iter_mut())
                        .zip(&row[od..od + ad])
                        .for_each(|(g, d)| *g += d * dt);
                }
            }
            g
        });
        Some(back.concat())
    }
}

/// A deterministic generator `a = f(s, z)`: normalised observations `[n, obs_dim]` and noise
/// `[n, noise_dim]` in, unit-box actions `[n, act_dim]` out, differentiable with respect to `z`
/// when `z` is tracked. Implemented by the flow-BC map ([`FlowMap`]) and the DDIM map of a
/// diffusion prior ([`crate::diffusion::DdimMap`]).
pub trait NoiseMap {
    fn noise_dim(&self) -> usize;
    fn map(&self, obs: Tensor<2>, z: Tensor<2>) -> Tensor<2>;
    /// Where the map's parameters live (plain device; the CPU backend's by default).
    fn device(&self) -> Device {
        Device::flex()
    }

    /// `uᵀ ∂f/∂z` on host rows (`obs` normalised, `z`), `outer` giving `u` from the map's
    /// actions, when the map can compute it without burn's autodiff; `None` (the default) sends
    /// the outsourced sampler's reward (`MapReward`) to burn's autodiff.
    fn vjp(
        &self,
        _obs: &[f32],
        _z: &[f32],
        _n: usize,
        _outer: &dyn Fn(&[f32]) -> Option<Vec<f32>>,
    ) -> Option<Vec<f32>> {
        None
    }

    /// The noise `z` with `f(s, z) = a` (unit actions; a clipped action inverts from the box's
    /// edge) and the largest residual of the solve, when the map can be inverted.
    fn invert(&self, _obs: Tensor<2>, _a: Tensor<2>) -> Option<(Tensor<2>, f64)> {
        None
    }
}

/// The same map through burn's module: differentiable with respect to `z` (the Langevin term of
/// noise-space samplers), detached when `z` is; its gradient on the host where there is one.
impl NoiseMap for FlowMap {
    fn vjp(
        &self,
        obs: &[f32],
        z: &[f32],
        n: usize,
        outer: &dyn Fn(&[f32]) -> Option<Vec<f32>>,
    ) -> Option<Vec<f32>> {
        self.host_vjp(obs, z, n, outer)
    }

    fn noise_dim(&self) -> usize {
        self.field.net.output.weight.dims()[1]
    }

    fn map(&self, obs: Tensor<2>, z: Tensor<2>) -> Tensor<2> {
        if !z.is_tracked() {
            return FlowMap::map(self, obs, z);
        }
        integrate(|x| self.field.net.forward(x), obs, z, self.steps)
    }

    fn device(&self) -> Device {
        FlowMap::device(self).clone()
    }

    fn invert(&self, obs: Tensor<2>, a: Tensor<2>) -> Option<(Tensor<2>, f64)> {
        Some(FlowMap::invert(self, obs, a))
    }
}

/// A noise map acting: raw observations in, environment actions out, `z ~ N(0, I)` from its own
/// seeded generator (flow-BC's policy; the outsourced sampler's behaviour policy).
pub struct MapPolicy<M> {
    map: M,
    spec: DataSpec,
    rng: ChaCha8Rng,
}

impl<M: NoiseMap> MapPolicy<M> {
    pub fn new(map: M, spec: &DataSpec, seed: u64) -> Self {
        Self {
            map,
            spec: spec.clone(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl<M: NoiseMap> Policy for MapPolicy<M> {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let (od, ad) = (self.spec.obs_dim, self.map.noise_dim());
        crate::policy::check_obs("noise-map policy", obs, n, od)?;
        let device = self.map.device();
        let obs = crate::nn::tensor2(&self.spec.normalize_obs(obs), n, od, &device);
        let z = normal(&mut self.rng, n, ad, &device);
        let unit = crate::nn::to_vec(self.map.map(obs, z));
        Ok(self.spec.action_from_unit(&unit))
    }
}

pub struct FlowBc {
    cfg: FlowBcConfig,
    spec: DataSpec,
    device: Device,
    engine: Engine,
    seed: u64,
    rng: ChaCha8Rng,
    field: VelocityField,
    optim: ModuleOptimizer,
}

impl FlowBc {
    pub fn new(cfg: FlowBcConfig, spec: DataSpec, device: &Device, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let field = VelocityField::new(
            &cfg.net,
            cfg.activation,
            spec.obs_dim,
            spec.act_dim,
            &mut rng,
            device,
        );
        Ok(Self {
            optim: adam(cfg.adam_eps),
            cfg,
            spec,
            device: device.clone(),
            engine: Engine::for_device(device),
            seed,
            rng,
            field,
        })
    }

    /// The trained behaviour map.
    pub fn map(&self) -> FlowMap {
        FlowMap::new(&self.field, self.cfg.flow_steps)
    }
}

impl OfflineAlgorithm for FlowBc {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self) -> &DataSpec {
        &self.spec
    }

    fn update(&mut self, batch: &Batch, _step: usize) -> Result<Metrics> {
        let b = self.spec.batch_tensors(batch, &self.device);
        let field = TrainingMlp::new(&self.field.net, self.engine);
        let loss = flow_matching_loss(&field, b.obs, b.act, &mut self.rng);
        let mut grads = GradientsParams::new();
        field.register_grads(&mut loss.backward(), &mut grads);
        self.field = self.optim.step(self.cfg.lr, self.field.clone(), grads);
        Ok(vec![("flow_loss", scalar(&loss))])
    }

    fn policy(&self) -> Result<Box<dyn Policy>> {
        Ok(Box::new(MapPolicy::new(self.map(), &self.spec, self.seed)))
    }

    fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()> {
        parts.module(FIELD_PART, &mut self.field, Some(&mut self.optim))?;
        parts.rng(&mut self.rng)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dataset::testing;

    /// Known answer: in state A = (1, 0) the data's actions are a two-mode mixture, 25 % at
    /// −0.5 and 75 % at +0.5 (each ± U(0.05)); in state B = (0, 1) one mode at 0.2. The flow's
    /// samples must put the modes' mass where the data does (±0.03) and centre each mode within
    /// 0.05, and inversion-free Euler integration must stay inside the box.
    #[test]
    fn recovers_the_modes_and_weights_of_a_mixture_and_inverts() {
        let data = testing::two_mode_mixture();
        let cfg = FlowBcConfig {
            lr: 3e-3,
            net: NetConfig::new(2, 64, false),
            flow_steps: 20,
            data: DataConfig {
                normalize_obs: false,
                reward_norm: RewardNorm::None,
            },
            ..FlowBcConfig::default()
        };
        let spec = DataSpec::from_dataset(&data, &cfg.data).unwrap();
        let mut algo = FlowBc::new(cfg, spec, &Device::flex().autodiff(), 1).unwrap();
        let mut sampler = crate::dataset::sampler::Sampler::new(&data, 2);
        for step in 0..1500 {
            let batch = sampler.sample(256).clone();
            algo.update(&batch, step).unwrap();
        }
        let mut policy = algo.policy().unwrap();
        let n = 4000;
        let a: Vec<f32> = policy.act(&[1.0, 0.0].repeat(n), n).unwrap();
        testing::assert_two_modes(&a);
        let b = policy.act(&[0.0, 1.0].repeat(n), n).unwrap();
        let mean_b = b.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        assert!((mean_b - 0.2).abs() < 0.03, "state B mode {mean_b}");
        assert!(a.iter().chain(&b).all(|x| (-1.0..=1.0).contains(x)));

        // The Euler map inverts: z → a → z, for actions inside the box.
        assert_inverts(&algo.map(), &[1.0, 0.0], 1e-4);
    }

    /// `z → f(s, z) → z` for 200 draws of `z` at the state `obs` returns every `z` whose action
    /// is inside the box to within `tolerance`.
    pub(crate) fn assert_inverts(map: &dyn NoiseMap, obs: &[f32], tolerance: f32) {
        let (m, device) = (200, map.device());
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let z = normal(&mut rng, m, map.noise_dim(), &device);
        let obs = crate::nn::tensor2(&obs.repeat(m), m, obs.len(), &device);
        let a = crate::nn::to_vec(map.map(obs.clone(), z.clone()));
        let a_tensor = crate::nn::tensor2(&a, m, map.noise_dim(), &device);
        let (back, residual) = map.invert(obs, a_tensor).expect("the map inverts");
        let worst = (crate::nn::to_vec(back).iter().zip(crate::nn::to_vec(z)))
            .zip(&a)
            .filter(|(_, a)| a.abs() < 0.99)
            .map(|((b, z), _)| (b - z).abs())
            .fold(0.0f32, f32::max);
        eprintln!("inversion: round trip {worst:.2e}, residual {residual:.2e}");
        assert!(worst < tolerance, "round trip {worst}");
    }

    #[test]
    fn the_map_is_a_function_of_the_noise() {
        let data = testing::two_state_bandit();
        let cfg = FlowBcConfig {
            net: NetConfig::new(1, 8, false),
            ..FlowBcConfig::default()
        };
        let spec = DataSpec::from_dataset(&data, &cfg.data).unwrap();
        let algo = FlowBc::new(cfg, spec, &Device::flex().autodiff(), 0).unwrap();
        let map = algo.map();
        let device = map.device().clone();
        let obs = crate::nn::tensor2(&[1.0, 0.0, 0.0, 1.0], 2, 2, &device);
        let z = crate::nn::tensor2(&[0.3, -1.2], 2, 1, &device);
        let a = crate::nn::to_vec(map.map(obs.clone(), z.clone()));
        assert_eq!(a, crate::nn::to_vec(map.map(obs, z)));
    }
}
