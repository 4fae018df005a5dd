//! The posterior's parameterisation: the prior's ε plus a trained correction and the scaled
//! reward gradient ([`Correction`]), with the optional learned `log Z(s)` ([`RtbModel`]).

use burn::module::Module;
use burn::nn::{Initializer, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::{CorrectionConfig, CorrectionInit, LogZConfig, LogZKind};
use super::reward::LogReward;
use crate::backend::Engine;
use crate::diffusion::ActingEps;
use crate::diffusion::{EpsModel, EpsNet, NoiseSchedule};
use crate::error::{Error, Result};
use crate::nn::{Activation, FourierTimeEmbedding, Mlp, MlpConfig};

/// `c(t)`: one scale per action dimension from the Fourier features of the step's time.
#[derive(Module, Debug)]
pub struct LangevinScale {
    pub mlp: Mlp,
    /// Time features per step (`t − 1` row-major `[T, 2H]`).
    #[module(skip)]
    pub time_features: Vec<f32>,
    #[module(skip)]
    pub time_dim: usize,
    /// `c(t)` for every step, computed once by [`Correction::frozen`] for inference copies (a
    /// sampling chain asks for it at every step); `None` on the trained module, whose table
    /// must stay in the autodiff graph.
    #[module(skip)]
    frozen_table: Option<Tensor<2>>,
}

impl LangevinScale {
    /// `[T, act_dim]`: `c(t)` of every step, row `t − 1`.
    fn table(&self, device: &Device) -> Tensor<2> {
        if let Some(table) = &self.frozen_table {
            return table.clone();
        }
        let steps = self.time_features.len() / self.time_dim;
        self.mlp.forward(crate::nn::tensor2(
            &self.time_features,
            steps,
            self.time_dim,
            device,
        ))
    }

    /// `[rows, act_dim]` scales for per-row steps.
    fn rows(&self, t: &[usize], device: &Device) -> Tensor<2> {
        let table = self.table(device);
        if t.iter().all(|&s| s == t[0]) {
            return table.slice(t[0] - 1..t[0]); // broadcast over rows
        }
        let index: Vec<i64> = t.iter().map(|&s| s as i64 - 1).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [t.len()]), device);
        table.select(0, index)
    }
}

/// The trained part of π: `ε_π − ε_μ = NN(s, x_t, t) + c(t) ⊙ g` (g: the clamped reward gradient).
#[derive(Module, Debug)]
pub struct Correction {
    pub net: EpsNet,
    pub langevin: Option<LangevinScale>,
}

impl Correction {
    /// Build the correction for a prior with `obs_dim`/`act_dim` on `schedule`. `template` is the
    /// prior's network, required by the `prior_features` and `copy_prior` inits.
    pub fn new(
        config: &CorrectionConfig,
        obs_dim: usize,
        act_dim: usize,
        schedule: &NoiseSchedule,
        template: Option<&EpsNet>,
        device: &Device,
    ) -> Result<Self> {
        let mut net = EpsNet::new(&config.net, obs_dim, act_dim, schedule, device);
        if config.init != CorrectionInit::Zero {
            let template = template.ok_or_else(|| {
                Error::Config(format!(
                    "correction.init = {:?} needs a network prior to copy",
                    config.init
                ))
            })?;
            net = net
                .try_load_record(template.clone().into_record())
                .map_err(|e| {
                    Error::Config(format!(
                        "correction.init = {:?}: correction.net must have the prior's shape ({e})",
                        config.init
                    ))
                })?;
        }
        let zero_output = config.init != CorrectionInit::CopyPrior;
        if zero_output {
            net.trunk.output = zero_linear(config.net.width, act_dim, device);
        }
        let langevin = config.langevin.then(|| {
            let embedding = FourierTimeEmbedding::new(config.net.time_harmonics);
            let time_features = (1..=schedule.steps())
                .flat_map(|t| embedding.features(schedule.time_input(t)))
                .collect();
            let mut mlp = MlpConfig::new(embedding.dim(), act_dim)
                .with_width(config.langevin_width)
                .with_hidden(config.langevin_hidden)
                .with_activation(Activation::Gelu)
                .with_layer_norm(true)
                .init(device);
            if zero_output {
                let d_in = if config.langevin_hidden == 0 {
                    embedding.dim()
                } else {
                    config.langevin_width
                };
                mlp.output = zero_linear(d_in, act_dim, device);
            }
            LangevinScale {
                mlp,
                time_features,
                time_dim: embedding.dim(),
                frozen_table: None,
            }
        });
        Ok(Self { net, langevin })
    }

