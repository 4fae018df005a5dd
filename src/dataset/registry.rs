//! The registry of named datasets: one TOML card per dataset under `datasets/`, e.g.
//! `datasets/locomotion-v5/hopper-medium.toml` is the dataset `locomotion-v5/hopper-medium`.
//! A card says which environment the data belongs to, how it is obtained (imported from a file,
//! collected by rolling out policies, or concatenated from other members) and the reference
//! returns used to normalise scores.
//!
//! The cards are built into the library ([`crate::embedded`]); `$OFFRL_DATASETS` points at a
//! folder of one's own cards instead ([`Registry::Dir`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ReferenceScores;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetCard {
    /// Environment id, e.g. `Hopper-v5`.
    pub env: String,
    /// One line for `offrl dataset list`.
    #[serde(default)]
    pub description: String,
    pub reference_scores: Option<ReferenceScores>,
    pub source: DataSource,
}

/// How the data of a card is obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSource {
    /// Import a file; `path` is relative to the shared-data folder (`../shared` or `$OFFRL_SHARED`).
    Import { format: ImportFormat, path: String },
    /// Roll out one or more behaviour policies; the parts are collected in order and concatenated
    /// (several parts of rising quality make a "mixed", replay-like dataset).
    Collect { seed: u64, parts: Vec<CollectPart> },
    /// Concatenate other registry members (D4RL's medium-expert = medium + expert).
    Concat { members: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    /// D4RL's flat HDF5 layout (observations, actions, rewards, terminals, timeouts, ...).
    D4rl,
    /// A Minari dataset folder (data/metadata.json; episodes in its hdf5, arrow or parquet storage).
    Minari,
    /// A Parquet file with D4RL's column names (any writer: pyarrow, pandas, polars, DuckDB).
    Parquet,
    /// An Arrow IPC file (Feather v2) or stream with D4RL's column names.
    Arrow,
    /// A NumPy `.npz` archive (`np.savez`) with D4RL's array names.
    Npz,
}

/// One policy rolled out for `steps` transitions (at `--scale 1.0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectPart {
    /// A policy card name in the behaviour-policy folder (e.g. `hopper-ppo`), `random`, or a
    /// built-in controller (e.g. `pendulum-swingup`).
    pub policy: String,
    pub steps: usize,
    /// Sample from the policy's Gaussian instead of acting with its mean.
    #[serde(default)]
    pub stochastic: bool,
    /// Extra Gaussian action noise (std), for built-in controllers' quality tiers.
    #[serde(default)]
    pub noise: f32,
}

/// Where the dataset cards come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registry {
    /// The cards built into this library (the source tree's `datasets/`).
    BuiltIn,
    /// A folder of cards (`NAME.toml`, nested folders for suites).
    Dir(PathBuf),
}

impl Registry {
    /// `$OFFRL_DATASETS` when set, else the built-in cards.
    pub fn from_env() -> Registry {
        match std::env::var_os("OFFRL_DATASETS") {
            Some(dir) => Registry::Dir(PathBuf::from(dir)),
            None => Registry::BuiltIn,
        }
    }

