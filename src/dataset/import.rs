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

use std::ffi::CString;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use serde_json::json;

use super::registry::ImportFormat;
use super::{known_env, reference_scores_for, Dataset, Metadata, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::python;

const READER: &str = include_str!("hdf5_reader.py");

/// Import `file` in `format`. `env` is required for D4RL files (they do not name their
/// environment); for Minari it overrides (and is checked against) the dataset's env spec.
pub fn import(
    format: ImportFormat,
    file: &Path,
    env: Option<&str>,
    drop_non_finite: bool,
) -> Result<Dataset> {
    let mut data = match format {
        ImportFormat::D4rl => {
            let env = env.ok_or_else(|| {
                Error::Config("D4RL files do not name their environment: pass --env".into())
            })?;
            import_d4rl(file, env)?
        }
        ImportFormat::Minari => import_minari(file, env)?,
    };
    if drop_non_finite {
        let dropped = data.drop_non_finite();
        if dropped > 0 {
            tracing::warn!("dropped {dropped} transitions holding NaN/Inf values");
        }
        if let serde_json::Value::Object(map) = &mut data.meta.source {
            map.insert("dropped_non_finite".into(), dropped.into());
        }
    }
    data.validate().map_err(|e| match e {
        Error::InvalidData(msg) if !drop_non_finite && msg.contains("non-finite") => Error::format(
            file,
            format!("{msg} (pass --drop-non-finite to drop such transitions)"),
        ),
        Error::InvalidData(msg) => Error::format(file, msg),
        other => other,
    })?;
    Ok(data)
}

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

/// Observation dim and action bounds of `env_id`: the built-in table, else gymnasium.
fn env_spaces(file: &Path, env_id: &str) -> Result<(usize, Vec<f32>, Vec<f32>)> {
    if let Some(k) = known_env(env_id) {
        return Ok((
            k.obs_dim,
            vec![-k.action_bound; k.act_dim],
            vec![k.action_bound; k.act_dim],
        ));
    }
    call_reader(file, "env_spaces", env_id, |out| out.extract())
        .map_err(|e| Error::env(env_id, format!("cannot look up its spaces: {e}")))
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

fn absolute(p: &Path) -> String {
    p.canonicalize()
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
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
        let mut cols = Vec::new();
        for key in [
            "observations",
            "actions",
            "rewards",
            "next_observations",
            "terminals",
            "timeouts",
        ] {
            cols.push(get_raw(dict, key)?);
        }
        let keys: Vec<String> = dict.get_item("keys")?.expect("keys").extract()?;
        let source: Option<String> = dict.get_item("source")?.expect("source").extract()?;
        Ok((cols, keys, source))
    })?;
    let mut take = |i: usize, name: &str| -> Result<Raw> {
        cols[i].take().ok_or_else(|| {
            Error::format(
                file,
                format!(
                    "missing dataset `{name}` (the file has: {})",
                    if keys.is_empty() {
                        "nothing".into()
                    } else {
                        keys.join(", ")
                    }
                ),
            )
        })
    };
    let obs = take(0, "observations")?;
    let act = take(1, "actions")?;
    let rew = take(2, "rewards")?;
    let term = take(4, "terminals")?;
    let tout = take(5, "timeouts")?;
    let next = cols[3].take();

    let n = obs.rows();
    let fmt = |msg: String| Error::format(file, msg);
    if obs.shape.len() != 2 {
        return Err(fmt(format!(
            "`observations` has shape {:?}, expected [N, obs_dim]",
            obs.shape
        )));
    }
    let mut lengths = vec![
        ("actions", &act),
        ("rewards", &rew),
        ("terminals", &term),
        ("timeouts", &tout),
    ];
    if let Some(next) = &next {
        lengths.push(("next_observations", next));
    }
    for (name, raw) in &lengths {
        if raw.rows() != n {
            return Err(fmt(format!(
                "`{name}` has {} rows but `observations` has {n}",
                raw.rows()
            )));
        }
    }
    for (name, raw) in [("rewards", &rew), ("terminals", &term), ("timeouts", &tout)] {
        if raw.width() != 1 {
            return Err(fmt(format!(
                "`{name}` has shape {:?}, expected [N]",
                raw.shape
            )));
        }
    }
    let (obs_dim, act_dim) = (obs.width(), act.width());
    if let Some(next) = &next {
        if next.shape != obs.shape {
            return Err(fmt(format!(
                "`next_observations` has shape {:?}, `observations` {:?}",
                next.shape, obs.shape
            )));
        }
    }
    let (env_obs_dim, low, high) = env_spaces(file, env_id)?;
    if env_obs_dim != obs_dim {
        return Err(fmt(format!(
            "`observations` has {obs_dim} values per row, but {env_id} observations have \
             {env_obs_dim} (wrong --env?)"
        )));
    }
    check_dims(env_id, obs_dim, act_dim, &low).map_err(|e| fmt(e.to_string()))?;

    let observations = obs.f32();
    let have_next = next.is_some();
    let next_observations = match next {
        Some(next) => next.f32(),
        None if n > 0 => {
            // Following row's observation; the last row repeats its own (dropped or terminal).
            let mut v = observations[obs_dim..].to_vec();
            v.extend_from_slice(&observations[(n - 1) * obs_dim..]);
            v
        }
        None => Vec::new(),
    };
    let mut data = Dataset {
        meta: Metadata {
            format_version: FORMAT_VERSION,
            env_id: env_id.to_string(),
            obs_dim,
            act_dim,
            action_low: low,
            action_high: high,
            source: json!({
                "importer": "d4rl",
                "file": absolute(file),
                "file_source": source,
                "next_observations": if have_next { "from the file" } else { "from the following row (D4RL qlearning_dataset)" },
            }),
            reference_scores: reference_scores_for(env_id),
        },
        observations,
        actions: act.f32(),
        rewards: rew.f32(),
        next_observations,
        terminals: term.bool(),
        timeouts: tout.bool(),
    };
    if !have_next {
        let keep: Vec<bool> = (0..n)
            .map(|i| !(data.timeouts[i] || (i + 1 == n && !data.terminals[i])))
            .collect();
        let dropped = data.retain_rows(&keep);
        if let serde_json::Value::Object(map) = &mut data.meta.source {
            map.insert(
                "dropped_rows_without_next_observation".into(),
                dropped.into(),
            );
        }
    }
    Ok(data)
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
        let mut cols = Vec::new();
        for key in [
            "observations",
            "actions",
            "rewards",
            "next_observations",
            "terminals",
            "timeouts",
        ] {
            cols.push(get_raw(dict, key)?.expect("reader returns every column"));
        }
        let lengths: Vec<usize> = dict.get_item("lengths")?.expect("lengths").extract()?;
        let episodes: Vec<String> = dict.get_item("episodes")?.expect("episodes").extract()?;
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
                "file": absolute(&hdf5),
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
