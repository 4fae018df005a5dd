//! RTB's hyperparameters (`configs/rtb.toml`; `configs/rtb-cpu.toml` a CPU-sized variant).

use serde::{Deserialize, Serialize};

use crate::dataset::spec::{DataConfig, RewardNorm};
use crate::diffusion::EpsNetConfig;
use crate::error::{Error, Result};
use crate::train::LoopConfig;

/// RTB hyperparameters. Defaults: the paper's (`configs/rtb.toml`); `configs/rtb-cpu.toml` is an
/// affordable CPU profile. `train.batch_size` is the number of states per batch; each batch gets
/// `on_policy` + `off_policy` updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtbConfig {
    /// The behaviour prior μ: a checkpoint folder or run directory of `offrl train prior`.
    pub prior: String,
    /// The critic Q: a checkpoint folder or run directory of `offrl train critic` / `iql`.
    pub critic: String,
    /// Temperature α of `log r = Q/α` (the paper tunes it per task in 0.05 – 0.5), in the units
    /// of `alpha_scale`.
    pub alpha: f64,
    /// What α is measured in: the reward's own units (the paper) or the critic's spread over the
    /// prior's actions (see the module docs, "Temperature units").
    #[serde(default)]
    pub alpha_scale: AlphaScale,
    /// Trajectories per state, k.
    pub trajectories: usize,
    /// Trajectories per backward pass (bounds memory; 0 = the whole batch at once). The gradient
    /// does not depend on it (up to float rounding). 128 is also the fastest measured on the CPU
    /// (benches/rtb.rs): larger chunks' buffers exceed what the allocator keeps for reuse.
    pub chunk: usize,
    /// Adam learning rate of the correction.
    pub lr: f64,
    /// Adam ε (PyTorch's default 1e-8, as the paper's code; burn's default is 1e-5).
    pub adam_eps: f64,
    /// On-policy updates per batch.
    pub on_policy: usize,
    /// Off-policy updates per batch (dataset actions, forward-noised).
    pub off_policy: usize,
    pub log_z: LogZConfig,
    pub correction: CorrectionConfig,
    /// Add the tanh Jacobian to the reward when the prior models pre-tanh actions (see the module
    /// docs).
    pub tanh_jacobian: bool,
    /// Trajectories whose `δ²` is below this contribute neither loss nor gradient: each
    /// contributes `½·max(δ² − c, 0)` (the outsourced-sampling code's `learning_cutoff`, 0.1
    /// there). 0: the plain `½ δ²` (the RTB paper).
    #[serde(default)]
    pub loss_cutoff: f64,
    /// Clip the correction's gradient to this global norm before each step (the
    /// outsourced-sampling code: 0.1). 0: off (the RTB paper).
    #[serde(default)]
    pub grad_clip: f64,
    /// Updates on replayed samples: a buffer of past on-policy trajectory ends per state.
    #[serde(default)]
    pub replay: ReplayConfig,
    /// When acting, repeat the final denoising step (t = 1, with its noise and reward gradient)
    /// this many more times: the paper's code's `--extra` (20 steps; off by default there).
    #[serde(default)]
    pub eval_extra_steps: usize,
    /// When acting, multiply the chain's noise draws by this (1 samples π; below 1 acts at a
    /// lower temperature, towards π's modes).
    #[serde(default = "crate::config::one")]
    pub act_noise_scale: f64,
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for RtbConfig {
    /// The paper's settings (App. G and its code): 64 states × 64 trajectories, Adam 5e-4, one
    /// on- and one off-policy update per batch, 150k batches, evaluation every 5000.
    fn default() -> Self {
        Self {
            prior: String::new(),
            critic: String::new(),
            alpha: 0.1,
            alpha_scale: AlphaScale::Absolute,
            trajectories: 64,
            chunk: 128,
            lr: 5e-4,
            adam_eps: 1e-8,
            on_policy: 1,
            off_policy: 1,
            log_z: LogZConfig::default(),
            correction: CorrectionConfig::default(),
            tanh_jacobian: true,
            loss_cutoff: 0.0,
            grad_clip: 0.0,
            replay: ReplayConfig::default(),
            eval_extra_steps: 0,
            act_noise_scale: 1.0,
            // Observations are normalised with the prior's statistics, Q has its own: the
            // data spec only checks dimensions.
            data: DataConfig {
                normalize_obs: false,
                reward_norm: RewardNorm::None,
            },
            train: LoopConfig {
                steps: 150_000,
                batch_size: 64,
                log_every: 100,
                checkpoint_every: 5000,
                eval_every: 5000,
                holdout: 0.0,
            },
        }
    }
}

/// The replay buffer of past on-policy samples (the outsourced-sampling code's `ReplayBuffer`,
/// uniform sampling): each entry is a state and the k ends of its trajectories, so a replayed
/// update has k trajectories per state for its VarGrad `log Z`, noised afresh along the forward
/// process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// Updates on replayed samples per batch (after the on- and off-policy ones); 0: no buffer.
    pub updates: usize,
    /// States kept (the oldest are overwritten).
    pub capacity: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            updates: 0,
            capacity: 1000,
        }
    }
}