    /// Every dataset name, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        match self {
            Registry::BuiltIn => Ok(crate::embedded::CARDS
                .iter()
                .map(|(n, _)| n.to_string())
                .collect()),
            Registry::Dir(dir) => list(dir),
        }
    }

    /// The members of a suite (`locomotion-v5`) as full names (`locomotion-v5/hopper-medium`).
    pub fn suite(&self, suite: &str) -> Result<Vec<String>> {
        let prefix = format!("{suite}/");
        let members: Vec<String> = self
            .names()?
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if members.is_empty() {
            let mut suites: Vec<String> = self
                .names()?
                .iter()
                .filter_map(|n| n.split_once('/').map(|(s, _)| s.to_string()))
                .collect();
            suites.dedup();
            return Err(Error::Config(format!(
                "no dataset suite `{suite}` in {self} (suites: {})",
                suites.join(", ")
            )));
        }
        Ok(members)
    }

    /// The card of a named dataset, e.g. `locomotion-v5/hopper-medium`.
    pub fn load_card(&self, name: &str) -> Result<DatasetCard> {
        let missing = || {
            Error::Config(format!(
                "no dataset named `{name}` in {self}; `offrl dataset list` shows the registry"
            ))
        };
        let (origin, text) = match self {
            Registry::BuiltIn => {
                let text = crate::embedded::card(name).ok_or_else(missing)?;
                (
                    PathBuf::from(format!("datasets/{name}.toml (built in)")),
                    text.to_string(),
                )
            }
            Registry::Dir(dir) => {
                let path = dir.join(format!("{name}.toml"));
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        missing()
                    } else {
                        Error::io(&path, e)
                    }
                })?;
                (path, text)
            }
        };
        toml::from_str(&text).map_err(|e| Error::format(&origin, e.to_string()))
    }

    /// Reference returns for an environment: D4RL's table ([`super::reference_scores_for`]),
    /// else this registry's cards of that environment when they define them and agree (the
    /// Pendulum cards do). `None` when neither knows the environment or the folder is absent.
    pub fn reference_scores_for_env(&self, env_id: &str) -> Result<Option<ReferenceScores>> {
        if let Some(r) = super::reference_scores_for(env_id) {
            return Ok(Some(r));
        }
        if let Registry::Dir(dir) = self {
            if !dir.is_dir() {
                return Ok(None);
            }
        }
        let mut found: Option<ReferenceScores> = None;
        for name in self.names()? {
            // A broken card is `offrl dataset list`'s business, not a reason to fail a lookup.
            let card = match self.load_card(&name) {
                Ok(card) => card,
                Err(e) => {
                    tracing::warn!("skipping dataset card `{name}`: {e}");
                    continue;
                }
            };
            match (card.env == env_id, card.reference_scores, found) {
                (true, Some(r), None) => found = Some(r),
                (true, Some(r), Some(f)) if r != f => return Ok(None),
                _ => {}
            }
        }
        Ok(found)
    }
}

impl std::fmt::Display for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Registry::BuiltIn => write!(f, "the built-in registry"),
            Registry::Dir(dir) => write!(f, "the registry {} ($OFFRL_DATASETS)", dir.display()),
        }
    }
}

/// The card of a named dataset in [`Registry::from_env`].
pub fn load_card(name: &str) -> Result<DatasetCard> {
    Registry::from_env().load_card(name)
}

/// All card names below a folder, sorted.
fn list(dir: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "toml") {
                let rel = path.strip_prefix(root).expect("walked below root");
                out.push(rel.with_extension("").to_string_lossy().replace('\\', "/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_scores_from_the_table_then_the_cards() {
        let real = Registry::BuiltIn;
        // D4RL's table for MuJoCo ids; the registry's Pendulum cards for Pendulum.
        assert_eq!(
            real.reference_scores_for_env("Hopper-v5").unwrap(),
            super::super::reference_scores_for("Hopper-v5")
        );
        assert_eq!(
            real.reference_scores_for_env("Pendulum-v1").unwrap(),
            Some(ReferenceScores {
                random: -1222.1,
                expert: -146.6
            })
        );
        assert_eq!(real.reference_scores_for_env("Nope-v0").unwrap(), None);

        // Cards that disagree give none; a missing registry gives none.
        let dir = tempfile::tempdir().unwrap();
        let own = Registry::Dir(dir.path().to_path_buf());
        let card = |name: &str, random: f64| {
            let text = format!(
                "env = \"Toy-v0\"\nreference_scores = {{ random = {random}, expert = 1.0 }}\n\
                 [source]\nkind = \"concat\"\nmembers = []\n"
            );
            std::fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
        };
        card("a", 0.0);
        assert_eq!(
            own.reference_scores_for_env("Toy-v0").unwrap(),
            Some(ReferenceScores {
                random: 0.0,
                expert: 1.0
            })
        );
        card("b", -1.0);
        assert_eq!(own.reference_scores_for_env("Toy-v0").unwrap(), None);
        let absent = Registry::Dir(dir.path().join("absent"));
        assert_eq!(absent.reference_scores_for_env("Toy-v0").unwrap(), None);
    }

    /// The built-in registry lists, loads and groups the cards; unknown names are named.
    #[test]
    fn the_built_in_registry_needs_no_source_tree() {
        let reg = Registry::BuiltIn;
        let suite = reg.suite("locomotion-v5").unwrap();
        assert!(suite.contains(&"locomotion-v5/hopper-medium".to_string()));
        for name in reg.names().unwrap() {
            reg.load_card(&name).unwrap();
        }
        let err = reg.load_card("locomotion-v5/nope").unwrap_err().to_string();
        assert!(
            err.contains("locomotion-v5/nope") && err.contains("built-in"),
            "{err}"
        );
        let err = reg.suite("nope").unwrap_err().to_string();
        assert!(
            err.contains("locomotion-v5") && err.contains("pendulum"),
            "{err}"
        );
    }
}
