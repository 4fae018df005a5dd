//! The data spec: dims, action bounds, observation normalisation and reward scaling, computed
//! from a dataset and stored in every checkpoint; and a minibatch as tensors.
//!
//! Conventions every algorithm follows:
//! - networks see *normalised* observations `(o − mean) / std` (identity when normalisation is off)
//!   and *unit* actions in [−1, 1] (`2 (a − low) / (high − low) − 1`; identity for infinite
//!   bounds), so tanh-squashed actors fit any box; the [`DataSpec`] converts both ways;
//! - rewards are multiplied by `spec.reward_scale` (IQL's `1000 / (max return − min return)` for
//!   locomotion data, see [`RewardNorm`]).

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{Batch, Dataset};
use crate::error::{Error, Result};
use crate::nn;

/// How rewards are scaled before training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardNorm {
    /// Rewards as stored.
    #[default]
    None,
    /// IQL / CORL locomotion scaling: `r · 1000 / (max episode return − min episode return)`,
    /// which makes the critic's scale independent of the task's reward magnitude.
    ReturnRange,
}

/// Data-side options of a run (shared by every algorithm's config as its `[data]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Normalise observations with the dataset's per-dimension mean and std (+1e-3, as CORL).
    pub normalize_obs: bool,
    pub reward_norm: RewardNorm,
}

/// Everything about the data an algorithm needs to build its networks and to map between the
/// environment's spaces and the networks' (normalised) spaces. Stored in checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    pub obs_dim: usize,
    pub act_dim: usize,
    pub action_low: Vec<f32>,
    pub action_high: Vec<f32>,
    pub obs_mean: Vec<f32>,
    pub obs_std: Vec<f32>,
    pub reward_scale: f32,
}

/// Added to the observation std, as CORL does, so constant dimensions do not divide by zero.
const OBS_STD_EPS: f32 = 1e-3;

impl DataSpec {
    /// The spec of `data` under `cfg` (computes normalisation statistics and the reward scale).
    pub fn from_dataset(data: &Dataset, cfg: &DataConfig) -> Result<Self> {
        if data.is_empty() {
            return Err(Error::InvalidData("the dataset has no transitions".into()));
        }
        let (od, ad) = (data.obs_dim(), data.act_dim());
        let (low, high) = (&data.meta.action_low, &data.meta.action_high);
        if low.len() != ad || high.len() != ad {
            return Err(Error::InvalidData(format!(
                "action bounds have {} / {} entries, act_dim is {ad}",
                low.len(),
                high.len()
            )));
        }
        let (obs_mean, obs_std) = if cfg.normalize_obs {
            let (mean, std) = data.obs_stats();
            let std = std.iter().map(|s| s + OBS_STD_EPS).collect();
            (mean, std)
        } else {
            (vec![0.0; od], vec![1.0; od])
        };
        let reward_scale = match cfg.reward_norm {
            RewardNorm::None => 1.0,
            RewardNorm::ReturnRange => data.iql_reward_scale()?,
        };
        Ok(Self {
            obs_dim: od,
            act_dim: ad,
            action_low: low.clone(),
            action_high: high.clone(),
            obs_mean,
            obs_std,
            reward_scale,
        })
    }

    /// Center and half-width of each action dimension (0 and 1 where a bound is infinite).
    pub fn action_affine(&self) -> (Vec<f32>, Vec<f32>) {
        self.action_low
            .iter()
            .zip(&self.action_high)
            .map(|(&lo, &hi)| {
                if lo.is_finite() && hi.is_finite() && hi > lo {
                    ((hi + lo) / 2.0, (hi - lo) / 2.0)
                } else {
                    (0.0, 1.0)
                }
            })
            .unzip()
    }

    /// `[n, obs_dim]` raw observations → normalised, row-major.
    pub fn normalize_obs(&self, obs: &[f32]) -> Vec<f32> {
        standardize(obs, &self.obs_mean, &self.obs_std)
    }

    /// Normalised observations → raw, row-major (the inverse of [`DataSpec::normalize_obs`]).
    pub fn denormalize_obs(&self, obs: &[f32]) -> Vec<f32> {
        let d = self.obs_dim;
        obs.iter()
            .enumerate()
            .map(|(i, &v)| v * self.obs_std[i % d] + self.obs_mean[i % d])
            .collect()
    }

    /// Environment actions → unit actions in [−1, 1].
    pub fn action_to_unit(&self, act: &[f32]) -> Vec<f32> {
        let (c, h) = self.action_affine();
        standardize(act, &c, &h)
    }

    /// Unit actions → environment actions, clipped to the bounds.
    pub fn action_from_unit(&self, unit: &[f32]) -> Vec<f32> {
        let (c, h) = self.action_affine();
        let d = self.act_dim;
        unit.iter()
            .enumerate()
            .map(|(i, &u)| {
                let j = i % d;
                (c[j] + h[j] * u).clamp(self.action_low[j], self.action_high[j])
            })
            .collect()
    }

