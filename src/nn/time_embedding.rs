//! Fixed Fourier features of a diffusion time.
//!
//! A time `τ ∈ [0, 1)` becomes `[sin(2πkτ)]_{k=1..H} ++ [cos(2πkτ)]_{k=1..H}` (2H features), as
//! in the RTB paper's networks (H = 64 → 128 features). The harmonics are integers, so the
//! features are periodic in τ with period 1: callers map their step index into `[0, 1)`.

use burn::tensor::{Device, Tensor};

/// The Fourier time embedding with `harmonics` frequencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FourierTimeEmbedding {
    pub harmonics: usize,
}

impl FourierTimeEmbedding {
    pub fn new(harmonics: usize) -> Self {
        Self { harmonics }
    }

    /// Number of features (sin and cos per harmonic).
    pub fn dim(&self) -> usize {
        2 * self.harmonics
    }

    /// Features of one time, computed in f64 and rounded once to f32.
    pub fn features(&self, tau: f64) -> Vec<f32> {
        let angle = |k: usize| 2.0 * std::f64::consts::PI * k as f64 * tau;
        let sin = (1..=self.harmonics).map(|k| angle(k).sin() as f32);
        let cos = (1..=self.harmonics).map(|k| angle(k).cos() as f32);
        sin.chain(cos).collect()
    }

    /// A `[taus.len(), dim]` table, one row per time (built once, then indexed per step).
    pub fn table(&self, taus: &[f64], device: &Device) -> Tensor<2> {
        let data: Vec<f32> = taus.iter().flat_map(|&tau| self.features(tau)).collect();
        super::tensor2(&data, taus.len(), self.dim(), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_sin_then_cos_of_integer_harmonics() {
        let emb = FourierTimeEmbedding::new(3);
        let f = emb.features(0.125);
        assert_eq!(f.len(), 6);
        let tau = 0.125f64;
        for k in 1..=3 {
            let a = 2.0 * std::f64::consts::PI * k as f64 * tau;
            assert!((f[k - 1] as f64 - a.sin()).abs() < 1e-7);
            assert!((f[3 + k - 1] as f64 - a.cos()).abs() < 1e-7);
        }
        // τ = 0: all sines 0, all cosines 1.
        assert_eq!(emb.features(0.0), vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let table = crate::nn::to_vec(emb.table(&[0.0, 0.125], &Device::flex()));
        assert_eq!(&table[6..], &f[..]);
    }
}
