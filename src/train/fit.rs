//! The one training loop, [`fit`], and what it writes: checkpoints that record the algorithm's
//! state, its data spec and the dataset's identity ([`DatasetInfo`]).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::algorithm::{LoopConfig, Metrics, OfflineAlgorithm, Parts};
use super::checkpoint::{Checkpoint, CheckpointMeta, CHECKPOINT_VERSION};
use super::RunDir;
use crate::dataset::sampler::Sampler;
use crate::dataset::{Dataset, ReferenceScores};
use crate::error::{Error, Result};
use crate::eval::probe::{Probe, PROBE_ROWS};

/// What a run records about its dataset (in every checkpoint's metadata, `extra.dataset`), so
/// that its policy can be evaluated later without the data (the environment and the reference
/// returns of score normalisation) and that a resumed run can tell it is given the same data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub env_id: String,
    pub reference_scores: Option<ReferenceScores>,
    /// Transitions and [`Dataset::fingerprint`] (absent in checkpoints written before).
    #[serde(default)]
    pub rows: Option<usize>,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

impl DatasetInfo {
    pub fn of(data: &Dataset) -> Self {
        Self {
            env_id: data.meta.env_id.clone(),
            reference_scores: data.meta.reference_scores,
            rows: Some(data.len()),
            fingerprint: Some(data.fingerprint()),
        }
    }

    /// Refuse to continue a run recorded on other data (when the record says which).
    pub fn ensure_same_data(&self, data: &Dataset, run: &std::path::Path) -> Result<()> {
        let now = Self::of(data);
        match (&self.fingerprint, &now.fingerprint) {
            (Some(was), Some(is)) if was != is => Err(Error::Config(format!(
                "{} was trained on another dataset ({} transitions, fingerprint {was}; this \
                 one: {} transitions, {is}): resume with the same data, or train into a new \
                 --out",
                run.display(),
                self.rows.unwrap_or(0),
                now.rows.unwrap_or(0)
            ))),
            _ => Ok(()),
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

/// The logged lines of a training, in step order: what `metrics.jsonl` holds, for a training
/// that writes no run directory.
pub type History = Vec<(usize, Metrics)>;

/// Where [`fit`] writes: a run directory (its metrics JSONL, plots and checkpoints) and the run
/// config each checkpoint records. Without one a training writes nothing; its logged lines are
/// returned as a [`History`] either way.
pub struct RunRecord<'a> {
    pub dir: &'a mut RunDir,
    pub config: &'a Value,
}

/// The one training loop: sample, update, check, log, evaluate, checkpoint, plot. Returns the
/// logged lines (those of this call: a resumed run's earlier lines are in its run directory).
///
/// The minibatch sampler is re-seeded from `(seed, block)` at every checkpoint boundary, so a run
/// resumed from a checkpoint draws exactly the batches the uninterrupted run would have drawn.
pub fn fit(
    algo: &mut dyn OfflineAlgorithm,
    data: &Dataset,
    cfg: &LoopConfig,
    mut run: Option<RunRecord<'_>>,
    seed: u64,
    start_step: usize,
    mut eval: Option<EvalHook<'_>>,
) -> Result<History> {
    cfg.validate()?;
    if data.is_empty() {
        return Err(Error::InvalidData("the dataset has no transitions".into()));
    }
    // The whole dataset's identity, before the held-out split (what resume compares).
    let info = DatasetInfo::of(data);
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
    let mut history = History::new();
    let bar = crate::progress::progress_bar(cfg.steps as u64, algo.name());
    bar.set_position(start_step as u64);
    for step in start_step..cfg.steps {
        if step != start_step && cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 {
            sampler = Sampler::new(data, block_seed(seed, block(step)));
        }
        super::interrupt::check(step)?;
        let mut metrics = algo.update(sampler.sample(cfg.batch_size), step)?;
        for &(name, value) in &metrics {
            super::ensure_finite(step, name, value)?;
        }
        let done = step + 1;
        let mut evaluated = false;
        if cfg.eval_every > 0 && done % cfg.eval_every == 0 {
            if let Some(hook) = eval.as_mut() {
                metrics.extend(hook(done, &*algo)?);
                evaluated = true;
            }
        }
        let checkpoint_now =
            (cfg.checkpoint_every > 0 && done % cfg.checkpoint_every == 0) || done == cfg.steps;
        if checkpoint_now {
            metrics.extend(algo.diagnostics(&probe)?);
        }
        // Evaluations are always logged: the metrics are where learning curves are read from.
        if done % cfg.log_every == 0 || checkpoint_now || evaluated {
            if let Some(run) = run.as_mut() {
                run.dir.log(done, &metrics)?;
            }
            if let Some((name, value)) = metrics.first() {
                bar.set_message(format!("{name} {value:.4}"));
            }
            history.push((done, metrics));
        }
        if let (true, Some(run)) = (checkpoint_now, run.as_mut()) {
            let dir = Checkpoint::dir_for_step(&run.dir.checkpoints(), done);
            save_checkpoint(algo, &dir, run.config, &info, done)?;
            run.dir.plot()?;
            algo.figures(&probe, done, &run.dir.plots())?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(history)
}

fn block_seed(seed: u64, block: usize) -> u64 {
    // splitmix64 of the pair: distinct, well-mixed seeds per block.
    let mut z = seed ^ (block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Write a checkpoint of the algorithm's current state into the folder `dir` (a run's
/// `checkpoints/step-N`, or anywhere: what an algorithm trained in memory is saved with).
/// `run_config` is what [`crate::algos::run_config`] records: kind, seed, settings.
pub fn save_checkpoint(
    algo: &mut dyn OfflineAlgorithm,
    dir: &std::path::Path,
    run_config: &Value,
    dataset: &DatasetInfo,
    step: usize,
) -> Result<Checkpoint> {
    let mut parts = Parts::saving();
    algo.parts(&mut parts)?;
    let snap = parts.into_snapshot();
    let meta = CheckpointMeta {
        format_version: CHECKPOINT_VERSION,
        kind: algo.name().to_string(),
        step,
        config: run_config.clone(),
        extra: json!({ "spec": algo.spec(), "state": snap.state, "dataset": dataset }),
        checksums: Default::default(),
    };
    let parts: Vec<(&str, Vec<u8>)> = snap
        .parts
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    Checkpoint::save(dir, &meta, &parts)
}
