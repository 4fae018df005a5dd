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
