//! The noise schedule of a discrete-time DDPM and the distribution its reverse chain starts from.
//!
//! Conventions (Ho et al. 2020): steps `t = 1..=T`; `x_0` is the data, `x_T` the noisiest
//! state. Forward: `q(x_t | x_{t-1}) = N(√α_t x_{t-1}, β_t I)`, `α_t = 1 − β_t`,
//! `ᾱ_t = ∏_{s≤t} α_s` (`ᾱ_0 = 1`), so `q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)`.
//! Reverse: `p(x_{t-1} | x_t) = N(μ_t(x_t, ε̂), σ_t² I)` with the ε-parameterised mean
//! `μ_t = (x_t − β_t/√(1−ᾱ_t) · ε̂) / √α_t`, which equals the forward posterior mean
//! `μ̃_t(x_t, x̂_0)` at `x̂_0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t`.
//!
//! All per-step constants are computed once in f64 when the schedule is built.
//!
//! # Where the chain starts
//! With the paper's T = 75 and the linear schedule 1e-4 → 0.02, the forward process does not
//! reach N(0, I): ᾱ_T ≈ 0.47 here (≈ 0.45 in the paper's code, whose linear schedule has T + 1
//! entries), so `q(x_T)` keeps about 70 % of the data's scale. The paper's code nevertheless
//! samples `x_T ~ N(0, I)`. [`StartKind::StandardNormal`] does the same (the default: it is what
//! the published numbers used, and RTB's ratio `π/μ` is unaffected because both chains start from
//! the same distribution). [`StartKind::Marginal`] instead starts from the moment-matched Gaussian
//! of `q(x_T)`: per action dimension `N(√ᾱ_T m, ᾱ_T s² + 1 − ᾱ_T)` with the dataset's
//! (model-space) action mean `m` and std `s` — the closest Gaussian to what the network saw at
//! `t = T` in training. The cosine and VP schedules reach ᾱ_T ≈ 0, where both choices agree.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How β_t grows with t.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// β_t linear from `beta_start` to `beta_end` (Ho et al.; the RTB paper's default).
    #[default]
    Linear,
    /// ᾱ_t = cos²((t/T + s)/(1 + s) · π/2) normalised, β clipped at 0.999 (Nichol & Dhariwal).
    Cosine,
    /// Discretised VP-SDE: α_t = exp(−b_min/T − (b_max − b_min)(2t − 1)/(2T²)) (Diffusion-QL).
    Vp,
}

/// The reverse-step variance σ_t².
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variance {
    /// σ_t² = β_t (the paper's code; noise is added at every step, t = 1 included).
    #[default]
    Beta,
    /// σ_t² = β̃_t = β_t (1 − ᾱ_{t−1})/(1 − ᾱ_t), with β̃_1 (= 0) replaced by β̃_2 so that every
    /// transition keeps a density (as improved DDPM clips its log-variance).
    Posterior,
}

/// Where a chain respaced to fewer steps keeps them ([`NoiseSchedule::respaced_by`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spacing {
    /// `t_k = round(k·T/K)`.
    #[default]
    Even,
    /// `t_k = round((k/K)²·T)`: short steps near the data, long ones near noise (DDIM's
    /// quadratic skip, Song, Meng & Ermon 2021, App. D.2; FastDPM's quadratic noise levels, the
    /// schedule of DxMI's few-step sampler).
    Quadratic,
}

/// The distribution `x_T` is drawn from (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartKind {
    #[default]
    StandardNormal,
    Marginal,
}

