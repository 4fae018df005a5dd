//! A grid as data: `offrl bench plan` writes `OUT/manifest.jsonl` — a header line, then one line
//! per cell (algorithm, dataset, seed, folder, dependency wave, resources) — and any scheduler
//! runs line `I` with `offrl bench cell --manifest M --index I` (a Slurm array task, a Ray task,
//! a local process). Cells are ordered by wave (cells without inputs first), so each wave's
//! indices are one contiguous range: one job array per wave. Resume semantics are the grid's: a
//! finished cell is never recomputed, an interrupted one continues from its last checkpoint.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest format's version (the header's `offrl_manifest` field).
pub const VERSION: u32 = 1;

/// The manifest's file name inside a grid's folder.
pub const FILE: &str = "manifest.jsonl";

/// What every cell of the grid shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The format version; the field's presence marks the file as an offrl manifest.
    pub offrl_manifest: u32,
    /// The grid's folder (absolute).
    pub out: PathBuf,
    pub profile: String,
    pub backend: String,
    /// `ALGO.KEY=VALUE` overrides of every cell.
    pub sets: Vec<String>,
    /// One dataset file for every cell (the pipeline), instead of registry datasets.
    pub data_file: Option<PathBuf>,
    /// How many cell lines follow (a shorter file is truncated).
    pub cells: usize,
    /// Dependency waves: wave `w`'s cells need finished cells of earlier waves only.
    pub waves: usize,
    /// The revision of the binary that planned the grid.
    pub commit: String,
}

/// What a cell may use (a scheduler's request per task).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub cpus: usize,
    pub gpus: usize,
    /// Wall-clock limit, minutes.
    pub minutes: u64,
}

/// One cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellLine {
    pub index: usize,
    pub wave: usize,
    pub algo: String,
    pub dataset: String,
    pub seed: u64,
    /// The cell's folder (absolute).
    pub dir: PathBuf,
    pub resources: Resources,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub header: Header,
    pub cells: Vec<CellLine>,
}

impl Manifest {
    /// The indices of wave `w`'s cells (one contiguous range).
    pub fn wave(&self, w: usize) -> std::ops::Range<usize> {
        let first = self.cells.iter().position(|c| c.wave == w).unwrap_or(0);
        let len = self.cells.iter().filter(|c| c.wave == w).count();
        first..first + len
    }

    /// The manifest as JSON lines.
    pub fn to_jsonl(&self) -> String {
        let mut text = serde_json::to_string(&self.header).expect("header serialises");
        text.push('\n');
        for c in &self.cells {
            text.push_str(&serde_json::to_string(c).expect("cell serialises"));
            text.push('\n');
        }
        text
    }

    /// Write `DIR/manifest.jsonl` atomically; returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(FILE);
        crate::output::write_atomic(&path, self.to_jsonl().as_bytes())?;
        Ok(path)
    }

    /// Read a manifest, every error naming the file and, where it applies, the line.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |m: String| Error::format(path, m);
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = lines
            .next()
            .ok_or_else(|| bad("empty: not an offrl manifest".into()))?;
        let probe: serde_json::Value = serde_json::from_str(first)
            .map_err(|e| bad(format!("line 1 is not JSON ({e}): not an offrl manifest")))?;
        match probe.get("offrl_manifest").and_then(|v| v.as_u64()) {
            None => {
                return Err(bad(
                    "line 1 has no `offrl_manifest` field: not an offrl manifest (write one with \
                     `offrl bench plan`)"
                        .into(),
                ))
            }
            Some(v) if v != u64::from(VERSION) => {
                return Err(bad(format!(
                    "manifest version {v}; this offrl reads version {VERSION}"
                )))
            }
            Some(_) => {}
        }
        let header: Header =
            serde_json::from_value(probe).map_err(|e| bad(format!("line 1: {e}")))?;
        let mut cells = Vec::with_capacity(header.cells);
        for (i, line) in lines {
            let cell: CellLine = serde_json::from_str(line)
                .map_err(|e| bad(format!("line {}: {e} (truncated or edited?)", i + 1)))?;
            if cell.index != cells.len() {
                return Err(bad(format!(
                    "line {}: cell index {}, expected {}",
                    i + 1,
                    cell.index,
                    cells.len()
                )));
            }
            cells.push(cell);
        }
        if cells.len() != header.cells {
            return Err(bad(format!(
                "truncated: the header announces {} cells, the file holds {}",
                header.cells,
                cells.len()
            )));
        }
        Ok(Self { header, cells })
    }

    /// Cell `index`, or an error naming the range.
    pub fn cell(&self, index: usize, path: &Path) -> Result<&CellLine> {
        self.cells.get(index).ok_or_else(|| {
            Error::Config(format!(
                "--index {index} is out of range: {} has {} cells (0..={})",
                path.display(),
                self.cells.len(),
                self.cells.len().saturating_sub(1)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let line = |index, wave, algo: &str| CellLine {
            index,
            wave,
            algo: algo.into(),
            dataset: "pendulum/medium".into(),
            seed: 0,
            dir: format!("/g/cells/pendulum__medium/{algo}/seed-0").into(),
            resources: Resources {
                cpus: 1,
                gpus: 0,
                minutes: 60,
            },
        };
        Manifest {
            header: Header {
                offrl_manifest: VERSION,
                out: "/g".into(),
                profile: "quick".into(),
                backend: "flex".into(),
                sets: vec!["bc.train.steps=40".into()],
                data_file: None,
                cells: 3,
                waves: 2,
                commit: "test".into(),
            },
            cells: vec![line(0, 0, "bc"), line(1, 0, "iql"), line(2, 1, "idql")],
        }
    }

    #[test]
    fn round_trips_and_refuses_bad_files_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        let path = m.write(dir.path()).unwrap();
        let back = Manifest::read(&path).unwrap();
        assert_eq!(back, m);
        assert_eq!((back.wave(0), back.wave(1)), (0..2, 2..3));
        let err = back.cell(3, &path).unwrap_err().to_string();
        assert!(
            err.contains("out of range") && err.contains("0..=2"),
            "{err}"
        );

        let text = m.to_jsonl();
        let cases = [
            ("missing.jsonl", None, "missing.jsonl"),
            ("empty.jsonl", Some(String::new()), "empty"),
            (
                "foreign.jsonl",
                Some("{\"a\": 1}\n".into()),
                "not an offrl manifest",
            ),
            ("csv.jsonl", Some("a,b\n1,2\n".into()), "line 1 is not JSON"),
            (
                "truncated.jsonl",
                Some(text.lines().take(3).collect::<Vec<_>>().join("\n")),
                "truncated",
            ),
            (
                "cut.jsonl",
                Some(text[..text.len() - 20].to_string()),
                "line 4",
            ),
            (
                "future.jsonl",
                Some(text.replacen("\"offrl_manifest\":1", "\"offrl_manifest\":9", 1)),
                "version 9",
            ),
        ];
        for (name, content, want) in cases {
            let p = dir.path().join(name);
            if let Some(c) = content {
                std::fs::write(&p, c).unwrap();
            }
            let err = Manifest::read(&p).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(want), "{name}: {err}");
        }
    }
}
