//! The benchmark runner: algorithms × datasets × seeds, each (algo, dataset, seed) cell run as an
//! independent `offrl bench cell` process (so a grid spreads over cores now and machines later),
//! finished cells never recomputed, and the results gathered into a paper-style table.

pub mod cell;
pub mod executor;
pub mod idql_cell;
pub mod manifest;
pub mod plan;
pub mod render;
pub mod report;
pub mod stats;
pub mod table;

/// The environment variable through which a grid tells its cells its process id.
pub const GRID_PID_VAR: &str = "OFFRL_GRID_PID";

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub use table::{config_hash, CellResult, Table};

use crate::error::{Error, Result};

/// Lines a cell process prints on stdout to report progress to the grid runner.
pub const PROGRESS_PREFIX: &str = "@progress ";

/// What to run.
#[derive(Debug, Clone)]
pub struct GridSpec {
    pub algos: Vec<String>,
    pub datasets: Vec<String>,
    pub seeds: Vec<u64>,
    pub profile: String,
    /// Cells run at the same time.
    pub jobs: usize,
    pub out: PathBuf,
    /// Extra arguments passed to every cell (e.g. `--backend`).
    pub cell_args: Vec<String>,
    /// The profile with the `--set` overrides, the backend's name and the pipeline's data file:
    /// what [`cell::settings`] of a finished cell must match for the cell to be reused.
    pub settings: cell::Profile,
    pub backend: String,
    pub data_file: Option<PathBuf>,
}

/// The folder of one cell.
pub fn cell_dir(out: &Path, algo: &str, dataset: &str, seed: u64) -> PathBuf {
    out.join("cells")
        .join(dataset.replace('/', "__"))
        .join(algo)
        .join(format!("seed-{seed}"))
}

/// Report progress from inside a cell process (read by the grid runner).
pub fn report_progress(done: u64, total: u64) {
    println!("{PROGRESS_PREFIX}{done} {total}");
}

/// A finished cell's result, if it has one.
pub fn read_result(dir: &Path) -> Result<Option<CellResult>> {
    let path = dir.join("result.json");
    if !path.is_file() {
        return Ok(None);
    }
    read_result_file(&path).map(Some)
}

/// One result file (a cell's `result.json`, or a committed copy of it), errors naming it.
pub fn read_result_file(path: &Path) -> Result<CellResult> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::format(path, e.to_string()))
}

