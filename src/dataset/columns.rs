//! A user's own transition file: D4RL's column names (`observations`, `actions`, `rewards`,
//! `next_observations`, `terminals`, `timeouts`) in Parquet, Arrow IPC or NumPy `.npz`, read
//! natively (no Python), and [`assemble`], which turns named columns into a [`Dataset`] with
//! D4RL's semantics for these files and for D4RL's HDF5 files alike ([`super::import`]).
//!
//! Accepted layouts, per column:
//! - vectors as fixed-size lists, as variable-size lists that all have one length, as 2-D arrays
//!   (`.npz`), or as one scalar column per dimension (`observations_0`, `observations_1`, …) when
//!   the vector column itself is absent;
//! - floats as f32 or f64: f64 is converted to f32 (as D4RL's `qlearning_dataset` does) and the
//!   conversion is recorded in the dataset's `source`;
//! - `terminals` and `timeouts` as booleans or as integers / floats holding 0 and 1.
//!
//! Semantics ([`assemble`]):
//! - with `next_observations` in the file, every row is kept as is; a file without `timeouts`
//!   then has all-false time-outs (its episodes end at terminals or at the file's end);
//! - without `next_observations`, the next observation is the following row's, as D4RL's
//!   `qlearning_dataset` does, and `timeouts` is required: a row marked `timeouts` has no known
//!   next observation (the following row starts a new episode), so it is dropped, as D4RL drops
//!   it; the row before it becomes the episode's last row and is marked a time-out. The file's
//!   last row is dropped the same way unless it is terminal.
//!
//! Nulls, ragged lists, unknown types, missing columns and dimension mismatches are errors that
//! name the file and the column (and the row where there is one).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use serde_json::json;

use super::registry::ImportFormat;
use super::{known_env, Dataset, Floats, Metadata};
use crate::error::{Error, Result};

/// One column as f32 values, row-major `[rows, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Shared with the file's or the caller's Arrow/NumPy buffer where no conversion was needed.
    pub values: Floats,
    pub rows: usize,
    pub width: usize,
}

impl Column {
    /// No rows yet (its width is set by the first rows appended).
    pub fn empty() -> Column {
        Column {
            values: Floats::default(),
            rows: 0,
            width: 0,
        }
    }

    /// Append `part`'s rows (read from `file`'s column `name`); widths must agree.
    pub fn append(&mut self, file: &Path, name: &str, part: Column) -> Result<()> {
        if self.rows > 0 && part.rows > 0 && part.width != self.width {
            return Err(Error::format(
                file,
                format!(
                    "column `{name}` has {} values per row in one part, {} in another",
                    self.width, part.width
                ),
            ));
        }
        if part.rows > 0 || self.rows == 0 {
            self.width = part.width;
        }
        self.rows += part.rows;
        if self.values.is_empty() {
            // The first part is kept as it is (shared memory stays shared).
            self.values = part.values;
        } else {
            self.values.extend_from_slice(&part.values);
        }
        Ok(())
    }

    /// Rows `start..end`.
    pub fn slice_rows(&self, start: usize, end: usize) -> Column {
        Column {
            values: self
                .values
                .arrow(start * self.width, end * self.width)
                .into(),
            rows: end - start,
            width: self.width,
        }
    }
}

/// The columns a file holds under D4RL's names, with what reading them converted.
#[derive(Debug, Default)]
pub struct Columns {
    pub by_name: BTreeMap<String, Column>,
    /// Every column or array name the file has (for "missing column" messages).
    pub found: Vec<String>,
    /// Conversions made while reading, e.g. "rewards: float64 → float32".
    pub converted: Vec<String>,
    /// What the file calls its columns in messages: "column", "array" or "dataset" (HDF5).
    pub noun: &'static str,
}

/// Every episode's transitions, flattened in episode order (what a Minari storage holds, read
/// natively or through h5py).
pub struct Episodes {
    pub observations: Column,
    pub next_observations: Column,
    pub actions: Column,
    pub rewards: Vec<f32>,
    pub terminations: Vec<bool>,
    pub truncations: Vec<bool>,
    /// Transitions per episode.
    pub lengths: Vec<usize>,
    /// What the rows were read from (the HDF5 file, or the data folder).
    pub file: PathBuf,
}

/// The D4RL column names, in the order of the `Dataset` fields.
pub const D4RL_COLUMNS: [&str; 6] = [
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "timeouts",
];

