//! Offline datasets: one row per transition, D4RL column names, stored in Parquet.
//!
//! The in-memory [`Dataset`] keeps each column as one contiguous buffer (row-major for the
//! vector columns) so minibatch sampling is a gather over plain slices.

pub mod registry;
pub mod sampler;

use serde::{Deserialize, Serialize};

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

/// Current version of the on-disk layout.
pub const FORMAT_VERSION: u32 = 1;

/// A dataset of transitions held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub meta: Metadata,
    /// `[n, obs_dim]` row-major.
    pub observations: Vec<f32>,
    /// `[n, act_dim]` row-major.
    pub actions: Vec<f32>,
    pub rewards: Vec<f32>,
    /// `[n, obs_dim]` row-major.
    pub next_observations: Vec<f32>,
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
