//! The trained behaviour prior μ(a|s): ε-network + schedule + the data transforms it was trained
//! with, loadable from a checkpoint, and its [`Policy`] wrapper for evaluation.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::chain::sample_actions;
use super::model::{EpsModel, EpsNet, NetConfig};
use super::schedule::{NoiseSchedule, ScheduleConfig, StartDistribution};
use super::transform::ActionTransform;
use crate::error::{Error, Result};
use crate::nn::Normalizer;
use crate::policy::Policy;
use crate::train::checkpoint::Checkpoint;

/// Checkpoint kind of a trained prior.
pub const CHECKPOINT_KIND: &str = "diffusion-prior";
/// Checkpoint part holding the ε-network.
pub const MODEL_PART: &str = "model";

/// Everything besides the network weights needed to rebuild a prior (stored as the checkpoint's
/// `extra`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorSpec {
    pub obs_dim: usize,
    pub act_dim: usize,
    pub schedule: ScheduleConfig,
    pub net: NetConfig,
    pub start: StartDistribution,
    pub obs_norm: Normalizer,
    pub actions: ActionTransform,
}

/// A behaviour prior. Observations given to [`EpsModel`] methods are normalised
/// ([`DiffusionPrior::obs_tensor`]) and actions are in model space ([`ActionTransform`]).
#[derive(Module, Debug)]
pub struct DiffusionPrior {
    pub net: EpsNet,
    #[module(skip)]
    pub schedule: NoiseSchedule,
    #[module(skip)]
    pub spec: PriorSpec,
}

impl DiffusionPrior {
    /// A freshly initialised prior (parameters from the device's seeded generator).
    pub fn new(spec: PriorSpec, device: &Device) -> Result<Self> {
        let schedule = NoiseSchedule::new(&spec.schedule)?.with_start(spec.start.clone());
        let net = EpsNet::new(&spec.net, spec.obs_dim, spec.act_dim, &schedule, device);
        Ok(Self {
            net,
            schedule,
            spec,
        })
    }

    /// Load a trained prior from a checkpoint folder onto `device`.
    pub fn load(checkpoint: &Path, device: &Device) -> Result<Self> {
        let ck = Checkpoint::open(checkpoint, Some(CHECKPOINT_KIND))?;
        let spec: PriorSpec =
            serde_json::from_value(ck.meta.extra.clone()).map_err(|e| Error::Checkpoint {
                path: checkpoint.to_path_buf(),
                message: format!("unreadable prior description: {e}"),
            })?;
        let fresh = Self::new(spec, device)?;
        let net = ck.load_module(MODEL_PART, fresh.net.clone())?;
        Ok(Self { net, ..fresh })
    }

    /// Normalised observations `[n, obs_dim]` from raw row-major observations.
    pub fn obs_tensor(&self, obs: &[f32], n: usize, device: &Device) -> Tensor<2> {
        crate::nn::tensor2(&self.spec.obs_norm.apply(obs), n, self.spec.obs_dim, device)
    }
}

impl EpsModel for DiffusionPrior {
    fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    fn act_dim(&self) -> usize {
        self.spec.act_dim
    }

    fn eps_rows(&self, obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2> {
        self.net.forward_rows(obs, x_t, t)
    }

    fn eps(&self, obs: Tensor<2>, x_t: Tensor<2>, t: usize) -> Tensor<2> {
        self.net.forward_step(obs, x_t, t)
    }
}

/// A prior acting in an environment: raw observations in, environment actions out, one chain per
/// row, noise from its own seeded RNG.
pub struct DiffusionPolicy {
    pub prior: DiffusionPrior,
    pub device: Device,
    rng: ChaCha8Rng,
}

impl DiffusionPolicy {
    /// `prior` is switched to inference mode (no autodiff).
    pub fn new(prior: DiffusionPrior, device: Device, seed: u64) -> Self {
        Self {
            prior: prior.valid(),
            device,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Policy for DiffusionPolicy {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let od = self.prior.spec.obs_dim;
        if obs.len() != n * od {
            return Err(Error::InvalidData(format!(
                "diffusion policy: {} observation values for {n} rows of {od}",
                obs.len()
            )));
        }
        let obs = self.prior.obs_tensor(obs, n, &self.device);
        let x0 = sample_actions(&self.prior, obs, &mut self.rng);
        Ok(self.prior.spec.actions.to_env(&crate::nn::to_vec(x0)))
    }
}
