//! The framework: what an algorithm is ([`OfflineAlgorithm`]), the one training loop ([`fit`]),
//! and what every training run shares: a run directory with the resolved config, metrics JSONL,
//! loss plots and checkpoints; a progress bar; and the guard that stops on a non-finite loss.
//! Algorithms live in [`crate::algos`]; nothing here knows which ones exist.

pub mod algorithm;
pub mod checkpoint;
pub mod fit;
pub mod interrupt;
pub mod plot;
mod run_dir;
pub mod tensorboard;

pub use algorithm::{
    load_optim, module_parts, policy_diagnostics, LoopConfig, Metrics, OfflineAlgorithm, Parts,
    RngState, Snapshot,
};
pub use fit::{fit, save_checkpoint, DatasetInfo, EvalHook, History, RunRecord};
pub use run_dir::{read_metrics, RunDir, RunLock};

use crate::error::{Error, Result};

/// Stop training when a monitored quantity is NaN or infinite, naming the step and the quantity.
pub fn ensure_finite(step: usize, what: &str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite {
            step,
            what: what.to_string(),
            value,
        })
    }
}
