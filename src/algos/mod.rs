//! Offline RL algorithms: the IQL critic (with its AWR actor) and the baselines BC, TD3+BC and
//! CQL. Each algorithm is one file that reads top to bottom, its config struct at the top; what
//! they share lives in [`common`] (data spec, networks, target updates, noise) and here (the
//! [`OfflineAlgorithm`] trait and the one training loop, [`fit`] / [`train`]).
//!
//! Training any algorithm by name (what `offrl train <algo>` and the benchmark runner do):
//! ```no_run
//! # fn main() -> offrl::Result<()> {
//! use offrl::algos::{self, AlgoKind};
//! # let data: offrl::dataset::Dataset = todo!();
//! let device = burn::tensor::Device::flex().autodiff();
//! let config = offrl::config::resolve(&AlgoKind::Iql.default_config(), None, &["train.steps=1000".into()])?;
//! let algo = algos::train(AlgoKind::Iql, &config, &data, "runs/iql".as_ref(), 0, &device, None)?;
//! let mut policy = algo.policy()?; // offrl::policy::Policy: batched act
//! # Ok(()) }
//! ```
//! A run directory resumes from its newest checkpoint when trained again with the same config.

pub mod bc;
pub mod common;
pub mod cql;
pub mod idql;
pub mod iql;
pub mod rtb;
pub mod td3bc;

use std::path::Path;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::dataset::sampler::Sampler;
use crate::dataset::{Batch, Dataset, Metadata, ReferenceScores};
use crate::error::{Error, Result};
use crate::eval::probe::{Probe, POLICY_NAMES, PROBE_ROWS};
use crate::policy::Policy;
use crate::train::checkpoint::{module_bytes, Checkpoint, CheckpointMeta, CHECKPOINT_VERSION};
use crate::train::{self, RunDir};
use common::DataSpec;

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
pub trait OfflineAlgorithm {
    /// Checkpoint kind, e.g. `iql`.
    fn kind(&self) -> AlgoKind;
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

/// The algorithms, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Hash)]
#[serde(rename_all = "lowercase")]
pub enum AlgoKind {
    Iql,
    Rtb,
    /// The diffusion behaviour prior μ(a|s) (`crate::diffusion`), whose policy is diffusion BC.
    Prior,
    Bc,
    Td3bc,
    Cql,
}

fn typed<C: DeserializeOwned>(value: &Value, what: &str) -> Result<C> {
    serde_json::from_value(value.clone()).map_err(|e| Error::Config(format!("{what}: {e}")))
}

impl AlgoKind {
    pub const ALL: [AlgoKind; 6] = [
        AlgoKind::Iql,
        AlgoKind::Bc,
        AlgoKind::Td3bc,
        AlgoKind::Cql,
        AlgoKind::Prior,
        AlgoKind::Rtb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AlgoKind::Iql => "iql",
            AlgoKind::Rtb => "rtb",
            AlgoKind::Prior => "prior",
            AlgoKind::Bc => "bc",
            AlgoKind::Td3bc => "td3bc",
            AlgoKind::Cql => "cql",
        }
    }

    pub fn from_name(name: &str) -> Result<Self> {
        AlgoKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = AlgoKind::ALL.iter().map(|k| k.name()).collect();
                Error::Config(format!(
                    "unknown algorithm `{name}` (known: {})",
                    known.join(", ")
                ))
            })
    }

    /// The default config (paper / CORL hyperparameters) as JSON, ready for `config::resolve`.
    pub fn default_config(self) -> Value {
        let v = match self {
            AlgoKind::Iql => serde_json::to_value(iql::IqlConfig::default()),
            AlgoKind::Rtb => serde_json::to_value(rtb::RtbConfig::default()),
            AlgoKind::Prior => {
                serde_json::to_value(crate::diffusion::train::PriorConfig::default())
            }
            AlgoKind::Bc => serde_json::to_value(bc::BcConfig::default()),
            AlgoKind::Td3bc => serde_json::to_value(td3bc::Td3BcConfig::default()),
            AlgoKind::Cql => serde_json::to_value(cql::CqlConfig::default()),
        };
        v.expect("configs serialise")
    }

    /// Build a fresh algorithm from a (resolved) config.
    pub fn build(
        self,
        config: &Value,
        spec: DataSpec,
        device: &Device,
        seed: u64,
    ) -> Result<Box<dyn OfflineAlgorithm>> {
        let what = self.name();
        Ok(match self {
            AlgoKind::Iql => Box::new(iql::Iql::new(typed(config, what)?, spec, device, seed)?),
            AlgoKind::Rtb => Box::new(rtb::RtbAlgo::new(typed(config, what)?, spec, device, seed)?),
            AlgoKind::Prior => Box::new(crate::diffusion::train::PriorAlgo::new(
                typed(config, what)?,
                spec,
                device,
                seed,
            )?),
            AlgoKind::Bc => Box::new(bc::Bc::new(typed(config, what)?, spec, device, seed)?),
            AlgoKind::Td3bc => {
                Box::new(td3bc::Td3Bc::new(typed(config, what)?, spec, device, seed)?)
            }
            AlgoKind::Cql => Box::new(cql::Cql::new(typed(config, what)?, spec, device, seed)?),
        })
    }
}

