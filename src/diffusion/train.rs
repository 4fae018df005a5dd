//! Training the behaviour prior μ(a|s) on a dataset (CORL style: the config at the top, the loop
//! reads top to bottom).
//!
//! Reproducibility and resume: the RNG of step `k` (minibatch rows, diffusion steps, noise) is
//! ChaCha8 seeded with `seed` on stream `k`, so the sampler state is a function of the step and a
//! resumed run draws exactly what the uninterrupted run would have. A checkpoint holds the
//! network, the Adam state, the step, the resolved config and the [`PriorSpec`] (normalisation
//! statistics, action transform, start distribution); `train` resumes from the newest one in
//! `out/checkpoints` when it exists.

use std::path::{Path, PathBuf};

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Bytes, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::chain::{denoising_loss, LossWeighting};
use super::model::NetConfig;
use super::prior::{DiffusionPrior, PriorSpec, CHECKPOINT_KIND, MODEL_PART};
use super::schedule::{NoiseSchedule, ScheduleConfig};
use super::transform::ActionTransform;
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::nn::{column_stats, Normalizer};
use crate::train::checkpoint::{module_bytes, Checkpoint, CheckpointMeta, CHECKPOINT_VERSION};
use crate::train::{ensure_finite, progress_bar, RunDir};

/// How per-step denoising errors are weighted in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Min-SNR-γ (Hang et al. 2023), γ = `min_snr_gamma`.
    #[default]
    MinSnr,
    Uniform,
}

/// Learning-rate schedule over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// `lr` throughout (the paper).
    #[default]
    Constant,
    /// `lr · ½(1 + cos(π · step / train_steps))`: decays to 0 at the end of the run.
    Cosine,
}

/// Prior training config. Defaults are the RTB paper's (see `configs/prior.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorConfig {
    pub seed: u64,
    pub schedule: ScheduleConfig,
    pub net: NetConfig,
    pub loss_weighting: Weighting,
    pub min_snr_gamma: f64,
    /// Model `atanh(clip(a, ±pre_tanh_clip))` and act with `tanh` (the paper's code does).
    pub pre_tanh: bool,
    pub pre_tanh_clip: f32,
    /// Standardise observations with the dataset's mean/std (stored in the checkpoint).
    pub normalize_obs: bool,
    pub lr: f64,
    pub lr_schedule: LrSchedule,
    /// Adam ε (PyTorch's default 1e-8, which the paper's code uses; burn's default is 1e-5).
    pub adam_eps: f32,
    pub batch_size: usize,
    /// Gradient steps in total (a resumed run continues up to this).
    pub train_steps: usize,
    /// Clip the global gradient norm to this; 0 disables (the paper does not clip).
    pub grad_clip_norm: f32,
    pub log_every: usize,
    pub checkpoint_every: usize,
    /// Keep this many newest checkpoints (0 keeps all).
    pub keep_checkpoints: usize,
}

impl Default for PriorConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            schedule: ScheduleConfig::default(),
            net: NetConfig::default(),
            loss_weighting: Weighting::MinSnr,
            min_snr_gamma: 5.0,
            pre_tanh: true,
            pre_tanh_clip: 0.99,
            normalize_obs: true,
            lr: 5e-4,
            lr_schedule: LrSchedule::Constant,
            adam_eps: 1e-8,
            batch_size: 512,
            train_steps: 1_000_000,
            grad_clip_norm: 0.0,
            log_every: 1000,
            checkpoint_every: 50_000,
            keep_checkpoints: 3,
        }
    }
}

