//! offrl: offline reinforcement learning in Rust.
//!
//! The pipeline, one module per stage:
//! 1. [`dataset`]: D4RL-style transition datasets in Parquet (import, collect, load, sample);
//! 2. [`diffusion`]: a score-based behaviour prior μ(a|s) over actions;
//! 3. [`algos`]: IQL critic, RTB fine-tuning and the baselines;
//! 4. [`envs`] + [`eval`]: rollouts in native Rust and gymnasium environments.

pub mod algos;
pub mod backend;
pub mod bench;
pub mod checksum;
pub mod config;
pub mod dataset;
pub mod diffusion;
pub mod embedded;
pub mod envs;
pub mod error;
pub mod eval;
pub mod nn;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod progress;

pub use error::{Error, Result};
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "python")]
pub mod python;
pub mod train;