/// The `[train]` and `[data]` tables every config has.
fn loop_and_data(config: &Value) -> Result<(LoopConfig, common::DataConfig)> {
    let get = |key: &str| {
        config
            .get(key)
            .ok_or_else(|| Error::Config(format!("config has no `[{key}]` table")))
    };
    Ok((
        typed(get("train")?, "[train]")?,
        typed(get("data")?, "[data]")?,
    ))
}

/// What a run directory and its checkpoints record as "the config": algorithm, seed, settings.
fn run_config(kind: AlgoKind, config: &Value, seed: u64) -> Value {
    json!({ "algo": kind.name(), "seed": seed, "config": config })
}

/// Train `kind` on `data` into the run directory `out` (metrics, plots, checkpoints), resuming
/// from its newest checkpoint if there is one (the config and seed must then be the same).
/// `eval` is called every `train.eval_every` updates; its metrics are logged with the losses.
pub fn train(
    kind: AlgoKind,
    config: &Value,
    data: &Dataset,
    out: &Path,
    seed: u64,
    device: &Device,
    eval: Option<EvalHook<'_>>,
) -> Result<Box<dyn OfflineAlgorithm>> {
    let (loop_cfg, data_cfg) = loop_and_data(config)?;
    let recorded = run_config(kind, config, seed);
    let latest = Checkpoint::latest(&out.join("checkpoints"))?;
    let (mut algo, start) = match latest {
        Some(dir) => {
            let ck = Checkpoint::open(&dir, Some(kind.name()))?;
            let diff = config_diff(&ck.meta.config, &recorded);
            if !diff.is_empty() {
                return Err(Error::Config(format!(
                    "{} holds a run with a different config ({}); resume with the same \
                     config and seed, or train into a new --out",
                    out.display(),
                    diff.join(", ")
                )));
            }
            tracing::info!("resuming {} from step {}", out.display(), ck.meta.step);
            (load_checkpoint(&ck, device)?, ck.meta.step)
        }
        None => {
            let spec = DataSpec::from_dataset(data, &data_cfg)?;
            check_dims(&spec, data)?;
            let mut algo = kind.build(config, spec, device, seed)?;
            algo.prepare(data)?;
            (algo, 0)
        }
    };
    check_dims(algo.spec(), data)?;
    let mut run = RunDir::open(out, &recorded, Some(start))?;
    fit(
        algo.as_mut(),
        data,
        &loop_cfg,
        &recorded,
        &mut run,
        seed,
        start,
        eval,
    )?;
    Ok(algo)
}

fn check_dims(spec: &DataSpec, data: &Dataset) -> Result<()> {
    if spec.obs_dim != data.obs_dim() || spec.act_dim != data.act_dim() {
        return Err(Error::InvalidData(format!(
            "dataset dims (obs {}, act {}) differ from the model's (obs {}, act {})",
            data.obs_dim(),
            data.act_dim(),
            spec.obs_dim,
            spec.act_dim
        )));
    }
    Ok(())
}

/// Dotted keys whose values differ between two JSON objects.
fn config_diff(a: &Value, b: &Value) -> Vec<String> {
    fn walk(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            // 1 and 1.0 are the same setting.
            (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
            _ if a == b => {}
            _ => out.push(format!("{prefix}: {a} → {b}")),
        }
    }
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    out
}

/// Rebuild an algorithm from a checkpoint folder or a run directory (its newest checkpoint):
/// kind, config, data spec and state come from the metadata. What resume and `offrl eval` use.
pub fn load(path: &Path, device: &Device) -> Result<Box<dyn OfflineAlgorithm>> {
    let ck = Checkpoint::open(&Checkpoint::resolve(path)?, None)?;
    load_checkpoint(&ck, device)
}