/// Run every missing cell with `exe bench cell ...` (at most `spec.jobs` at once), then gather all
/// results. A failed cell is reported with the tail of its log and does not stop the others.
pub fn run_grid(spec: &GridSpec, exe: &Path) -> Result<Vec<CellResult>> {
    let mut todo = Vec::new();
    for dataset in &spec.datasets {
        for algo in &spec.algos {
            for &seed in &spec.seeds {
                let dir = cell_dir(&spec.out, algo, dataset, seed);
                match read_result(&dir)? {
                    None => todo.push((algo.clone(), dataset.clone(), seed, dir)),
                    Some(done) => check_reuse(spec, algo, &dir, &done.settings)?,
                }
            }
        }
    }
    let total = spec.datasets.len() * spec.algos.len() * spec.seeds.len();
    tracing::info!(
        "{} of {total} cells to run ({} already finished)",
        todo.len(),
        total - todo.len()
    );

    let multi = MultiProgress::new();
    let grid_bar = multi.add(ProgressBar::new(todo.len() as u64));
    grid_bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} cells, elapsed {elapsed}, eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    grid_bar.set_prefix("grid");
    let cell_style =
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} eta {eta} {msg}")
            .expect("static template")
            .progress_chars("=> ");

    let queue = Arc::new(Mutex::new(todo.into_iter()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    std::thread::scope(|scope| {
        for _ in 0..spec.jobs.max(1) {
            let queue = Arc::clone(&queue);
            let failures = Arc::clone(&failures);
            let (multi, grid_bar, cell_style) = (&multi, &grid_bar, &cell_style);
            scope.spawn(move || loop {
                let Some((algo, dataset, seed, dir)) = queue.lock().expect("queue lock").next()
                else {
                    break;
                };
                let bar = multi.insert_before(grid_bar, ProgressBar::new(1));
                bar.set_style(cell_style.clone());
                bar.set_prefix(format!("seed {seed}"));
                bar.set_message(format!("{algo} on {dataset}"));
                if let Err(e) = run_cell_process(exe, spec, &algo, &dataset, seed, &dir, &bar) {
                    failures
                        .lock()
                        .expect("failure lock")
                        .push(format!("{algo} / {dataset} / seed {seed}: {e}"));
                }
                bar.finish_and_clear();
                grid_bar.inc(1);
            });
        }
    });
    grid_bar.finish();
    for f in failures.lock().expect("failure lock").iter() {
        tracing::error!("cell failed: {f}");
    }

    let mut results = Vec::new();
    for dataset in &spec.datasets {
        for algo in &spec.algos {
            for &seed in &spec.seeds {
                if let Some(r) = read_result(&cell_dir(&spec.out, algo, dataset, seed))? {
                    results.push(r);
                }
            }
        }
    }
    Ok(results)
}

/// A finished cell is reused only if it was computed with this grid's settings.
fn check_reuse(
    spec: &GridSpec,
    algo: &str,
    dir: &Path,
    recorded: &serde_json::Value,
) -> Result<()> {
    if recorded.is_null() {
        tracing::warn!(
            "{}: finished before cells recorded their settings; reused without a check",
            dir.display()
        );
        return Ok(());
    }
    let want = cell::settings(
        &spec.settings,
        algo,
        &spec.backend,
        spec.data_file.as_deref(),
    );
    let diff = crate::config::diff(recorded, &want);
    if diff.is_empty() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{} was computed with other settings ({}): use another --out, or delete that cell to \
         recompute it",
        dir.display(),
        diff.join(", ")
    )))
}

fn run_cell_process(
    exe: &Path,
    spec: &GridSpec,
    algo: &str,
    dataset: &str,
    seed: u64,
    dir: &Path,
    bar: &ProgressBar,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let log_path = dir.join("log.txt");
    let log = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
    let mut child = Command::new(exe)
        // The cell checks that this process is still its parent once it has asked to die with it.
        .env(GRID_PID_VAR, std::process::id().to_string())
        .args([
            "bench",
            "cell",
            "--algo",
            algo,
            "--dataset",
            dataset,
            "--profile",
            &spec.profile,
        ])
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--dir")
        .arg(dir)
        .args(&spec.cell_args)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| Error::io(exe, e))?;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
        if let Some(rest) = line.strip_prefix(PROGRESS_PREFIX) {
            let mut it = rest
                .split_whitespace()
                .filter_map(|v| v.parse::<u64>().ok());
            if let (Some(done), Some(total)) = (it.next(), it.next()) {
                bar.set_length(total);
                bar.set_position(done);
            }
        }
    }
    let status = child.wait().map_err(|e| Error::io(exe, e))?;
    if status.success() && read_result(dir)?.is_some() {
        return Ok(());
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(Error::Config(format!(
        "exited with {status}; log {}:\n{}",
        log_path.display(),
        tail.join("\n")
    )))
}