/// Schedule settings (the `[schedule]` table of a prior config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    /// Number of diffusion steps T.
    pub steps: usize,
    pub kind: ScheduleKind,
    pub beta_start: f64,
    pub beta_end: f64,
    /// Offset `s` of the cosine schedule.
    pub cosine_s: f64,
    pub vp_beta_min: f64,
    pub vp_beta_max: f64,
    pub variance: Variance,
    pub start: StartKind,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            steps: 75,
            kind: ScheduleKind::Linear,
            beta_start: 1e-4,
            beta_end: 0.02,
            cosine_s: 0.008,
            vp_beta_min: 0.1,
            vp_beta_max: 10.0,
            variance: Variance::Beta,
            start: StartKind::StandardNormal,
        }
    }
}

/// The start distribution `N(mean, diag(std²))` of `x_T`; empty vectors mean `N(0, I)`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StartDistribution {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl StartDistribution {
    pub fn is_standard(&self) -> bool {
        self.mean.is_empty()
    }
}

/// Per-step constants of a DDPM chain; vectors are indexed by `t` (`0..=T`, index 0 is the data
/// level: `alpha_bar[0] = 1`, `beta[0] = 0`).
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    pub config: ScheduleConfig,
    pub beta: Vec<f64>,
    pub alpha: Vec<f64>,
    pub alpha_bar: Vec<f64>,
    /// Forward-posterior mean `μ̃_t = coef_x0 · x_0 + coef_xt · x_t`.
    pub posterior_coef_x0: Vec<f64>,
    pub posterior_coef_xt: Vec<f64>,
    /// Forward-posterior variance β̃_t (β̃_1 = 0).
    pub posterior_variance: Vec<f64>,
    /// Reverse-step mean `μ_t = mean_coef_xt · x_t − mean_coef_eps · ε̂`.
    pub mean_coef_xt: Vec<f64>,
    pub mean_coef_eps: Vec<f64>,
    /// Reverse-step standard deviation σ_t.
    pub std: Vec<f64>,
    pub start: StartDistribution,
}

impl NoiseSchedule {
    /// Build the schedule (starting from `N(0, I)`; see [`NoiseSchedule::with_start`]).
    pub fn new(config: &ScheduleConfig) -> Result<Self> {
        let t_max = config.steps;
        if t_max == 0 {
            return Err(Error::Config("schedule.steps must be at least 1".into()));
        }
        let tf = t_max as f64;
        let mut beta = vec![0.0; t_max + 1];
        match config.kind {
            ScheduleKind::Linear => {
                let (b0, b1) = (config.beta_start, config.beta_end);
                if !(0.0 < b0 && b0 <= b1 && b1 < 1.0) {
                    return Err(Error::Config(format!(
                        "linear schedule needs 0 < beta_start <= beta_end < 1, got {b0} and {b1}"
                    )));
                }
                for (t, b) in beta.iter_mut().enumerate().skip(1) {
                    let frac = if t_max == 1 {
                        0.0
                    } else {
                        (t - 1) as f64 / (tf - 1.0)
                    };
                    *b = b0 + (b1 - b0) * frac;
                }
            }
            ScheduleKind::Cosine => {
                let s = config.cosine_s;
                if s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                    return Err(Error::Config(format!("cosine_s must be > 0, got {s}")));
                }
                let f = |t: f64| ((t / tf + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2).cos();
                for (t, b) in beta.iter_mut().enumerate().skip(1) {
                    let ratio = (f(t as f64) / f(t as f64 - 1.0)).powi(2);
                    *b = (1.0 - ratio).clamp(0.0, 0.999);
                }
            }
            ScheduleKind::Vp => {
                let (lo, hi) = (config.vp_beta_min, config.vp_beta_max);
                if !(0.0 < lo && lo <= hi) {
                    return Err(Error::Config(format!(
                        "vp schedule needs 0 < vp_beta_min <= vp_beta_max, got {lo} and {hi}"
                    )));
                }
                for (t, b) in beta.iter_mut().enumerate().skip(1) {
                    let a = (-lo / tf - 0.5 * (hi - lo) * (2.0 * t as f64 - 1.0) / (tf * tf)).exp();
                    *b = 1.0 - a;
                }
            }
        }
        Ok(Self::from_beta(config, beta))
    }