    /// The same maps as tensors, for callers holding tensors (RTB differentiates Q through them):
    /// `(obs_mean [1, od], obs_std [1, od], act_center [1, ad], act_half [1, ad])`.
    pub fn tensors(&self, device: &Device) -> SpecTensors {
        let (c, h) = self.action_affine();
        SpecTensors {
            obs_mean: nn::tensor2(&self.obs_mean, 1, self.obs_dim, device),
            obs_std: nn::tensor2(&self.obs_std, 1, self.obs_dim, device),
            act_center: nn::tensor2(&c, 1, self.act_dim, device),
            act_half: nn::tensor2(&h, 1, self.act_dim, device),
        }
    }

    /// A minibatch as tensors in the networks' spaces (normalised obs, unit actions, scaled rewards).
    pub fn batch_tensors(&self, b: &Batch, device: &Device) -> BatchTensors {
        let n = b.size;
        let rewards: Vec<f32> = b.rewards.iter().map(|r| r * self.reward_scale).collect();
        BatchTensors {
            obs: nn::tensor2(
                &self.normalize_obs(&b.observations),
                n,
                self.obs_dim,
                device,
            ),
            act: nn::tensor2(&self.action_to_unit(&b.actions), n, self.act_dim, device),
            reward: nn::tensor1(&rewards, device),
            next_obs: nn::tensor2(
                &self.normalize_obs(&b.next_observations),
                n,
                self.obs_dim,
                device,
            ),
            done: nn::tensor1(&b.terminals, device),
        }
    }
}

/// Row-major `x` with `(x − shift) / scale` applied per column.
fn standardize(x: &[f32], shift: &[f32], scale: &[f32]) -> Vec<f32> {
    let d = shift.len();
    x.iter()
        .enumerate()
        .map(|(i, &v)| (v - shift[i % d]) / scale[i % d])
        .collect()
}

/// [`DataSpec`]'s maps as broadcastable `[1, d]` tensors.
#[derive(Debug, Clone)]
pub struct SpecTensors {
    pub obs_mean: Tensor<2>,
    pub obs_std: Tensor<2>,
    pub act_center: Tensor<2>,
    pub act_half: Tensor<2>,
}

impl SpecTensors {
    pub fn normalize_obs(&self, obs: Tensor<2>) -> Tensor<2> {
        (obs - self.obs_mean.clone()) / self.obs_std.clone()
    }
    pub fn action_to_unit(&self, act: Tensor<2>) -> Tensor<2> {
        (act - self.act_center.clone()) / self.act_half.clone()
    }
}

/// A minibatch on a device: `obs`/`next_obs` `[B, od]`, `act` `[B, ad]`, `reward`/`done` `[B]`.
#[derive(Debug, Clone)]
pub struct BatchTensors {
    pub obs: Tensor<2>,
    pub act: Tensor<2>,
    pub reward: Tensor<1>,
    pub next_obs: Tensor<2>,
    pub done: Tensor<1>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::testing;

    fn tiny_dataset() -> Dataset {
        // Two episodes: returns 1+2 = 3 (terminal) and 4 (time-out).
        let mut d = testing::empty(2, 1, -2.0, 2.0);
        testing::push(&mut d, &[0.0, 1.0], &[-2.0], 1.0, &[2.0, 1.0], false);
        testing::push(&mut d, &[2.0, 1.0], &[0.0], 2.0, &[0.0, 0.0], true);
        testing::push(&mut d, &[4.0, 1.0], &[1.0], 4.0, &[0.0, 0.0], false);
        d.timeouts[2] = true;
        d
    }

    #[test]
    fn spec_maps_and_reward_scale() {
        let data = tiny_dataset();
        let spec = DataSpec::from_dataset(
            &data,
            &DataConfig {
                normalize_obs: true,
                reward_norm: RewardNorm::ReturnRange,
            },
        )
        .unwrap();
        assert_eq!(spec.reward_scale, 1000.0);
        // mean (2, 1), population std (√(8/3), 0) + 1e-3.
        assert_eq!(spec.obs_mean, vec![2.0, 1.0]);
        assert!((spec.obs_std[0] - ((8.0f64 / 3.0).sqrt() + 1e-3) as f32).abs() < 1e-6);
        assert!((spec.obs_std[1] - 1e-3).abs() < 1e-9);
        assert_eq!(spec.action_to_unit(&[-2.0, 0.0, 1.0]), vec![-1.0, 0.0, 0.5]);
        assert_eq!(
            spec.action_from_unit(&[-1.0, 0.5, 3.0]),
            vec![-2.0, 1.0, 2.0]
        );

        let single = Dataset {
            timeouts: vec![false, false, false],
            terminals: vec![false, false, false],
            ..data
        };
        let e = DataSpec::from_dataset(
            &single,
            &DataConfig {
                normalize_obs: false,
                reward_norm: RewardNorm::ReturnRange,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("1 episode(s)"), "{e}");
    }
}
