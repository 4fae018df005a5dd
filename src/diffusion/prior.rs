//! The trained behaviour prior μ(a|s): ε-network + schedule + the data spaces it was trained in,
//! loadable from a checkpoint, and its [`Policy`] wrapper for evaluation.

use crate::backend::Engine;
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::chain::sample_actions_scaled;
use super::config::{PriorConfig, PriorSpec, PriorState};
use super::ddim::Ddim;
use super::executor::{ActingEps, TrainingEps};
use super::model::{EpsModel, EpsNet};
use super::schedule::{NoiseSchedule, StartDistribution};
use crate::dataset::spec::DataSpec;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::train::checkpoint::Checkpoint;

/// The kind of a trained prior's checkpoints (the registry's name of diffusion-BC training).
pub const CHECKPOINT_KIND: &str = "diffusion-bc";

/// Checkpoint part holding the ε-network.
pub const MODEL_PART: &str = "model";
/// Checkpoint part holding the moving average of the ε-network's weights (`ema_decay > 0`).
pub const EMA_PART: &str = "ema";

/// A behaviour prior. [`EpsModel`] methods take normalised observations
/// ([`DiffusionPrior::obs_tensor`]) and model-space actions ([`PriorSpec::action_to_model`]).
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
        let net = EpsNet::new(&spec.net, spec.obs_dim(), spec.act_dim(), &schedule, device);
        Ok(Self {
            net,
            schedule,
            spec,
        })
    }

    /// Replace the start distribution of the chain.
    pub fn with_start(mut self, start: StartDistribution) -> Self {
        self.schedule = self.schedule.with_start(start.clone());
        self.spec.start = start;
        self
    }

    /// Load a trained prior from a checkpoint folder (`.../checkpoints/step-N`) or a run
    /// directory (its newest checkpoint) of `offrl train prior`, onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let dir = Checkpoint::resolve(path)?;
        let ck = Checkpoint::open(&dir, Some(CHECKPOINT_KIND))?;
        let bad = |message: String| Error::Checkpoint {
            path: dir.clone(),
            message,
        };
        let meta = &ck.meta;
        let config: PriorConfig =
            serde_json::from_value(meta.config.get("config").cloned().unwrap_or_default())
                .map_err(|e| bad(format!("unreadable config: {e}")))?;
        let data: DataSpec =
            serde_json::from_value(meta.extra.get("spec").cloned().unwrap_or_default())
                .map_err(|e| bad(format!("unreadable data spec: {e}")))?;
        let state: PriorState =
            serde_json::from_value(meta.extra.get("state").cloned().unwrap_or_default())
                .map_err(|e| bad(format!("unreadable prior state: {e}")))?;
        let fresh = Self::new(config.spec(data)?, device)?.with_start(state.start);
        // The weights that acted in training: the moving average when the run kept one.
        let part = if config.ema_decay > 0.0 {
            EMA_PART
        } else {
            MODEL_PART
        };
        let net = ck.load_module(part, fresh.net.clone())?;
        Ok(Self { net, ..fresh })
    }

    /// Normalised observations `[n, obs_dim]` from raw row-major observations.
    pub fn obs_tensor(&self, obs: &[f32], n: usize, device: &Device) -> Tensor<2> {
        crate::nn::tensor2(
            &self.spec.data.normalize_obs(obs),
            n,
            self.spec.obs_dim(),
            device,
        )
    }
}

impl EpsModel for DiffusionPrior {
    fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    fn act_dim(&self) -> usize {
        self.spec.act_dim()
    }

    fn eps_rows(&self, obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2> {
        self.net.forward_rows(obs, x_t, t)
    }

    fn eps(&self, obs: Tensor<2>, x_t: Tensor<2>, t: usize) -> Tensor<2> {
        self.net.forward_step(obs, x_t, t)
    }
}

impl DiffusionPrior {
    /// The ε-network as the engine of its device runs it for sampling (a snapshot: build it
    /// again after the weights change).
    pub fn acting_eps(&self) -> ActingEps {
        ActingEps::new(&self.net, &self.schedule)
    }
}

/// A prior acting in an environment: raw observations in, environment actions out, one chain per
/// row (batched), noise from its own seeded RNG, the network run by its engine ([`ActingEps`]).
pub struct DiffusionPolicy {
    pub prior: DiffusionPrior,
    /// Multiplies the chain's noise draws (1: sample μ; below 1: act at a lower temperature).
    pub noise_scale: f64,
    /// Act with this DDIM map of the start noise instead of the ancestral chain.
    pub ddim: Option<Ddim>,
    eps: ActingEps,
    device: Device,
    rng: ChaCha8Rng,
}

impl DiffusionPolicy {
    /// Keeps an inference (`valid()`) copy of `prior`, on the plain device of its parameters.
    pub fn new(prior: &DiffusionPrior, seed: u64) -> Self {
        let (prior, device) = crate::nn::inference_copy(prior);
        Self {
            eps: prior.acting_eps(),
            prior,
            noise_scale: 1.0,
            ddim: None,
            device,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl Policy for DiffusionPolicy {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let od = self.prior.spec.obs_dim();
        crate::policy::check_obs("diffusion policy", obs, n, od)?;
        let obs = self.prior.obs_tensor(obs, n, &self.device);
        let x0 = match &self.ddim {
            None => sample_actions_scaled(&self.eps, obs, &mut self.rng, self.noise_scale),
            Some(ddim) => {
                let ad = self.prior.spec.act_dim();
                let z = super::normal_noise(&mut self.rng, n, ad, &self.device);
                ddim.sample(&self.eps, obs, z.mul_scalar(self.noise_scale))
            }
        };
        Ok(self.prior.spec.action_to_env(&crate::nn::to_vec(x0)))
    }
}

/// One Adam step on the denoising loss of a minibatch (`obs` normalised `[n, obs_dim]`, `actions`
/// row-major in model space); returns the updated prior and the loss before the update.
pub fn gradient_step<R: rand::Rng>(
    prior: DiffusionPrior,
    optim: &mut burn::optim::ModuleOptimizer,
    obs: Tensor<2>,
    actions: &[f32],
    lr: f64,
    weighting: super::chain::LossWeighting,
    rng: &mut R,
) -> (DiffusionPrior, f64) {
    let engine = Engine::for_device(&obs.device());
    let mut grads = burn::optim::GradientsParams::new();
    let value = {
        let eps = TrainingEps::new(&prior.net, &prior.schedule, engine);
        let loss = super::chain::denoising_loss(&eps, obs, actions, weighting, rng);
        let value = f64::from(loss.clone().into_scalar::<f32>());
        eps.register_grads(&mut loss.backward(), &mut grads);
        value
    };
    (optim.step(lr, prior, grads), value)
}