impl PriorConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.batch_size == 0 || self.train_steps == 0 {
            return bad("batch_size and train_steps must be positive".into());
        }
        if self.log_every == 0 || self.checkpoint_every == 0 {
            return bad("log_every and checkpoint_every must be positive".into());
        }
        if self.net.layers == 0 || self.net.width == 0 || self.net.time_harmonics == 0 {
            return bad("net.layers, net.width and net.time_harmonics must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr must be a positive number, got {}", self.lr));
        }
        if self.loss_weighting == Weighting::MinSnr && self.min_snr_gamma <= 0.0 {
            return bad(format!(
                "min_snr_gamma must be positive, got {}",
                self.min_snr_gamma
            ));
        }
        Ok(())
    }

    /// The learning rate of update `step` (1-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        match self.lr_schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Cosine => {
                let progress = (step - 1) as f64 / self.train_steps as f64;
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    fn weighting(&self) -> LossWeighting {
        match self.loss_weighting {
            Weighting::MinSnr => LossWeighting::MinSnr(self.min_snr_gamma),
            Weighting::Uniform => LossWeighting::Uniform,
        }
    }

    /// The config without the keys a resumed run may change (length, logging cadence).
    fn identity(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serialises");
        for key in [
            "train_steps",
            "log_every",
            "checkpoint_every",
            "keep_checkpoints",
        ] {
            v.as_object_mut().expect("object").remove(key);
        }
        v
    }
}

/// What a finished (or resumed-and-finished) training returns.
pub struct TrainOutcome {
    /// The trained prior (on the training device; `.valid()` for inference).
    pub prior: DiffusionPrior,
    /// The last checkpoint written.
    pub checkpoint: PathBuf,
    /// Mean loss over the last logging window.
    pub final_loss: f64,
}

/// The training data in model space: normalised observations and transformed actions.
struct TrainSet {
    obs: Vec<f32>,
    actions: Vec<f32>,
    obs_dim: usize,
    act_dim: usize,
}

impl TrainSet {
    fn len(&self) -> usize {
        self.obs.len() / self.obs_dim
    }

    /// A uniform minibatch (with replacement), as row-major `(obs, actions)`.
    fn batch<R: Rng>(&self, rng: &mut R, size: usize) -> (Vec<f32>, Vec<f32>) {
        let (od, ad, n) = (self.obs_dim, self.act_dim, self.len());
        let mut obs = Vec::with_capacity(size * od);
        let mut act = Vec::with_capacity(size * ad);
        for _ in 0..size {
            let i = rng.random_range(0..n);
            obs.extend_from_slice(&self.obs[i * od..(i + 1) * od]);
            act.extend_from_slice(&self.actions[i * ad..(i + 1) * ad]);
        }
        (obs, act)
    }
}

/// The RNG of training step `step` (see the module docs).
fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(step as u64);
    rng
}

/// The prior's description fitted on `data`: normalisation statistics, action transform, start.
pub fn fit_spec(data: &Dataset, config: &PriorConfig) -> Result<PriorSpec> {
    let (od, ad) = (data.obs_dim(), data.act_dim());
    if data.is_empty() {
        return Err(Error::InvalidData("the dataset has no transitions".into()));
    }
    let obs_norm = if config.normalize_obs {
        Normalizer::fit(&data.observations, od, "observations")?
    } else {
        Normalizer::identity(od)
    };
    let actions = ActionTransform::new(
        &data.meta.action_low,
        &data.meta.action_high,
        config.pre_tanh,
        config.pre_tanh_clip,
    )?;
    let (mean, std) = column_stats(&actions.to_model(&data.actions), ad, "actions")?;
    let start = NoiseSchedule::new(&config.schedule)?.start_for(&mean, &std);
    Ok(PriorSpec {
        obs_dim: od,
        act_dim: ad,
        schedule: config.schedule.clone(),
        net: config.net.clone(),
        start,
        obs_norm,
        actions,
    })
}

