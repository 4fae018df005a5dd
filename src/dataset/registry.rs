//! The registry of named datasets: one TOML card per dataset under `datasets/`, e.g.
//! `datasets/locomotion-v5/hopper-medium.toml` is the dataset `locomotion-v5/hopper-medium`.
//! A card says which environment the data belongs to, how it is obtained (imported from a file,
//! collected by rolling out policies, or concatenated from other members) and the reference
//! returns used to normalise scores.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    /// D4RL's flat HDF5 layout (observations, actions, rewards, terminals, timeouts, ...).
    D4rl,
    /// A Minari dataset folder (data/main_data.hdf5 with episode groups + data/metadata.json).
    Minari,
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

/// Folder holding the registry: `$OFFRL_DATASETS`, else `datasets/` of the source checkout.
pub fn registry_dir() -> PathBuf {
    std::env::var_os("OFFRL_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets"))
}

/// Folder holding shared data (fixtures, behaviour policies): `$OFFRL_SHARED`, else `../shared`
/// next to the source checkout.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("OFFRL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
        })
}

/// Load the card of a named dataset, e.g. `locomotion-v5/hopper-medium`.
pub fn load_card(name: &str) -> Result<DatasetCard> {
    load_card_from(&registry_dir(), name)
}

pub fn load_card_from(dir: &Path, name: &str) -> Result<DatasetCard> {
    let path = dir.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Config(format!(
                "no dataset named `{name}` (looked for {}); `offrl dataset list` shows the registry",
                path.display()
            ))
        } else {
            Error::io(&path, e)
        }
    })?;
    toml::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))
}

/// All dataset names in the registry, sorted.
pub fn list(dir: &Path) -> Result<Vec<String>> {
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
