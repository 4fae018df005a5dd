//! Seeded uniform minibatch sampling (with replacement, as D4RL-era implementations do).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Batch, Dataset};

pub struct Sampler<'a> {
    data: &'a Dataset,
    rng: ChaCha8Rng,
    batch: Batch,
    indices: Vec<usize>,
}

impl<'a> Sampler<'a> {
    pub fn new(data: &'a Dataset, seed: u64) -> Self {
        assert!(!data.is_empty(), "cannot sample from an empty dataset");
        Self {
            data,
            rng: ChaCha8Rng::seed_from_u64(seed),
            batch: Batch::default(),
            indices: Vec::new(),
        }
    }

    /// Draw `size` transitions uniformly; the returned batch's buffers are reused between calls.
    pub fn sample(&mut self, size: usize) -> &Batch {
        let n = self.data.len();
        self.indices.clear();
        self.indices
            .extend((0..size).map(|_| self.rng.random_range(0..n)));
        let (d, idx, b) = (self.data, &self.indices, &mut self.batch);
        b.size = size;
        b.obs_dim = d.obs_dim();
        b.act_dim = d.act_dim();
        // One column at a time: the row reads are independent, so the CPU overlaps their cache
        // misses (a 1M-row dataset is far larger than the caches).
        gather(&mut b.observations, &d.observations, d.obs_dim(), idx);
        gather(
            &mut b.next_observations,
            &d.next_observations,
            d.obs_dim(),
            idx,
        );
        gather(&mut b.actions, &d.actions, d.act_dim(), idx);
        gather(&mut b.rewards, &d.rewards, 1, idx);
        b.terminals.clear();
        b.terminals
            .extend(idx.iter().map(|&i| f32::from(u8::from(d.terminals[i]))));
        &self.batch
    }
}

/// `out` = the rows `idx` of the row-major `[n, width]` buffer `src`.
fn gather(out: &mut Vec<f32>, src: &[f32], width: usize, idx: &[usize]) {
    out.clear();
    out.reserve(idx.len() * width);
    for &i in idx {
        out.extend_from_slice(&src[i * width..(i + 1) * width]);
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
