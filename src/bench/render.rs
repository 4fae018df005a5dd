//! Tables of committed studies (`results/STUDY/**/*.json`: one file per cell or evaluation, with
//! `algo`, `dataset`, `seed`, `normalized_score`, `returns` and optionally `variant`,
//! `wall_seconds`, `curve`, `commit`), rendered for the README and RESULTS.md so that no
//! published number is typed by hand: algorithms (with variants) × datasets, mean ± std over
//! seeds, seeds × episodes and the mean wall time of a run (`offrl bench report DIR --table`);
//! the wall minutes per (dataset, seed) (`--times`); learning-curve points (`--curves`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// One committed result file.
struct Cell {
    algo: String,
    dataset: String,
    seed: u64,
    variant: String,
    score: f64,
    episodes: usize,
    wall: Option<f64>,
    curve: Vec<(f64, f64)>,
    commit: String,
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

fn load(dir: &Path) -> Result<Vec<Cell>> {
    let mut paths = Vec::new();
    json_files(dir, &mut paths)?;
    paths.sort();
    let mut cells = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(&path, format!("not JSON ({e})")))?;
        let field = |key: &str| {
            v.get(key)
                .ok_or_else(|| Error::format(&path, format!("no `{key}` field")))
        };
        let bad = |key: &str| Error::format(&path, format!("`{key}` has the wrong type"));
        let algo = field("algo")?
            .as_str()
            .ok_or_else(|| bad("algo"))?
            .to_string();
        let dataset = field("dataset")?
            .as_str()
            .ok_or_else(|| bad("dataset"))?
            .to_string();
        let seed = field("seed")?.as_u64().ok_or_else(|| bad("seed"))?;
        let score = field("normalized_score")?
            .as_f64()
            .ok_or_else(|| bad("normalized_score"))?;
        let returns = field("returns")?.as_array().ok_or_else(|| bad("returns"))?;
        let episodes = if returns.is_empty() {
            // Results from before per-episode returns were kept carry only their count.
            v.get("episodes").and_then(Value::as_u64).unwrap_or(0) as usize
        } else {
            returns.len()
        };
        cells.push(Cell {
            algo,
            dataset,
            seed,
            score,
            variant: v
                .get("variant")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            episodes,
            wall: v.get("wall_seconds").and_then(Value::as_f64),
            curve: v
                .get("curve")
                .and_then(|c| serde_json::from_value(c.clone()).ok())
                .unwrap_or_default(),
            commit: v
                .get("commit")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
        });
    }
    if cells.is_empty() {
        return Err(Error::Config(format!("{}: no result files", dir.display())));
    }
    Ok(cells)
}

/// Σ with Neumaier's compensation (as exact as Python's `math.fsum` for these magnitudes).
fn sum(values: &[f64]) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for &v in values {
        let t = s + v;
        c += if s.abs() >= v.abs() {
            (s - t) + v
        } else {
            (v - t) + s
        };
        s = t;
    }
    s + c
}

fn mean(values: &[f64]) -> f64 {
    sum(values) / values.len() as f64
}

/// `mean ± population std` to one decimal, the mean alone for one value, `–` for none.
fn fmt(values: &[f64]) -> String {
    match values.len() {
        0 => "–".into(),
        1 => format!("{:.1}", values[0]),
        n => {
            let m = mean(values);
            let dev: Vec<f64> = values.iter().map(|v| (v - m) * (v - m)).collect();
            format!("{m:.1} ± {:.1}", (sum(&dev) / n as f64).sqrt())
        }
    }
}

fn short(dataset: &str) -> &str {
    dataset.rsplit('/').next().unwrap_or(dataset)
}

fn table(cells: &[Cell]) -> String {
    let datasets: BTreeSet<&str> = cells.iter().map(|c| c.dataset.as_str()).collect();
    let mut rows: BTreeMap<String, BTreeMap<&str, Vec<&Cell>>> = BTreeMap::new();
    let mut episodes: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for c in cells {
        let name = if c.variant.is_empty() {
            c.algo.clone()
        } else {
            format!("{} [{}]", c.algo, c.variant)
        };
        rows.entry(name.clone())
            .or_default()
            .entry(&c.dataset)
            .or_default()
            .push(c);
        episodes.entry(name).or_default().insert(c.episodes);
    }
    let names: Vec<&str> = datasets.iter().map(|d| short(d)).collect();
    let mut out = vec![
        format!(
            "| algorithm [variant] | {} | seeds × episodes | wall s per run |",
            names.join(" | ")
        ),
        format!("|{}", "---|".repeat(datasets.len() + 3)),
    ];
    for (name, by_dataset) in &rows {
        let runs = |d: &str| by_dataset.get(d).map(Vec::as_slice).unwrap_or(&[]);
        let seeds = datasets.iter().map(|d| runs(d).len()).max().unwrap_or(0);
        let scores: Vec<String> = datasets
            .iter()
            .map(|d| {
                let r = runs(d);
                let values: Vec<f64> = r.iter().map(|c| c.score).collect();
                // A dataset with fewer seeds than the row's most says how many it has.
                let note = if !r.is_empty() && r.len() < seeds {
                    format!(" ({} seeds)", r.len())
                } else {
                    String::new()
                };
                fmt(&values) + &note
            })
            .collect();
        let eps: Vec<String> = episodes[name].iter().map(|e| e.to_string()).collect();
        // Evaluations of existing checkpoints train nothing: no wall time of their own.
        let walls: Vec<f64> = datasets
            .iter()
            .flat_map(|d| runs(d).iter().filter_map(|c| c.wall))
            .collect();
        let wall = if walls.is_empty() {
            "–".to_string()
        } else {
            format!("{:.0}", mean(&walls))
        };
        out.push(format!(
            "| {name} | {} | {seeds} × {} | {wall} |",
            scores.join(" | "),
            eps.join("/")
        ));
    }
    out.join("\n")
}

