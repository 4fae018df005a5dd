//! Seeded uniform minibatch sampling (with replacement, as D4RL-era implementations do).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Batch, Dataset};

pub struct Sampler<'a> {
    data: &'a Dataset,
    rng: ChaCha8Rng,
    batch: Batch,
}

impl<'a> Sampler<'a> {
    pub fn new(data: &'a Dataset, seed: u64) -> Self {
        assert!(!data.is_empty(), "cannot sample from an empty dataset");
        Self {
            data,
            rng: ChaCha8Rng::seed_from_u64(seed),
            batch: Batch::default(),
        }
    }

    /// Draw `size` transitions uniformly; the returned batch's buffers are reused between calls.
    pub fn sample(&mut self, size: usize) -> &Batch {
        let (od, ad) = (self.data.obs_dim(), self.data.act_dim());
        let b = &mut self.batch;
        b.size = size;
        b.obs_dim = od;
        b.act_dim = ad;
        for v in [&mut b.observations, &mut b.next_observations] {
            v.clear();
            v.reserve(size * od);
        }
        b.actions.clear();
        b.actions.reserve(size * ad);
        b.rewards.clear();
        b.terminals.clear();
        let n = self.data.len();
        for _ in 0..size {
            let i = self.rng.random_range(0..n);
            b.observations.extend_from_slice(self.data.observation(i));
            b.next_observations
                .extend_from_slice(self.data.next_observation(i));
            b.actions.extend_from_slice(self.data.action(i));
            b.rewards.push(self.data.rewards[i]);
            b.terminals
                .push(f32::from(u8::from(self.data.terminals[i])));
        }
        &self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::tests::toy;

    #[test]
    fn same_seed_same_batches_and_rows_are_whole_transitions() {
        let d = toy(
            &[0.0, 1.0, 2.0, 3.0],
            &[(false, false), (true, false), (false, false), (false, true)],
        );
        let a = Sampler::new(&d, 7).sample(64).clone();
        let b = Sampler::new(&d, 7).sample(64).clone();
        assert_eq!(a, b);
        assert_ne!(a, Sampler::new(&d, 8).sample(64).clone());
        for k in 0..a.size {
            // The toy's reward is the row index: every field must come from that row.
            let i = a.rewards[k] as usize;
            assert_eq!(&a.observations[k * 2..k * 2 + 2], d.observation(i));
            assert_eq!(
                &a.next_observations[k * 2..k * 2 + 2],
                d.next_observation(i)
            );
            assert_eq!(a.actions[k], d.action(i)[0]);
            assert_eq!(a.terminals[k], if i == 1 { 1.0 } else { 0.0 });
        }
    }

    #[test]
    fn draws_are_uniform() {
        let d = toy(&[0.0, 1.0, 2.0, 3.0], &[(false, false); 4]);
        let mut s = Sampler::new(&d, 0);
        let mut counts = [0usize; 4];
        for _ in 0..160 {
            for &r in &s.sample(250).rewards {
                counts[r as usize] += 1;
            }
        }
        // 40,000 draws, p = 1/4: mean 10,000, sd ≈ 87; allow 5 sd.
        assert!(
            counts.iter().all(|&c| c.abs_diff(10_000) < 433),
            "{counts:?}"
        );
    }
}
