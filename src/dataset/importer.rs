//! `offrl dataset import`: a file in any supported format ([`ImportFormat`]) → a validated
//! [`Dataset`]. Table files (Parquet, Arrow IPC, `.npz`) are read by [`super::columns`], Minari
//! folders by [`super::minari`], D4RL's HDF5 files through h5py ([`super::import`], the `python`
//! feature).

use std::path::Path;

use super::columns::ImportOptions;
use super::registry::ImportFormat;
use super::Dataset;
use crate::error::{Error, Result};

/// Import `file` in `format`, then drop non-finite transitions if asked and validate. Nothing is
/// written: the caller saves the result.
pub fn import(format: ImportFormat, file: &Path, opts: &ImportOptions) -> Result<Dataset> {
    let mut data = match format {
        ImportFormat::Parquet | ImportFormat::Arrow | ImportFormat::Npz => {
            super::columns::import_table(format, file, opts)?
        }
        ImportFormat::Minari => super::minari::import(file, opts.env.as_deref())?,
        ImportFormat::D4rl => d4rl(file, opts)?,
    };
    if opts.drop_non_finite {
        let dropped = data.drop_non_finite();
        if dropped > 0 {
            tracing::warn!("dropped {dropped} transitions holding NaN/Inf values");
        }
        if let serde_json::Value::Object(map) = &mut data.meta.source {
            map.insert("dropped_non_finite".into(), dropped.into());
        }
    }
    data.validate().map_err(|e| match e {
        Error::InvalidData(msg) if !opts.drop_non_finite && msg.contains("non-finite") => {
            Error::format(
                file,
                format!("{msg} (pass --drop-non-finite to drop such transitions)"),
            )
        }
        Error::InvalidData(msg) => Error::format(file, msg),
        other => other,
    })?;
    Ok(data)
}

#[cfg(feature = "python")]
fn d4rl(file: &Path, opts: &ImportOptions) -> Result<Dataset> {
    let env = opts.env.as_deref().ok_or_else(|| {
        Error::Config("D4RL files do not name their environment: pass --env".into())
    })?;
    super::import::import_d4rl(file, env)
}

#[cfg(not(feature = "python"))]
fn d4rl(file: &Path, _: &ImportOptions) -> Result<Dataset> {
    Err(Error::Config(format!(
        "{}: importing D4RL HDF5 needs the `python` feature (h5py through pyo3); Parquet, \
         Arrow and npz files (and Minari's arrow and parquet storages) import without it",
        file.display()
    )))
}