    /// The schedule of the per-step `beta` (`beta[0] = 0`, `beta.len() = config.steps + 1`).
    fn from_beta(config: &ScheduleConfig, beta: Vec<f64>) -> Self {
        let t_max = beta.len() - 1;
        let alpha: Vec<f64> = beta.iter().map(|b| 1.0 - b).collect();
        let mut alpha_bar = vec![1.0; t_max + 1];
        for t in 1..=t_max {
            alpha_bar[t] = alpha_bar[t - 1] * alpha[t];
        }
        let mut posterior_coef_x0 = vec![0.0; t_max + 1];
        let mut posterior_coef_xt = vec![0.0; t_max + 1];
        let mut posterior_variance = vec![0.0; t_max + 1];
        let mut mean_coef_xt = vec![0.0; t_max + 1];
        let mut mean_coef_eps = vec![0.0; t_max + 1];
        for t in 1..=t_max {
            let (ab, ab_prev) = (alpha_bar[t], alpha_bar[t - 1]);
            posterior_coef_x0[t] = ab_prev.sqrt() * beta[t] / (1.0 - ab);
            posterior_coef_xt[t] = alpha[t].sqrt() * (1.0 - ab_prev) / (1.0 - ab);
            posterior_variance[t] = beta[t] * (1.0 - ab_prev) / (1.0 - ab);
            mean_coef_xt[t] = 1.0 / alpha[t].sqrt();
            mean_coef_eps[t] = beta[t] / (alpha[t].sqrt() * (1.0 - ab).sqrt());
        }
        let std = (0..=t_max)
            .map(|t| match config.variance {
                _ if t == 0 => 0.0,
                Variance::Beta => beta[t].sqrt(),
                Variance::Posterior if t == 1 && t_max > 1 => posterior_variance[2].sqrt(),
                Variance::Posterior if t == 1 => beta[1].sqrt(),
                Variance::Posterior => posterior_variance[t].sqrt(),
            })
            .collect();
        Self {
            config: config.clone(),
            beta,
            alpha,
            alpha_bar,
            posterior_coef_x0,
            posterior_coef_xt,
            posterior_variance,
            mean_coef_xt,
            mean_coef_eps,
            std,
            start: StartDistribution::default(),
        }
    }

    /// This chain on `steps` of its steps, evenly spaced — `t_k = round(k·T/K)`, `k = 1..=K` —
    /// with `β'_k = 1 − ᾱ_{t_k}/ᾱ_{t_{k−1}}`: the same `ᾱ` at the kept steps, so a network
    /// trained on this chain predicts the noise of the short one when called at `t_k` (the
    /// respacing of improved DDPM, Nichol & Dhariwal 2021, §4). Returns the short chain and
    /// the kept steps (`kept[k] = t_k`, `kept[0] = 0`). Its σ follow the same `variance` rule.
    pub fn respaced(&self, steps: usize) -> Result<(NoiseSchedule, Vec<usize>)> {
        self.respaced_by(steps, Spacing::Even)
    }

    /// [`NoiseSchedule::respaced`] with the kept steps placed by `spacing`.
    pub fn respaced_by(
        &self,
        steps: usize,
        spacing: Spacing,
    ) -> Result<(NoiseSchedule, Vec<usize>)> {
        let t_max = self.steps();
        if steps == 0 || steps > t_max {
            return Err(Error::Config(format!(
                "schedule.steps = {steps}: a chain of {t_max} steps respaces to 1..={t_max} steps"
            )));
        }
        let mut kept: Vec<usize> = (0..=steps)
            .map(|k| {
                let frac = k as f64 / steps as f64;
                let frac = match spacing {
                    Spacing::Even => frac,
                    Spacing::Quadratic => frac * frac,
                };
                (frac * t_max as f64).round() as usize
            })
            .collect();
        // Distinct steps (a quadratic spacing of a long K on a short T would repeat its first).
        for k in 1..=steps {
            kept[k] = kept[k].max(kept[k - 1] + 1).min(t_max - (steps - k));
        }
        let mut beta = vec![0.0; steps + 1];
        for k in 1..=steps {
            beta[k] = 1.0 - self.alpha_bar[kept[k]] / self.alpha_bar[kept[k - 1]];
        }
        let config = ScheduleConfig {
            steps,
            ..self.config.clone()
        };
        Ok((Self::from_beta(&config, beta), kept))
    }

