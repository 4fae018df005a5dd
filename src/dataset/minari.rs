//! Minari datasets (Farama's successor of D4RL): a folder with `data/metadata.json` and the
//! episodes in one of three storages, named by the metadata's `data_format`:
//! - `hdf5` (the default): `data/main_data.hdf5`, read by h5py through the Python bridge
//!   ([`super::import`], feature `python`);
//! - `arrow` and `parquet` (Minari ≥ 0.5): one folder per episode, `data/<id>/part-*.arrow` (Arrow
//!   IPC files) or `part-*.parquet`, read natively here — no Python.
//!
//! Every storage gives an episode `observations` with T+1 rows and T actions, rewards,
//! terminations and truncations (the table storages pad those to T+1 rows with one null row).
//! Transition t is (obs[t], actions[t], rewards[t], obs[t+1], terminations[t], truncations[t]);
//! rewards (f64 in Minari) become f32, as D4RL's `qlearning_dataset` casts them; an episode whose
//! last step is neither terminated nor truncated (collection stopped) gets its last row marked a
//! time-out.

use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch};
use serde_json::{json, Value};

pub use super::columns::Episodes;
use super::columns::{self, Column};
use super::{known_env, Dataset, Metadata};
use crate::error::{Error, Result};

/// A Minari dataset's folder and metadata, with what offrl needs from them.
pub struct MinariInfo {
    /// The `data/` folder.
    pub data_dir: PathBuf,
    pub meta_path: PathBuf,
    pub meta: Value,
    /// `hdf5`, `arrow` or `parquet`.
    pub format: String,
    /// The environment the data is imported as (`--env`, else the dataset's env spec).
    pub env_id: String,
    /// The env spec's id, when the metadata has one.
    pub spec_id: Option<String>,
    pub action_low: Vec<f32>,
    pub action_high: Vec<f32>,
}

/// Minari stores spaces and the env spec as JSON strings inside metadata.json.
fn nested_json(meta: &Value, key: &str) -> Option<Value> {
    match meta.get(key)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        Value::Null => None,
        v => Some(v.clone()),
    }
}

fn bounds(space: &Value, key: &str) -> Option<Vec<f32>> {
    let dim: usize = space
        .get("shape")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_u64).product::<u64>() as usize)
        .unwrap_or(1);
    match space.get(key)? {
        Value::Array(v) => v.iter().map(|x| x.as_f64().map(|x| x as f32)).collect(),
        x => Some(vec![x.as_f64()? as f32; dim]),
    }
}

/// Read a Minari dataset's metadata, given the dataset folder, its `data/` folder or a file in
/// `data/` (`main_data.hdf5`, `metadata.json`).
pub fn info(path: &Path, env: Option<&str>) -> Result<MinariInfo> {
    let data_dir = if path.is_file() {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else if path.join("data").join("metadata.json").is_file() {
        path.join("data")
    } else if path.join("metadata.json").is_file() {
        path.to_path_buf()
    } else if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ));
    } else {
        return Err(Error::format(
            path,
            "not a Minari dataset: no data/metadata.json inside",
        ));
    };
    let meta_path = data_dir.join("metadata.json");
    let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
    let meta: Value =
        serde_json::from_str(&text).map_err(|e| Error::format(&meta_path, e.to_string()))?;
    let format = meta
        .get("data_format")
        .and_then(Value::as_str)
        .unwrap_or("hdf5")
        .to_string();
    let spec_id = nested_json(&meta, "env_spec")
        .and_then(|s| s.get("id").and_then(|v| v.as_str()).map(str::to_string));
    let env_id = match (env, &spec_id) {
        (Some(e), _) => e.to_string(),
        (None, Some(id)) => id.clone(),
        (None, None) => {
            return Err(Error::format(
                &meta_path,
                "the Minari metadata has no env_spec: pass --env",
            ))
        }
    };
    let space = nested_json(&meta, "action_space")
        .ok_or_else(|| Error::format(&meta_path, "no `action_space` in the Minari metadata"))?;
    if space.get("type").and_then(|t| t.as_str()) != Some("Box") {
        return Err(Error::format(
            &meta_path,
            format!("action space {space} is not a Box: only continuous actions are supported"),
        ));
    }
    let (Some(action_low), Some(action_high)) = (bounds(&space, "low"), bounds(&space, "high"))
    else {
        return Err(Error::format(
            &meta_path,
            "action space without numeric low/high",
        ));
    };
    Ok(MinariInfo {
        data_dir,
        meta_path,
        meta,
        format,
        env_id,
        spec_id,
        action_low,
        action_high,
    })
}

/// Import a Minari dataset in any of its storages (HDF5 needs the `python` feature).
pub fn import(path: &Path, env: Option<&str>) -> Result<Dataset> {
    let info = info(path, env)?;
    let episodes = match info.format.as_str() {
        "arrow" | "parquet" => read_tables(&info)?,
        "hdf5" => read_hdf5(&info)?,
        other => {
            return Err(Error::format(
                &info.meta_path,
                format!("data_format `{other}` is not one offrl reads (hdf5, arrow, parquet)"),
            ))
        }
    };
    build(&info, episodes)
}

#[cfg(feature = "python")]
fn read_hdf5(info: &MinariInfo) -> Result<Episodes> {
    super::import::read_minari_hdf5(&info.data_dir.join("main_data.hdf5"))
}