    /// The inference copy for sampling π's chains: `c(t)` computed once for every step, the
    /// network run by `engine`.
    pub fn acting(&self, schedule: &NoiseSchedule, engine: Engine) -> ActingCorrection {
        let mut correction = self.valid();
        if let Some(scale) = correction.langevin.as_mut() {
            let device = scale.mlp.output.weight.device();
            scale.frozen_table = Some(scale.table(&device));
        }
        let eps = ActingEps::with_engine(&correction.net, schedule, engine);
        ActingCorrection { correction, eps }
    }

    /// `ε_π − ε_μ` from NN's output `nn` (computed elsewhere, e.g. by the fused executor).
    pub fn with_langevin(&self, nn: Tensor<2>, t: &[usize], grad: Option<Tensor<2>>) -> Tensor<2> {
        let device = nn.device();
        match (&self.langevin, grad) {
            (Some(scale), Some(g)) => nn + scale.rows(t, &device) * g,
            (Some(_), None) => panic!("the Langevin term needs the reward gradient"),
            (None, _) => nn,
        }
    }
}

/// The correction frozen for sampling ([`Correction::acting`]).
pub struct ActingCorrection {
    pub correction: Correction,
    eps: ActingEps,
}

impl ActingCorrection {
    /// `ε_π − ε_μ` for rows at steps `t` (one entry: every row at that step); `grad` is the
    /// clamped reward gradient at `x_t` (required when the Langevin term is on).
    pub fn rows(
        &self,
        obs: Tensor<2>,
        x_t: Tensor<2>,
        t: &[usize],
        grad: Option<Tensor<2>>,
    ) -> Tensor<2> {
        let nn = self.eps.eps_rows(obs, x_t, t);
        self.correction.with_langevin(nn, t, grad)
    }
}

fn zero_linear(d_in: usize, d_out: usize, device: &Device) -> burn::nn::Linear {
    LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

/// What RTB trains: the correction and, optionally, a `log Z_φ(s)` network.
#[derive(Module, Debug)]
pub struct RtbModel {
    pub correction: Correction,
    pub log_z: Option<Mlp>,
}

impl RtbModel {
    /// `correction` beside a `log Z_φ(s)` network on `obs_dim` inputs when `log_z` asks for one.
    pub fn new(
        correction: Correction,
        log_z: &LogZConfig,
        obs_dim: usize,
        device: &Device,
    ) -> Self {
        let log_z = (log_z.kind == LogZKind::Learned).then(|| {
            MlpConfig::new(obs_dim, 1)
                .with_width(log_z.width)
                .with_hidden(log_z.hidden)
                .with_activation(Activation::Gelu)
                .with_layer_norm(true)
                .init(device)
        });
        Self { correction, log_z }
    }
}

/// The posterior π as an [`EpsModel`] for sampling: the frozen prior plus the frozen correction.
/// Everything written against `EpsModel` (sampler, trajectory log-likelihood, policies) works on
/// it unchanged.
pub struct Posterior<'a, P: ?Sized, R: ?Sized> {
    pub prior: &'a P,
    pub correction: &'a ActingCorrection,
    pub reward: &'a R,
    pub langevin_clip: f64,
}

impl<P: EpsModel + ?Sized, R: LogReward + ?Sized> Posterior<'_, P, R> {
    /// The clamped reward gradient at `x_t`, when the correction uses it.
    pub(super) fn langevin_grad(&self, obs: Tensor<2>, x_t: Tensor<2>) -> Option<Tensor<2>> {
        self.correction.correction.langevin.as_ref().map(|_| {
            let c = self.langevin_clip;
            self.reward.gradient(obs, x_t).clamp(-c, c)
        })
    }
}

impl<P: EpsModel + ?Sized, R: LogReward + ?Sized> EpsModel for Posterior<'_, P, R> {
    fn schedule(&self) -> &NoiseSchedule {
        self.prior.schedule()
    }

    fn act_dim(&self) -> usize {
        self.prior.act_dim()
    }

    fn eps_rows(&self, obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2> {
        let eps_mu = self.prior.eps_rows(obs.clone(), x_t.clone(), t).detach();
        let g = self.langevin_grad(obs.clone(), x_t.clone());
        eps_mu + self.correction.rows(obs, x_t, t, g)
    }

    fn eps(&self, obs: Tensor<2>, x_t: Tensor<2>, t: usize) -> Tensor<2> {
        let eps_mu = self.prior.eps(obs.clone(), x_t.clone(), t).detach();
        let g = self.langevin_grad(obs.clone(), x_t.clone());
        eps_mu + self.correction.rows(obs, x_t, &[t], g)
    }
}