    /// The same chain (its β, ᾱ and start) with σ_t by another `variance` rule.
    pub fn with_variance(&self, variance: Variance) -> Self {
        let config = ScheduleConfig {
            variance,
            ..self.config.clone()
        };
        Self::from_beta(&config, self.beta.clone()).with_start(self.start.clone())
    }

    /// Start the reverse chain from `start` instead of `N(0, I)`.
    pub fn with_start(mut self, start: StartDistribution) -> Self {
        self.start = start;
        self
    }

    /// The start distribution the config asks for, given the training actions' per-dimension
    /// mean and std in model space (used by [`StartKind::Marginal`] only).
    pub fn start_for(&self, action_mean: &[f32], action_std: &[f32]) -> StartDistribution {
        match self.config.start {
            StartKind::StandardNormal => StartDistribution::default(),
            StartKind::Marginal => {
                let ab = self.alpha_bar[self.steps()];
                StartDistribution {
                    mean: action_mean
                        .iter()
                        .map(|&m| (ab.sqrt() * f64::from(m)) as f32)
                        .collect(),
                    std: action_std
                        .iter()
                        .map(|&s| (ab * f64::from(s).powi(2) + 1.0 - ab).sqrt() as f32)
                        .collect(),
                }
            }
        }
    }

    /// T.
    pub fn steps(&self) -> usize {
        self.config.steps
    }

    /// Signal-to-noise ratio of `q(x_t | x_0)`: ᾱ_t / (1 − ᾱ_t).
    pub fn snr(&self, t: usize) -> f64 {
        self.alpha_bar[t] / (1.0 - self.alpha_bar[t])
    }

    /// Min-SNR-γ loss weight for ε-prediction (Hang et al. 2023): min(γ / SNR_t, 1).
    pub fn min_snr_weight(&self, t: usize, gamma: f64) -> f64 {
        (gamma / self.snr(t)).min(1.0)
    }