/// The study's table and its provenance line, optionally with learning-curve points.
pub fn render(dir: &Path, with_curves: bool) -> Result<String> {
    let cells = load(dir)?;
    let commits: BTreeSet<&str> = cells.iter().map(|c| c.commit.as_str()).collect();
    let mut out = vec![
        table(&cells),
        format!(
            "\n{} results; commits: {}",
            cells.len(),
            commits.into_iter().collect::<Vec<_>>().join(", ")
        ),
    ];
    if with_curves {
        out.push(
            "\nLearning curves (training step: normalised score, curve episodes per point):".into(),
        );
        let lines: Vec<String> = cells
            .iter()
            .filter(|c| !c.curve.is_empty())
            .map(|c| {
                let pts: Vec<String> = c
                    .curve
                    .iter()
                    .map(|(s, v)| format!("{}: {v:.1}", *s as i64))
                    .collect();
                format!(
                    "- {} {} seed {}: {}",
                    c.dataset,
                    c.algo,
                    c.seed,
                    pts.join(", ")
                )
            })
            .collect();
        out.push(lines.join("\n"));
    }
    Ok(out.join("\n"))
}

/// The stages of the whole method (prior, critic, RTB) summed in [`times`].
const METHOD: [&str; 3] = ["diffusion-bc", "iql", "rtb"];

/// Wall minutes of each base (variant-free) cell per (dataset, seed): each algorithm, the
/// method's stages summed, all of them.
pub fn times(dir: &Path) -> Result<String> {
    let cells = load(dir)?;
    let base: Vec<&Cell> = cells
        .iter()
        .filter(|c| c.variant.is_empty() && c.wall.is_some())
        .collect();
    let mut algos: Vec<&str> = base
        .iter()
        .map(|c| c.algo.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    algos.sort_by_key(|a| (!METHOD.contains(a), *a));
    let mut runs: BTreeMap<(&str, u64), BTreeMap<&str, f64>> = BTreeMap::new();
    for c in &base {
        let minutes = c.wall.unwrap_or_default() / 60.0;
        runs.entry((short(&c.dataset), c.seed))
            .or_default()
            .insert(&c.algo, minutes);
    }
    let mut out = vec![
        format!(
            "| dataset | seed | {} | method ({}) | all |",
            algos.join(" | "),
            METHOD.join(" + ")
        ),
        format!("|{}", "---|".repeat(algos.len() + 4)),
    ];
    let mut totals: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for ((dataset, seed), walls) in &runs {
        let method: f64 = METHOD
            .iter()
            .map(|a| walls.get(a).copied().unwrap_or(f64::NAN))
            .sum();
        let every = if algos.iter().all(|a| walls.contains_key(a)) {
            walls.values().sum()
        } else {
            f64::NAN
        };
        let cols: Vec<String> = algos
            .iter()
            .map(|a| walls.get(a).map_or("–".into(), |w| format!("{w:.1}")))
            .collect();
        out.push(format!(
            "| {dataset} | {seed} | {} | {} | {} |",
            cols.join(" | "),
            nan_fmt(method),
            nan_fmt(every)
        ));
        for (a, w) in walls {
            totals.entry(a).or_default().push(*w);
        }
        totals.entry("method").or_default().push(method);
        totals.entry("all").or_default().push(every);
    }
    let m = |k: &str| {
        totals
            .get(k)
            .filter(|v| !v.is_empty())
            .map_or("–".into(), |v| nan_fmt(mean(v)))
    };
    let cols: Vec<String> = algos.iter().map(|a| m(a)).collect();
    out.push(format!(
        "| mean | | {} | {} | {} |",
        cols.join(" | "),
        m("method"),
        m("all")
    ));
    Ok(out.join("\n"))
}

/// Python's `f"{x:.1f}"` for NaN too.
fn nan_fmt(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_means_variants_and_missing_seeds() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, v: Value| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v.to_string()).unwrap();
        };
        let cell = |algo: &str, ds: &str, seed: u64, score: f64, variant: &str| {
            serde_json::json!({"algo": algo, "dataset": format!("suite/{ds}"), "seed": seed,
                "normalized_score": score, "returns": [1.0, 2.0], "variant": variant,
                "wall_seconds": 60.0 * (seed + 1) as f64, "commit": "abc"})
        };
        write("a/bc/seed-0.json", cell("bc", "a", 0, 10.0, ""));
        write("a/bc/seed-1.json", cell("bc", "a", 1, 20.0, ""));
        write("b/bc/seed-0.json", cell("bc", "b", 0, 30.0, ""));
        write("a/bc/seed-0__x.json", cell("bc", "a", 0, 5.0, "x=1"));
        let text = render(dir.path(), false).unwrap();
        let want = "| algorithm [variant] | a | b | seeds × episodes | wall s per run |\n\
                    |---|---|---|---|---|\n\
                    | bc | 15.0 ± 5.0 | 30.0 (1 seeds) | 2 × 2 | 80 |\n\
                    | bc [x=1] | 5.0 | – | 1 × 2 | 60 |\n\
                    \n4 results; commits: abc";
        assert_eq!(text, want);
        let t = times(dir.path()).unwrap();
        assert!(t.contains("| a | 1 | 2.0 | nan | 2.0 |"), "{t}");
        write("c.json", serde_json::json!({"algo": "bc"}));
        let err = render(dir.path(), false).err().unwrap().to_string();
        assert!(err.contains("c.json") && err.contains("dataset"), "{err}");
    }
}
