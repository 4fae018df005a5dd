//! Policies: anything that maps a batch of observations to a batch of actions.

use crate::error::Result;

/// A policy acting on a batch: `obs` is row-major `[n, obs_dim]`, the result `[n, act_dim]`.
/// One call per environment step for all vectorised environments: a diffusion policy costs
/// T network evaluations per call, so batching across environments is what makes evaluation cheap.
pub trait Policy {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>>;
}