    /// The network's time input for step t: τ = (T − t)/T ∈ [0, 1), as in the paper's code
    /// (τ = 0 at the noisiest step).
    pub fn time_input(&self, t: usize) -> f64 {
        (self.steps() - t) as f64 / self.steps() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn linear_schedule_matches_its_definition() {
        let s = NoiseSchedule::new(&ScheduleConfig::default()).unwrap();
        assert_eq!(s.steps(), 75);
        assert!(close(s.beta[1], 1e-4, 1e-12));
        assert!(close(s.beta[75], 0.02, 1e-12));
        assert!(close(s.beta[38] - s.beta[37], (0.02 - 1e-4) / 74.0, 1e-9));
        // ᾱ_T by direct product.
        let prod: f64 = (1..=75)
            .map(|t| 1.0 - (1e-4 + (0.02 - 1e-4) * (t - 1) as f64 / 74.0))
            .product();
        assert!(close(s.alpha_bar[75], prod, 1e-12));
        assert!(
            s.alpha_bar[75] > 0.46 && s.alpha_bar[75] < 0.48,
            "{}",
            s.alpha_bar[75]
        );
    }

    #[test]
    fn eps_mean_equals_posterior_mean_at_predicted_x0() {
        for kind in [ScheduleKind::Linear, ScheduleKind::Cosine, ScheduleKind::Vp] {
            let s = NoiseSchedule::new(&ScheduleConfig {
                kind,
                steps: 20,
                ..Default::default()
            })
            .unwrap();
            let (xt, eps) = (0.7, -1.3);
            for t in 1..=20 {
                let ab = s.alpha_bar[t];
                let x0 = (xt - (1.0 - ab).sqrt() * eps) / ab.sqrt();
                let posterior = s.posterior_coef_x0[t] * x0 + s.posterior_coef_xt[t] * xt;
                let eps_mean = s.mean_coef_xt[t] * xt - s.mean_coef_eps[t] * eps;
                assert!(close(posterior, eps_mean, 1e-9), "{kind:?} t={t}");
            }
            assert!(s.beta.iter().all(|b| (0.0..1.0).contains(b)));
        }
    }

    #[test]
    fn cosine_and_vp_reach_noise() {
        for kind in [ScheduleKind::Cosine, ScheduleKind::Vp] {
            let s = NoiseSchedule::new(&ScheduleConfig {
                kind,
                ..Default::default()
            })
            .unwrap();
            assert!(s.alpha_bar[75] < 0.01, "{kind:?}: {}", s.alpha_bar[75]);
        }
    }

    #[test]
    fn respacing_keeps_alpha_bar_at_the_kept_steps() {
        let full = NoiseSchedule::new(&ScheduleConfig::default()).unwrap();
        let (same, kept) = full.respaced(75).unwrap();
        assert_eq!(kept, (0..=75).collect::<Vec<_>>());
        for t in 1..=75 {
            assert!(close(same.beta[t], full.beta[t], 1e-9), "β at {t}");
        }
        let (short, kept) = full.respaced(4).unwrap();
        assert_eq!(kept, vec![0, 19, 38, 56, 75]);
        for (k, &t) in kept.iter().enumerate() {
            assert!(
                close(short.alpha_bar[k], full.alpha_bar[t], 1e-12),
                "ᾱ at {t}"
            );
        }
        assert_eq!(short.steps(), 4);
        assert!(full.respaced(0).is_err() && full.respaced(76).is_err());
        let (_, kept) = full.respaced_by(4, Spacing::Quadratic).unwrap();
        assert_eq!(kept, vec![0, 5, 19, 42, 75]);
        let (_, kept) = full.respaced_by(75, Spacing::Quadratic).unwrap();
        assert_eq!(kept, (0..=75).collect::<Vec<_>>());
    }

    #[test]
    fn variances_weights_and_start() {
        let cfg = ScheduleConfig {
            variance: Variance::Posterior,
            start: StartKind::Marginal,
            ..Default::default()
        };
        let s = NoiseSchedule::new(&cfg).unwrap();
        assert_eq!(s.posterior_variance[1], 0.0);
        assert!(close(s.std[1], s.posterior_variance[2].sqrt(), 1e-12));
        assert!(close(s.std[10], s.posterior_variance[10].sqrt(), 1e-12));
        // Min-SNR: weight 1 where SNR <= γ, γ/SNR above.
        let w = s.min_snr_weight(1, 5.0);
        assert!(close(
            w,
            5.0 * (1.0 - s.alpha_bar[1]) / s.alpha_bar[1],
            1e-12
        ));
        assert_eq!(s.min_snr_weight(75, 5.0), 1.0);
        let start = s.start_for(&[0.5], &[2.0]);
        let ab = s.alpha_bar[75];
        assert!(close(f64::from(start.mean[0]), ab.sqrt() * 0.5, 1e-6));
        assert!(close(
            f64::from(start.std[0]),
            (4.0 * ab + 1.0 - ab).sqrt(),
            1e-6
        ));
        assert_eq!(s.time_input(75), 0.0);
        assert!(close(s.time_input(1), 74.0 / 75.0, 1e-12));
        assert!(NoiseSchedule::new(&ScheduleConfig {
            steps: 0,
            ..Default::default()
        })
        .is_err());
    }
}