/// Train a prior on `data`, writing the run to `out` (config, metrics, plots, checkpoints);
/// resumes from the newest checkpoint in `out` when there is one. `device` must be an autodiff
/// device (`BackendKind::train_device`).
pub fn train(
    data: &Dataset,
    config: &PriorConfig,
    out: &Path,
    device: &Device,
) -> Result<TrainOutcome> {
    config.validate()?;
    let checkpoints = out.join("checkpoints");

    // 1. Fresh start or resume: the model, the optimiser and the step to continue from.
    let mut optim = optimizer(config);
    let (mut prior, start_step) = match Checkpoint::latest(&checkpoints)? {
        Some(dir) => {
            let ck = Checkpoint::open(&dir, Some(CHECKPOINT_KIND))?;
            let saved: PriorConfig =
                serde_json::from_value(ck.meta.config.clone()).map_err(|e| Error::Checkpoint {
                    path: dir.clone(),
                    message: format!("unreadable config: {e}"),
                })?;
            if saved.identity() != config.identity() {
                return Err(Error::Config(format!(
                    "{} holds a run with a different config; resume only changes train_steps, \
                     log_every, checkpoint_every, keep_checkpoints (use a new --out to start over)",
                    out.display()
                )));
            }
            let prior = DiffusionPrior::load(&dir, device)?;
            let bytes = Bytes::from_bytes_vec(ck.part(&format!("{MODEL_PART}.optim"))?);
            optim = optim.from_bytes(bytes).map_err(|e| Error::Checkpoint {
                path: dir.clone(),
                message: format!("unreadable optimiser state: {e}"),
            })?;
            tracing::info!("resuming from {} (step {})", dir.display(), ck.meta.step);
            (prior, ck.meta.step)
        }
        None => {
            crate::backend::seed(device, config.seed);
            (DiffusionPrior::new(fit_spec(data, config)?, device)?, 0)
        }
    };

    // 2. The data in model space, with the prior's own statistics.
    let spec = prior.spec.clone();
    if data.obs_dim() != spec.obs_dim || data.act_dim() != spec.act_dim {
        return Err(Error::InvalidData(format!(
            "dataset has obs/act dims {}/{}, the prior {}/{}",
            data.obs_dim(),
            data.act_dim(),
            spec.obs_dim,
            spec.act_dim
        )));
    }
    let set = TrainSet {
        obs: spec.obs_norm.apply(&data.observations),
        actions: spec.actions.to_model(&data.actions),
        obs_dim: spec.obs_dim,
        act_dim: spec.act_dim,
    };

    // 3. The loop: minibatch → denoising loss → NaN guard → Adam step; log, checkpoint.
    let mut run = RunDir::open(out, config, (start_step > 0).then_some(start_step))?;
    let bar = progress_bar(config.train_steps as u64, "prior");
    bar.set_position(start_step as u64);
    let (mut window_sum, mut window_len, mut final_loss) = (0.0f64, 0usize, f64::NAN);
    let mut last_checkpoint = None;
    for step in start_step + 1..=config.train_steps {
        let mut rng = step_rng(config.seed, step);
        let (obs, actions) = set.batch(&mut rng, config.batch_size);
        let obs = crate::nn::tensor2(&obs, config.batch_size, spec.obs_dim, device);
        let value;
        (prior, value) = gradient_step(
            prior,
            &mut optim,
            obs,
            &actions,
            config.lr_at(step),
            config.weighting(),
            &mut rng,
        );
        ensure_finite(step, "loss", value)?;

        window_sum += value;
        window_len += 1;
        bar.inc(1);
        if step % config.log_every == 0 || step == config.train_steps {
            final_loss = window_sum / window_len as f64;
            run.log(step, &[("loss", final_loss)])?;
            bar.set_message(format!("loss {final_loss:.4}"));
            (window_sum, window_len) = (0.0, 0);
        }
        if step % config.checkpoint_every == 0 || step == config.train_steps {
            last_checkpoint = Some(save_checkpoint(&checkpoints, step, config, &prior, &optim)?);
            Checkpoint::prune(&checkpoints, config.keep_checkpoints)?;
        }
    }
    bar.finish_and_clear();
    run.plot()?;
    let checkpoint = match last_checkpoint {
        Some(dir) => dir,
        // Nothing left to do: the run had already reached train_steps.
        None => Checkpoint::latest(&checkpoints)?.expect("resumed from a checkpoint"),
    };
    Ok(TrainOutcome {
        prior,
        checkpoint,
        final_loss,
    })
}

