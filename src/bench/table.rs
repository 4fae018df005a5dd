//! Aggregating finished benchmark cells into a paper-style table: mean ± std of the normalised
//! score over seeds per (dataset, algorithm), the average per algorithm, and wall time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::eval::mean_std;

/// What one finished (algorithm, dataset, seed) cell reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub algo: String,
    pub dataset: String,
    pub seed: u64,
    /// Mean D4RL-normalised score of the final evaluation (NaN-free; `None` without reference scores).
    pub normalized_score: Option<f64>,
    pub mean_return: f64,
    pub std_return: f64,
    pub episodes: usize,
    /// Wall time of the whole cell (training + evaluation), seconds.
    pub wall_seconds: f64,
    /// Undiscounted return of each episode of the final evaluation, in episode order.
    #[serde(default)]
    pub returns: Vec<f64>,
    /// The source revision of the binary that ran the cell (`git describe --dirty`).
    #[serde(default)]
    pub commit: String,
    /// The cell's resolved config (the algorithm's, with the profile's and `--set` overrides).
    #[serde(default)]
    pub config: serde_json::Value,
    /// Learning curve: (training step, normalised score or return).
    #[serde(default)]
    pub curve: Vec<(f64, f64)>,
    /// The final `diag/*` probes (`crate::eval::probe`): the trained model's last checkpoint, or
    /// for IDQL its proposals and choices.
    #[serde(default)]
    pub diagnostics: std::collections::BTreeMap<String, f64>,
    /// What decided the numbers besides algorithm, dataset and seed ([`super::cell::settings`]);
    /// `null` in results written before cells recorded it.
    #[serde(default)]
    pub settings: serde_json::Value,
    /// How the reported numbers were measured: episodes, environments stepped together, the
    /// evaluation seed, and which policy (`"final"`: the last checkpoint's, never the best).
    #[serde(default)]
    pub protocol: serde_json::Value,
    /// offrl's version, the commit and the backend that ran the cell.
    #[serde(default)]
    pub versions: serde_json::Value,
    /// FNV-1a (64-bit, hex) of the resolved config's canonical JSON: equal configs, equal hashes.
    #[serde(default)]
    pub config_hash: String,
}

/// [`CellResult::config_hash`] of a config.
pub fn config_hash(config: &serde_json::Value) -> String {
    // serde_json's maps are ordered by key (no `preserve_order`): the text is canonical.
    let text = serde_json::to_string(config).expect("a JSON value serialises");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl CellResult {
    /// The number the table reports: the normalised score when the dataset has reference
    /// scores, else the raw return.
    pub fn score(&self) -> f64 {
        self.normalized_score.unwrap_or(self.mean_return)
    }
}

/// One table cell: scores over seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mean: f64,
    pub std: f64,
    pub seeds: usize,
    pub wall_seconds: f64,
}

/// The results table, rows = datasets, columns = algorithms (in the order given).
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub algos: Vec<String>,
    pub datasets: Vec<String>,
    /// (dataset, algo) → summary.
    pub cells: BTreeMap<String, BTreeMap<String, Summary>>,
    /// algo → mean over datasets of the per-dataset means.
    pub averages: BTreeMap<String, f64>,
    /// Whether every reported number is a normalised score.
    pub normalized: bool,
}

impl Table {
    pub fn new(algos: &[String], datasets: &[String], results: &[CellResult]) -> Table {
        let mut cells: BTreeMap<String, BTreeMap<String, Summary>> = BTreeMap::new();
        for d in datasets {
            for a in algos {
                let runs: Vec<&CellResult> = results
                    .iter()
                    .filter(|r| &r.algo == a && &r.dataset == d)
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let scores: Vec<f64> = runs.iter().map(|r| r.score()).collect();
                let (mean, std) = mean_std(&scores);
                let wall = runs.iter().map(|r| r.wall_seconds).sum::<f64>() / runs.len() as f64;
                cells.entry(d.clone()).or_default().insert(
                    a.clone(),
                    Summary {
                        mean,
                        std,
                        seeds: runs.len(),
                        wall_seconds: wall,
                    },
                );
            }
        }
        let averages = algos
            .iter()
            .filter_map(|a| {
                let means: Vec<f64> = datasets
                    .iter()
                    .filter_map(|d| cells.get(d)?.get(a))
                    .map(|s| s.mean)
                    .collect();
                (!means.is_empty())
                    .then(|| (a.clone(), means.iter().sum::<f64>() / means.len() as f64))
            })
            .collect();
        Table {
            algos: algos.to_vec(),
            datasets: datasets.to_vec(),
            cells,
            averages,
            normalized: results.iter().all(|r| r.normalized_score.is_some()),
        }
    }

