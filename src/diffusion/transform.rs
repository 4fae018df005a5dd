//! The spaces the chain lives in ("model space") and the way back to the environment.
//!
//! Observations are normalised by the run's [`DataSpec`]. Actions are first mapped to the unit
//! box [−1, 1] by the `DataSpec` (the identity for D4RL locomotion, whose bounds are ±1). With
//! `pre_tanh` (the RTB paper's code), the chain then models `u = atanh(clip(a, ±clip))` and acts
//! with `tanh(u)`, so every sample is a valid action; without it the chain models the unit action
//! and samples are clipped to the bounds.

use burn::tensor::Tensor;

use super::config::PriorSpec;
use super::model::EpsNetConfig;
use super::schedule::{ScheduleConfig, StartDistribution};
use crate::dataset::spec::DataSpec;
use crate::error::{Error, Result};

/// [`PriorSpec::action_map`] of chain outputs `x` (row-major `[n, act_dim]`), per element.
#[derive(Debug, Clone)]
pub struct ActionMap {
    /// The environment actions, [`PriorSpec::action_to_env`].
    pub env: Vec<f32>,
    /// `∂a/∂x` (the map acts per dimension): `half · (1 − tanh² x)` in pre-tanh space, else
    /// `half` inside the bounds and 0 where the clip holds the action.
    pub derivative: Vec<f32>,
    /// `tanh x` in pre-tanh space (the tanh Jacobian's gradient is `−2 tanh x`), `None` else.
    pub tanh: Option<Vec<f32>>,
}

impl PriorSpec {
    /// A spec (starting from `N(0, I)`; see [`super::NoiseSchedule::start_for`]), checked:
    /// `pre_tanh` needs finite action bounds and a clip in (0, 1).
    pub fn new(
        data: DataSpec,
        schedule: ScheduleConfig,
        net: EpsNetConfig,
        pre_tanh: bool,
        pre_tanh_clip: f64,
    ) -> Result<Self> {
        if pre_tanh {
            for (i, (l, h)) in data.action_low.iter().zip(&data.action_high).enumerate() {
                if !(l.is_finite() && h.is_finite()) {
                    return Err(Error::Config(format!(
                        "pre_tanh needs finite action bounds; dimension {i} has [{l}, {h}]"
                    )));
                }
            }
            if !(pre_tanh_clip > 0.0 && pre_tanh_clip < 1.0) {
                return Err(Error::Config(format!(
                    "pre_tanh_clip must be in (0, 1), got {pre_tanh_clip}"
                )));
            }
        }
        Ok(Self {
            data,
            schedule,
            net,
            pre_tanh,
            pre_tanh_clip,
            start: StartDistribution::default(),
        })
    }

    pub fn obs_dim(&self) -> usize {
        self.data.obs_dim
    }

    pub fn act_dim(&self) -> usize {
        self.data.act_dim
    }

    /// Environment actions (row-major `[n, act_dim]`) → model space.
    pub fn action_to_model(&self, actions: &[f32]) -> Vec<f32> {
        let unit = self.data.action_to_unit(actions);
        if !self.pre_tanh {
            return unit;
        }
        let c = self.pre_tanh_clip as f32;
        unit.into_iter().map(|y| y.clamp(-c, c).atanh()).collect()
    }

    /// Model space → environment actions (within the bounds).
    pub fn action_to_env(&self, x: &[f32]) -> Vec<f32> {
        if self.pre_tanh {
            self.data.action_from_unit(&offrl_kernels::tanh_all(x))
        } else {
            self.data.action_from_unit(x)
        }
    }

