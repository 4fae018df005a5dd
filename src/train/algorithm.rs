//! The framework every algorithm plugs into: the [`OfflineAlgorithm`] trait (update, policy,
//! checkpoint parts, diagnostics), the `[train]` table every config has ([`LoopConfig`]), and
//! [`Parts`], which saves and restores modules, optimizers and generators from one declaration.

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checkpoint::{module_bytes, Checkpoint};
use crate::dataset::spec::DataSpec;
use crate::dataset::{Batch, Dataset};
use crate::error::{Error, Result};
use crate::eval::probe::{Probe, POLICY_NAMES};
use crate::policy::{ActionScorer, Policy};

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
/// resume an algorithm exactly: what [`Parts`] collects when saving.
pub struct Snapshot {
    pub parts: Vec<(String, Vec<u8>)>,
    pub state: Value,
}

/// What a checkpoint holds, declared once per algorithm ([`OfflineAlgorithm::parts`]) and
/// walked both ways: saving collects each named module's parameters, its optimizer's state and
/// JSON state into a [`Snapshot`]; loading puts the same names back in place. One list, so a
/// part added to an algorithm is saved and restored alike.
pub struct Parts<'a> {
    mode: Mode<'a>,
    state: serde_json::Map<String, Value>,
}

enum Mode<'a> {
    Save(Vec<(String, Vec<u8>)>),
    Load(&'a Checkpoint),
}

impl<'a> Parts<'a> {
    pub fn saving() -> Self {
        Parts {
            mode: Mode::Save(Vec::new()),
            state: Default::default(),
        }
    }

    /// Restore from `ck`, whose JSON state is `state` (an object, or null for none).
    pub fn loading(ck: &'a Checkpoint, state: &Value) -> Self {
        Parts {
            mode: Mode::Load(ck),
            state: state.as_object().cloned().unwrap_or_default(),
        }
    }

    pub fn is_loading(&self) -> bool {
        matches!(self.mode, Mode::Load(_))
    }

    /// What saving collected (empty after loading).
    pub fn into_snapshot(self) -> Snapshot {
        Snapshot {
            parts: match self.mode {
                Mode::Save(parts) => parts,
                Mode::Load(_) => Vec::new(),
            },
            state: Value::Object(self.state),
        }
    }

    /// A module and, when it trains, its optimizer: parts `name` and `name.optim`.
    pub fn module<M: Module>(
        &mut self,
        name: &str,
        module: &mut M,
        optim: Option<&mut ModuleOptimizer>,
    ) -> Result<()> {
        match &mut self.mode {
            Mode::Save(parts) => parts.extend(module_parts(name, module, optim.as_deref())?),
            Mode::Load(ck) => {
                *module = ck.load_module(name, module.clone())?;
                if let Some(optim) = optim {
                    *optim = load_optim(ck, name, optim.clone())?;
                }
            }
        }
        Ok(())
    }

    /// A target network (a slow copy that never takes gradients): part `name`, loaded
    /// without gradient tracking.
    pub fn target<M: Module>(&mut self, name: &str, module: &mut M) -> Result<()> {
        self.module(name, module, None)?;
        if self.is_loading() {
            *module = module.clone().no_grad();
        }
        Ok(())
    }

    /// Raw bytes (a replay buffer): `save` gives them, `load` takes them back.
    pub fn bytes(
        &mut self,
        name: &str,
        save: impl FnOnce() -> Vec<u8>,
        load: impl FnOnce(&[u8]) -> Result<()>,
    ) -> Result<()> {
        match &mut self.mode {
            Mode::Save(parts) => parts.push((name.to_string(), save())),
            Mode::Load(ck) => load(&ck.part(name)?)?,
        }
        Ok(())
    }

    /// A value of the JSON state under `key`. Loading a checkpoint that lacks the key leaves
    /// `value` as it is (state added after the checkpoint was written starts fresh).
    pub fn value<T: Serialize + serde::de::DeserializeOwned>(
        &mut self,
        key: &str,
        value: &mut T,
    ) -> Result<()> {
        match &self.mode {
            Mode::Save(_) => {
                let v = serde_json::to_value(&*value).expect("state serialises");
                self.state.insert(key.to_string(), v);
            }
            Mode::Load(ck) => {
                if let Some(v) = self.state.get(key) {
                    *value = serde_json::from_value(v.clone()).map_err(|e| Error::Checkpoint {
                        path: ck.dir.clone(),
                        message: format!("bad `{key}` state: {e}"),
                    })?;
                }
            }
        }
        Ok(())
    }

    /// A ChaCha generator, state `rng`: resume continues its exact sequence.
    pub fn rng(&mut self, rng: &mut ChaCha8Rng) -> Result<()> {
        let mut saved = RngState::of(rng);
        self.value("rng", &mut saved)?;
        if let Mode::Load(ck) = &self.mode {
            *rng = saved.restore().map_err(|e| Error::Checkpoint {
                path: ck.dir.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// Serialisable state of a ChaCha generator (seed, stream, position): resume continues the
/// exact random sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    seed: [u8; 32],
    stream: u64,
    /// u128 as a string (JSON numbers are f64).
    word_pos: String,
}

impl RngState {
    pub fn of(rng: &ChaCha8Rng) -> Self {
        Self {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    pub fn restore(&self) -> Result<ChaCha8Rng> {
        use rand::SeedableRng;
        let pos: u128 = self
            .word_pos
            .parse()
            .map_err(|_| Error::InvalidData(format!("bad rng position `{}`", self.word_pos)))?;
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }
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
    /// Everything needed to resume exactly, declared once: the same walk saves and restores
    /// it ([`Parts`]).
    fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()>;
    /// A policy that samples from the learned action distribution with its own generator
    /// (`seed`): `sample` in Python, against [`policy`](Self::policy)'s `predict`. Default: the
    /// acting policy, for algorithms whose policy is deterministic (TD3+BC, FQL) or already
    /// draws (the diffusion and flow families).
    fn sampling_policy(&self, _seed: u64) -> Result<Box<dyn Policy>> {
        self.policy()
    }
    /// The action value `Q(s, a)` the algorithm learned or acts on, as a scorer of raw
    /// observations and environment actions (`predict_value` in Python). Default: none.
    fn value_function(&self) -> Option<Box<dyn ActionScorer>> {
        None
    }
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
    /// Figures of the current model on the same probe, written into the run's `plots/` folder
    /// at every checkpoint of a run (after the metrics' own curves). Default: none.
    fn figures(&self, _probe: &Probe, _step: usize, _plots: &std::path::Path) -> Result<()> {
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn rng_state_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let _: u64 = rng.random();
        let state = RngState::of(&rng);
        let json = serde_json::to_value(&state).unwrap();
        let mut back = serde_json::from_value::<RngState>(json)
            .unwrap()
            .restore()
            .unwrap();
        assert_eq!(rng.random::<u64>(), back.random::<u64>());
    }
}
