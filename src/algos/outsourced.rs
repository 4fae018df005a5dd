//! Outsourced diffusion sampling (Venkatraman, Hasan, Kim et al., ICML 2025, arXiv 2502.06999;
//! code: HyperPotatoNeo/CNF_RTB_posterior): posterior inference in the **noise space** of a
//! deterministic generator.
//!
//! A behaviour policy written as a map of Gaussian noise, `a = f(s, z)`, `z ~ N(0, I)` (the
//! Euler-integrated BC flow, [`super::flow_bc::FlowMap`]; DDIM of the diffusion prior is another),
//! pushes `N(0, I)` forward to μ(a|s). The target
//!
//! `p(z | s) ∝ N(z; 0, I) · exp(Q(s, f(s, z)) / α)`
//!
//! pushes forward to exactly `μ(a|s)·exp(Q(s, a)/α)` — the posterior RTB targets in action space —
//! and is smoother than it (the prior factor is a fixed Gaussian, whatever shape μ has). The
//! sampler is a diffusion over `z` whose reference process is the DDPM chain of `N(0, I)` data
//! ([`crate::diffusion::StandardNormal`]: with reverse variance β_t it keeps `N(0, I)` invariant exactly), fine-tuned
//! with relative trajectory balance against that reference: the same machinery as action-space
//! RTB ([`super::rtb::Rtb`]: correction network, Langevin term, VarGrad `log Z`, chunked
//! gradients), with the reward [`MapReward`] `log r(s, z) = Q(s, f(s, z))/α`. Reference
//! trajectories are the off-policy ones (forward-noised draws of `N(0, I)`).
//!
//! Using it for control is this project's own: the paper has no control experiment.

use burn::tensor::Tensor;

use super::rtb::{LogReward, QFunction};
use crate::dataset::spec::DataSpec;

/// A deterministic generator `a = f(s, z)`: normalised observations `[n, obs_dim]` and noise
/// `[n, noise_dim]` in, unit-box actions `[n, act_dim]` out, differentiable with respect to `z`
/// when `z` is tracked.
pub trait NoiseMap {
    fn noise_dim(&self) -> usize;
    fn map(&self, obs: Tensor<2>, z: Tensor<2>) -> Tensor<2>;
}

impl<M: NoiseMap + ?Sized> NoiseMap for &M {
    fn noise_dim(&self) -> usize {
        (**self).noise_dim()
    }

    fn map(&self, obs: Tensor<2>, z: Tensor<2>) -> Tensor<2> {
        (**self).map(obs, z)
    }
}

/// `log r(s, z) = Q(s, f(s, z))/α`: the chain's (normalised) observations back to raw ones and
/// the map's unit actions to environment actions, both by `spec`, before calling Q.
#[derive(Debug, Clone)]
pub struct MapReward<M, Q> {
    pub map: M,
    pub q: Q,
    pub alpha: f64,
    pub spec: DataSpec,
}

impl<M: NoiseMap, Q: QFunction> LogReward for MapReward<M, Q> {
    fn log_reward(&self, obs: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
        let maps = self.spec.tensors(&obs.device());
        let unit = self.map.map(obs.clone(), z);
        let raw = obs * maps.obs_std + maps.obs_mean;
        let act = unit * maps.act_half + maps.act_center;
        self.q.q(raw, act).div_scalar(self.alpha)
    }
}
