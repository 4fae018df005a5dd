//! `offrl dataset make NAME`: build a registry member from its card. One arm per
//! [`DataSource`] kind.

use std::path::Path;

use super::registry::{DataSource, DatasetCard};
use super::Dataset;
use crate::error::{Error, Result};

/// Options shared by every way of making a dataset.
#[derive(Debug, Clone)]
pub struct MakeOptions {
    /// Seed for anything random (collection); same seed, same data.
    pub seed: u64,
    /// Multiplies collection step counts (`--scale`), for quick small versions.
    pub scale: f64,
    /// Folder the cards' relative paths resolve against (fixtures, behaviour policies).
    pub shared_dir: std::path::PathBuf,
    /// Drop transitions holding NaN/Inf instead of failing.
    pub drop_non_finite: bool,
}

impl Default for MakeOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            scale: 1.0,
            shared_dir: super::registry::shared_dir(),
            drop_non_finite: false,
        }
    }
}

/// Build the dataset described by `card` (named `name` in the registry).
pub fn make(name: &str, card: &DatasetCard, opts: &MakeOptions) -> Result<Dataset> {
    match &card.source {
        DataSource::Import { .. } => import_card(name, card, opts),
        DataSource::Collect { .. } | DataSource::Concat { .. } => Err(Error::Config(format!(
            "dataset `{name}`: making `collect` and `concat` cards is not supported yet"
        ))),
    }
}

/// Import the file an `import` card points at; the card's env id and reference scores (or
/// the built-in table's) go into the metadata, with the card name in the provenance.
pub fn import_card(name: &str, card: &DatasetCard, opts: &MakeOptions) -> Result<Dataset> {
    let DataSource::Import { format, path } = &card.source else {
        return Err(Error::Config(format!(
            "dataset `{name}` is not an import card"
        )));
    };
    let file = opts.shared_dir.join(path);
    let mut data = import_file(*format, &file, Some(&card.env), opts.drop_non_finite)?;
    if let Some(r) = card.reference_scores {
        data.meta.reference_scores = Some(r);
    }
    if let serde_json::Value::Object(map) = &mut data.meta.source {
        map.insert("dataset".into(), name.into());
    }
    Ok(data)
}

#[cfg(feature = "python")]
fn import_file(
    format: super::registry::ImportFormat,
    file: &Path,
    env: Option<&str>,
    drop_non_finite: bool,
) -> Result<Dataset> {
    super::import::import(format, file, env, drop_non_finite)
}

#[cfg(not(feature = "python"))]
fn import_file(
    _format: super::registry::ImportFormat,
    file: &Path,
    _env: Option<&str>,
    _drop_non_finite: bool,
) -> Result<Dataset> {
    Err(Error::Config(format!(
        "importing {} needs the `python` feature (h5py through pyo3)",
        file.display()
    )))
}
