//! Diffusion-BC: training the behaviour prior μ(a|s) (`offrl train prior`), an algorithm like
//! the others. Its config and model live in [`crate::diffusion`] ([`PriorConfig`],
//! [`DiffusionPrior`]); the loop itself (minibatches, NaN stop, metrics, plots, checkpoints, exact
//! resume) is the one every algorithm shares, [`crate::train::fit`].
//!
//! Per update, on a minibatch `(s, a)`: normalise `s`, map `a` to model space, draw per row a
//! step `t ~ U{1..T}` and `ε ~ N(0, I)`, and take one Adam step on the (Min-SNR-weighted)
//! ε-prediction loss ([`gradient_step`]). The noise of update `k` comes from ChaCha8 seeded with
//! the run's seed on stream `k`, so it is a function of the step: a resumed run draws exactly what
//! the uninterrupted run would have (the minibatch sampler is made resumable by `fit`).

use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::common::{soft_update, target_copy};
use crate::dataset::spec::DataSpec;
use crate::dataset::{Batch, Dataset};
use crate::diffusion::denoising_loss;
use crate::diffusion::prior::{gradient_step, CHECKPOINT_KIND, EMA_PART, MODEL_PART};
use crate::diffusion::{ActSampler, Ddim, DiffusionPolicy, DiffusionPrior, EpsNet, PriorConfig};
use crate::error::Result;
use crate::eval::probe::Probe;
use crate::policy::Policy;
use crate::train::{policy_diagnostics, Metrics, OfflineAlgorithm, Parts};

/// The algorithm's name in the registry and its checkpoints' kind.
pub const NAME: &str = CHECKPOINT_KIND;

/// Noise of the held-out loss (fixed: the diagnostic compares weights, not draws).
const HELDOUT_NOISE_SEED: u64 = 0x5eed_4e1d;

impl PriorAlgo {
    /// A network of the prior's shape (values to be overwritten), for the moving average.
    fn fresh_net(&self) -> EpsNet {
        let spec = &self.prior.spec;
        EpsNet::new(
            &spec.net,
            spec.obs_dim(),
            spec.act_dim(),
            &self.prior.schedule,
            &self.device,
        )
    }

    /// The prior that acts: the moving average of the weights when there is one.
    pub fn acting(&self) -> DiffusionPrior {
        match &self.ema {
            Some(ema) => DiffusionPrior {
                net: ema.clone(),
                ..self.prior.clone()
            },
            None => self.prior.clone(),
        }
    }
}

/// The prior as a trainable [`OfflineAlgorithm`].
pub struct PriorAlgo {
    pub prior: DiffusionPrior,
    /// The moving average of `prior.net` (when `ema_decay > 0`): what acts and is loaded.
    ema: Option<EpsNet>,
    optim: ModuleOptimizer,
    cfg: PriorConfig,
    seed: u64,
    device: Device,
}

impl PriorAlgo {
    /// A fresh prior for data described by `spec`; parameters from `seed`. `device` is the
    /// training (autodiff) device.
    pub fn new(cfg: PriorConfig, spec: DataSpec, device: &Device, seed: u64) -> Result<Self> {
        cfg.validate()?;
        crate::backend::seed(device, seed);
        let prior = DiffusionPrior::new(cfg.spec(spec)?, device)?;
        Ok(Self {
            prior,
            // Made at the first update: building a network draws from the device's generator,
            // which must first initialise the prior exactly as without the average.
            ema: None,
            optim: cfg.optimizer(),
            cfg,
            seed,
            device: device.clone(),
        })
    }
}