/// Where the observation and action spaces come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Spaces {
    /// The environment id recorded in the dataset (evaluation makes this environment).
    pub env_id: String,
    /// The environment's observation dim, when known (checked against the data).
    pub obs_dim: Option<usize>,
    pub action_low: Vec<f32>,
    pub action_high: Vec<f32>,
}

/// How `offrl dataset import` reads a file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportOptions {
    /// The environment the data was recorded in. Required for D4RL HDF5; for Minari it
    /// overrides (and is checked against) the dataset's; for table files it gives the spaces.
    pub env: Option<String>,
    /// Checks of the data's dims (table files without an environment).
    pub obs_dim: Option<usize>,
    pub act_dim: Option<usize>,
    /// Symmetric action bound for table files without an environment (default: 1 when every
    /// action lies in [−1, 1]).
    pub action_bound: Option<f32>,
    /// Drop transitions holding NaN/Inf instead of failing.
    pub drop_non_finite: bool,
}

/// A Parquet, Arrow IPC or `.npz` file with D4RL's column names.
pub(crate) fn import_table(
    format: ImportFormat,
    file: &Path,
    opts: &ImportOptions,
) -> Result<Dataset> {
    let cols = match format {
        ImportFormat::Parquet => read_parquet(file)?,
        ImportFormat::Arrow => read_arrow(file)?,
        _ => read_npz(file)?,
    };
    let source = json!({
        "importer": format!("{format:?}").to_lowercase(),
        "file": absolute(file),
        "converted": cols.converted,
    });
    from_columns(file, cols, opts, source)
}

/// Arrow record batches in memory (a pyarrow table or any Arrow stream the Python package is
/// handed) → a checked [`Dataset`]. A schema that carries offrl's own metadata (what
/// [`super::io::record_batches`] writes, e.g. `pyarrow.table(ds)`) gives the dataset back with
/// that metadata, unless `opts.env` says otherwise; any other table imports as a file would.
/// Float32 columns of a single-batch table keep the batch's buffers (no copy).
pub fn from_record_batches(
    origin: &Path,
    batches: &[RecordBatch],
    opts: &ImportOptions,
    source: serde_json::Value,
) -> Result<Dataset> {
    let recorded = batches
        .first()
        .and_then(|b| b.schema().metadata().get(super::io::METADATA_KEY).cloned());
    let cols = from_batches(origin, batches)?;
    let Some(json) = recorded.filter(|_| opts.env.is_none()) else {
        return from_columns(origin, cols, opts, source);
    };
    let meta = super::io::parse_metadata(origin, &json)?;
    let spaces = Spaces {
        env_id: meta.env_id.clone(),
        obs_dim: Some(meta.obs_dim),
        action_low: meta.action_low.clone(),
        action_high: meta.action_high.clone(),
    };
    let mut data = assemble(origin, cols, &spaces, source)?;
    data.meta = meta;
    data.validate()
        .map_err(|e| Error::format(origin, e.to_string()))?;
    Ok(data)
}

/// Columns already in memory (read from a table file, or handed over by the Python package) →
/// a checked [`Dataset`]: the spaces of `opts.env` (else the data's own dims and a symmetric
/// bound), then [`assemble`]. `origin` names them in errors.
pub fn from_columns(
    origin: &Path,
    cols: Columns,
    opts: &ImportOptions,
    source: serde_json::Value,
) -> Result<Dataset> {
    let spaces = table_spaces(origin, &cols, opts)?;
    let data = assemble(origin, cols, &spaces, source)?;
    data.validate()
        .map_err(|e| Error::format(origin, e.to_string()))?;
    Ok(data)
}

/// The spaces of a table file: the environment's (`--env`), else the data's own dims (checked
/// against `--obs-dim/--act-dim`) with a symmetric bound.
fn table_spaces(file: &Path, cols: &Columns, opts: &ImportOptions) -> Result<Spaces> {
    let width = |name: &str| cols.by_name.get(name).map(|c| c.width);
    let (obs_dim, act_dim) = (width("observations"), width("actions"));
    for (flag, want, got) in [
        ("--obs-dim", opts.obs_dim, obs_dim),
        ("--act-dim", opts.act_dim, act_dim),
    ] {
        if let (Some(want), Some(got)) = (want, got) {
            if want != got {
                return Err(Error::format(
                    file,
                    format!("{flag} {want}, but the file's vectors have {got} values per row"),
                ));
            }
        }
    }
    if let Some(env) = &opts.env {
        return env_spaces(env);
    }
    let ad = act_dim.unwrap_or(0);
    let bound = match opts.action_bound {
        Some(b) if b > 0.0 && b.is_finite() => b,
        Some(b) => {
            return Err(Error::Config(format!(
                "--action-bound must be a positive number, got {b}"
            )))
        }
        None => {
            let max = cols.by_name.get("actions").map_or(0.0, |c| {
                c.values.iter().fold(
                    0.0f32,
                    |m, v| if v.is_finite() { m.max(v.abs()) } else { m },
                )
            });
            if max > 1.0 {
                return Err(Error::format(
                    file,
                    format!(
                        "actions reach |a| = {max} and no environment gives their bounds: pass \
                         --env ENV_ID or --action-bound B"
                    ),
                ));
            }
            1.0
        }
    };
    Ok(Spaces {
        env_id: "none".into(),
        obs_dim: None,
        action_low: vec![-bound; ad],
        action_high: vec![bound; ad],
    })
}

