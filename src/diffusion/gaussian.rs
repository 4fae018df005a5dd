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

/// `log p(x_prev | x_t)` under [`reverse_step`] for rows at their own steps `t` (`[rows]`): the
/// same density as `reverse_step(schedule, x_t, eps, t).log_prob(x_prev)` for each row, with the
/// step's coefficients as columns, so that a stack of many steps' rows is a few tensor operations
/// instead of a few per step.
pub fn reverse_log_prob_rows(
    schedule: &NoiseSchedule,
    x_t: Tensor<2>,
    eps: Tensor<2>,
    x_prev: Tensor<2>,
    t: &[usize],
) -> Tensor<1> {
    let [rows, cols] = x_t.dims();
    let device = x_t.device();
    let column = |f: &dyn Fn(usize) -> f64| {
        let values: Vec<f32> = t.iter().map(|&s| f(s) as f32).collect();
        crate::nn::tensor2(&values, rows, 1, &device)
    };
    let mean =
        x_t * column(&|s| schedule.mean_coef_xt[s]) - eps * column(&|s| schedule.mean_coef_eps[s]);
    let half_precision = column(&|s| 0.5 / (schedule.std[s] * schedule.std[s]));
    let log_norm = column(&|s| log_normaliser(cols, schedule.std[s]));
    ((x_prev - mean).square().sum_dim(1) * half_precision + log_norm)
        .neg()
        .reshape([rows])
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
    let log_norm = log_normaliser(cols, std);
    (x - mean)
        .square()
        .sum_dim(1)
        .reshape([rows])
        .mul_scalar(-0.5 / (std * std))
        .sub_scalar(log_norm)
}

/// `log((2π)^{d/2} σ^d)`: the normalising constant of an isotropic d-dimensional Gaussian.
fn log_normaliser(dims: usize, std: f64) -> f64 {
    dims as f64 * (std.ln() + 0.5 * (2.0 * std::f64::consts::PI).ln())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::schedule::ScheduleConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn rows_at_their_own_steps_have_the_single_step_density() {
        let device = Device::flex();
        let schedule = NoiseSchedule::new(&ScheduleConfig {
            steps: 10,
            ..Default::default()
        })
        .unwrap();
        let steps = [1, 10, 5, 5, 3, 1, 8];
        let (n, d) = (steps.len(), 3);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x_t = normal_noise(&mut rng, n, d, &device);
        let eps = normal_noise(&mut rng, n, d, &device);
        let x_prev = normal_noise(&mut rng, n, d, &device);
        let rows =
            reverse_log_prob_rows(&schedule, x_t.clone(), eps.clone(), x_prev.clone(), &steps);
        let rows = crate::nn::to_vec(rows);
        for (i, &t) in steps.iter().enumerate() {
            let one = |v: &Tensor<2>| v.clone().slice(i..i + 1);
            let single = reverse_step(&schedule, one(&x_t), one(&eps), t).log_prob(one(&x_prev));
            let single = crate::nn::to_vec(single)[0];
            // Step 1's σ is small: its densities are large, compare relatively.
            let tol = 1e-5 * single.abs().max(1.0);
            assert!(
                (rows[i] - single).abs() <= tol,
                "row {i} (t = {t}): {} vs {single}",
                rows[i]
            );
        }
    }
}