/// One Adam step on the denoising loss of a minibatch (`obs` normalised `[n, obs_dim]`, `actions`
/// row-major in model space); returns the updated prior and the loss before the update.
pub fn gradient_step<R: Rng>(
    prior: DiffusionPrior,
    optim: &mut ModuleOptimizer,
    obs: Tensor<2>,
    actions: &[f32],
    lr: f64,
    weighting: LossWeighting,
    rng: &mut R,
) -> (DiffusionPrior, f64) {
    let loss = denoising_loss(&prior, obs, actions, weighting, rng);
    let value = f64::from(loss.clone().into_scalar::<f32>());
    let grads = GradientsParams::from_grads(loss.backward(), &prior);
    (optim.step(lr, prior, grads), value)
}

/// The optimiser a config asks for (Adam, optional gradient-norm clipping).
pub fn optimizer(config: &PriorConfig) -> ModuleOptimizer {
    AdamConfig::new()
        .with_epsilon(config.adam_eps)
        .with_grad_clipping(
            (config.grad_clip_norm > 0.0)
                .then_some(GradientClippingConfig::Norm(config.grad_clip_norm)),
        )
        .init()
}

fn save_checkpoint(
    checkpoints: &Path,
    step: usize,
    config: &PriorConfig,
    prior: &DiffusionPrior,
    optim: &ModuleOptimizer,
) -> Result<PathBuf> {
    let dir = Checkpoint::dir_for_step(checkpoints, step);
    let meta = CheckpointMeta {
        format_version: CHECKPOINT_VERSION,
        kind: CHECKPOINT_KIND.into(),
        step,
        config: serde_json::to_value(config).expect("config serialises"),
        extra: serde_json::to_value(&prior.spec).expect("spec serialises"),
    };
    let optim_bytes = optim.into_bytes().map_err(|e| Error::Checkpoint {
        path: dir.clone(),
        message: format!("cannot serialise the optimiser: {e}"),
    })?;
    Checkpoint::save(
        &dir,
        &meta,
        &[
            (MODEL_PART, module_bytes(&prior.net)?),
            (&format!("{MODEL_PART}.optim"), optim_bytes.to_vec()),
        ],
    )?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `configs/prior.toml` spells out every key, with the defaults' values.
    #[test]
    fn shipped_config_lists_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/prior.toml");
        let cfg: PriorConfig =
            crate::config::resolve(&PriorConfig::default(), Some(&path), &[]).unwrap();
        assert_eq!(cfg, PriorConfig::default());
        let text = std::fs::read_to_string(&path).unwrap();
        let file = serde_json::to_value(toml::from_str::<toml::Table>(&text).unwrap()).unwrap();
        let mut defaults = serde_json::to_value(PriorConfig::default()).unwrap();
        defaults.as_object_mut().unwrap().remove("seed"); // from --seed
        fn keys(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
            for (k, v) in v.as_object().unwrap() {
                match v {
                    serde_json::Value::Object(_) => keys(v, &format!("{prefix}{k}."), out),
                    _ => out.push(format!("{prefix}{k}")),
                }
            }
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        keys(&file, "", &mut a);
        keys(&defaults, "", &mut b);
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_configs_are_refused() {
        for set in ["batch_size=0", "lr=-1", "net.layers=0", "min_snr_gamma=0"] {
            let cfg: PriorConfig =
                crate::config::resolve(&PriorConfig::default(), None, &[set.into()]).unwrap();
            assert!(cfg.validate().is_err(), "{set}");
        }
        let e = crate::config::resolve(
            &PriorConfig::default(),
            None,
            &["schedule.kind=quadratic".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("quadratic"), "{e}");
    }
}
