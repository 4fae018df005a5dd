//! DDIM with η = 0 (Song, Meng & Ermon, ICLR 2021): a trained chain as a **deterministic map** of
//! its start noise, and that map's inverse.
//!
//! On `K` of the chain's `T` steps (`t_k = round(k·T/K)`, the respacing of
//! [`NoiseSchedule::respaced`]: the network is called at the steps it was trained on), one step
//! from `t` to `s < t` is
//!
//! `x̂₀ = (x_t − √(1−ᾱ_t)·ε̂(x_t, t)) / √ᾱ_t`,  `x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s)·ε̂(x_t, t)`,
//!
//! with no noise. The map starts where the chain's own sampler starts, `x_T = m + σ ⊙ z`
//! (`N(0, I)`, or the marginal start a prior was trained with: [`super::StartDistribution`]), so
//! `z ~ N(0, I)` gives the chain's start distribution.
//!
//! **Which schedules it suits** (measured on a two-mode mixture, `src/algos/diffusion_bc.rs`
//! tests; weight of the 0.75 mode): a schedule that nearly reaches noise, linear β to 0.3 in 20
//! steps (ᾱ_T = 0.034): DDIM 0.745, the ancestral chain 0.746. A schedule that ends at
//! ᾱ_T ≈ 0.46 (the `cpu` profile's prior) is not at noise there: started at `N(0, 1)` DDIM gives
//! 0.666 (the ancestral chain's noise partly repairs the mismatch: 0.734). A schedule that
//! reaches ᾱ_T ≈ 0 exactly (cosine, ᾱ_T = 6e-6) is worse for DDIM, 0.849: its first step
//! divides ε̂'s error by √ᾱ_T (clipping x̂₀ to the box, as image samplers do, gave 0.774; not
//! kept). On locomotion data: `results/flow` and `configs/profiles/cpu.toml`.
//!
//! **Inversion** (`x₀ → z`) runs the steps upwards. A step's inverse solves
//! `c_x·x_t + c_ε·ε̂(x_t, t) = x_s` with `c_x = √(ᾱ_s/ᾱ_t)`, `c_ε = √(1−ᾱ_s) − c_x·√(1−ᾱ_t)`. The
//! usual DDIM inversion evaluates ε̂ at `x_s` instead (one pass, an O(step) error); here that
//! guess is refined by Newton steps ([`crate::nn::newton_inverse`]; fixed-point iteration stalls
//! at the top step of a schedule that reaches noise), so that a round trip returns its input to
//! round-off on smooth networks (`src/algos/diffusion_bc.rs`, tests). The residual is reported,
//! not assumed.

use burn::tensor::Tensor;

use super::model::EpsModel;
use super::schedule::NoiseSchedule;
use crate::error::{Error, Result};

/// The kept steps of a K-step DDIM map of a chain, and how it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Ddim {
    /// `t_0 = 0 < t_1 < … < t_K = T` of the chain.
    pub kept: Vec<usize>,
    /// `√ᾱ` and `√(1−ᾱ)` at each kept step.
    sqrt_ab: Vec<f64>,
    sqrt_1mab: Vec<f64>,
    /// `x_T = start_mean + start_std ⊙ z` per action dimension (empty: `x_T = z`).
    start_mean: Vec<f32>,
    start_std: Vec<f32>,
    /// Newton steps per inverted step.
    pub inversion_iterations: usize,
}

/// Newton steps per inverted step by default, from the usual DDIM guess (an O(step) error away).
/// Measured on the mixture test's prior, round trip after 2 / 4 / 8 / 16 steps: 9e-2 / 6e-3 /
/// 5e-6 / 5e-6 (f32 round-off).
pub const INVERSION_ITERATIONS: usize = 8;

impl Ddim {
    /// DDIM on `steps` of `schedule`'s steps (`0` = all of them).
    pub fn new(schedule: &NoiseSchedule, steps: usize) -> Result<Self> {
        let t_max = schedule.steps();
        let steps = if steps == 0 { t_max } else { steps };
        if steps > t_max {
            return Err(Error::Config(format!(
                "ddim steps = {steps}: the chain has {t_max} steps (use 1..={t_max}, or 0 for all)"
            )));
        }
        let (_, kept) = schedule.respaced(steps)?;
        let ab = |t: usize| schedule.alpha_bar[t];
        Ok(Self {
            sqrt_ab: kept.iter().map(|&t| ab(t).sqrt()).collect(),
            sqrt_1mab: kept.iter().map(|&t| (1.0 - ab(t)).sqrt()).collect(),
            kept,
            start_mean: schedule.start.mean.clone(),
            start_std: schedule.start.std.clone(),
            inversion_iterations: INVERSION_ITERATIONS,
        })
    }

    /// K.
    pub fn steps(&self) -> usize {
        self.kept.len() - 1
    }

    /// The start's mean and std as `[1, d]` rows (`None`: `N(0, I)`).
    fn start_rows(&self, device: &burn::tensor::Device) -> Option<(Tensor<2>, Tensor<2>)> {
        let d = self.start_mean.len();
        (d > 0).then(|| {
            (
                crate::nn::tensor2(&self.start_mean, 1, d, device),
                crate::nn::tensor2(&self.start_std, 1, d, device),
            )
        })
    }

    fn start(&self, z: Tensor<2>) -> Tensor<2> {
        match self.start_rows(&z.device()) {
            Some((mean, std)) => z * std + mean,
            None => z,
        }
    }

    fn unstart(&self, x: Tensor<2>) -> Tensor<2> {
        match self.start_rows(&x.device()) {
            Some((mean, std)) => (x - mean).div(std),
            None => x,
        }
    }

