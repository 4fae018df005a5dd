//! One benchmark cell: train one algorithm on one dataset with one seed, evaluating it along the
//! way (the learning curve) and at the end, and write `result.json`. Cells of algorithms that build
//! on others (IDQL and RTB use the diffusion-BC prior and the IQL critic) read those cells' runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::table::CellResult;
use crate::algos;
use crate::dataset;
use crate::error::{Error, Result};
use crate::eval::{self, EvalReport};
use crate::train::OfflineAlgorithm;

/// A benchmark profile (`configs/profiles/NAME.toml`): dataset size, evaluation protocol, and the
/// per-algorithm config overrides (`--set` syntax) that set step counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub description: String,
    /// Multiplies the registry's dataset sizes (1.0 = D4RL sizes).
    pub scale: f64,
    /// Episodes of the final evaluation.
    pub eval_episodes: usize,
    /// Environments stepped together in evaluation.
    pub eval_envs: usize,
    /// Evaluations during training (learning-curve points), the final one included.
    pub evaluations: usize,
    /// Episodes of each intermediate evaluation.
    pub curve_episodes: usize,
    /// Algorithm name → config overrides.
    #[serde(default)]
    pub overrides: BTreeMap<String, Vec<String>>,
}

impl Profile {
    /// A built-in profile by name (`quick`, `cpu`, `paper`: `configs/profiles/`, compiled in),
    /// or a path to a TOML file of one's own.
    pub fn load(name_or_path: &str) -> Result<Profile> {
        let (origin, text) = if name_or_path.ends_with(".toml") {
            let path = PathBuf::from(name_or_path);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            (path, text)
        } else {
            let text = crate::embedded::profile(name_or_path).ok_or_else(|| {
                Error::Config(format!(
                    "no built-in profile `{name_or_path}` (built in: {}; or a path to a .toml)",
                    crate::embedded::profile_names().join(", ")
                ))
            })?;
            let origin = format!("configs/profiles/{name_or_path}.toml (built in)");
            (PathBuf::from(origin), text.to_string())
        };
        toml::from_str(&text).map_err(|e| Error::format(&origin, e.to_string()))
    }

    pub fn overrides_for(&self, algo: &str) -> Vec<String> {
        self.overrides.get(algo).cloned().unwrap_or_default()
    }

    /// This profile with `--set ALGO.KEY=VALUE` overrides appended to the algorithms' own.
    pub fn with_sets(mut self, sets: &[String]) -> Result<Profile> {
        for s in sets {
            let (algo, key_value) = split_set(s)?;
            self.overrides
                .entry(algo.to_string())
                .or_default()
                .push(key_value.to_string());
        }
        Ok(self)
    }
}

/// `ALGO.KEY=VALUE` → (`ALGO`, `KEY=VALUE`), checking the algorithm name.
pub fn split_set(s: &str) -> Result<(&str, &str)> {
    let bad = || {
        Error::Config(format!(
            "--set `{s}`: expected ALGO.KEY=VALUE, e.g. rtb.alpha=0.05"
        ))
    };
    let (algo, rest) = s.split_once('.').ok_or_else(bad)?;
    algos::algorithm(algo).map_err(|e| Error::Config(format!("--set `{s}`: {e}")))?;
    if !rest.contains('=') {
        return Err(bad());
    }
    Ok((algo, rest))
}

/// What decides a cell's numbers besides its algorithm, dataset and seed: the profile's data
/// scale and evaluation protocol, the overrides that reach this algorithm, the backend and the
/// one data file of a pipeline. Kept in `result.json`; a grid reuses a finished cell only when
/// they match.
pub fn settings(
    profile: &Profile,
    algo: &str,
    backend: &str,
    data_file: Option<&Path>,
) -> serde_json::Value {
    serde_json::json!({
        "scale": profile.scale,
        "eval_episodes": profile.eval_episodes,
        "eval_envs": profile.eval_envs,
        "evaluations": profile.evaluations,
        "curve_episodes": profile.curve_episodes,
        "overrides": profile.overrides_for(algo),
        "backend": backend,
        "data_file": data_file.map(|p| p.display().to_string()),
    })
}

