//! Environments with gymnasium semantics: native Rust ones and (feature `python`) gymnasium
//! environments bridged through pyo3.

#[cfg(feature = "python")]
pub mod gym;
pub mod nav2d;
pub mod np_random;
pub mod pendulum;

pub use nav2d::Nav2d;
pub use pendulum::Pendulum;

use crate::error::Result;

/// Ids of the environments implemented in Rust; [`make`] prefers these over gymnasium's.
pub const NATIVE_IDS: &[&str] = &[Pendulum::ID, Nav2d::ID];

/// Create an environment by id: a native one when there is one, else gymnasium's through the
/// Python bridge (feature `python`).
pub fn make(id: &str) -> Result<Box<dyn Env>> {
    match id {
        Pendulum::ID => Ok(Box::new(Pendulum::new())),
        Nav2d::ID => Ok(Box::new(Nav2d::new())),
        _ => make_gym(id),
    }
}

#[cfg(feature = "python")]
fn make_gym(id: &str) -> Result<Box<dyn Env>> {
    Ok(Box::new(gym::GymEnv::new(id)?))
}

#[cfg(not(feature = "python"))]
fn make_gym(id: &str) -> Result<Box<dyn Env>> {
    Err(crate::error::Error::env(
        id,
        format!(
            "not a native environment (native: {}) and this build has no Python bridge; \
             rebuild with `--features python` to use gymnasium environments",
            NATIVE_IDS.join(", ")
        ),
    ))
}

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
