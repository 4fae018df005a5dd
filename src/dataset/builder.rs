//! Build a [`Dataset`] one transition at a time (collectors, importers).

use super::{Dataset, Metadata};
use crate::error::{Error, Result};

/// Appends transitions into the contiguous column buffers of a [`Dataset`].
#[derive(Debug, Clone)]
pub struct DatasetBuilder {
    obs_dim: usize,
    act_dim: usize,
    data: Dataset,
}

impl DatasetBuilder {
    pub fn new(obs_dim: usize, act_dim: usize) -> Self {
        Self::with_capacity(obs_dim, act_dim, 0)
    }

    /// Reserve room for `n` transitions up front (no reallocation while pushing them).
    pub fn with_capacity(obs_dim: usize, act_dim: usize, n: usize) -> Self {
        Self {
            obs_dim,
            act_dim,
            data: Dataset::with_capacity(
                Metadata {
                    format_version: super::FORMAT_VERSION,
                    env_id: String::new(),
                    obs_dim,
                    act_dim,
                    action_low: Vec::new(),
                    action_high: Vec::new(),
                    source: serde_json::Value::Null,
                    reference_scores: None,
                },
                n,
            ),
        }
    }

    pub fn len(&self) -> usize {
        self.data.rewards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.rewards.is_empty()
    }

    /// Append one transition. `terminal`: the episode ended in a terminal state (no bootstrap);
    /// `timeout`: it was cut by a time limit. Slices of the wrong length are an error naming
    /// the row; nothing is appended then.
    pub fn push(
        &mut self,
        obs: &[f32],
        action: &[f32],
        reward: f32,
        next_obs: &[f32],
        terminal: bool,
        timeout: bool,
    ) -> Result<()> {
        for (name, got, want) in [
            ("observation", obs.len(), self.obs_dim),
            ("action", action.len(), self.act_dim),
            ("next observation", next_obs.len(), self.obs_dim),
        ] {
            if got != want {
                return Err(Error::InvalidData(format!(
                    "transition {}: {name} has {got} values, expected {want}",
                    self.len()
                )));
            }
        }
        self.data
            .push(obs, action, reward, next_obs, terminal, timeout);
        Ok(())
    }

    /// Mark the last pushed transition as the end of an episode (a time-out unless it is
    /// already terminal), e.g. when collection stops mid-episode.
    pub fn end_episode(&mut self) {
        let d = &mut self.data;
        if let (Some(&false), Some(t)) = (d.terminals.last(), d.timeouts.last_mut()) {
            *t = true;
        }
    }

    /// The finished dataset, checked with [`Dataset::validate`]. `meta`'s dims must match
    /// the builder's.
    pub fn finish(self, meta: Metadata) -> Result<Dataset> {
        if (meta.obs_dim, meta.act_dim) != (self.obs_dim, self.act_dim) {
            return Err(Error::InvalidData(format!(
                "metadata says obs_dim {} / act_dim {}, the transitions have {} / {}",
                meta.obs_dim, meta.act_dim, self.obs_dim, self.act_dim
            )));
        }
        let mut data = self.data;
        data.meta = meta;
        data.validate()?;
        Ok(data)
    }
}

/// A dataset of seeded standard-normal observations and uniform actions in episodes of
/// `episode_len` steps (time-outs), for benchmarks and tests that need size, not meaning.
/// `next_observations` continue the episode (row i's next is row i+1's observation).
pub fn random_dataset(
    n: usize,
    obs_dim: usize,
    act_dim: usize,
    episode_len: usize,
    seed: u64,
) -> Dataset {
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut b = DatasetBuilder::with_capacity(obs_dim, act_dim, n);
    let mut obs: Vec<f32> = (0..obs_dim).map(|_| rng.sample(StandardNormal)).collect();
    let mut act = vec![0f32; act_dim];
    for i in 0..n {
        let next: Vec<f32> = (0..obs_dim).map(|_| rng.sample(StandardNormal)).collect();
        act.iter_mut()
            .for_each(|a| *a = rng.random_range(-1.0..1.0));
        let timeout = (i + 1) % episode_len.max(1) == 0;
        b.push(&obs, &act, rng.random(), &next, false, timeout)
            .expect("dims match");
        obs = if timeout {
            (0..obs_dim).map(|_| rng.sample(StandardNormal)).collect()
        } else {
            next
        };
    }
    b.end_episode();
    let meta = Metadata {
        format_version: super::FORMAT_VERSION,
        env_id: "Random-v0".into(),
        obs_dim,
        act_dim,
        action_low: vec![-1.0; act_dim],
        action_high: vec![1.0; act_dim],
        source: serde_json::json!({"generator": "random_dataset", "seed": seed}),
        reference_scores: None,
    };
    b.finish(meta).expect("valid by construction")
}