    /// `(c_x, c_ε)` of the step from kept index `k` down to `k − 1`: `x_s = c_x·x_t + c_ε·ε̂`.
    fn coefficients(&self, k: usize) -> (f64, f64) {
        let (a_t, a_s) = (self.sqrt_ab[k], self.sqrt_ab[k - 1]);
        let c_x = a_s / a_t;
        (c_x, self.sqrt_1mab[k - 1] - c_x * self.sqrt_1mab[k])
    }

    /// `x₀` (model space, unclipped) from the start noise `z` (`[n, act_dim]`) for normalised
    /// `obs`: differentiable through `model` and `z` when they are tracked.
    pub fn sample<M: EpsModel + ?Sized>(
        &self,
        model: &M,
        obs: Tensor<2>,
        z: Tensor<2>,
    ) -> Tensor<2> {
        let mut x = self.start(z);
        for k in (1..=self.steps()).rev() {
            let eps = model.eps(obs.clone(), x.clone(), self.kept[k]);
            let (c_x, c_e) = self.coefficients(k);
            x = x.mul_scalar(c_x) + eps.mul_scalar(c_e);
        }
        x
    }

    /// The start noise `z` whose map is `x0` (model space), and the largest absolute error of
    /// an inverted step over all steps and entries (0 when every solve converged).
    pub fn invert<M: EpsModel + ?Sized>(
        &self,
        model: &M,
        obs: Tensor<2>,
        x0: Tensor<2>,
    ) -> (Tensor<2>, f64) {
        let n = obs.dims()[0];
        let mut x = x0.detach();
        let mut residual = 0.0f64;
        for k in 1..=self.steps() {
            let t = self.kept[k];
            let (c_x, c_e) = self.coefficients(k);
            // The usual DDIM inversion's guess: ε̂ at the lower state.
            let eps = model.eps(obs.clone(), x.clone(), t).detach();
            let guess = (x.clone() - eps.mul_scalar(c_e)).div_scalar(c_x);
            let step = |y: Tensor<2>| {
                let o = obs.clone().repeat_dim(0, y.dims()[0] / n);
                y.clone().mul_scalar(c_x) + model.eps(o, y, t).mul_scalar(c_e)
            };
            let (up, err) = crate::nn::newton_inverse(step, x, guess, self.inversion_iterations);
            residual = residual.max(err);
            x = up;
        }
        (self.unstart(x), residual)
    }
}

/// A trained prior's DDIM map as a behaviour policy's generator: normalised observations and
/// noise in, unit-box actions out (`tanh` of the chain's output for a pre-tanh prior, clipped
/// otherwise). An inference copy; the network runs on the engine of its device, except on
/// tracked noise, where burn's module runs it so that the map is differentiable in `z`.
pub struct DdimMap {
    pub prior: super::DiffusionPrior,
    pub ddim: Ddim,
    eps: super::ActingEps,
    device: burn::tensor::Device,
}

impl Clone for DdimMap {
    fn clone(&self) -> Self {
        Self::new(&self.prior, self.ddim.clone())
    }
}

impl DdimMap {
    pub fn new(prior: &super::DiffusionPrior, ddim: Ddim) -> Self {
        let (prior, device) = crate::nn::inference_copy(prior);
        Self {
            eps: prior.acting_eps(),
            prior,
            ddim,
            device,
        }
    }

    /// The map of a trained prior (run directory or checkpoint) on `steps` of its chain's steps
    /// (0: all).
    pub fn load(
        path: &std::path::Path,
        steps: usize,
        device: &burn::tensor::Device,
    ) -> Result<Self> {
        let prior = super::DiffusionPrior::load(path, device)?;
        let ddim = Ddim::new(&prior.schedule, steps)?;
        Ok(Self::new(&prior, ddim))
    }

    pub fn device(&self) -> &burn::tensor::Device {
        &self.device
    }

    pub fn act_dim(&self) -> usize {
        self.prior.spec.act_dim()
    }

    /// Chain outputs to the unit box.
    fn model_to_unit(&self, x: Tensor<2>) -> Tensor<2> {
        if self.prior.spec.pre_tanh {
            x.tanh()
        } else {
            x.clamp(-1.0, 1.0)
        }
    }

    /// Unit-box actions to the chain's space.
    fn unit_to_model(&self, a: Tensor<2>) -> Tensor<2> {
        if self.prior.spec.pre_tanh {
            let c = self.prior.spec.pre_tanh_clip;
            let a = a.clamp(-c, c);
            // atanh(a) = ½ ln((1 + a)/(1 − a))
            (a.clone().add_scalar(1.0).div(a.neg().add_scalar(1.0)))
                .log()
                .mul_scalar(0.5)
        } else {
            a
        }
    }

    /// `f(s, z)`: unit actions.
    pub fn map(&self, obs: Tensor<2>, z: Tensor<2>) -> Tensor<2> {
        let x0 = if z.is_tracked() {
            self.ddim.sample(&self.prior, obs, z)
        } else {
            self.ddim.sample(&self.eps, obs, z)
        };
        self.model_to_unit(x0)
    }

    /// `f⁻¹(s, a)` for unit actions `a` (a clipped action inverts from the box's edge), and the
    /// inversion's residual ([`Ddim::invert`]).
    pub fn invert(&self, obs: Tensor<2>, a: Tensor<2>) -> (Tensor<2>, f64) {
        self.ddim.invert(&self.eps, obs, self.unit_to_model(a))
    }
}