/// The spaces of `env_id`: the built-in table, else the environment itself (native, or
/// gymnasium with the `python` feature), made once and asked.
pub fn env_spaces(env_id: &str) -> Result<Spaces> {
    if let Some(k) = known_env(env_id) {
        return Ok(Spaces {
            env_id: env_id.into(),
            obs_dim: Some(k.obs_dim),
            action_low: vec![-k.action_bound; k.act_dim],
            action_high: vec![k.action_bound; k.act_dim],
        });
    }
    let env = crate::envs::make(env_id)?;
    Ok(Spaces {
        env_id: env_id.into(),
        obs_dim: Some(env.observation_space().low.len()),
        action_low: env.action_space().low.clone(),
        action_high: env.action_space().high.clone(),
    })
}

pub(crate) fn absolute(p: &Path) -> String {
    p.canonicalize()
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// Named columns → a [`Dataset`] with D4RL's semantics (see the module docs). `source` is
/// recorded in the metadata (with what the semantics dropped added to it).
pub fn assemble(
    file: &Path,
    mut cols: Columns,
    spaces: &Spaces,
    mut source: serde_json::Value,
) -> Result<Dataset> {
    let fmt = |msg: String| Error::format(file, msg);
    let noun = cols.noun;
    let found = if cols.found.is_empty() {
        "nothing".to_string()
    } else {
        cols.found.join(", ")
    };
    let missing = |name: &str| fmt(format!("missing {noun} `{name}` (the file has: {found})"));
    let mut by_name = std::mem::take(&mut cols.by_name);
    let mut need = |name: &str| by_name.remove(name).ok_or_else(|| missing(name));
    let obs = need("observations")?;
    let act = need("actions")?;
    let rew = need("rewards")?;
    let term = need("terminals")?;
    let next = by_name.remove("next_observations");
    let tout = match (by_name.remove("timeouts"), &next) {
        (Some(t), _) => Some(t),
        (None, Some(_)) => None,
        (None, None) => {
            return Err(fmt(format!(
                "missing {noun} `timeouts` (the file has: {found}); without \
                 `next_observations` the episode ends decide which rows have a next observation"
            )))
        }
    };
    let n = obs.rows;
    let mut lengths = vec![("actions", &act), ("rewards", &rew), ("terminals", &term)];
    if let Some(t) = &tout {
        lengths.push(("timeouts", t));
    }
    if let Some(next) = &next {
        lengths.push(("next_observations", next));
    }
    for (name, c) in &lengths {
        if c.rows != n {
            return Err(fmt(format!(
                "`{name}` has {} rows but `observations` has {n}",
                c.rows
            )));
        }
    }
    for (name, c) in [("rewards", Some(&rew)), ("terminals", Some(&term))]
        .into_iter()
        .chain([("timeouts", tout.as_ref())])
    {
        if let Some(c) = c.filter(|c| c.width != 1) {
            return Err(fmt(format!(
                "`{name}` has {} values per row, expected 1",
                c.width
            )));
        }
    }
    let (obs_dim, act_dim) = (obs.width, act.width);
    if let Some(next) = &next {
        if next.width != obs_dim {
            return Err(fmt(format!(
                "`next_observations` has {} values per row, `observations` {obs_dim}",
                next.width
            )));
        }
    }
    let env_id = &spaces.env_id;
    if let Some(env_obs_dim) = spaces.obs_dim.filter(|&d| d != obs_dim) {
        return Err(fmt(format!(
            "`observations` has {obs_dim} values per row, but {env_id} observations have \
             {env_obs_dim} (wrong --env?)"
        )));
    }
    if spaces.action_low.len() != act_dim {
        return Err(fmt(format!(
            "`actions` has {act_dim} values per row, but {env_id}'s action space has {} dims",
            spaces.action_low.len()
        )));
    }
    let terminals = flags(file, "terminals", &term)?;
    let timeouts = match &tout {
        Some(t) => flags(file, "timeouts", t)?,
        None => vec![false; n],
    };
    let have_next = next.is_some();
    let observations = obs.values;
    let next_observations = match next {
        Some(next) => next.values,
        None if n > 0 => {
            // Following row's observation; the last row repeats its own (dropped or terminal).
            let mut v = observations[obs_dim..].to_vec();
            v.extend_from_slice(&observations[(n - 1) * obs_dim..]);
            v.into()
        }
        None => Floats::default(),
    };
    if let serde_json::Value::Object(map) = &mut source {
        map.insert(
            "next_observations".into(),
            (if have_next {
                "from the file"
            } else {
                "from the following row (D4RL qlearning_dataset)"
            })
            .into(),
        );
        if tout.is_none() {
            map.insert("timeouts".into(), "absent from the file: all false".into());
        }
    }
    let mut data = Dataset {
        meta: Metadata::new(
            env_id,
            obs_dim,
            act_dim,
            spaces.action_low.clone(),
            spaces.action_high.clone(),
            source,
        ),
        observations,
        actions: act.values,
        rewards: rew.values,
        next_observations,
        terminals,
        timeouts,
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

/// A flag column: every value 0 or 1.
fn flags(file: &Path, name: &str, c: &Column) -> Result<Vec<bool>> {
    c.values
        .iter()
        .enumerate()
        .map(|(row, &v)| match v {
            0.0 => Ok(false),
            1.0 => Ok(true),
            other => Err(Error::format(
                file,
                format!("`{name}` holds {other} at row {row}; flags must be booleans or 0/1"),
            )),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Parquet and Arrow IPC
// ---------------------------------------------------------------------------------------------

fn open(file: &Path) -> Result<File> {
    File::open(file).map_err(|e| Error::io(file, e))
}

/// A Parquet file written by any writer (pyarrow, pandas, polars, DuckDB, offrl).
pub fn read_parquet(file: &Path) -> Result<Columns> {
    from_batches(file, &parquet_batches(file)?)
}

/// An Arrow IPC file (Feather v2), or an Arrow IPC stream.
pub fn read_arrow(file: &Path) -> Result<Columns> {
    from_batches(file, &arrow_batches(file)?)
}

/// The record batches of a Parquet file (`.parquet`) or an Arrow IPC file or stream (else).
pub fn record_batches(file: &Path) -> Result<Vec<RecordBatch>> {
    if file.extension().is_some_and(|e| e == "parquet") {
        parquet_batches(file)
    } else {
        arrow_batches(file)
    }
}

fn parquet_batches(file: &Path) -> Result<Vec<RecordBatch>> {
    let bad = |e: parquet::errors::ParquetError| {
        Error::format(file, format!("not a readable Parquet file: {e}"))
    };
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(open(file)?)
        .map_err(bad)?
        .build()
        .map_err(bad)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::format(file, format!("not a readable Parquet file: {e}")))
}

fn arrow_batches(file: &Path) -> Result<Vec<RecordBatch>> {
    let bad = |e: arrow_schema::ArrowError| {
        Error::format(file, format!("not a readable Arrow IPC file: {e}"))
    };
    match arrow_ipc::reader::FileReader::try_new(open(file)?, None) {
        Ok(reader) => reader.collect::<std::result::Result<Vec<_>, _>>(),
        Err(_) => arrow_ipc::reader::StreamReader::try_new(open(file)?, None)
            .map_err(bad)?
            .collect(),
    }
    .map_err(bad)
}

fn from_batches(file: &Path, batches: &[RecordBatch]) -> Result<Columns> {
    let mut cols = Columns {
        noun: "column",
        ..Default::default()
    };
    let Some(first) = batches.first() else {
        return Err(Error::format(file, "the file holds no record batches"));
    };
    let schema = first.schema();
    cols.found = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut per_name: BTreeMap<String, Column> = BTreeMap::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let name = field.name();
        if !is_wanted(name) {
            continue;
        }
        let mut col = Column::empty();
        for batch in batches {
            let part = array_column(file, name, batch.column(i), &mut cols.converted)?;
            col.append(file, name, part)?;
        }
        cols.converted.dedup();
        per_name.insert(name.clone(), col);
    }
    gather_per_dimension(file, &mut per_name)?;
    cols.by_name = per_name;
    Ok(cols)
}

/// A D4RL column name, or `NAME_k` of one.
fn is_wanted(name: &str) -> bool {
    D4RL_COLUMNS.iter().any(|c| {
        name == *c
            || name
                .strip_prefix(c)
                .and_then(|r| r.strip_prefix('_'))
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// `observations_0 … observations_{k−1}` → `observations` (width k) where `observations`
/// itself is absent; the per-dimension columns must be scalars numbered 0..k without gaps.
fn gather_per_dimension(file: &Path, cols: &mut BTreeMap<String, Column>) -> Result<()> {
    for base in D4RL_COLUMNS {
        let mut dims: Vec<(usize, String)> = cols
            .keys()
            .filter_map(|k| {
                let idx = k.strip_prefix(base)?.strip_prefix('_')?.parse().ok()?;
                Some((idx, k.clone()))
            })
            .collect();
        if dims.is_empty() {
            continue;
        }
        if cols.contains_key(base) {
            return Err(Error::format(
                file,
                format!(
                    "both `{base}` and `{}` are present: keep one layout",
                    dims[0].1
                ),
            ));
        }
        dims.sort();
        if let Some((want, (_, name))) = dims.iter().enumerate().find(|(k, (i, _))| k != i) {
            return Err(Error::format(
                file,
                format!("per-dimension columns of `{base}` skip `{base}_{want}` (next: `{name}`)"),
            ));
        }
        let parts: Vec<Column> = dims.iter().map(|(_, k)| cols.remove(k).unwrap()).collect();
        let rows = parts[0].rows;
        for (p, (_, name)) in parts.iter().zip(&dims) {
            if p.width != 1 || p.rows != rows {
                return Err(Error::format(
                    file,
                    format!(
                        "`{name}` must be a scalar column of {rows} rows like `{}` (it has {} \
                         rows × {})",
                        dims[0].1, p.rows, p.width
                    ),
                ));
            }
        }
        let width = parts.len();
        let mut values = vec![0.0; rows * width];
        for (j, p) in parts.iter().enumerate() {
            for (r, v) in p.values.iter().enumerate() {
                values[r * width + j] = *v;
            }
        }
        cols.insert(
            base.to_string(),
            Column {
                values: values.into(),
                rows,
                width,
            },
        );
    }
    Ok(())
}

/// One Arrow array as f32 values: scalars (floats, integers, booleans) or lists of floats.
pub(crate) fn array_column(
    file: &Path,
    name: &str,
    col: &ArrayRef,
    converted: &mut Vec<String>,
) -> Result<Column> {
    let bad = |msg: String| Error::format(file, format!("column `{name}`: {msg}"));
    if let Some(row) = (0..col.len()).find(|&i| col.is_null(i)) {
        return Err(bad(format!("null at row {row}")));
    }
    let rows = col.len();
    let (items, width): (ArrayRef, usize) = match col.data_type() {
        DataType::FixedSizeList(_, n) => {
            let list = col.as_fixed_size_list();
            (
                list.values()
                    .slice(list.offset() * *n as usize, rows * *n as usize),
                *n as usize,
            )
        }
        DataType::List(_) | DataType::LargeList(_) => {
            let (offsets, values): (Vec<usize>, ArrayRef) = match col.data_type() {
                DataType::List(_) => {
                    let l = col.as_list::<i32>();
                    (
                        l.offsets().iter().map(|&o| o as usize).collect(),
                        l.values().clone(),
                    )
                }
                _ => {
                    let l = col.as_list::<i64>();
                    (
                        l.offsets().iter().map(|&o| o as usize).collect(),
                        l.values().clone(),
                    )
                }
            };
            let width = offsets.get(1).map_or(0, |e| e - offsets[0]);
            if let Some(row) = offsets.windows(2).position(|w| w[1] - w[0] != width) {
                return Err(bad(format!(
                    "row {row} has {} values, row 0 has {width}: vectors must have one length",
                    offsets[row + 1] - offsets[row]
                )));
            }
            let start = offsets.first().copied().unwrap_or(0);
            (values.slice(start, rows * width), width)
        }
        _ => (col.clone(), 1),
    };
    if items.null_count() > 0 {
        return Err(bad("holds null vector entries".into()));
    }
    let values = scalars(&items, |from| {
        converted.push(format!("{name}: {from} → float32"))
    })
    .ok_or_else(|| {
        bad(format!(
            "type {} is not a float, integer or boolean column (or a list of floats)",
            col.data_type()
        ))
    })?;
    Ok(Column {
        values,
        rows,
        width,
    })
}

/// The values of a scalar array as f32 (`None` for other types); `note` hears of lossy
/// conversions.
fn scalars(a: &ArrayRef, mut note: impl FnMut(&str)) -> Option<Floats> {
    macro_rules! ints {
        ($t:ty) => {
            Floats::Owned(
                a.as_primitive::<$t>()
                    .values()
                    .iter()
                    .map(|&v| v as f32)
                    .collect(),
            )
        };
    }
    Some(match a.data_type() {
        // Float32 values are the array's own buffer: no copy.
        DataType::Float32 => a.as_primitive::<Float32Type>().values().clone().into(),
        DataType::Float64 => {
            note("float64");
            Floats::Owned(
                a.as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|&v| v as f32)
                    .collect(),
            )
        }
        DataType::Boolean => Floats::Owned(a.as_boolean().values().iter().map(f32::from).collect()),
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// NumPy .npz
// ---------------------------------------------------------------------------------------------

/// A NumPy `.npz` archive (`np.savez` / `np.savez_compressed`) of 1-D and 2-D arrays.
pub fn read_npz(file: &Path) -> Result<Columns> {
    let mut zip = zip::ZipArchive::new(open(file)?)
        .map_err(|e| Error::format(file, format!("not a readable .npz (zip) archive: {e}")))?;
    let mut cols = Columns {
        noun: "array",
        ..Default::default()
    };
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    cols.found = names
        .iter()
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    cols.found.sort();
    let mut per_name = BTreeMap::new();
    for entry in names {
        let name = entry.trim_end_matches(".npy").to_string();
        if !is_wanted(&name) {
            continue;
        }
        let bad = |msg: String| Error::format(file, format!("array `{name}`: {msg}"));
        let reader = zip.by_name(&entry).map_err(|e| bad(e.to_string()))?;
        let (column, from) = npy_column(reader).map_err(bad)?;
        if let Some(from) = from {
            cols.converted.push(format!("{name}: {from} → float32"));
        }
        per_name.insert(name, column);
    }
    gather_per_dimension(file, &mut per_name)?;
    cols.by_name = per_name;
    Ok(cols)
}

/// One `.npy` array as a column, and the dtype it was converted from when that loses precision.
fn npy_column(reader: impl Read) -> std::result::Result<(Column, Option<String>), String> {
    let npy = npyz::NpyFile::new(reader).map_err(|e| format!("not a readable .npy array: {e}"))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let (rows, width) = match shape[..] {
        [rows] => (rows, 1),
        [rows, width] => (rows, width),
        _ => return Err(format!("shape {shape:?}: expected [N] or [N, dim]")),
    };
    if shape.len() == 2 && npy.order() == npyz::Order::Fortran && rows > 1 && width > 1 {
        return Err("stored in Fortran order: save it with np.ascontiguousarray".into());
    }
    let dtype = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => {
            return Err(format!(
                "dtype {} is not a plain number type",
                other.descr()
            ))
        }
    };
    let read_err = |e: std::io::Error| format!("unreadable data: {e}");
    macro_rules! as_f32 {
        ($t:ty) => {
            npy.into_vec::<$t>()
                .map_err(read_err)?
                .into_iter()
                .map(|v| v as f32)
                .collect()
        };
    }
    let kind = dtype.trim_start_matches(['<', '>', '|', '=']);
    let (values, from): (Vec<f32>, Option<String>) = match kind {
        "f4" => (npy.into_vec::<f32>().map_err(read_err)?, None),
        "f8" => (as_f32!(f64), Some("float64".into())),
        "b1" => (
            npy.into_vec::<bool>()
                .map_err(read_err)?
                .into_iter()
                .map(f32::from)
                .collect(),
            None,
        ),
        "i1" => (as_f32!(i8), None),
        "i2" => (as_f32!(i16), None),
        "i4" => (as_f32!(i32), None),
        "i8" => (as_f32!(i64), None),
        "u1" => (as_f32!(u8), None),
        "u2" => (as_f32!(u16), None),
        "u4" => (as_f32!(u32), None),
        "u8" => (as_f32!(u64), None),
        _ => {
            return Err(format!(
                "dtype {dtype} is not a float, integer or boolean type"
            ))
        }
    };
    Ok((
        Column {
            values: values.into(),
            rows,
            width,
        },
        from,
    ))
}
