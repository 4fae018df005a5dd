//! `offrl bench report DIR`: the tables, learning curves and aggregate statistics of whatever
//! cells of a grid have finished, rebuilt from their `result.json` files alone (a grid filled
//! over several sittings, or by several machines into one folder, reports the same way). `DIR`
//! is a grid's folder (`cells/DATASET/ALGO/seed-N/result.json`) or a folder of committed results
//! (`results/STUDY/DATASET/ALGO/seed-N.json`; variants, `seed-N__TAG.json`, are left out).
//!
//! Writes into `--out` (default: the grid's folder; nothing for a folder of committed results,
//! which stays as committed): `results.{md,csv,json}` and `curves/` (as `offrl bench` does), and
//! `stats.md`, `stats.json` and `profiles.png` ([`super::stats`]: IQM, mean, median and
//! optimality gap with stratified bootstrap intervals per algorithm; the probability of
//! improvement of every algorithm over every other; score distributions).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::stats::{self, Interval, Scores, FEW_RUNS};
use super::{read_result, read_result_file, write_report, CellResult, Table};
use crate::error::{Error, Result};

/// How the intervals are computed.
#[derive(Debug, Clone, Copy)]
pub struct StatsConfig {
    /// Bootstrap resamples (rliable's default: 50 000).
    pub reps: usize,
    /// Coverage of the intervals (0.95).
    pub confidence: f64,
    /// Seed of the resampling.
    pub seed: u64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            reps: 50_000,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// The optimality gap's threshold on the normalised scale: the expert's score.
const GAMMA: f64 = 100.0;

/// Every finished cell of the grid in `dir` (`cells/DATASET/ALGO/seed-N/result.json`) or every
/// committed base result in it (`DATASET/ALGO/seed-N.json`), in path order.
pub fn collect(dir: &Path) -> Result<Vec<CellResult>> {
    if !dir.is_dir() {
        return Err(Error::Config(format!("{} is not a folder", dir.display())));
    }
    let cells = dir.join("cells");
    let mut results = Vec::new();
    if cells.is_dir() {
        for dataset in sorted_dirs(&cells)? {
            for algo in sorted_dirs(&dataset)? {
                for seed in sorted_dirs(&algo)? {
                    if let Some(r) = read_result(&seed)? {
                        results.push(r);
                    }
                }
            }
        }
        return Ok(results);
    }
    for dataset in sorted_dirs(dir)? {
        for algo in sorted_dirs(&dataset)? {
            let mut files: Vec<_> = std::fs::read_dir(&algo)
                .map_err(|e| Error::io(&algo, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.strip_prefix("seed-")
                        .and_then(|n| n.strip_suffix(".json"))
                        .is_some_and(|n| n.parse::<u64>().is_ok())
                })
                .collect();
            files.sort();
            for path in files {
                results.push(read_result_file(&path)?);
            }
        }
    }
    Ok(results)
}

fn sorted_dirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Rebuild the report of the results in `dir`, writing its files into `out` when given;
/// returns the Markdown of the table and statistics.
pub fn report(dir: &Path, out: Option<&Path>, cfg: &StatsConfig) -> Result<Report> {
    let results = collect(dir)?;
    if results.is_empty() {
        return Err(Error::Config(format!(
            "{} holds no finished cell (no cells/*/*/seed-*/result.json, no */*/seed-*.json)",
            dir.display()
        )));
    }
    let mut algos: Vec<String> = Vec::new();
    let mut datasets: Vec<String> = Vec::new();
    for r in &results {
        if !algos.contains(&r.algo) {
            algos.push(r.algo.clone());
        }
        if !datasets.contains(&r.dataset) {
            datasets.push(r.dataset.clone());
        }
    }
    let table = Table::new(&algos, &datasets, &results);
    let (stats, stats_json) = statistics(&results, &algos, &datasets, cfg, table.normalized);
    if let Some(out) = out {
        use crate::output::write_atomic as write;
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        write_report(out, &table, &results)?;
        write(&out.join("stats.md"), stats.as_bytes())?;
        let json = serde_json::to_string_pretty(&stats_json).expect("json");
        write(&out.join("stats.json"), json.as_bytes())?;
        profiles_png(&out.join("profiles.png"), &results, &algos, &datasets)?;
    }
    Ok(Report {
        table: table.markdown(),
        stats,
    })
}

/// What [`report`] renders, in Markdown.
pub struct Report {
    pub table: String,
    pub stats: String,
}

/// `doc`'s text with what stands between `<!-- report: KEY -->` and `<!-- /report -->` replaced
/// by `body` (so a document's statistics are this command's output, never typed by hand); an
/// error names the missing marker.
pub fn splice(doc: &Path, text: &str, key: &str, body: &str) -> Result<String> {
    splice_block(doc, text, "report", key, body)
}

/// `text` with the block between `<!-- KIND: KEY -->` and `<!-- /KIND -->` replaced by `body`
/// (`report`: the statistics; `render`: a committed study's table, [`super::render`]).
pub fn splice_block(doc: &Path, text: &str, kind: &str, key: &str, body: &str) -> Result<String> {
    let (begin, end) = (
        format!("<!-- {kind}: {key} -->"),
        format!("<!-- /{kind} -->"),
    );
    let end = end.as_str();
    let missing = |m: &str| Error::Config(format!("{}: no `{m}` marker", doc.display()));
    let (head, rest) = text.split_once(&begin).ok_or_else(|| missing(&begin))?;
    let (_, tail) = rest.split_once(end).ok_or_else(|| missing(end))?;
    Ok(format!("{head}{begin}\n{}\n{end}{tail}", body.trim_end()))
}

/// An algorithm's scores on `datasets` (those it has runs on), runs in seed order.
fn scores_of(results: &[CellResult], algo: &str, datasets: &[String]) -> Scores {
    Scores::new(
        datasets
            .iter()
            .map(|d| {
                let mut runs: Vec<(u64, f64)> = results
                    .iter()
                    .filter(|r| r.algo == algo && &r.dataset == d)
                    .map(|r| (r.seed, r.score()))
                    .collect();
                runs.sort_by_key(|r| r.0);
                runs.into_iter().map(|r| r.1).collect()
            })
            .collect(),
    )
}

fn statistics(
    results: &[CellResult],
    algos: &[String],
    datasets: &[String],
    cfg: &StatsConfig,
    normalized: bool,
) -> (String, serde_json::Value) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let fmt = |i: &Interval| format!("{:.1} [{:.1}, {:.1}]", i.point, i.low, i.high);
    let mut md = String::new();
    let unit = if normalized {
        "normalised score"
    } else {
        "return (no reference scores)"
    };
    let _ = writeln!(
        md,
        "Aggregates over datasets and seeds ({unit}; {:.0} % stratified bootstrap intervals, {} \
         resamples, seed {}; optimality gap below {GAMMA}):\n",
        cfg.confidence * 100.0,
        cfg.reps,
        cfg.seed
    );
    md.push_str(
        "| algorithm | datasets | fewest runs per dataset | IQM | mean | median | optimality gap |\n",
    );
    md.push_str("|---|---|---|---|---|---|---|\n");
    let mut per_algo = BTreeMap::new();
    let mut fewest = usize::MAX;
    for algo in algos {
        let s = scores_of(results, algo, datasets);
        let (reps, size) = (cfg.reps, cfg.confidence);
        let iqm = stats::bootstrap(&s, stats::iqm, reps, size, &mut rng);
        let mean = stats::bootstrap(&s, stats::mean, reps, size, &mut rng);
        let median = stats::bootstrap(&s, stats::median, reps, size, &mut rng);
        let gap = |x: &Scores| stats::optimality_gap(x, GAMMA);
        let og = stats::bootstrap(&s, gap, reps, size, &mut rng);
        fewest = fewest.min(s.min_runs());
        let _ = writeln!(
            md,
            "| {algo} | {} | {} | {} | {} | {} | {} |",
            s.tasks(),
            s.min_runs(),
            fmt(&iqm),
            fmt(&mean),
            fmt(&median),
            fmt(&og)
        );
        per_algo.insert(
            algo.clone(),
            json!({
                "datasets": s.tasks(), "min_runs": s.min_runs(), "few_runs": s.min_runs() < FEW_RUNS,
                "iqm": iqm, "mean": mean, "median": median, "optimality_gap": og,
            }),
        );
    }
    if fewest < FEW_RUNS {
        let _ = writeln!(
            md,
            "\n**Fewer than {FEW_RUNS} runs per dataset** back some of these numbers (as few as \
             {fewest}): the intervals are wide, and rliable's authors advise at least {FEW_RUNS}."
        );
    }
    // P(row > column) on the datasets both have runs on.
    let mut improvement = Vec::new();
    md.push_str("\nProbability of improvement, P(row > column), on the datasets both ran:\n\n|  |");
    for y in algos {
        let _ = write!(md, " {y} |");
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(algos.len()));
    md.push('\n');
    for x in algos {
        let _ = write!(md, "| {x} |");
        for y in algos {
            if x == y {
                md.push_str(" |");
                continue;
            }
            let shared: Vec<String> = datasets
                .iter()
                .filter(|d| {
                    let has = |a: &String| results.iter().any(|r| &r.algo == a && &r.dataset == *d);
                    has(x) && has(y)
                })
                .cloned()
                .collect();
            if shared.is_empty() {
                md.push_str(" – |");
                continue;
            }
            let (sx, sy) = (
                scores_of(results, x, &shared),
                scores_of(results, y, &shared),
            );
            let p = stats::bootstrap_improvement(&sx, &sy, cfg.reps, cfg.confidence, &mut rng);
            let _ = write!(md, " {:.2} [{:.2}, {:.2}] |", p.point, p.low, p.high);
            improvement.push(json!({ "x": x, "y": y, "datasets": shared.len(), "probability": p }));
        }
        md.push('\n');
    }
    let json = json!({
        "score": if normalized { "normalized_score" } else { "mean_return" },
        "reps": cfg.reps, "confidence": cfg.confidence, "seed": cfg.seed,
        "optimality_gap_threshold": GAMMA,
        "algorithms": per_algo,
        "improvement": improvement,
    });
    (md, json)
}

/// The score distributions (fraction of runs above each threshold) of every algorithm.
fn profiles_png(
    file: &Path,
    results: &[CellResult],
    algos: &[String],
    datasets: &[String],
) -> Result<()> {
    let top = results
        .iter()
        .map(CellResult::score)
        .fold(GAMMA, f64::max)
        .ceil();
    let taus: Vec<f64> = (0..=200).map(|i| top * i as f64 / 200.0).collect();
    let series: Vec<(String, Vec<(f64, f64)>)> = algos
        .iter()
        .map(|a| {
            let s = scores_of(results, a, datasets);
            let profile = stats::score_distribution(&s, &taus);
            (a.clone(), taus.iter().copied().zip(profile).collect())
        })
        .collect();
    let refs: Vec<(&str, &[(f64, f64)])> = series
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_slice()))
        .collect();
    crate::train::plot::line_chart(
        file,
        "score distributions: fraction of runs above τ",
        "τ (score)",
        &refs,
    )
}
