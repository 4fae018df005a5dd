//! The uniform random policy (D4RL's "random" tier): actions uniform in the action box.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Policy;
use crate::envs::BoxSpace;
use crate::error::{Error, Result};

pub struct RandomPolicy {
    space: BoxSpace,
    rng: ChaCha8Rng,
}

impl RandomPolicy {
    /// Errors when a bound is infinite (no uniform distribution on an unbounded box).
    pub fn new(space: BoxSpace, seed: u64) -> Result<Self> {
        if let Some(i) =
            (0..space.dim()).find(|&i| !(space.low[i].is_finite() && space.high[i].is_finite()))
        {
            return Err(Error::Config(format!(
                "random policy: action dimension {i} is unbounded [{}, {}]",
                space.low[i], space.high[i]
            )));
        }
        Ok(Self {
            space,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }
}

impl Policy for RandomPolicy {
    fn act(&mut self, _obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let d = self.space.dim();
        Ok((0..n * d)
            .map(|k| {
                let (lo, hi) = (self.space.low[k % d], self.space.high[k % d]);
                lo + (hi - lo) * self.rng.random::<f32>()
            })
            .collect())
    }
}

/// Adds Gaussian noise of standard deviation `std` to another policy's actions, then clips to
/// the action box (the built-in controllers' quality tiers; `noise` in dataset cards).
pub struct GaussianNoise<P> {
    inner: P,
    std: f32,
    space: BoxSpace,
    rng: ChaCha8Rng,
}

impl<P: Policy> GaussianNoise<P> {
    pub fn new(inner: P, std: f32, space: BoxSpace, seed: u64) -> Self {
        Self {
            inner,
            std,
            space,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }
}

impl<P: Policy> Policy for GaussianNoise<P> {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let mut a = self.inner.act(obs, n)?;
        let d = self.space.dim();
        for (k, x) in a.iter_mut().enumerate() {
            let eps: f32 = self.rng.sample(rand_distr::StandardNormal);
            *x = (*x + self.std * eps).clamp(self.space.low[k % d], self.space.high[k % d]);
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_actions_cover_the_box_and_are_seeded() {
        let space = BoxSpace::new(vec![-2.0, 0.0], vec![2.0, 1.0]);
        let mut p = RandomPolicy::new(space.clone(), 3).unwrap();
        let a = p.act(&[0.0; 4], 5000).unwrap();
        let (x, y): (Vec<f32>, Vec<f32>) = a.chunks(2).map(|c| (c[0], c[1])).unzip();
        assert!(
            x.iter().all(|v| (-2.0..=2.0).contains(v)) && y.iter().all(|v| (0.0..=1.0).contains(v))
        );
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean(&x).abs() < 0.1 && (mean(&y) - 0.5).abs() < 0.03);
        assert_eq!(
            a,
            RandomPolicy::new(space.clone(), 3)
                .unwrap()
                .act(&[0.0; 4], 5000)
                .unwrap()
        );
        assert!(RandomPolicy::new(BoxSpace::uniform(1, f32::NEG_INFINITY, 1.0), 0).is_err());
    }
}