    fn get(&self, dataset: &str, algo: &str) -> Option<&Summary> {
        self.cells.get(dataset)?.get(algo)
    }

    /// Markdown: `mean ± std` per cell, an average row, and a wall-time row.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let what = if self.normalized {
            "normalised score"
        } else {
            "return"
        };
        s.push_str(&format!("| dataset ({what}, mean ± std over seeds) |"));
        for a in &self.algos {
            s.push_str(&format!(" {a} |"));
        }
        s.push('\n');
        s.push_str("|---|");
        s.push_str(&"---|".repeat(self.algos.len()));
        s.push('\n');
        for d in &self.datasets {
            s.push_str(&format!("| {d} |"));
            for a in &self.algos {
                match self.get(d, a) {
                    Some(c) => s.push_str(&format!(" {:.1} ± {:.1} |", c.mean, c.std)),
                    None => s.push_str(" – |"),
                }
            }
            s.push('\n');
        }
        s.push_str("| **average** |");
        for a in &self.algos {
            match self.averages.get(a) {
                Some(v) => s.push_str(&format!(" **{v:.1}** |")),
                None => s.push_str(" – |"),
            }
        }
        s.push('\n');
        s.push_str("| wall time per run |");
        for a in &self.algos {
            let walls: Vec<f64> = self
                .datasets
                .iter()
                .filter_map(|d| self.get(d, a))
                .map(|c| c.wall_seconds)
                .collect();
            if walls.is_empty() {
                s.push_str(" – |");
            } else {
                s.push_str(&format!(
                    " {:.0} s |",
                    walls.iter().sum::<f64>() / walls.len() as f64
                ));
            }
        }
        s.push('\n');
        s
    }

    /// CSV: one line per (dataset, algo).
    pub fn csv(&self) -> String {
        let mut s = String::from("dataset,algo,mean,std,seeds,wall_seconds\n");
        for d in &self.datasets {
            for a in &self.algos {
                if let Some(c) = self.get(d, a) {
                    s.push_str(&format!(
                        "{d},{a},{:.4},{:.4},{},{:.2}\n",
                        c.mean, c.std, c.seeds, c.wall_seconds
                    ));
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(algo: &str, dataset: &str, seed: u64, score: f64) -> CellResult {
        CellResult {
            algo: algo.into(),
            dataset: dataset.into(),
            seed,
            normalized_score: Some(score),
            mean_return: score * 10.0,
            std_return: 0.0,
            episodes: 10,
            wall_seconds: 2.0,
            returns: vec![],
            commit: String::new(),
            config: serde_json::Value::Null,
            curve: vec![],
            diagnostics: Default::default(),
            settings: serde_json::Value::Null,
            protocol: serde_json::Value::Null,
            versions: serde_json::Value::Null,
            config_hash: String::new(),
        }
    }

    #[test]
    fn equal_configs_hash_equal_whatever_their_key_order() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": 2, "x": 3}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": 3, "y": 2}, "b": 1}"#).unwrap();
        assert_eq!(config_hash(&a), config_hash(&b));
        assert_ne!(config_hash(&a), config_hash(&serde_json::json!({"b": 2})));
    }

    #[test]
    fn aggregates_over_seeds_and_datasets() {
        let algos = vec!["bc".to_string(), "rtb".to_string()];
        let datasets = vec!["a".to_string(), "b".to_string()];
        let results = vec![
            cell("bc", "a", 0, 10.0),
            cell("bc", "a", 1, 20.0),
            cell("bc", "b", 0, 40.0),
            cell("rtb", "a", 0, 50.0),
        ];
        let t = Table::new(&algos, &datasets, &results);
        let c = t.get("a", "bc").unwrap();
        assert_eq!((c.mean, c.std, c.seeds), (15.0, 5.0, 2));
        // bc: mean of dataset means (15 + 40) / 2; rtb has only dataset a.
        assert_eq!(t.averages["bc"], 27.5);
        assert_eq!(t.averages["rtb"], 50.0);
        let md = t.markdown();
        assert!(md.contains("| a | 15.0 ± 5.0 | 50.0 ± 0.0 |"), "{md}");
        assert!(md.contains("| b | 40.0 ± 0.0 | – |"), "{md}");
        assert!(t.csv().contains("a,bc,15.0000,5.0000,2,2.00"));
    }
}