/// The Parquet file of a registry dataset at a scale, made (once) under `data_dir`.
pub fn prepare_dataset(name: &str, scale: f64, data_dir: &Path) -> Result<PathBuf> {
    let path = data_dir.join(format!(
        "{}__scale-{scale}.parquet",
        name.replace('/', "__")
    ));
    if path.is_file() {
        return Ok(path);
    }
    let card = dataset::registry::load_card(name)?;
    let opts = dataset::make::MakeOptions {
        scale,
        ..Default::default()
    };
    let data = dataset::make::make(name, &card, &opts)?;
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
    dataset::io::save(&data, &path)?;
    Ok(path)
}

/// Everything a cell needs to know.
pub struct CellSpec<'a> {
    pub algo: &'a str,
    pub dataset_name: &'a str,
    pub data_path: &'a Path,
    pub seed: u64,
    pub profile: &'a Profile,
    /// This cell's folder; sibling cells are found through [`super::cell_dir`] from `grid_out`.
    pub dir: &'a Path,
    pub grid_out: &'a Path,
    pub device: &'a Device,
    /// [`settings`], recorded in the result.
    pub settings: serde_json::Value,
}

/// The run directory of a sibling cell (same dataset and seed) that this cell builds on.
pub fn sibling_run(spec: &CellSpec<'_>, algo: &str) -> Result<PathBuf> {
    let cell = super::cell_dir(spec.grid_out, algo, spec.dataset_name, spec.seed);
    let run = cell.join("run");
    if super::read_result(&cell)?.is_none() {
        return Err(Error::Config(format!(
            "`{}` needs the finished `{algo}` cell of {} (seed {}) at {}",
            spec.algo,
            spec.dataset_name,
            spec.seed,
            run.display()
        )));
    }
    Ok(run)
}

/// The score a learning curve plots: normalised when reference scores exist.
fn curve_value(report: &EvalReport) -> f64 {
    report.normalized.unwrap_or(report.mean)
}

/// The learning-curve points a run logged (`eval/score` at each step), read back from its
/// metrics so that a resumed cell keeps the points from before its interruption.
fn logged_curve(run_dir: &Path) -> Result<Vec<(f64, f64)>> {
    Ok(crate::train::read_metrics(&run_dir.join("metrics.jsonl"))?
        .into_iter()
        .find(|(name, _)| name == EVAL_SCORE)
        .map(|(_, points)| points)
        .unwrap_or_default())
}

/// The metric under which a cell's intermediate evaluations are logged.
const EVAL_SCORE: &str = "eval/score";

/// The `diag/*` values of the newest metrics line of a run directory that has them (the final
/// checkpoint's probes), without the prefix.
pub fn last_diagnostics(run_dir: &Path) -> Result<BTreeMap<String, f64>> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    for line in text.lines().rev() {
        let row: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| Error::format(&path, e.to_string()))?;
        let diag: BTreeMap<String, f64> = row
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("diag/")?.to_string(), v.as_f64()?)))
            .collect();
        if !diag.is_empty() {
            return Ok(diag);
        }
    }
    Ok(BTreeMap::new())
}

