//! The framework every algorithm plugs into: the [`OfflineAlgorithm`] trait (update, policy,
//! snapshot and restore, diagnostics), the `[train]` table every config has ([`LoopConfig`]),
//! and the helpers that turn modules and optimizers into checkpoint parts.

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checkpoint::{module_bytes, Checkpoint};
use crate::dataset::spec::DataSpec;
use crate::dataset::{Batch, Dataset};
use crate::error::{Error, Result};
use crate::eval::probe::{Probe, POLICY_NAMES};
use crate::policy::Policy;

/// Metrics of one update, `(name, value)`; logged to `metrics.jsonl`, checked for NaN/Inf.
pub type Metrics = Vec<(&'static str, f64)>;

/// The training-loop part of every algorithm's config (its `[train]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    /// Gradient updates in total.
    pub steps: usize,
    pub batch_size: usize,
    /// Write metrics every this many updates (every update's losses are checked for NaN).
    pub log_every: usize,
    /// Save a checkpoint every this many updates (0: only at the end).
    pub checkpoint_every: usize,
    /// Call the evaluation hook every this many updates (0: never).
    pub eval_every: usize,
    /// Fraction of the dataset's episodes kept out of training (drawn with the run's seed); the
    /// `diag/*` probes logged at every checkpoint read their states there. 0: all episodes train,
    /// and the probes read training states.
    #[serde(default)]
    pub holdout: f64,
}

impl LoopConfig {
    /// Positive counts and a held-out fraction in [0, 1), named under `train.`.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::count("train.steps", self.steps)?;
        check::count("train.batch_size", self.batch_size)?;
        check::count("train.log_every", self.log_every)?;
        if !(0.0..1.0).contains(&self.holdout) {
            return Err(Error::Config(format!(
                "`train.holdout` = {}: must be in [0, 1)",
                self.holdout
            )));
        }
        Ok(())
    }
}

impl Default for LoopConfig {
    /// The D4RL-era budget: 1M updates of batch 256.
    fn default() -> Self {
        Self {
            steps: 1_000_000,
            batch_size: 256,
            log_every: 1000,
            checkpoint_every: 100_000,
            eval_every: 0,
            holdout: 0.0,
        }
    }
}

/// Named binary parts (modules, optimizer states) plus JSON state (generators, counters) that
/// resume an algorithm exactly.
pub struct Snapshot {
    pub parts: Vec<(String, Vec<u8>)>,
    pub state: Value,
}

/// One offline RL algorithm: updates from minibatches, gives a policy, saves and restores itself.
/// (`Any`: a trained `Box<dyn OfflineAlgorithm>` can be had back as its own type,
/// [`crate::algos::Trained::into_model`].)
pub trait OfflineAlgorithm: std::any::Any + Send {
    /// The algorithm's name in the registry and its checkpoints' kind, e.g. `iql`.
    fn name(&self) -> &'static str;
    /// The data spec the networks were built for (dims, bounds, normalisation).
    fn spec(&self) -> &DataSpec;
    /// One update from a minibatch; `step` counts updates from 0. Returns the losses.
    fn update(&mut self, batch: &Batch, step: usize) -> Result<Metrics>;
    /// An inference copy of the current policy (plain device, deterministic actions, batched).
    fn policy(&self) -> Result<Box<dyn Policy>>;
    /// Everything needed to resume exactly.
    fn snapshot(&self) -> Result<Snapshot>;
    /// Restore from a checkpoint written from [`snapshot`](Self::snapshot) (`state` is its JSON state).
    fn restore(&mut self, ck: &Checkpoint, state: &Value) -> Result<()>;
    /// Data-dependent set-up of a fresh run, before the first update (not called on resume:
    /// whatever it computes belongs in the snapshot's state). Default: nothing.
    fn prepare(&mut self, _data: &Dataset) -> Result<()> {
        Ok(())
    }
    /// Measures of the current model on a probe of dataset states, logged as `diag/*` metrics
    /// at every checkpoint. Default: the policy's actions against the data's
    /// ([`policy_diagnostics`]); models add their own (held-out loss, Q of their actions).
    fn diagnostics(&self, probe: &Probe) -> Result<Metrics> {
        policy_diagnostics(self, probe)
    }
}

/// How far the policy's actions at the probe's states are from the dataset's, and how often
/// they leave the data's action range or sit at the bounds ([`crate::eval::probe::ActionStats`]).
pub fn policy_diagnostics<A: OfflineAlgorithm + ?Sized>(
    algo: &A,
    probe: &Probe,
) -> Result<Metrics> {
    let mut policy = algo.policy()?;
    let actions = probe.act(policy.as_mut())?;
    Ok(probe.stats(&actions).metrics(POLICY_NAMES))
}

/// A module's parameters and its optimizer's state as two checkpoint parts (`name`, `name.optim`).
pub fn module_parts<M: Module>(
    name: &str,
    module: &M,
    optim: Option<&ModuleOptimizer>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut parts = vec![(name.to_string(), module_bytes(module)?)];
    if let Some(optim) = optim {
        let bytes = optim.into_bytes().map_err(|e| Error::Checkpoint {
            path: Default::default(),
            message: format!("cannot serialise the optimizer of `{name}`: {e}"),
        })?;
        parts.push((format!("{name}.optim"), bytes.to_vec()));
    }
    Ok(parts)
}

/// Load an optimizer state saved by [`module_parts`].
pub fn load_optim(ck: &Checkpoint, name: &str, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
    let part = format!("{name}.optim");
    let bytes = ck.part(&part)?;
    optim
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| Error::Checkpoint {
            path: ck.dir.join(format!("{part}.bpk")),
            message: format!("unreadable optimizer state: {e}"),
        })
}
