//! Importers for D4RL flat HDF5 files and Minari datasets. HDF5 is read by h5py through the
//! Python bridge, whole arrays at a time (`hdf5_reader.py` hands back raw f32/bool buffers).
//!
//! Semantics:
//! - D4RL with `next_observations` in the file: every row is kept as is.
//! - D4RL without `next_observations`: the next observation is the following row's, as D4RL's
//!   `qlearning_dataset` does. A row marked `timeouts` has no known next observation (the
//!   following row starts a new episode), so it is dropped, as D4RL drops it; the row before it
//!   becomes the episode's last row and is marked a time-out, so the episode boundary survives.
//!   The file's last row is dropped the same way unless it is terminal (then its next
//!   observation is never bootstrapped from; its own observation is stored there).
//!   Episode returns of such a file lack the dropped rewards.
//! - Minari: each episode's `observations` has T+1 rows: transition t is (obs[t], actions[t],
//!   rewards[t], obs[t+1], terminations[t], truncations[t]). Rewards (f64 in Minari) are stored
//!   as f32, as D4RL's `qlearning_dataset` casts them. An episode whose last step is neither
//!   terminated nor truncated (collection stopped) gets its last row marked a time-out.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use serde_json::json;

use super::columns::{Column, Columns, D4RL_COLUMNS};
use super::{known_env, reference_scores_for, Dataset, Metadata, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::python;

const READER: &str = include_str!("hdf5_reader.py");

/// A whole array read from HDF5: raw native-endian bytes and its shape.
struct Raw {
    bytes: Vec<u8>,
    shape: Vec<usize>,
}

impl Raw {
    fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }
    /// Values per row (1 for a 1-D array).
    fn width(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
    fn f32(&self) -> Vec<f32> {
        self.bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
    fn bool(&self) -> Vec<bool> {
        self.bytes.iter().map(|&b| b != 0).collect()
    }
    /// As a [`Column`]: f32 values, or 0/1 for a flag array (`flag`).
    fn column(&self, flag: bool) -> Column {
        let values = if flag {
            self.bool().into_iter().map(f32::from).collect()
        } else {
            self.f32()
        };
        Column {
            values,
            rows: self.rows(),
            width: self.width(),
        }
    }
}

fn missing(key: &str) -> PyErr {
    pyo3::exceptions::PyKeyError::new_err(format!("the reader returned no `{key}`"))
}

fn item<'py>(dict: &Bound<'py, PyDict>, key: &str) -> PyResult<Bound<'py, PyAny>> {
    dict.get_item(key)?.ok_or_else(|| missing(key))
}

