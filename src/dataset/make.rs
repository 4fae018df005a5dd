//! `offrl dataset make NAME`: build a registry member from its card. One arm per
//! [`DataSource`] kind.

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
            shared_dir: crate::config::shared_dir(),
            drop_non_finite: false,
        }
    }
}

/// Build the dataset described by `card` (named `name` in the registry).
pub fn make(name: &str, card: &DatasetCard, opts: &MakeOptions) -> Result<Dataset> {
    match &card.source {
        DataSource::Import { .. } => import_card(name, card, opts),
        DataSource::Collect { seed, parts } => {
            // The card's seed defines the published data; `--seed` shifts it for replicates.
            let seed = seed.wrapping_add(opts.seed);
            let mut data = super::collect::collect(
                &card.env,
                parts,
                seed,
                opts.scale,
                card.reference_scores,
                true,
            )?;
            if let serde_json::Value::Object(map) = &mut data.meta.source {
                map.insert("dataset".into(), name.into());
            }
            Ok(data)
        }
        DataSource::Concat { members } => concat_card(name, card, members, opts, 0),
    }
}

/// Make each member (recursively, with the same options) and concatenate them in order.
fn concat_card(
    name: &str,
    card: &DatasetCard,
    members: &[String],
    opts: &MakeOptions,
    depth: usize,
) -> Result<Dataset> {
    if depth > 8 {
        return Err(Error::Config(format!(
            "dataset `{name}`: concat members nest more than 8 deep (a cycle?)"
        )));
    }
    let mut parts = Vec::with_capacity(members.len());
    for member in members {
        let member_card = super::registry::load_card(member)?;
        if member_card.env != card.env {
            return Err(Error::Config(format!(
                "dataset `{name}` ({}) concatenates `{member}`, which is {}",
                card.env, member_card.env
            )));
        }
        parts.push(match &member_card.source {
            DataSource::Concat { members: inner } => {
                concat_card(member, &member_card, inner, opts, depth + 1)?
            }
            _ => make(member, &member_card, opts)?,
        });
    }
    let sources: Vec<_> = parts.iter().map(|p| p.meta.source.clone()).collect();
    let mut data = Dataset::concat(&parts)?;
    data.meta.source = serde_json::json!({
        "kind": "concat",
        "dataset": name,
        "members": members,
        "parts": sources,
    });
    if card.reference_scores.is_some() {
        data.meta.reference_scores = card.reference_scores;
    }
    Ok(data)
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
    let import_opts = super::columns::ImportOptions {
        env: Some(card.env.clone()),
        drop_non_finite: opts.drop_non_finite,
        ..Default::default()
    };
    let mut data = super::importer::import(*format, &file, &import_opts)?;
    if let Some(r) = card.reference_scores {
        data.meta.reference_scores = Some(r);
    }
    if let serde_json::Value::Object(map) = &mut data.meta.source {
        map.insert("dataset".into(), name.into());
    }
    Ok(data)
}
