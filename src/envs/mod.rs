//! Environments with gymnasium semantics: native Rust ones and (feature `python`) gymnasium
//! environments bridged through pyo3.

use crate::error::Result;

/// A box space: per-dimension bounds (may be ±inf).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BoxSpace {
    pub low: Vec<f32>,
    pub high: Vec<f32>,
}

impl BoxSpace {
    pub fn new(low: Vec<f32>, high: Vec<f32>) -> Self {
        assert_eq!(
            low.len(),
            high.len(),
            "BoxSpace bounds of different lengths"
        );
        Self { low, high }
    }
    pub fn uniform(dim: usize, low: f32, high: f32) -> Self {
        Self::new(vec![low; dim], vec![high; dim])
    }
    pub fn dim(&self) -> usize {
        self.low.len()
    }
}

/// What one `step` returns. Time-limit truncation is *not* termination: Q-learning bootstraps
/// through a truncation but not through a termination.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub obs: Vec<f32>,
    pub reward: f64,
    pub terminated: bool,
    pub truncated: bool,
}

/// An environment with gymnasium's `reset(seed)` / `step(action)` semantics.
/// `step` enforces `max_episode_steps` itself (sets `truncated`), like gymnasium's TimeLimit.
pub trait Env {
    fn id(&self) -> &str;
    fn observation_space(&self) -> &BoxSpace;
    fn action_space(&self) -> &BoxSpace;
    fn max_episode_steps(&self) -> Option<usize>;
    /// Reset; `Some(seed)` re-seeds the environment's generator as gymnasium does.
    fn reset(&mut self, seed: Option<u64>) -> Result<Vec<f32>>;
    fn step(&mut self, action: &[f32]) -> Result<Step>;
}