/// Write the table (Markdown, CSV, JSON) and one learning-curve PNG per dataset into `out`.
pub fn write_report(out: &Path, table: &Table, results: &[CellResult]) -> Result<()> {
    use crate::output::write_atomic as write;
    write(&out.join("results.md"), table.markdown().as_bytes())?;
    write(&out.join("results.csv"), table.csv().as_bytes())?;
    let json = serde_json::json!({ "table": table, "cells": results });
    write(
        &out.join("results.json"),
        serde_json::to_string_pretty(&json)
            .expect("json")
            .as_bytes(),
    )?;
    let curves = out.join("curves");
    std::fs::create_dir_all(&curves).map_err(|e| Error::io(&curves, e))?;
    for dataset in &table.datasets {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for algo in &table.algos {
            let runs: Vec<&CellResult> = results
                .iter()
                .filter(|r| &r.algo == algo && &r.dataset == dataset && !r.curve.is_empty())
                .collect();
            if runs.is_empty() {
                continue;
            }
            // Average the seeds' curves at the steps they share.
            let steps: Vec<f64> = runs[0].curve.iter().map(|p| p.0).collect();
            let points = steps
                .iter()
                .map(|&s| {
                    let vals: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| r.curve.iter().find(|p| p.0 == s).map(|p| p.1))
                        .collect();
                    (s, vals.iter().sum::<f64>() / vals.len() as f64)
                })
                .collect();
            series.push((algo.clone(), points));
        }
        if series.is_empty() {
            continue;
        }
        let refs: Vec<(&str, &[(f64, f64)])> = series
            .iter()
            .map(|(n, p)| (n.as_str(), p.as_slice()))
            .collect();
        let file = curves.join(format!("{}.png", dataset.replace('/', "__")));
        let y = if table.normalized {
            "normalised score"
        } else {
            "return"
        };
        crate::train::plot::line_chart(&file, &format!("{dataset}: {y}"), "training step", &refs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A finished cell written with `settings` at `out`'s bc / toy / seed 0.
    fn finished(out: &Path, settings: serde_json::Value) {
        let dir = cell_dir(out, "bc", "toy", 0);
        std::fs::create_dir_all(&dir).unwrap();
        let r = CellResult {
            algo: "bc".into(),
            dataset: "toy".into(),
            seed: 0,
            normalized_score: Some(1.0),
            mean_return: 1.0,
            std_return: 0.0,
            episodes: 1,
            wall_seconds: 0.0,
            returns: vec![1.0],
            commit: String::new(),
            config: serde_json::Value::Null,
            curve: vec![],
            diagnostics: Default::default(),
            settings,
            protocol: serde_json::Value::Null,
            versions: serde_json::Value::Null,
            config_hash: String::new(),
        };
        std::fs::write(dir.join("result.json"), serde_json::to_vec(&r).unwrap()).unwrap();
    }

    /// A cell interrupted after its second evaluation resumes from a checkpoint there (not from
    /// zero: short cells used to save none before the end) and reports the same learning curve
    /// and result as the uninterrupted cell (its curve used to lose the points before).
    #[test]
    fn an_interrupted_cell_resumes_with_its_whole_curve() {
        use crate::dataset::{collect::collect, registry::CollectPart};
        let out = tempfile::tempdir().unwrap();
        let part = CollectPart {
            policy: "pendulum-swingup".into(),
            steps: 400,
            stochastic: false,
            noise: 0.5,
        };
        let data = collect("Pendulum-v1", &[part], 0, 1.0, None, false).unwrap();
        let data_path = out.path().join("pendulum.parquet");
        crate::dataset::io::save(&data, &data_path).unwrap();
        let profile = cell::Profile {
            description: String::new(),
            scale: 1.0,
            eval_episodes: 1,
            eval_envs: 1,
            evaluations: 4,
            curve_episodes: 1,
            overrides: [(
                "bc".to_string(),
                vec![
                    "train.steps=40".to_string(),
                    "train.batch_size=8".to_string(),
                    "actor_net.width=8".to_string(),
                ],
            )]
            .into(),
        };
        let device = crate::backend::BackendKind::Flex.train_device().unwrap();
        let dir = cell_dir(out.path(), "bc", "pendulum", 0);
        let spec = cell::CellSpec {
            algo: "bc",
            dataset_name: "pendulum",
            data_path: &data_path,
            seed: 0,
            profile: &profile,
            dir: &dir,
            grid_out: out.path(),
            device: &device,
            settings: serde_json::Value::Null,
        };
        let whole = cell::run_cell(&spec).unwrap();
        let steps: Vec<f64> = whole.curve.iter().map(|p| p.0).collect();
        assert_eq!(steps, vec![10.0, 20.0, 30.0, 40.0]);
        let checkpoints = dir.join("run/checkpoints");
        // Interrupted after step 20: the later checkpoints and the result never happened.
        for step in [30, 40] {
            std::fs::remove_dir_all(crate::train::checkpoint::Checkpoint::dir_for_step(
                &checkpoints,
                step,
            ))
            .unwrap();
        }
        std::fs::remove_file(dir.join("result.json")).unwrap();
        let resumed = cell::run_cell(&spec).unwrap();
        assert_eq!(resumed.curve, whole.curve);
        assert_eq!(resumed.returns, whole.returns);
    }

    /// Every built-in profile's overrides name real keys with values their algorithm accepts.
    #[test]
    fn built_in_profiles_resolve_and_validate() {
        for name in ["quick", "cpu", "paper"] {
            let profile = cell::Profile::load(name).unwrap();
            for (algo, sets) in &profile.overrides {
                let what = format!("profile {name}, {algo}");
                match algo.as_str() {
                    "idql" => {
                        let c: crate::algos::idql::IdqlConfig = crate::config::resolve(
                            &crate::algos::idql::IdqlConfig::default(),
                            None,
                            sets,
                        )
                        .expect(&what);
                        assert!(c.samples >= 1, "{what}");
                    }
                    "rtb" => {
                        let c: crate::algos::rtb::RtbConfig = crate::config::resolve(
                            &crate::algos::rtb::RtbConfig::default(),
                            None,
                            sets,
                        )
                        .expect(&what);
                        c.validate().expect(&what);
                    }
                    "outsourced" => {
                        use crate::algos::outsourced::OutsourcedConfig;
                        let c: OutsourcedConfig =
                            crate::config::resolve(&OutsourcedConfig::default(), None, sets)
                                .expect(&what);
                        c.validate().expect(&what);
                    }
                    other => {
                        let kind = crate::algos::algorithm(other)
                            .expect(&what)
                            .trained
                            .expect(&what);
                        let v = crate::config::resolve(&kind.default_config(), None, sets)
                            .expect(&what);
                        let data = crate::dataset::testing::two_state_bandit();
                        let spec = crate::dataset::spec::DataSpec::from_dataset(
                            &data,
                            &serde_json::from_value(v["data"].clone()).expect(&what),
                        )
                        .expect(&what);
                        let device = burn::tensor::Device::flex().autodiff();
                        kind.build(&v, spec, &device, 0).expect(&what);
                    }
                }
            }
        }
    }

    /// Rerunning a grid with other `--set` values (or another profile) must not print the old
    /// numbers under the new label: the finished cell is refused, naming what differs.
    #[test]
    fn finished_cells_are_reused_only_with_the_same_settings() {
        let out = tempfile::tempdir().unwrap();
        let profile = cell::Profile::load("quick").unwrap();
        let spec = |profile: cell::Profile| GridSpec {
            algos: vec!["bc".into()],
            datasets: vec!["toy".into()],
            seeds: vec![0],
            profile: "quick".into(),
            jobs: 1,
            out: out.path().to_path_buf(),
            cell_args: vec![],
            settings: profile,
            backend: "flex".into(),
            data_file: None,
        };
        finished(out.path(), cell::settings(&profile, "bc", "flex", None));
        // Same settings: reused (nothing to run, so no process is started).
        let same = run_grid(&spec(profile.clone()), Path::new("/nonexistent")).unwrap();
        assert_eq!(same.len(), 1);
        // Another --set for bc: refused with the key named.
        let changed = profile
            .clone()
            .with_sets(&["bc.train.steps=7".into()])
            .unwrap();
        let err = run_grid(&spec(changed), Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("other settings") && err.contains("overrides"),
            "{err}"
        );
        // A --set for another algorithm does not concern this cell.
        let other = profile
            .clone()
            .with_sets(&["rtb.alpha=0.5".into()])
            .unwrap();
        assert_eq!(
            run_grid(&spec(other), Path::new("/nonexistent"))
                .unwrap()
                .len(),
            1
        );
        // Another evaluation protocol: refused.
        let mut more = profile.clone();
        more.eval_episodes += 1;
        assert!(run_grid(&spec(more), Path::new("/nonexistent")).is_err());
    }
}