/// [`load`] for an opened checkpoint.
pub fn load_checkpoint(ck: &Checkpoint, device: &Device) -> Result<Box<dyn OfflineAlgorithm>> {
    let bad = |message: String| Error::Checkpoint {
        path: ck.dir.clone(),
        message,
    };
    let kind =
        AlgoKind::from_name(&ck.meta.kind).map_err(|e| bad(format!("cannot rebuild it: {e}")))?;
    let meta = &ck.meta;
    let config = meta
        .config
        .get("config")
        .ok_or_else(|| bad("metadata has no `config`".into()))?;
    let seed = meta.config.get("seed").and_then(Value::as_u64).unwrap_or(0);
    let spec: DataSpec =
        serde_json::from_value(meta.extra.get("spec").cloned().unwrap_or_default())
            .map_err(|e| bad(format!("bad data spec: {e}")))?;
    let mut algo = kind.build(config, spec, device, seed)?;
    algo.restore(ck, meta.extra.get("state").unwrap_or(&Value::Null))?;
    Ok(algo)
}

/// What a run records about its dataset (in every checkpoint's metadata, `extra.dataset`), so
/// that its policy can be evaluated later without the data: the environment and the reference
/// returns of score normalisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub env_id: String,
    pub reference_scores: Option<ReferenceScores>,
}

impl DatasetInfo {
    pub fn of(meta: &Metadata) -> Self {
        Self {
            env_id: meta.env_id.clone(),
            reference_scores: meta.reference_scores,
        }
    }

    /// The record of a checkpoint (`None` for checkpoints written before runs recorded it).
    pub fn recorded(ck: &Checkpoint) -> Option<Self> {
        serde_json::from_value(ck.meta.extra.get("dataset")?.clone()).ok()
    }
}

/// Called every `eval_every` updates with the step and the algorithm; returns metrics to log
/// (e.g. normalised return of the policy).
pub type EvalHook<'a> = &'a mut dyn FnMut(usize, &dyn OfflineAlgorithm) -> Result<Metrics>;

