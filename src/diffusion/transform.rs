//! The action space the diffusion chain lives in ("model space") and the way back to the
//! environment's actions.
//!
//! Dimensions with finite bounds are first mapped affinely to [−1, 1] (the identity for D4RL
//! locomotion, whose bounds are ±1). With `pre_tanh` (the RTB paper's code), the chain models
//! `u = atanh(clip(a, ±clip))` and acts with `tanh(u)`, so any sample is a valid action; without
//! it the chain models `a` directly and samples are clipped to the bounds.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionTransform {
    pub low: Vec<f32>,
    pub high: Vec<f32>,
    pub pre_tanh: bool,
    /// |a| is clipped to this (in [−1, 1] units) before atanh.
    pub clip: f32,
}

impl ActionTransform {
    pub fn new(low: &[f32], high: &[f32], pre_tanh: bool, clip: f32) -> Result<Self> {
        if low.len() != high.len() || low.is_empty() {
            return Err(Error::InvalidData(format!(
                "action bounds: {} lower and {} upper values",
                low.len(),
                high.len()
            )));
        }
        for (i, (&l, &h)) in low.iter().zip(high).enumerate() {
            let finite = l.is_finite() && h.is_finite();
            if finite && l >= h {
                return Err(Error::InvalidData(format!(
                    "action dimension {i}: lower bound {l} is not below upper bound {h}"
                )));
            }
            if pre_tanh && !finite {
                return Err(Error::Config(format!(
                    "pre_tanh needs finite action bounds; dimension {i} has [{l}, {h}]"
                )));
            }
        }
        if pre_tanh && !(clip > 0.0 && clip < 1.0) {
            return Err(Error::Config(format!(
                "pre_tanh_clip must be in (0, 1), got {clip}"
            )));
        }
        Ok(Self {
            low: low.to_vec(),
            high: high.to_vec(),
            pre_tanh,
            clip,
        })
    }

    pub fn dim(&self) -> usize {
        self.low.len()
    }

    /// Centre and half-width of dimension `j` (0 and 1 when unbounded).
    fn affine(&self, j: usize) -> (f32, f32) {
        let (l, h) = (self.low[j], self.high[j]);
        if l.is_finite() && h.is_finite() {
            (0.5 * (l + h), 0.5 * (h - l))
        } else {
            (0.0, 1.0)
        }
    }

    /// Environment actions (row-major `[n, dim]`) → model space.
    pub fn to_model(&self, actions: &[f32]) -> Vec<f32> {
        let d = self.dim();
        actions
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let (c, h) = self.affine(i % d);
                let y = (a - c) / h;
                if self.pre_tanh {
                    y.clamp(-self.clip, self.clip).atanh()
                } else {
                    y
                }
            })
            .collect()
    }

    /// Model space → environment actions (within the bounds).
    pub fn to_env(&self, x: &[f32]) -> Vec<f32> {
        let d = self.dim();
        x.iter()
            .enumerate()
            .map(|(i, &x)| {
                let j = i % d;
                let (c, h) = self.affine(j);
                let y = if self.pre_tanh { x.tanh() } else { x };
                (c + h * y).clamp(self.low[j], self.high[j])
            })
            .collect()
    }

    /// [`ActionTransform::to_env`] on a `[n, dim]` tensor, differentiable (for rewards r(s, a)
    /// evaluated on chain outputs).
    pub fn to_env_tensor(&self, x: Tensor<2>) -> Tensor<2> {
        let device = x.device();
        let d = self.dim();
        let (centre, half): (Vec<f32>, Vec<f32>) = (0..d).map(|j| self.affine(j)).unzip();
        let y = if self.pre_tanh { x.tanh() } else { x };
        let a = y * crate::nn::tensor2(&half, 1, d, &device)
            + crate::nn::tensor2(&centre, 1, d, &device);
        if self.pre_tanh || self.low.iter().chain(&self.high).all(|b| !b.is_finite()) {
            a // tanh already keeps a within the bounds
        } else {
            let lo: Vec<f32> = self.low.iter().map(|&l| l.max(f32::MIN)).collect();
            let hi: Vec<f32> = self.high.iter().map(|&h| h.min(f32::MAX)).collect();
            let lo = crate::nn::tensor2(&lo, 1, d, &device);
            let hi = crate::nn::tensor2(&hi, 1, d, &device);
            let n = a.dims()[0];
            a.max_pair(lo.repeat_dim(0, n))
                .min_pair(hi.repeat_dim(0, n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn round_trips_and_bounds() {
        let t = ActionTransform::new(&[-1.0, 0.0], &[1.0, 4.0], true, 0.99).unwrap();
        let a = [0.5f32, 3.0, 1.0, 0.0];
        let x = t.to_model(&a);
        assert!((x[0] - 0.5f32.atanh()).abs() < 1e-6);
        assert!((x[1] - 0.5f32.atanh()).abs() < 1e-6); // 3 in [0, 4] is 0.5 in [-1, 1]
        assert!((x[2] - 0.99f32.atanh()).abs() < 1e-6); // clipped
        let back = t.to_env(&x);
        assert!((back[0] - 0.5).abs() < 1e-6 && (back[1] - 3.0).abs() < 1e-5);
        // Both ends are clipped to ±0.99 in [−1, 1] units: 1 → 0.99, 0 in [0, 4] → 0.02.
        assert!((back[2] - 0.99).abs() < 1e-5 && (back[3] - 0.02).abs() < 1e-4);
        let dev = Device::flex();
        let tensor = crate::nn::to_vec(t.to_env_tensor(crate::nn::tensor2(&x, 2, 2, &dev)));
        for (u, v) in tensor.iter().zip(&back) {
            assert!((u - v).abs() < 1e-5);
        }

        let plain = ActionTransform::new(
            &[-1.0, f32::NEG_INFINITY],
            &[1.0, f32::INFINITY],
            false,
            0.99,
        )
        .unwrap();
        assert_eq!(plain.to_model(&[0.3, 7.0]), vec![0.3, 7.0]);
        assert_eq!(plain.to_env(&[1.7, 7.0]), vec![1.0, 7.0]);
        let clipped =
            crate::nn::to_vec(plain.to_env_tensor(crate::nn::tensor2(&[1.7, 7.0], 1, 2, &dev)));
        assert_eq!(clipped, vec![1.0, 7.0]);

        assert!(ActionTransform::new(&[0.0], &[f32::INFINITY], true, 0.99).is_err());
        assert!(ActionTransform::new(&[1.0], &[0.0], false, 0.99).is_err());
    }
}
