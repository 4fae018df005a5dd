//! Importers for D4RL flat HDF5 files and Minari's HDF5 storage. HDF5 is read by h5py through the
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
//! - Minari's HDF5 storage: read here, assembled by [`super::minari`] (which has the semantics and
//!   reads the arrow and parquet storages natively).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::Path;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use serde_json::json;

use super::columns::{Column, Columns, Episodes, D4RL_COLUMNS};

use super::Dataset;
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
            self.bool().into_iter().map(f32::from).collect::<Vec<f32>>()
        } else {
            self.f32()
        };
        Column {
            values: values.into(),
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

/// Minari's HDF5 storage (`data/main_data.hdf5`) through h5py: every episode's transitions
/// ([`super::minari`] does the rest).
pub fn read_minari_hdf5(hdf5: &Path) -> Result<Episodes> {
    if !hdf5.is_file() {
        return Err(Error::format(
            hdf5.parent().unwrap_or(Path::new(".")),
            "not a Minari dataset: no main_data.hdf5 beside its metadata.json",
        ));
    }
    let file_arg = hdf5.to_string_lossy().to_string();
    let (cols, lengths) = call_reader(hdf5, "read_minari", &file_arg, |out| {
        let dict = out.cast::<PyDict>()?;
        let cols = D4RL_COLUMNS
            .iter()
            .map(|key| get_raw(dict, key)?.ok_or_else(|| missing(key)))
            .collect::<PyResult<Vec<_>>>()?;
        let lengths: Vec<usize> = item(dict, "lengths")?.extract()?;
        Ok((cols, lengths))
    })?;
    let [obs, act, rew, next, term, tout]: [Raw; 6] = cols
        .try_into()
        .map_err(|_| Error::Python("reader returned wrong columns".into()))?;
    Ok(Episodes {
        observations: obs.column(false),
        next_observations: next.column(false),
        actions: act.column(false),
        rewards: rew.f32(),
        terminations: term.bool(),
        truncations: tout.bool(),
        lengths,
        file: hdf5.to_path_buf(),
    })
}