#[cfg(not(feature = "python"))]
fn read_hdf5(info: &MinariInfo) -> Result<Episodes> {
    Err(Error::Config(format!(
        "{}: Minari's HDF5 storage is read through h5py (the `python` feature); its arrow and \
         parquet storages import without it",
        info.data_dir.display()
    )))
}

/// The episode folders `data/<id>/` in id order, each with its `part-*` files in name order.
fn episode_files(info: &MinariInfo) -> Result<Vec<(u64, Vec<PathBuf>)>> {
    let ext = if info.format == "arrow" {
        "arrow"
    } else {
        "parquet"
    };
    let dir = &info.data_dir;
    let mut episodes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|_| path.is_dir())
        else {
            continue;
        };
        let mut parts: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|e| Error::io(&path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        parts.sort();
        if parts.is_empty() {
            return Err(Error::format(
                &path,
                format!("episode folder without a .{ext} file"),
            ));
        }
        episodes.push((id, parts));
    }
    if episodes.is_empty() {
        return Err(Error::format(
            dir,
            format!(
                "no episode folders (0/, 1/, ...) in this {} Minari dataset",
                info.format
            ),
        ));
    }
    episodes.sort();
    Ok(episodes)
}

/// The arrow / parquet storages: every episode's tables, natively.
fn read_tables(info: &MinariInfo) -> Result<Episodes> {
    let mut out = Episodes {
        observations: Column::empty(),
        next_observations: Column::empty(),
        actions: Column::empty(),
        rewards: Vec::new(),
        terminations: Vec::new(),
        truncations: Vec::new(),
        lengths: Vec::new(),
        file: info.data_dir.clone(),
    };
    for (_, parts) in episode_files(info)? {
        let mut batches: Vec<RecordBatch> = Vec::new();
        for part in &parts {
            batches.extend(columns::record_batches(part)?);
        }
        let file = &parts[0];
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Err(Error::format(file, "an episode without rows"));
        }
        let steps = rows - 1;
        // Each column over the episode's rows, `take` rows of it (the T-row columns drop the
        // trailing null row Minari pads them with).
        let column = |name: &str, take: usize| -> Result<Column> {
            let mut col = Column::empty();
            let mut row = 0;
            for batch in &batches {
                let array = batch.column_by_name(name).ok_or_else(|| {
                    let found: Vec<String> = batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect();
                    Error::format(
                        file,
                        format!(
                            "missing column `{name}` (the file has: {})",
                            found.join(", ")
                        ),
                    )
                })?;
                let n = array.len().min(take.saturating_sub(row));
                let mut converted = Vec::new();
                let part = columns::array_column(file, name, &array.slice(0, n), &mut converted)?;
                col.append(file, name, part)?;
                row += array.len();
            }
            Ok(col)
        };
        let obs = column("observations", rows)?;
        let actions = column("actions", steps)?;
        let rewards = column("rewards", steps)?;
        let term = column("terminations", steps)?;
        let trunc = column("truncations", steps)?;
        out.observations
            .append(file, "observations", obs.slice_rows(0, steps))?;
        out.next_observations
            .append(file, "observations", obs.slice_rows(1, rows))?;
        out.actions.append(file, "actions", actions)?;
        out.rewards.extend_from_slice(&rewards.values);
        out.terminations
            .extend(term.values.iter().map(|&v| v != 0.0));
        out.truncations
            .extend(trunc.values.iter().map(|&v| v != 0.0));
        out.lengths.push(steps);
    }
    Ok(out)
}

/// The shared end of every storage: metadata, episode ends, and the checks of
/// [`Dataset::validate`] (dims against the environment's spaces, finite values).
pub fn build(info: &MinariInfo, ep: Episodes) -> Result<Dataset> {
    // Dims against the environment and the action space: `validate` below, naming both.
    let (obs_dim, act_dim) = (ep.observations.width, ep.actions.width);
    let env_id = &info.env_id;
    if let Some(id) = &info.spec_id {
        if id != env_id && known_env(id).map(|k| k.family) != known_env(env_id).map(|k| k.family) {
            tracing::warn!("the Minari dataset was recorded in {id}; importing it as {env_id}");
        }
    }
    let m = &info.meta;
    let mut data = Dataset {
        meta: Metadata::new(
            env_id,
            obs_dim,
            act_dim,
            info.action_low.clone(),
            info.action_high.clone(),
            json!({
                "importer": "minari",
                "storage": info.format,
                "file": columns::absolute(&ep.file),
                "dataset_id": m.get("dataset_id"),
                "minari_version": m.get("minari_version"),
                "algorithm_name": m.get("algorithm_name"),
                "author": m.get("author"),
                "code_permalink": m.get("code_permalink"),
                "episodes": ep.lengths.len(),
            }),
        ),
        observations: ep.observations.values,
        actions: ep.actions.values,
        rewards: ep.rewards.into(),
        next_observations: ep.next_observations.values,
        terminals: ep.terminations,
        timeouts: ep.truncations,
    };
    // Every episode's last row ends it, even when collection stopped without a flag.
    let mut end = 0;
    for &t in &ep.lengths {
        end += t;
        if t > 0 && !data.terminals[end - 1] {
            data.timeouts[end - 1] = true;
        }
    }
    data.validate()
        .map_err(|e| Error::format(&ep.file, e.to_string()))?;
    Ok(data)
}
