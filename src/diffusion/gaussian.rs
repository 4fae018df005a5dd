//! The Gaussian pieces every chain computation shares: the reverse step `p(x_{t-1} | x_t)` given
//! a predicted ε, the forward step `q(x_t | x_{t-1})`, one diagonal-Gaussian log-density, and
//! standard-normal noise drawn from a seeded Rust RNG (so samples depend on the seed only, not
//! on the backend).

use burn::tensor::{Device, Tensor};
use rand::Rng;
use rand_distr::StandardNormal;

use super::schedule::NoiseSchedule;

/// An isotropic Gaussian transition: `N(mean, std² I)` per row.
#[derive(Debug, Clone)]
pub struct Transition {
    pub mean: Tensor<2>,
    pub std: f64,
}

impl Transition {
    /// A draw `mean + std · noise` for standard-normal `noise` of the mean's shape.
    pub fn sample(self, noise: Tensor<2>) -> Tensor<2> {
        self.mean + noise.mul_scalar(self.std)
    }

    /// Log-density of `x` under this transition, summed over columns: `[rows]`.
    pub fn log_prob(&self, x: Tensor<2>) -> Tensor<1> {
        gaussian_log_prob(x, self.mean.clone(), self.std)
    }
}

/// The reverse transition `p(x_{t-1} | x_t)` for predicted noise `eps` at step `t` (1..=T):
/// mean `(x_t − β_t/√(1−ᾱ_t) · ε̂)/√α_t`, std σ_t. The one implementation of the denoising step:
/// the sampler and every log-likelihood go through it.
pub fn reverse_step(
    schedule: &NoiseSchedule,
    x_t: Tensor<2>,
    eps: Tensor<2>,
    t: usize,
) -> Transition {
    let mean = x_t.mul_scalar(schedule.mean_coef_xt[t]) - eps.mul_scalar(schedule.mean_coef_eps[t]);
    Transition {
        mean,
        std: schedule.std[t],
    }
}

/// The forward transition `q(x_t | x_{t-1}) = N(√α_t x_{t-1}, β_t I)`.
pub fn forward_step(schedule: &NoiseSchedule, x_prev: Tensor<2>, t: usize) -> Transition {
    Transition {
        mean: x_prev.mul_scalar(schedule.alpha[t].sqrt()),
        std: schedule.beta[t].sqrt(),
    }
}

/// `log N(x; mean, std² I)` summed over the columns: `[rows]`.
pub fn gaussian_log_prob(x: Tensor<2>, mean: Tensor<2>, std: f64) -> Tensor<1> {
    let [rows, cols] = x.dims();
    let log_norm = cols as f64 * (std.ln() + 0.5 * (2.0 * std::f64::consts::PI).ln());
    (x - mean)
        .square()
        .sum_dim(1)
        .reshape([rows])
        .mul_scalar(-0.5 / (std * std))
        .sub_scalar(log_norm)
}

/// `len` standard-normal f32 draws.
pub fn normal_vec<R: Rng + ?Sized>(rng: &mut R, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect()
}

/// A `[rows, cols]` tensor of standard-normal noise drawn (row-major) from `rng`.
pub fn normal_noise<R: Rng + ?Sized>(
    rng: &mut R,
    rows: usize,
    cols: usize,
    device: &Device,
) -> Tensor<2> {
    crate::nn::tensor2(&normal_vec(rng, rows * cols), rows, cols, device)
}