impl OfflineAlgorithm for PriorAlgo {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self) -> &DataSpec {
        &self.prior.spec.data
    }

    fn update(&mut self, batch: &Batch, step: usize) -> Result<Metrics> {
        let spec = &self.prior.spec;
        let obs = crate::nn::tensor2(
            &spec.data.normalize_obs(&batch.observations),
            batch.size,
            spec.obs_dim(),
            &self.device,
        );
        let actions = spec.action_to_model(&batch.actions);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(step as u64);
        let prior = self.prior.clone();
        let (prior, loss) = gradient_step(
            prior,
            &mut self.optim,
            obs,
            &actions,
            self.cfg.lr_at(step),
            self.cfg.weighting(),
            &mut rng,
        );
        self.prior = prior;
        if self.cfg.ema_decay > 0.0 {
            let rate = self.cfg.ema_rate(step);
            self.ema = Some(match self.ema.take() {
                Some(ema) => soft_update(ema, &self.prior.net, rate),
                None => target_copy(self.fresh_net(), &self.prior.net),
            });
        }
        Ok(vec![("loss", loss)])
    }

    fn policy(&self) -> Result<Box<dyn Policy>> {
        let mut policy = DiffusionPolicy::new(&self.acting(), self.seed);
        policy.noise_scale = self.cfg.act_noise_scale;
        if self.cfg.act_sampler == ActSampler::Ddim {
            policy.ddim = Some(Ddim::new(&policy.prior.schedule, self.cfg.act_steps)?);
        }
        Ok(Box::new(policy))
    }

    /// The policy's probe plus `diag/heldout_loss`: the denoising loss of the acting weights on
    /// the probe's (held-out) transitions, with the same `t` and `ε` at every checkpoint so that
    /// its curve moves only with the weights.
    fn diagnostics(&self, probe: &Probe) -> Result<Metrics> {
        let mut metrics = policy_diagnostics(self, probe)?;
        let (prior, device) = crate::nn::inference_copy(&self.acting());
        let spec = &prior.spec;
        let obs = prior.obs_tensor(&probe.obs, probe.n, &device);
        let actions = spec.action_to_model(&probe.actions);
        let mut rng = ChaCha8Rng::seed_from_u64(HELDOUT_NOISE_SEED);
        let eps = prior.acting_eps();
        let loss = denoising_loss(&eps, obs, &actions, self.cfg.weighting(), &mut rng);
        metrics.push(("diag/heldout_loss", f64::from(loss.into_scalar::<f32>())));
        Ok(metrics)
    }

    fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()> {
        parts.module(MODEL_PART, &mut self.prior.net, Some(&mut self.optim))?;
        // The moving average exists from the first update on; a checkpoint of a run that
        // keeps one has it.
        if parts.is_loading() && self.cfg.ema_decay > 0.0 {
            self.ema = Some(self.fresh_net());
        }
        if let Some(ema) = self.ema.as_mut() {
            parts.module(EMA_PART, ema, None)?;
        }
        // `PriorState`'s layout: what `DiffusionPrior::load` reads.
        let mut start = self.prior.spec.start.clone();
        parts.value("start", &mut start)?;
        if parts.is_loading() {
            self.prior = self.prior.clone().with_start(start);
        }
        Ok(())
    }

    /// The start distribution needs the actions' model-space statistics (for
    /// `schedule.start = "marginal"`; nothing changes for `"standard_normal"`).
    fn prepare(&mut self, data: &Dataset) -> Result<()> {
        let spec = &self.prior.spec;
        let actions = spec.action_to_model(&data.actions);
        let (mean, std) = crate::nn::column_stats(&actions, spec.act_dim(), "actions")?;
        let start = self.prior.schedule.start_for(&mean, &std);
        self.prior = self.prior.clone().with_start(start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn shipped_config_is_the_default() {
        let kind = super::super::AlgoKind::DiffusionBc;
        assert_eq!(
            kind.default_config(),
            serde_json::to_value(PriorConfig::default()).unwrap()
        );
        // configs/diffusion-bc.toml is checked key by key in `algos::tests::config_files_match_defaults`.
        assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs/diffusion-bc.toml")
            .is_file());
    }

    /// DDIM (η = 0) of a prior trained on a two-mode mixture, on a schedule that nearly reaches
    /// noise (linear β to 0.3 in 20 steps: ᾱ_T = 0.034): the deterministic map of N(0, 1)
    /// reproduces the modes and their weights, and inverting it returns the noise (round trip
    /// 1e-4). Measured on this problem (weight of the 0.75 mode, 4000 draws): ancestral 0.746,
    /// DDIM 0.745 (K = 10: 0.766); with the cosine schedule (ᾱ_T = 6e-6) DDIM gives 0.849 — its
    /// first step divides ε̂'s error by √ᾱ_T — and with the cpu profile's (ᾱ_T = 0.46, started at
    /// N(0, 1)) 0.666.
    #[test]
    fn the_ddim_map_recovers_a_mixture_and_inverts_to_round_off() {
        use crate::dataset::testing;
        use crate::diffusion::{DdimMap, ScheduleKind};
        use rand::SeedableRng;
        let data = testing::two_mode_mixture();
        let mut cfg = PriorConfig::default();
        cfg.schedule.steps = 20;
        cfg.schedule.kind = ScheduleKind::Linear;
        cfg.schedule.beta_start = 3.75e-4;
        cfg.schedule.beta_end = 0.3;
        cfg.net.width = 64;
        cfg.net.hidden = 2;
        cfg.net.time_harmonics = 8;
        cfg.pre_tanh = false;
        cfg.lr = 1e-3;
        cfg.data.normalize_obs = false;
        let spec = DataSpec::from_dataset(&data, &cfg.data).unwrap();
        let mut algo = PriorAlgo::new(cfg, spec, &Device::flex().autodiff(), 1).unwrap();
        let mut sampler = crate::dataset::sampler::Sampler::new(&data, 2);
        for step in 0..6000 {
            let batch = sampler.sample(256).clone();
            algo.update(&batch, step).unwrap();
        }
        let prior = algo.acting();
        let map = DdimMap::new(&prior, Ddim::new(&prior.schedule, 0).unwrap());
        let device = map.device().clone();
        let n = 4000;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let z = crate::diffusion::normal_noise(&mut rng, n, 1, &device);
        let obs = crate::nn::tensor2(&[1.0, 0.0].repeat(n), n, 2, &device);
        testing::assert_two_modes(&crate::nn::to_vec(map.map(obs, z)));

        crate::algos::flow_bc::tests::assert_inverts(&map, &[1.0, 0.0], 1e-4);
    }

    #[test]
    fn bad_configs_are_refused() {
        let defaults = PriorConfig::default();
        for set in [
            "train.batch_size=0",
            "lr=-1",
            "net.hidden=0",
            "min_snr_gamma=0",
            "schedule.steps=0",
            "act_steps=1000",
        ] {
            let cfg: PriorConfig = crate::config::resolve(&defaults, None, &[set.into()]).unwrap();
            assert!(cfg.validate().is_err(), "{set}");
        }
        let e = crate::config::resolve(&defaults, None, &["schedule.kind=quadratic".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("quadratic"), "{e}");
    }

    #[test]
    fn cosine_lr_decays_to_zero() {
        let cfg = PriorConfig {
            lr_schedule: crate::diffusion::LrSchedule::Cosine,
            ..Default::default()
        };
        assert_eq!(cfg.lr_at(0), cfg.lr);
        assert!((cfg.lr_at(cfg.train.steps / 2) - cfg.lr / 2.0).abs() < 1e-12);
        assert!(cfg.lr_at(cfg.train.steps - 1) < 1e-9);
    }
}