/// The one training loop: sample, update, check, log, evaluate, checkpoint, plot.
///
/// The minibatch sampler is re-seeded from `(seed, block)` at every checkpoint boundary, so a run
/// resumed from a checkpoint draws exactly the batches the uninterrupted run would have drawn.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    algo: &mut dyn OfflineAlgorithm,
    data: &Dataset,
    cfg: &LoopConfig,
    run_config: &Value,
    run: &mut RunDir,
    seed: u64,
    start_step: usize,
    mut eval: Option<EvalHook<'_>>,
) -> Result<()> {
    if cfg.batch_size == 0 || cfg.log_every == 0 {
        return Err(Error::Config(
            "train.batch_size and train.log_every must be positive".into(),
        ));
    }
    if data.is_empty() {
        return Err(Error::InvalidData("the dataset has no transitions".into()));
    }
    // Held-out episodes: a function of the seed, so a resumed run holds out the same ones.
    let split;
    let (data, held_out) = if cfg.holdout > 0.0 {
        split = data.split_episodes(cfg.holdout, block_seed(seed, usize::MAX))?;
        (&split.0, &split.1)
    } else {
        (data, data)
    };
    // No held-out episodes (none asked, or a one-episode dataset): the probes read training states.
    let probes_from = if held_out.is_empty() { data } else { held_out };
    let probe = Probe::new(probes_from, data, PROBE_ROWS, seed)?;
    let block = |step: usize| match cfg.checkpoint_every {
        0 => 0,
        every => step / every,
    };
    let mut sampler = Sampler::new(data, block_seed(seed, block(start_step)));
    let bar = train::progress_bar(cfg.steps as u64, algo.kind().name());
    bar.set_position(start_step as u64);
    for step in start_step..cfg.steps {
        if step != start_step && cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 {
            sampler = Sampler::new(data, block_seed(seed, block(step)));
        }
        let mut metrics = algo.update(sampler.sample(cfg.batch_size), step)?;
        for &(name, value) in &metrics {
            train::ensure_finite(step, name, value)?;
        }
        let done = step + 1;
        if cfg.eval_every > 0 && done % cfg.eval_every == 0 {
            if let Some(hook) = eval.as_mut() {
                metrics.extend(hook(done, &*algo)?);
            }
        }
        let checkpoint_now =
            (cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0) || done == cfg.steps;
        if checkpoint_now {
            metrics.extend(algo.diagnostics(&probe)?);
        }
        if done % cfg.log_every == 0 || checkpoint_now {
            run.log(done, &metrics)?;
            if let Some((name, value)) = metrics.first() {
                bar.set_message(format!("{name} {value:.4}"));
            }
        }
        if checkpoint_now {
            save_checkpoint(algo, run, run_config, &DatasetInfo::of(&data.meta), done)?;
            run.plot()?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

fn block_seed(seed: u64, block: usize) -> u64 {
    // splitmix64 of the pair: distinct, well-mixed seeds per block.
    let mut z = seed ^ (block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Write `checkpoints/step-N` for the algorithm's current state.
pub fn save_checkpoint(
    algo: &dyn OfflineAlgorithm,
    run: &RunDir,
    run_config: &Value,
    dataset: &DatasetInfo,
    step: usize,
) -> Result<Checkpoint> {
    let snap = algo.snapshot()?;
    let meta = CheckpointMeta {
        format_version: CHECKPOINT_VERSION,
        kind: algo.kind().name().to_string(),
        step,
        config: run_config.clone(),
        extra: json!({ "spec": algo.spec(), "state": snap.state, "dataset": dataset }),
    };
    let parts: Vec<(&str, Vec<u8>)> = snap
        .parts
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    Checkpoint::save(
        &Checkpoint::dir_for_step(&run.checkpoints(), step),
        &meta,
        &parts,
    )
}

// ---------------------------------------------------------------------------------------------
// Helpers for implementations
// ---------------------------------------------------------------------------------------------

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

/// A deterministic policy from an actor network: normalise observations, run the actor on the
/// plain (non-autodiff) device, map unit actions back to the environment's bounds.
pub struct NetPolicy<A: Module> {
    actor: A,
    forward: fn(&A, Tensor<2>) -> Tensor<2>,
    spec: DataSpec,
    device: Device,
}

impl<A: Module> NetPolicy<A> {
    /// `actor` is any (training) copy; the policy keeps a `valid()` copy of it.
    pub fn new(actor: &A, forward: fn(&A, Tensor<2>) -> Tensor<2>, spec: &DataSpec) -> Self {
        let (actor, device) = crate::nn::inference_copy(actor);
        Self {
            actor,
            forward,
            spec: spec.clone(),
            device,
        }
    }
}

impl<A: Module> Policy for NetPolicy<A> {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let od = self.spec.obs_dim;
        if obs.len() != n * od {
            return Err(Error::InvalidData(format!(
                "policy got {} observation values for {n} × obs_dim {od}",
                obs.len()
            )));
        }
        let x = crate::nn::tensor2(&self.spec.normalize_obs(obs), n, od, &self.device);
        let unit = crate::nn::to_vec((self.forward)(&self.actor, x));
        Ok(self.spec.action_from_unit(&unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_diff_names_changed_keys() {
        let a = json!({"seed": 1, "config": {"lr": 1, "train": {"steps": 5}}});
        let b = json!({"seed": 1, "config": {"lr": 1.0, "train": {"steps": 6}}});
        assert_eq!(config_diff(&a, &b), vec!["config.train.steps: 5 → 6"]);
        assert!(config_diff(&a, &a).is_empty());
    }

    #[test]
    fn default_configs_round_trip_and_names() {
        for kind in AlgoKind::ALL {
            let v = kind.default_config();
            assert!(loop_and_data(&v).is_ok(), "{kind:?}");
            assert_eq!(AlgoKind::from_name(kind.name()).unwrap(), kind);
        }
        assert!(AlgoKind::from_name("sac").is_err());
    }

    /// `configs/<algo>.toml` records exactly the built-in defaults.
    #[test]
    fn config_files_match_defaults() {
        let idql = serde_json::to_value(idql::IdqlConfig::default()).unwrap();
        let all = AlgoKind::ALL
            .iter()
            .map(|k| (k.name(), k.default_config()))
            .chain([("idql", idql)]);
        for (name, defaults) in all {
            let file = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("configs")
                .join(format!("{name}.toml"));
            let resolved = crate::config::resolve(&defaults, Some(&file), &[]).unwrap();
            let diff = config_diff(&defaults, &resolved);
            assert!(diff.is_empty(), "{}: {diff:?}", file.display());
            // Every key of the defaults is written in the file.
            let text: toml::Table =
                toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let from_file = serde_json::to_value(text).unwrap();
            let missing = config_diff(&from_file, &defaults);
            assert!(missing.is_empty(), "{} lacks {missing:?}", file.display());
        }
    }
}
