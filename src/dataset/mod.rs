//! Offline datasets: one row per transition, D4RL column names, stored in Parquet.
//!
//! The in-memory [`Dataset`] keeps each column as one contiguous buffer (row-major for the
//! vector columns) so minibatch sampling is a gather over plain slices.

pub mod builder;
pub mod collect;
pub mod columns;
pub mod floats;
#[cfg(feature = "python")]
pub mod import;
pub mod importer;
pub mod io;
pub mod make;
pub mod minari;
pub mod registry;
pub mod sampler;
pub mod spec;
#[cfg(test)]
pub(crate) mod testing;

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use builder::{random_dataset, DatasetBuilder};
pub use floats::Floats;

/// D4RL-style reference returns used to normalise scores: 100 · (R − random) / (expert − random).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReferenceScores {
    pub random: f64,
    pub expert: f64,
}

impl ReferenceScores {
    pub fn normalize(&self, ret: f64) -> f64 {
        100.0 * (ret - self.random) / (self.expert - self.random)
    }
}

/// What the dataset layer knows about an environment family without starting it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnownEnv {
    /// Family name as in the gymnasium id before `-v`, e.g. `Hopper`.
    pub family: &'static str,
    pub obs_dim: usize,
    pub act_dim: usize,
    /// Symmetric action bound: actions lie in `[-action_bound, action_bound]`.
    pub action_bound: f32,
    /// D4RL reference returns (random / expert), where D4RL defines them.
    pub reference_scores: Option<ReferenceScores>,
}

/// The one table of environment facts used by importers, cards and `dataset info`.
/// Reference returns are D4RL's (`d4rl/infos.py`, REF_MIN_SCORE / REF_MAX_SCORE).
pub const KNOWN_ENVS: &[KnownEnv] = &[
    KnownEnv {
        family: "Hopper",
        obs_dim: 11,
        act_dim: 3,
        action_bound: 1.0,
        reference_scores: Some(ReferenceScores {
            random: -20.272305,
            expert: 3234.3,
        }),
    },
    KnownEnv {
        family: "HalfCheetah",
        obs_dim: 17,
        act_dim: 6,
        action_bound: 1.0,
        reference_scores: Some(ReferenceScores {
            random: -280.178953,
            expert: 12135.0,
        }),
    },
    KnownEnv {
        family: "Walker2d",
        obs_dim: 17,
        act_dim: 6,
        action_bound: 1.0,
        reference_scores: Some(ReferenceScores {
            random: 1.629008,
            expert: 4592.3,
        }),
    },
    KnownEnv {
        family: "Pendulum",
        obs_dim: 3,
        act_dim: 1,
        action_bound: 2.0,
        reference_scores: None,
    },
];

/// Look an environment up by id: gymnasium ids (`Hopper-v5`) and D4RL names
/// (`hopper-medium-v2`) both match on their first `-`-separated token, case-insensitively.
pub fn known_env(env_id: &str) -> Option<&'static KnownEnv> {
    let family = env_id.split('-').next().unwrap_or(env_id);
    KNOWN_ENVS
        .iter()
        .find(|e| e.family.eq_ignore_ascii_case(family))
}

/// `(obs_dim, act_dim)` of an environment known without Python: the [`KNOWN_ENVS`] table, else
/// the native environments. `None` for others (a gymnasium id this build cannot check cheaply).
pub fn env_dims(env_id: &str) -> Option<(usize, usize)> {
    if let Some(k) = known_env(env_id) {
        return Some((k.obs_dim, k.act_dim));
    }
    if !crate::envs::NATIVE_IDS.contains(&env_id) {
        return None;
    }
    let env = crate::envs::make(env_id).ok()?;
    Some((env.observation_space().dim(), env.action_space().dim()))
}

/// D4RL reference returns for an environment, if known.
pub fn reference_scores_for(env_id: &str) -> Option<ReferenceScores> {
    known_env(env_id).and_then(|e| e.reference_scores)
}

/// File-level metadata, stored as JSON in the Parquet key-value metadata under `offrl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Format version of the file layout (see `FORMAT_VERSION`).
    pub format_version: u32,
    /// Environment id, e.g. `Hopper-v5`, `Pendulum-v1`.
    pub env_id: String,
    pub obs_dim: usize,
    pub act_dim: usize,
    pub action_low: Vec<f32>,
    pub action_high: Vec<f32>,
    /// Where the data came from (importer + source file, or collection recipe).
    pub source: serde_json::Value,
    /// Reference returns for normalisation, when known for the environment.
    pub reference_scores: Option<ReferenceScores>,
}