/// Run one cell to completion (resuming its training if interrupted) and write `result.json`.
pub fn run_cell(spec: &CellSpec<'_>) -> Result<CellResult> {
    let started = Instant::now();
    let data = dataset::io::load(spec.data_path)?;
    let profile = spec.profile;
    // Evaluation seeds differ from training seeds but are fixed per cell.
    let eval_seed = spec.seed.wrapping_mul(1_000_003).wrapping_add(17);
    let mut curve: Vec<(f64, f64)> = Vec::new();
    let run_dir = spec.dir.join("run");
    let diagnostics;
    let cell_config;

    let report = match spec.algo {
        "idql" => {
            let (report, config, diag) = super::idql_cell::run(
                &sibling_run(spec, "diffusion-bc")?,
                &sibling_run(spec, "iql")?,
                &profile.overrides_for("idql"),
                &data,
                profile.eval_episodes,
                profile.eval_envs,
                eval_seed,
                spec.seed,
                spec.device,
            )?;
            curve.push((0.0, curve_value(&report)));
            cell_config = config;
            diagnostics = diag;
            report
        }
        name => {
            let info = algos::algorithm(name)?;
            let kind = info.trained.expect("every algorithm but IDQL is trained");
            let mut overrides = profile.overrides_for(name);
            // A fine-tuning cell (RTB, outsourced) reads this seed's cells of its inputs (of
            // the algorithm its settings name, where they may name another).
            let own = crate::config::resolve(&kind.default_config(), None, &overrides)?;
            for input in info.inputs.iter().filter(|i| i.required) {
                let run = sibling_run(spec, input.source(&own))?;
                let abs = crate::config::path_value(&run)?;
                overrides.push(format!("{}={abs:?}", input.key));
            }
            let config = crate::config::resolve(&kind.default_config(), None, &overrides)?;
            let steps = config
                .pointer("/train/steps")
                .and_then(|v| v.as_u64())
                .ok_or_else(|| Error::Config(format!("{name}: config has no train.steps")))?
                as usize;
            let every = (steps / profile.evaluations.max(1)).max(1);
            let mut config = config;
            config["train"]["eval_every"] = every.into();
            // A cell checkpoints at least at every evaluation, so an interrupted grid resumes
            // it from its last evaluation rather than from zero.
            let checkpoint_every = config
                .pointer("/train/checkpoint_every")
                .and_then(|v| v.as_u64())
                .unwrap_or(0) as usize;
            if checkpoint_every == 0 || checkpoint_every > every {
                config["train"]["checkpoint_every"] = every.into();
            }
            cell_config = config.clone();
            let mut hook =
                |step: usize, algo: &dyn OfflineAlgorithm| -> Result<crate::train::Metrics> {
                    if step >= steps {
                        return Ok(vec![]); // the final evaluation is done below, with more episodes
                    }
                    let mut policy = algo.policy()?;
                    let r = eval::evaluate_on(
                        &data,
                        policy.as_mut(),
                        profile.curve_episodes,
                        profile.eval_envs,
                        eval_seed,
                    )?;
                    super::report_progress(step as u64, steps as u64);
                    Ok(vec![(EVAL_SCORE, curve_value(&r))])
                };
            let algo = algos::train(
                kind,
                &config,
                &data,
                Some(&run_dir),
                spec.seed,
                spec.device,
                Some(&mut hook),
            )?
            .algo;
            let mut policy = algo.policy()?;
            let r = eval::evaluate_on(
                &data,
                policy.as_mut(),
                profile.eval_episodes,
                profile.eval_envs,
                eval_seed,
            )?;
            curve = logged_curve(&run_dir)?;
            curve.push((steps as f64, curve_value(&r)));
            diagnostics = last_diagnostics(&run_dir)?;
            r
        }
    };

    let result = CellResult {
        algo: spec.algo.to_string(),
        dataset: spec.dataset_name.to_string(),
        seed: spec.seed,
        normalized_score: report.normalized,
        mean_return: report.mean,
        std_return: report.std,
        episodes: report.returns.len(),
        wall_seconds: started.elapsed().as_secs_f64(),
        returns: report.returns.clone(),
        commit: env!("OFFRL_COMMIT").to_string(),
        config_hash: super::config_hash(&cell_config),
        config: cell_config,
        curve,
        diagnostics,
        settings: spec.settings.clone(),
        protocol: serde_json::json!({
            "episodes": profile.eval_episodes,
            "envs": profile.eval_envs,
            "eval_seed": eval_seed,
            "policy": "final",
            "evaluations": profile.evaluations,
            "curve_episodes": profile.curve_episodes,
        }),
        versions: serde_json::json!({
            "offrl": env!("CARGO_PKG_VERSION"),
            "commit": env!("OFFRL_COMMIT"),
            "backend": spec.settings.get("backend"),
        }),
    };
    let json = serde_json::to_vec_pretty(&result).expect("result serialises");
    crate::output::write_atomic(&spec.dir.join("result.json"), &json)?;
    Ok(result)
}