    /// [`PriorSpec::action_to_env`] with what the chain rule through it needs (see [`ActionMap`]).
    pub fn action_map(&self, x: &[f32]) -> ActionMap {
        let (center, half) = self.data.action_affine();
        let d = self.act_dim();
        if self.pre_tanh {
            let unit = offrl_kernels::tanh_all(x);
            let derivative = unit
                .iter()
                .enumerate()
                .map(|(i, &y)| half[i % d] * (1.0 - y * y))
                .collect();
            return ActionMap {
                env: self.data.action_from_unit(&unit),
                derivative,
                tanh: Some(unit),
            };
        }
        let derivative = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let j = i % d;
                let a = center[j] + half[j] * v;
                let inside = a >= self.data.action_low[j] && a <= self.data.action_high[j];
                if inside {
                    half[j]
                } else {
                    0.0
                }
            })
            .collect();
        ActionMap {
            env: self.action_to_env(x),
            derivative,
            tanh: None,
        }
    }

    /// [`PriorSpec::action_to_env`] on a `[n, act_dim]` tensor, differentiable (for rewards
    /// `r(s, a)` evaluated on chain outputs).
    pub fn action_to_env_tensor(&self, x: Tensor<2>) -> Tensor<2> {
        let device = x.device();
        let maps = self.data.tensors(&device);
        let y = if self.pre_tanh { x.tanh() } else { x };
        let a = y * maps.act_half + maps.act_center;
        if self.pre_tanh {
            return a; // tanh keeps a inside the bounds
        }
        let d = self.act_dim();
        let bound = |b: &[f32]| {
            let b: Vec<f32> = b.iter().map(|v| v.clamp(f32::MIN, f32::MAX)).collect();
            crate::nn::tensor2(&b, 1, d, &device)
        };
        let n = a.dims()[0];
        a.max_pair(bound(&self.data.action_low).repeat_dim(0, n))
            .min_pair(bound(&self.data.action_high).repeat_dim(0, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn data_spec(low: &[f32], high: &[f32]) -> DataSpec {
        DataSpec {
            obs_dim: 1,
            act_dim: low.len(),
            action_low: low.to_vec(),
            action_high: high.to_vec(),
            obs_mean: vec![0.0],
            obs_std: vec![1.0],
            reward_scale: 1.0,
        }
    }

    fn spec(low: &[f32], high: &[f32], pre_tanh: bool) -> Result<PriorSpec> {
        PriorSpec::new(
            data_spec(low, high),
            ScheduleConfig::default(),
            EpsNetConfig::default(),
            pre_tanh,
            0.99,
        )
    }

    #[test]
    fn round_trips_and_bounds() {
        let t = spec(&[-1.0, 0.0], &[1.0, 4.0], true).unwrap();
        let a = [0.5f32, 3.0, 1.0, 0.0];
        let x = t.action_to_model(&a);
        assert!((x[0] - 0.5f32.atanh()).abs() < 1e-6);
        assert!((x[1] - 0.5f32.atanh()).abs() < 1e-6); // 3 in [0, 4] is 0.5 in [-1, 1]
        assert!((x[2] - 0.99f32.atanh()).abs() < 1e-6); // clipped
        let back = t.action_to_env(&x);
        assert!((back[0] - 0.5).abs() < 1e-6 && (back[1] - 3.0).abs() < 1e-5);
        // Both ends are clipped to ±0.99 in [−1, 1] units: 1 → 0.99, 0 in [0, 4] → 0.02.
        assert!((back[2] - 0.99).abs() < 1e-5 && (back[3] - 0.02).abs() < 1e-4);
        let dev = Device::flex();
        let tensor = crate::nn::to_vec(t.action_to_env_tensor(crate::nn::tensor2(&x, 2, 2, &dev)));
        for (u, v) in tensor.iter().zip(&back) {
            assert!((u - v).abs() < 1e-5);
        }

        let plain = spec(&[-1.0, f32::NEG_INFINITY], &[1.0, f32::INFINITY], false).unwrap();
        assert_eq!(plain.action_to_model(&[0.3, 7.0]), vec![0.3, 7.0]);
        assert_eq!(plain.action_to_env(&[1.7, 7.0]), vec![1.0, 7.0]);
        let clipped = crate::nn::to_vec(plain.action_to_env_tensor(crate::nn::tensor2(
            &[1.7, 7.0],
            1,
            2,
            &dev,
        )));
        assert_eq!(clipped, vec![1.0, 7.0]);

        assert!(spec(&[0.0], &[f32::INFINITY], true).is_err());
    }
}