impl Metadata {
    /// The metadata of data recorded in `env_id` with these dims and action bounds, the current
    /// layout version and D4RL's reference returns when it has them.
    pub fn new(
        env_id: &str,
        obs_dim: usize,
        act_dim: usize,
        action_low: Vec<f32>,
        action_high: Vec<f32>,
        source: serde_json::Value,
    ) -> Metadata {
        Metadata {
            format_version: FORMAT_VERSION,
            env_id: env_id.to_string(),
            obs_dim,
            act_dim,
            action_low,
            action_high,
            source,
            reference_scores: reference_scores_for(env_id),
        }
    }
}

/// Current version of the on-disk layout.
pub const FORMAT_VERSION: u32 = 1;

/// A dataset of transitions held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub meta: Metadata,
    /// `[n, obs_dim]` row-major.
    pub observations: Floats,
    /// `[n, act_dim]` row-major.
    pub actions: Floats,
    pub rewards: Floats,
    /// `[n, obs_dim]` row-major.
    pub next_observations: Floats,
    /// The episode ended in a terminal state (no bootstrapping).
    pub terminals: Vec<bool>,
    /// The episode was cut by a time limit (or the end of collection): not terminal.
    pub timeouts: Vec<bool>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.rewards.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }
    pub fn obs_dim(&self) -> usize {
        self.meta.obs_dim
    }
    pub fn act_dim(&self) -> usize {
        self.meta.act_dim
    }
    pub fn observation(&self, i: usize) -> &[f32] {
        let d = self.obs_dim();
        &self.observations[i * d..(i + 1) * d]
    }
    pub fn next_observation(&self, i: usize) -> &[f32] {
        let d = self.obs_dim();
        &self.next_observations[i * d..(i + 1) * d]
    }
    pub fn action(&self, i: usize) -> &[f32] {
        let d = self.act_dim();
        &self.actions[i * d..(i + 1) * d]
    }

    /// An empty dataset with room for `n` transitions of `meta`'s dims.
    pub fn with_capacity(meta: Metadata, n: usize) -> Self {
        let (od, ad) = (meta.obs_dim, meta.act_dim);
        Self {
            meta,
            observations: Floats::with_capacity(n * od),
            actions: Floats::with_capacity(n * ad),
            rewards: Floats::with_capacity(n),
            next_observations: Floats::with_capacity(n * od),
            terminals: Vec::with_capacity(n),
            timeouts: Vec::with_capacity(n),
        }
    }

    /// Assemble a dataset from column buffers and check it ([`Dataset::validate`]).
    pub fn new(
        meta: Metadata,
        observations: impl Into<Floats>,
        actions: impl Into<Floats>,
        rewards: impl Into<Floats>,
        next_observations: impl Into<Floats>,
        terminals: Vec<bool>,
        timeouts: Vec<bool>,
    ) -> Result<Self> {
        let data = Self {
            meta,
            observations: observations.into(),
            actions: actions.into(),
            rewards: rewards.into(),
            next_observations: next_observations.into(),
            terminals,
            timeouts,
        };
        data.validate()?;
        Ok(data)
    }

    /// Append one transition as it is: the builder ([`DatasetBuilder::push`]) checks its dims.
    pub(crate) fn push(
        &mut self,
        obs: &[f32],
        action: &[f32],
        reward: f32,
        next_obs: &[f32],
        terminal: bool,
        timeout: bool,
    ) {
        self.observations.extend_from_slice(obs);
        self.actions.extend_from_slice(action);
        self.rewards.push(reward);
        self.next_observations.extend_from_slice(next_obs);
        self.terminals.push(terminal);
        self.timeouts.push(timeout);
    }

    /// Move every float column into a shared Arrow buffer (no copy, [`Floats::share`]): Arrow
    /// readers are then handed views of the columns, never copies.
    pub fn share(&mut self) {
        for c in [
            &mut self.observations,
            &mut self.actions,
            &mut self.rewards,
            &mut self.next_observations,
        ] {
            c.share();
        }
    }

    /// Whether row `i` is the last of its episode (terminal, time-out, or the last row).
    pub fn ends_episode(&self, i: usize) -> bool {
        self.terminals[i] || self.timeouts[i] || i + 1 == self.len()
    }

    /// Row ranges of the episodes, in order. An episode ends at a terminal or time-out row;
    /// the last row ends one too (collection stopped there).
    pub fn episodes(&self) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        for i in 0..self.len() {
            if self.ends_episode(i) {
                out.push(start..i + 1);
                start = i + 1;
            }
        }
        out
    }

    /// Undiscounted return of each episode (summed in f64).
    pub fn episode_returns(&self) -> Vec<f64> {
        self.episodes()
            .into_iter()
            .map(|r| self.rewards[r].iter().map(|&x| f64::from(x)).sum())
            .collect()
    }

    /// Per-dimension minimum and maximum of the actions (±∞ for an empty dataset).
    pub fn action_range(&self) -> (Vec<f32>, Vec<f32>) {
        let ad = self.act_dim();
        let mut low = vec![f32::INFINITY; ad];
        let mut high = vec![f32::NEG_INFINITY; ad];
        for row in self.actions.chunks_exact(ad) {
            for j in 0..ad {
                low[j] = low[j].min(row[j]);
                high[j] = high[j].max(row[j]);
            }
        }
        (low, high)
    }

    /// The rows of `episodes` (row ranges, e.g. from [`Dataset::episodes`]), in the given order.
    pub fn select(&self, episodes: &[Range<usize>]) -> Dataset {
        let n = episodes.iter().map(|r| r.len()).sum();
        let (od, ad) = (self.obs_dim(), self.act_dim());
        let mut out = Dataset::with_capacity(self.meta.clone(), n);
        for r in episodes {
            out.observations
                .extend_from_slice(&self.observations[r.start * od..r.end * od]);
            out.actions
                .extend_from_slice(&self.actions[r.start * ad..r.end * ad]);
            out.rewards.extend_from_slice(&self.rewards[r.clone()]);
            out.next_observations
                .extend_from_slice(&self.next_observations[r.start * od..r.end * od]);
            out.terminals.extend_from_slice(&self.terminals[r.clone()]);
            out.timeouts.extend_from_slice(&self.timeouts[r.clone()]);
        }
        out
    }

    /// The [`crate::checksum`] of every column's bytes (and the dims): equal for the same
    /// transitions, different (with overwhelming probability) otherwise. Checkpoints record it
    /// (resume refuses other data) and dataset files carry it (loading detects corruption).
    pub fn fingerprint(&self) -> String {
        let mut h = crate::checksum::Fnv1a::new();
        h.update(&(self.obs_dim() as u64).to_le_bytes());
        h.update(&(self.act_dim() as u64).to_le_bytes());
        for col in [
            &self.observations,
            &self.actions,
            &self.rewards,
            &self.next_observations,
        ] {
            for v in col.iter() {
                h.update(&v.to_bits().to_le_bytes());
            }
        }
        for flags in [&self.terminals, &self.timeouts] {
            for &f in flags.iter() {
                h.update(&[u8::from(f)]);
            }
        }
        h.hex()
    }

    /// Hold out whole episodes: `(train, held_out)` with `round(fraction × episodes)` episodes
    /// (at least one when `fraction > 0`, at most all but one; none from a dataset of one
    /// episode) drawn with `seed` in `held_out`. Episodes, not rows, so that held-out states are
    /// not neighbours of training states.
    pub fn split_episodes(&self, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(Error::Config(format!(
                "the held-out fraction must be in [0, 1), got {fraction}"
            )));
        }
        let episodes = self.episodes();
        let held = if fraction > 0.0 && episodes.len() >= 2 {
            ((fraction * episodes.len() as f64).round() as usize).clamp(1, episodes.len() - 1)
        } else {
            0
        };
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut chosen = rand::seq::index::sample(&mut rng, episodes.len(), held).into_vec();
        chosen.sort_unstable();
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for (i, r) in episodes.into_iter().enumerate() {
            if chosen.binary_search(&i).is_ok() {
                test.push(r);
            } else {
                train.push(r);
            }
        }
        Ok((self.select(&train), self.select(&test)))
    }

    /// D4RL-normalised score of a return, if the metadata has reference scores.
    pub fn normalized_score(&self, ret: f64) -> Option<f64> {
        self.meta.reference_scores.map(|r| r.normalize(ret))
    }

    /// Check dims, column lengths, metadata and finiteness. Errors name the column and row.
    pub fn validate(&self) -> Result<()> {
        let m = &self.meta;
        let bad = |msg: String| Err(Error::InvalidData(msg));
        if m.obs_dim == 0 || m.act_dim == 0 {
            return bad(format!(
                "obs_dim ({}) and act_dim ({}) must be positive",
                m.obs_dim, m.act_dim
            ));
        }
        let n = self.len();
        if n == 0 {
            return bad("the dataset is empty (0 transitions)".into());
        }
        let columns: [(&str, usize, usize); 5] = [
            ("observations", self.observations.len(), n * m.obs_dim),
            (
                "next_observations",
                self.next_observations.len(),
                n * m.obs_dim,
            ),
            ("actions", self.actions.len(), n * m.act_dim),
            ("terminals", self.terminals.len(), n),
            ("timeouts", self.timeouts.len(), n),
        ];
        for (name, got, want) in columns {
            if got != want {
                return bad(format!(
                    "column `{name}` holds {got} values, expected {want} \
                     ({n} rows from `rewards` × its width)"
                ));
            }
        }
        for (name, v) in [
            ("action_low", &m.action_low),
            ("action_high", &m.action_high),
        ] {
            if v.len() != m.act_dim {
                return bad(format!(
                    "metadata {name} has {} entries, expected act_dim = {}",
                    v.len(),
                    m.act_dim
                ));
            }
        }
        if let Some(j) = (0..m.act_dim).find(|&j| {
            m.action_low[j]
                .partial_cmp(&m.action_high[j])
                .is_none_or(|o| o.is_gt())
        }) {
            return bad(format!(
                "metadata action bounds are inverted or NaN at dim {j}: low {} > high {}",
                m.action_low[j], m.action_high[j]
            ));
        }
        if let Some((obs, act)) = env_dims(&m.env_id) {
            if (obs, act) != (m.obs_dim, m.act_dim) {
                return bad(format!(
                    "metadata names the environment `{}` (obs {obs} / act {act}), but the data \
                     has obs_dim {} / act_dim {}: the env_id is wrong, or the data comes from \
                     another environment",
                    m.env_id, m.obs_dim, m.act_dim
                ));
            }
        }
        if let Some((col, row, dim, v)) = self.first_non_finite() {
            return bad(format!(
                "non-finite value {v} in column `{col}` at row {row}{}",
                dim.map(|d| format!(", dim {d}")).unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// The first NaN/Inf: (column, row, dim within the row for vector columns, value).
    fn first_non_finite(&self) -> Option<(&'static str, usize, Option<usize>, f32)> {
        let vector = [
            ("observations", &self.observations, self.obs_dim()),
            ("actions", &self.actions, self.act_dim()),
            ("next_observations", &self.next_observations, self.obs_dim()),
        ];
        for (name, v, d) in vector {
            if let Some(k) = v.iter().position(|x| !x.is_finite()) {
                return Some((name, k / d, Some(k % d), v[k]));
            }
        }
        let k = self.rewards.iter().position(|x| !x.is_finite())?;
        Some(("rewards", k, None, self.rewards[k]))
    }

    /// Whether row `i` has any NaN/Inf value.
    fn row_is_finite(&self, i: usize) -> bool {
        self.observation(i).iter().all(|x| x.is_finite())
            && self.next_observation(i).iter().all(|x| x.is_finite())
            && self.action(i).iter().all(|x| x.is_finite())
            && self.rewards[i].is_finite()
    }

    /// Drop transitions holding NaN/Inf; returns how many were dropped. A dropped row that
    /// ended an episode passes the end on (as a time-out) to the kept row before it, so
    /// episodes do not merge.
    pub fn drop_non_finite(&mut self) -> usize {
        let keep: Vec<bool> = (0..self.len()).map(|i| self.row_is_finite(i)).collect();
        self.retain_rows(&keep)
    }

    /// Keep the rows where `keep[i]`; returns how many were removed. Episode ends of removed
    /// rows move to the previous kept row of the same episode as time-outs.
    pub(crate) fn retain_rows(&mut self, keep: &[bool]) -> usize {
        let removed = keep.iter().filter(|&&k| !k).count();
        if removed == 0 {
            return 0;
        }
        let mut out = Dataset::with_capacity(self.meta.clone(), self.len() - removed);
        // Whether the last kept row belongs to the episode currently being scanned.
        let mut kept_in_episode = false;
        for (i, &kept) in keep.iter().enumerate() {
            if kept {
                out.observations.extend_from_slice(self.observation(i));
                out.actions.extend_from_slice(self.action(i));
                out.rewards.push(self.rewards[i]);
                out.next_observations
                    .extend_from_slice(self.next_observation(i));
                out.terminals.push(self.terminals[i]);
                out.timeouts.push(self.timeouts[i]);
                kept_in_episode = true;
            } else if (self.terminals[i] || self.timeouts[i]) && kept_in_episode {
                *out.timeouts.last_mut().expect("kept a row") = true;
            }
            if self.terminals[i] || self.timeouts[i] {
                kept_in_episode = false;
            }
        }
        *self = out;
        removed
    }

    /// Per-dimension mean and (population) standard deviation of the observations, computed in
    /// f64. Add a small epsilon to the std before dividing, as d3rlpy/CORL do (1e-3).
    pub fn obs_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let d = self.obs_dim();
        let n = self.len().max(1) as f64;
        let mut sum = vec![0f64; d];
        for row in self.observations.chunks_exact(d) {
            for (s, &x) in sum.iter_mut().zip(row) {
                *s += f64::from(x);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let mut var = vec![0f64; d];
        for row in self.observations.chunks_exact(d) {
            for ((v, &x), m) in var.iter_mut().zip(row).zip(&mean) {
                *v += (f64::from(x) - m).powi(2);
            }
        }
        (
            mean.iter().map(|&m| m as f32).collect(),
            var.iter().map(|&v| (v / n).sqrt() as f32).collect(),
        )
    }

    /// IQL's reward scale for locomotion: `1000 / (max_return − min_return)` over episodes.
    pub fn iql_reward_scale(&self) -> Result<f32> {
        let returns = self.episode_returns();
        let (lo, hi) = returns
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                (lo.min(r), hi.max(r))
            });
        if (hi - lo).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(Error::InvalidData(format!(
                "IQL reward scaling needs episodes with different returns; {} episode(s), \
                 returns {lo} … {hi}",
                returns.len()
            )));
        }
        Ok((1000.0 / (hi - lo)) as f32)
    }

    /// Multiply rewards by [`Dataset::iql_reward_scale`] (IQL: `r · 1000 / (max_R − min_R)`);
    /// returns the factor so evaluation can report unscaled returns.
    pub fn scale_rewards_iql(&mut self) -> Result<f32> {
        let factor = self.iql_reward_scale()?;
        self.rewards.iter_mut().for_each(|r| *r *= factor);
        Ok(factor)
    }

    /// Concatenate datasets of the same environment and dims (D4RL's medium-expert is
    /// medium + expert). The last row of each part ends an episode (marked a time-out if it
    /// was neither terminal nor time-out), so episodes never merge across parts.
    pub fn concat(parts: &[Dataset]) -> Result<Dataset> {
        let first = parts
            .first()
            .ok_or_else(|| Error::InvalidData("concat of zero datasets".into()))?;
        let n: usize = parts.iter().map(Dataset::len).sum();
        let (od, ad) = (first.obs_dim(), first.act_dim());
        for (k, p) in parts.iter().enumerate() {
            if (p.obs_dim(), p.act_dim()) != (od, ad) || p.meta.env_id != first.meta.env_id {
                return Err(Error::InvalidData(format!(
                    "concat: part {k} is {} with obs_dim {} / act_dim {}, part 0 is {} with \
                     obs_dim {od} / act_dim {ad}",
                    p.meta.env_id,
                    p.obs_dim(),
                    p.act_dim(),
                    first.meta.env_id
                )));
            }
        }
        let mut out = Dataset::with_capacity(first.meta.clone(), n);
        for p in parts {
            out.observations.extend_from_slice(&p.observations);
            out.actions.extend_from_slice(&p.actions);
            out.rewards.extend_from_slice(&p.rewards);
            out.next_observations
                .extend_from_slice(&p.next_observations);
            out.terminals.extend_from_slice(&p.terminals);
            out.timeouts.extend_from_slice(&p.timeouts);
            if let (Some(&false), Some(t)) = (out.terminals.last(), out.timeouts.last_mut()) {
                *t = true;
            }
            for j in 0..ad {
                out.meta.action_low[j] = out.meta.action_low[j].min(p.meta.action_low[j]);
                out.meta.action_high[j] = out.meta.action_high[j].max(p.meta.action_high[j]);
            }
        }
        out.meta.source = serde_json::json!({
            "concat": parts.iter().map(|p| p.meta.source.clone()).collect::<Vec<_>>()
        });
        out.validate()?;
        Ok(out)
    }
}

/// A minibatch in row-major buffers, ready to become tensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub size: usize,
    pub obs_dim: usize,
    pub act_dim: usize,
    pub observations: Vec<f32>,
    pub actions: Vec<f32>,
    pub rewards: Vec<f32>,
    pub next_observations: Vec<f32>,
    /// 1.0 where the transition is terminal (no bootstrap), else 0.0.
    pub terminals: Vec<f32>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn meta(obs_dim: usize, act_dim: usize) -> Metadata {
        Metadata {
            format_version: FORMAT_VERSION,
            env_id: "Toy-v0".into(),
            obs_dim,
            act_dim,
            action_low: vec![-1.0; act_dim],
            action_high: vec![1.0; act_dim],
            source: serde_json::json!({"kind": "test"}),
            reference_scores: Some(ReferenceScores {
                random: 0.0,
                expert: 10.0,
            }),
        }
    }

    /// Rows with obs = [i, -i], action = [i / 10], reward = rewards[i]; `ends[i]` = (terminal, timeout).
    pub(crate) fn toy(rewards: &[f32], ends: &[(bool, bool)]) -> Dataset {
        let mut b = DatasetBuilder::new(2, 1);
        for (i, (&r, &(term, tout))) in rewards.iter().zip(ends).enumerate() {
            let x = i as f32;
            b.push(&[x, -x], &[x / 10.0], r, &[x + 1.0, -x - 1.0], term, tout)
                .unwrap();
        }
        b.finish(meta(2, 1)).unwrap()
    }

    const N: (bool, bool) = (false, false);
    const TERM: (bool, bool) = (true, false);
    const TOUT: (bool, bool) = (false, true);

    /// Metadata naming an environment whose spaces do not fit the data is refused when the
    /// dataset is checked (on save and load), not at the first evaluation.
    #[test]
    fn an_env_id_that_does_not_fit_the_data_is_named() {
        let mut d = toy(&[1.0, 2.0], &[N, TERM]);
        d.validate().unwrap();
        for (env, dims) in [
            ("Hopper-v5", "obs 11 / act 3"),
            ("Nav2d-v0", "obs 2 / act 2"),
        ] {
            d.meta.env_id = env.into();
            let err = d.validate().unwrap_err().to_string();
            assert!(
                err.contains(env) && err.contains(dims) && err.contains("obs_dim 2 / act_dim 1"),
                "{err}"
            );
        }
        // Nav2d's spaces are obs 2 / act 2: a 2/2 dataset naming it is fine.
        assert_eq!(env_dims("Nav2d-v0"), Some((2, 2)));
        assert_eq!(env_dims("Unknown-v9"), None);
    }

    #[test]
    fn episodes_end_at_terminals_timeouts_and_last_row() {
        let d = toy(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[N, TERM, N, TOUT, N, N]);
        assert_eq!(d.episodes(), vec![0..2, 2..4, 4..6]);
        assert_eq!(d.episode_returns(), vec![3.0, 7.0, 11.0]);
        assert_eq!(d.normalized_score(5.0), Some(50.0));
    }

    #[test]
    fn reference_table_matches_d4rl() {
        let h = reference_scores_for("Hopper-v5").unwrap();
        assert_eq!((h.random, h.expert), (-20.272305, 3234.3));
        assert_eq!(
            reference_scores_for("halfcheetah-medium-v2")
                .unwrap()
                .expert,
            12135.0
        );
        assert_eq!(
            reference_scores_for("Walker2d-v4").unwrap().random,
            1.629008
        );
        assert_eq!(reference_scores_for("Pendulum-v1"), None);
        assert_eq!(reference_scores_for("Ant-v5"), None);
        assert_eq!(known_env("Hopper-v4").unwrap().obs_dim, 11);
        // 100 at the expert return, 0 at the random one.
        assert!((h.normalize(3234.3) - 100.0).abs() < 1e-9);
        assert!(h.normalize(-20.272305).abs() < 1e-9);
    }

    #[test]
    fn validate_names_column_row_and_dim() {
        let mut d = toy(&[1.0, 2.0, 3.0], &[N, N, N]);
        d.next_observations[2 * 2 + 1] = f32::NAN;
        let msg = d.validate().unwrap_err().to_string();
        assert!(msg.contains("`next_observations` at row 2, dim 1"), "{msg}");
        d.next_observations[5] = 0.0;
        d.rewards[1] = f32::INFINITY;
        let msg = d.validate().unwrap_err().to_string();
        assert!(
            msg.contains("`rewards` at row 1") && msg.contains("inf"),
            "{msg}"
        );
        d.rewards[1] = 0.0;
        d.actions.push(0.0);
        let msg = d.validate().unwrap_err().to_string();
        assert!(
            msg.contains("`actions` holds 4 values, expected 3"),
            "{msg}"
        );
        d.actions.make_mut().pop();
        d.meta.action_low.push(0.0);
        assert!(d.validate().unwrap_err().to_string().contains("action_low"));
        d.meta.action_low.pop();
        d.validate().unwrap();
        let empty = DatasetBuilder::new(2, 1).finish(meta(2, 1)).unwrap_err();
        assert!(empty.to_string().contains("empty"), "{empty}");
    }

    #[test]
    fn builder_rejects_wrong_lengths_and_dims() {
        let mut b = DatasetBuilder::new(2, 1);
        let e = b.push(&[0.0], &[0.0], 0.0, &[0.0, 0.0], false, false);
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("observation has 1 values, expected 2"));
        assert!(b.is_empty());
        b.push(&[0.0; 2], &[0.0], 1.0, &[0.0; 2], false, false)
            .unwrap();
        b.end_episode();
        let e = b.clone().finish(meta(3, 1)).unwrap_err();
        assert!(e.to_string().contains("obs_dim 3"), "{e}");
        let d = b.finish(meta(2, 1)).unwrap();
        assert_eq!(d.timeouts, vec![true]);
    }

    #[test]
    fn drop_non_finite_keeps_episode_ends() {
        let mut d = toy(&[1.0, 2.0, 3.0, 4.0, 5.0], &[N, TERM, N, N, TOUT]);
        d.observations[2] = f32::NAN; // row 1: the terminal row of episode 0
        d.actions[3] = f32::NEG_INFINITY; // row 3
        assert_eq!(d.drop_non_finite(), 2);
        d.validate().unwrap();
        assert_eq!(*d.rewards, [1.0, 3.0, 5.0]);
        // Row 0 inherits the end of episode 0 as a time-out (its successor is gone).
        assert_eq!(d.timeouts, vec![true, false, true]);
        assert_eq!(d.terminals, vec![false, false, false]);
        assert_eq!(d.episodes(), vec![0..1, 1..3]);
        assert_eq!(d.observation(1), &[2.0, -2.0]);
    }

    #[test]
    fn obs_stats_are_mean_and_population_std() {
        let d = toy(&[0.0; 4], &[N; 4]);
        let (mean, std) = d.obs_stats();
        // obs[:, 0] = 0, 1, 2, 3: mean 1.5, variance 1.25.
        assert_eq!(mean, vec![1.5, -1.5]);
        assert_eq!(std, vec![1.25f64.sqrt() as f32; 2]);
    }

    #[test]
    fn iql_scale_is_1000_over_return_range() {
        let mut d = toy(&[1.0, 1.0, 5.0, 2.0], &[N, TERM, N, TOUT]);
        // Returns 2 and 7: factor 1000 / 5 = 200.
        assert_eq!(d.scale_rewards_iql().unwrap(), 200.0);
        assert_eq!(*d.rewards, [200.0, 200.0, 1000.0, 400.0]);
        let one = toy(&[1.0, 2.0], &[N, N]);
        assert!(one.iql_reward_scale().is_err());
    }

    #[test]
    fn concat_keeps_episodes_apart() {
        let a = toy(&[1.0, 2.0], &[N, N]);
        let b = toy(&[3.0], &[TERM]);
        let c = Dataset::concat(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.episodes(), vec![0..2, 2..3]);
        assert_eq!(c.timeouts, vec![false, true, false]);
        assert_eq!(c.terminals, vec![false, false, true]);
        assert_eq!(&c.observations[..4], &a.observations[..]);
        assert_eq!(c.observation(2), b.observation(0));
        assert_eq!(c.meta.source["concat"].as_array().unwrap().len(), 2);
        let mut other = toy(&[1.0], &[N]);
        other.meta.env_id = "Other-v0".into();
        assert!(Dataset::concat(&[a, other]).is_err());
        assert!(Dataset::concat(&[]).is_err());
    }
}