/// The units of RTB's temperature α.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlphaScale {
    /// `log r = Q/α` (the paper).
    #[default]
    Absolute,
    /// `log r = Q/(α σ_Q)` with `σ_Q` the critic's spread over the prior's actions.
    QSpread,
}

/// The temperature `log r` divides Q by: `alpha` itself, or `alpha · σ_Q` under
/// [`AlphaScale::QSpread`] (refused, naming `model`, when the measured spread is not positive).
pub fn scaled_alpha(alpha: f64, scale: AlphaScale, spread: f64, model: &str) -> Result<f64> {
    match scale {
        AlphaScale::Absolute => Ok(alpha),
        AlphaScale::QSpread if spread > 0.0 && spread.is_finite() => Ok(alpha * spread),
        AlphaScale::QSpread => Err(Error::InvalidData(format!(
            "{model}: alpha_scale = \"q_spread\", but the critic's spread over the {model} \
             samples' actions is {spread}: Q does not tell them apart at these states; set alpha \
             in absolute units"
        ))),
    }
}

/// `σ_Q` at the raw states `obs` (`n` rows of `obs_dim`): [`mean_spread`] of `q` over
/// [`Q_SPREAD_SAMPLES`] of the behaviour policy `mu`'s actions per state. Give `mu` its own
/// generator, so that measuring leaves the training's random stream as it was.
pub fn q_spread(
    mu: &mut dyn crate::policy::Policy,
    q: &dyn crate::policy::ActionScorer,
    obs: &[f32],
    obs_dim: usize,
    n: usize,
) -> Result<f64> {
    let k = Q_SPREAD_SAMPLES;
    let repeated: Vec<f32> = obs
        .chunks(obs_dim)
        .flat_map(|o| std::iter::repeat_n(o, k).flatten().copied())
        .collect();
    let actions = mu.act(&repeated, n * k)?;
    Ok(mean_spread(&q.score(&repeated, &actions, n * k)?, k))
}

/// Actions drawn from μ per state to measure the critic's spread `σ_Q`.
pub const Q_SPREAD_SAMPLES: usize = 16;

/// The mean over states of the (population) standard deviation of `q`, which holds `k`
/// consecutive values per state.
pub fn mean_spread(q: &[f32], k: usize) -> f64 {
    let states = q.len() / k;
    let sd = |row: &[f32]| {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / k as f64;
        (row.iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / k as f64)
            .sqrt()
    };
    q.chunks(k).map(sd).sum::<f64>() / states as f64
}

/// How `log Z(s)` is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogZKind {
    /// Per-state batch estimate from the k trajectories, detached (the paper's code).
    #[default]
    Vargrad,
    /// A network `log Z_φ(s)` trained by the same loss (its output bias starts at the first
    /// batch's estimate).
    Learned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogZConfig {
    pub kind: LogZKind,
    pub lr: f64,
    pub width: usize,
    pub hidden: usize,
}

impl Default for LogZConfig {
    fn default() -> Self {
        Self {
            kind: LogZKind::Vargrad,
            lr: 1e-3,
            width: 256,
            hidden: 2,
        }
    }
}

/// How the correction network starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorrectionInit {
    /// Fresh hidden layers, zero output layers: π = μ at step 0.
    #[default]
    Zero,
    /// Hidden layers copied from the prior network, zero output layers: π = μ at step 0.
    PriorFeatures,
    /// The paper's code: the whole prior network copied (ε_π ≈ 2 ε_μ at step 0) and a random `c(t)`.
    CopyPrior,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrectionConfig {
    /// Shape of NN(s, x_t, t). Must equal the prior's for `prior_features` / `copy_prior`.
    pub net: EpsNetConfig,
    pub init: CorrectionInit,
    /// The `c(t) ⊙ ∇ log r(s, x_t)` term.
    pub langevin: bool,
    /// The reward gradient is clamped to ±this.
    pub langevin_clip: f64,
    /// Hidden width / layers of `c(t)` (LayerNorm + GELU, as in the paper's code).
    pub langevin_width: usize,
    pub langevin_hidden: usize,
}

impl Default for CorrectionConfig {
    fn default() -> Self {
        Self {
            net: EpsNetConfig::default(),
            init: CorrectionInit::Zero,
            langevin: true,
            langevin_clip: 100.0,
            langevin_width: 128,
            langevin_hidden: 2,
        }
    }
}

impl RtbConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return bad(format!(
                "alpha must be positive and finite, got {}",
                self.alpha
            ));
        }
        if self.trajectories == 0 {
            return bad("trajectories must be at least 1".into());
        }
        if self.on_policy + self.off_policy == 0 {
            return bad("on_policy + off_policy must be at least 1".into());
        }
        if self.lr.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
            || self.log_z.lr.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return bad("learning rates must be positive".into());
        }
        if self.correction.langevin_clip.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return bad("correction.langevin_clip must be positive".into());
        }
        crate::diffusion::check_noise_scale(self.act_noise_scale)?;
        for (key, v) in [
            ("loss_cutoff", self.loss_cutoff),
            ("grad_clip", self.grad_clip),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("{key} must be a non-negative number, got {v}"));
            }
        }
        if self.replay.updates > 0 && self.replay.capacity == 0 {
            return bad("replay.capacity must be at least 1 when replay.updates > 0".into());
        }
        Ok(())
    }
}
