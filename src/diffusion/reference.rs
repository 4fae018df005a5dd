//! The reference process of noise-space samplers: the DDPM chain of standard-normal data.
//!
//! For data `x_0 ~ N(0, I)` every forward marginal is `N(0, I)` and the exact ε-predictor is
//! `ε*(x_t, t) = E[ε | x_t] = √(1 − ᾱ_t)·x_t`. The reverse step's mean is then
//! `(x_t − β_t/√(1 − ᾱ_t)·ε*)/√α_t = √(1 − β_t)·x_t`, so with the reverse variance β_t
//! ([`Variance::Beta`](super::Variance)) the reverse kernel is the forward kernel
//! `x_{t-1} = √(1 − β_t)·x_t + √β_t·ξ`, under which `N(0, I)` is invariant exactly, on any schedule
//! and at any number of steps. (With the forward-posterior variance β̃_t < β_t the chain's
//! variance shrinks below 1.) A posterior `ε_π = ε* + correction` on this model is a diffusion
//! sampler over the noise `z` of a deterministic generator `a = f(s, z)`.

use burn::tensor::Tensor;

use super::model::EpsModel;
use super::schedule::NoiseSchedule;

/// [`EpsModel`] of `N(0, I)` data in `dim` dimensions on `schedule` (ignores the observations).
#[derive(Debug, Clone)]
pub struct StandardNormal {
    pub schedule: NoiseSchedule,
    pub dim: usize,
}

impl EpsModel for StandardNormal {
    fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    fn act_dim(&self) -> usize {
        self.dim
    }

    fn eps_rows(&self, _obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2> {
        let device = x_t.device();
        let coef: Vec<f32> = t
            .iter()
            .map(|&t| (1.0 - self.schedule.alpha_bar[t]).sqrt() as f32)
            .collect();
        x_t * crate::nn::tensor2(&coef, t.len(), 1, &device)
    }

    fn eps(&self, _obs: Tensor<2>, x_t: Tensor<2>, t: usize) -> Tensor<2> {
        x_t.mul_scalar((1.0 - self.schedule.alpha_bar[t]).sqrt())
    }
}