fn get_raw(dict: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<Raw>> {
    let Some(item) = dict.get_item(key)? else {
        return Ok(None);
    };
    let (bytes, shape): (Bound<'_, PyBytes>, Vec<usize>) = item.extract()?;
    Ok(Some(Raw {
        bytes: bytes.as_bytes().to_vec(),
        shape,
    }))
}

/// Call `function(arg)` of the reader module; its `LayoutError`s become format errors on `file`.
fn call_reader<T>(
    file: &Path,
    function: &str,
    arg: &str,
    convert: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<T>,
) -> Result<T> {
    python::init()?;
    Python::attach(|py| {
        python::import(py, "h5py", "pip install h5py")?;
        let code = CString::new(READER).expect("reader has no NUL");
        let module = PyModule::from_code(py, &code, c"hdf5_reader.py", c"offrl_hdf5_reader")
            .map_err(|e| Error::Python(python::describe(py, &e)))?;
        let explain = |e: PyErr| {
            let layout = e.get_type(py).name().is_ok_and(|n| n == "LayoutError");
            if layout {
                Error::format(file, e.value(py).to_string())
            } else {
                Error::Python(format!("{}: {}", file.display(), python::describe(py, &e)))
            }
        };
        let out = module.call_method1(function, (arg,)).map_err(explain)?;
        convert(&out).map_err(explain)
    })
}

fn check_dims(env_id: &str, obs_dim: usize, act_dim: usize, low: &[f32]) -> Result<()> {
    if obs_dim != 0 && act_dim != 0 {
        if let Some(k) = known_env(env_id) {
            if (k.obs_dim, k.act_dim) != (obs_dim, act_dim) {
                return Err(Error::InvalidData(format!(
                    "the data has obs_dim {obs_dim} / act_dim {act_dim}, but {env_id} has \
                     obs_dim {} / act_dim {}",
                    k.obs_dim, k.act_dim
                )));
            }
        }
    }
    if low.len() != act_dim {
        return Err(Error::InvalidData(format!(
            "the data has act_dim {act_dim}, but {env_id}'s action space has {} dims",
            low.len()
        )));
    }
    Ok(())
}

/// Import a D4RL flat HDF5 file recorded in `env_id`.
pub fn import_d4rl(file: &Path, env_id: &str) -> Result<Dataset> {
    if !file.exists() {
        return Err(Error::io(
            file,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let path = file.to_string_lossy().to_string();
    let (mut cols, keys, source) = call_reader(file, "read_d4rl", &path, |out| {
        let dict = out.cast::<PyDict>()?;
        let cols = D4RL_COLUMNS
            .iter()
            .map(|key| get_raw(dict, key))
            .collect::<PyResult<Vec<_>>>()?;
        let keys: Vec<String> = item(dict, "keys")?.extract()?;
        let source: Option<String> = item(dict, "source")?.extract()?;
        Ok((cols, keys, source))
    })?;
    let mut by_name = BTreeMap::new();
    for (i, name) in D4RL_COLUMNS.iter().enumerate() {
        let Some(raw) = cols[i].take() else { continue };
        // Vectors are [N, dim]; scalars [N] (a width of 1 either way is checked by `assemble`).
        let vector = matches!(i, 0 | 1 | 3);
        if (vector && raw.shape.len() != 2) || raw.shape.len() > 2 || raw.shape.is_empty() {
            let want = if vector { "[N, dim]" } else { "[N]" };
            return Err(Error::format(
                file,
                format!("`{name}` has shape {:?}, expected {want}", raw.shape),
            ));
        }
        by_name.insert(name.to_string(), raw.column(i >= 4));
    }
    let columns = Columns {
        by_name,
        found: keys,
        converted: Vec::new(),
        noun: "dataset",
    };
    super::columns::assemble(
        file,
        columns,
        &super::columns::env_spaces(env_id)?,
        json!({
            "importer": "d4rl",
            "file": super::columns::absolute(file),
            "file_source": source,
        }),
    )
}

/// Where a Minari dataset's HDF5 file and metadata.json are, given the dataset folder, its
/// `data/` folder or `main_data.hdf5` itself.
fn minari_paths(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let data_dir = if path.is_file() {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else if path.join("data").join("main_data.hdf5").is_file() {
        path.join("data")
    } else if path.join("main_data.hdf5").is_file() {
        path.to_path_buf()
    } else if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        ));
    } else {
        return Err(Error::format(
            path,
            "not a Minari dataset: no data/main_data.hdf5 inside",
        ));
    };
    let hdf5 = if path.is_file() {
        path.to_path_buf()
    } else {
        data_dir.join("main_data.hdf5")
    };
    Ok((hdf5, data_dir.join("metadata.json")))
}

/// Minari stores spaces and the env spec as JSON strings inside metadata.json.
fn nested_json(meta: &serde_json::Value, key: &str) -> Option<serde_json::Value> {
    match meta.get(key)? {
        serde_json::Value::String(s) => serde_json::from_str(s).ok(),
        serde_json::Value::Null => None,
        v => Some(v.clone()),
    }
}

fn bounds(space: &serde_json::Value, key: &str, dim: usize) -> Option<Vec<f32>> {
    match space.get(key)? {
        serde_json::Value::Array(v) => v.iter().map(|x| x.as_f64().map(|x| x as f32)).collect(),
        x => Some(vec![x.as_f64()? as f32; dim]),
    }
}

/// Import a Minari dataset (folder with data/main_data.hdf5 and data/metadata.json).
pub fn import_minari(path: &Path, env: Option<&str>) -> Result<Dataset> {
    let (hdf5, meta_path) = minari_paths(path)?;
    let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
    let mmeta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::format(&meta_path, e.to_string()))?;
    let spec_id = nested_json(&mmeta, "env_spec")
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
    let action_space = nested_json(&mmeta, "action_space")
        .ok_or_else(|| Error::format(&meta_path, "no `action_space` in the Minari metadata"))?;
    if action_space.get("type").and_then(|t| t.as_str()) != Some("Box") {
        return Err(Error::format(
            &meta_path,
            format!(
                "action space {action_space} is not a Box: only continuous actions are supported"
            ),
        ));
    }

    let file_arg = hdf5.to_string_lossy().to_string();
    let (cols, lengths, episodes) = call_reader(&hdf5, "read_minari", &file_arg, |out| {
        let dict = out.cast::<PyDict>()?;
        let cols = D4RL_COLUMNS
            .iter()
            .map(|key| get_raw(dict, key)?.ok_or_else(|| missing(key)))
            .collect::<PyResult<Vec<_>>>()?;
        let lengths: Vec<usize> = item(dict, "lengths")?.extract()?;
        let episodes: Vec<String> = item(dict, "episodes")?.extract()?;
        Ok((cols, lengths, episodes))
    })?;
    let [obs, act, rew, next, term, tout]: [Raw; 6] = cols
        .try_into()
        .map_err(|_| Error::Python("reader returned wrong columns".into()))?;
    let (obs_dim, act_dim) = (obs.width(), act.width());
    let low = bounds(&action_space, "low", act_dim);
    let high = bounds(&action_space, "high", act_dim);
    let (Some(low), Some(high)) = (low, high) else {
        return Err(Error::format(
            &meta_path,
            "action space without numeric low/high",
        ));
    };
    check_dims(&env_id, obs_dim, act_dim, &low).map_err(|e| Error::format(&hdf5, e.to_string()))?;
    if let Some(id) = &spec_id {
        if id != &env_id && known_env(id).map(|k| k.family) != known_env(&env_id).map(|k| k.family)
        {
            tracing::warn!("the Minari dataset was recorded in {id}; importing it as {env_id}");
        }
    }
    let mut data = Dataset {
        meta: Metadata {
            format_version: FORMAT_VERSION,
            env_id: env_id.clone(),
            obs_dim,
            act_dim,
            action_low: low,
            action_high: high,
            source: json!({
                "importer": "minari",
                "file": super::columns::absolute(&hdf5),
                "dataset_id": mmeta.get("dataset_id"),
                "minari_version": mmeta.get("minari_version"),
                "algorithm_name": mmeta.get("algorithm_name"),
                "author": mmeta.get("author"),
                "code_permalink": mmeta.get("code_permalink"),
                "episodes": episodes.len(),
            }),
            reference_scores: reference_scores_for(&env_id),
        },
        observations: obs.f32(),
        actions: act.f32(),
        rewards: rew.f32(),
        next_observations: next.f32(),
        terminals: term.bool(),
        timeouts: tout.bool(),
    };
    // Every episode's last row ends it, even when collection stopped without a flag.
    let mut end = 0;
    for &t in &lengths {
        end += t;
        if t > 0 && !data.terminals[end - 1] {
            data.timeouts[end - 1] = true;
        }
    }
    Ok(data)
}
