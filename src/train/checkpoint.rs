//! Checkpoints: one folder per save, `checkpoints/step-00001000/`, holding `meta.json` (format
//! version, what was trained, the step, the resolved config) and one burnpack blob per part
//! (`policy.bpk`, `policy.optim.bpk`, ...). A folder is written under a temporary name and renamed,
//! so a killed run never leaves a half-written checkpoint; `latest` finds the newest complete one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Name prefix of a checkpoint folder being written.
const PARTIAL: &str = ".partial-";

/// Version of the checkpoint layout.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Kinds renamed since checkpoints were first written, `(old, new)`: an old checkpoint opens as
/// the new kind (the diffusion prior's were `prior` before the stage had one name).
const RENAMED_KINDS: &[(&str, &str)] = &[("prior", "diffusion-bc")];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format_version: u32,
    /// What was trained: the registry's name, e.g. `diffusion-bc`, `iql`, `rtb`.
    pub kind: String,
    /// Training steps completed.
    pub step: usize,
    /// The resolved config of the run.
    pub config: serde_json::Value,
    /// Anything else the algorithm needs to rebuild itself (dims, normalisation statistics, ...).
    #[serde(default)]
    pub extra: serde_json::Value,
    /// Each part's [`crate::checksum`], filled in by [`Checkpoint::save`] and verified by
    /// [`Checkpoint::part`] (so by loading and resuming). Empty in checkpoints written before
    /// checksums: those load unverified.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
}

/// A checkpoint folder on disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub meta: CheckpointMeta,
}

/// Serialise a module's parameters (burnpack bytes).
pub fn module_bytes<M: Module>(module: &M) -> Result<Vec<u8>> {
    let bytes = module
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Checkpoint {
            path: PathBuf::new(),
            message: format!("cannot serialise module: {e}"),
        })?;
    Ok(bytes.to_vec())
}

impl Checkpoint {
    /// Write a checkpoint folder `dir` atomically, recording each part's checksum in its metadata.
    pub fn save(
        dir: &Path,
        meta: &CheckpointMeta,
        parts: &[(&str, Vec<u8>)],
    ) -> Result<Checkpoint> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        // A folder left by a run killed while saving is removed by the next save.
        crate::output::sweep_stale(parent, PARTIAL);
        let mut builder = tempfile::Builder::new();
        let prefix = crate::output::temp_prefix(PARTIAL);
        builder.prefix(&prefix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Readable as the umask allows, like any new folder (not a private 0700).
            builder.permissions(std::fs::Permissions::from_mode(0o777));
        }
        let tmp = builder
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let mut meta = meta.clone();
        meta.checksums = parts
            .iter()
            .map(|(name, bytes)| (name.to_string(), crate::checksum::of(bytes)))
            .collect();
        let meta_json = serde_json::to_vec_pretty(&meta).expect("metadata serialises");
        std::fs::write(tmp.path().join("meta.json"), meta_json).map_err(|e| Error::io(dir, e))?;
        for (name, bytes) in parts {
            let file = tmp.path().join(format!("{name}.bpk"));
            std::fs::write(&file, bytes).map_err(|e| Error::io(&file, e))?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let tmp_path = tmp.keep();
        std::fs::rename(&tmp_path, dir).map_err(|e| Error::io(dir, e))?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            meta,
        })
    }

    /// Open a checkpoint folder and check its format version (and its kind, when given).
    pub fn open(dir: &Path, expected_kind: Option<&str>) -> Result<Checkpoint> {
        let meta_path = dir.join("meta.json");
        let text = std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let mut meta: CheckpointMeta =
            serde_json::from_slice(&text).map_err(|e| Error::Checkpoint {
                path: meta_path.clone(),
                message: format!("unreadable metadata: {e}"),
            })?;
        if let Some((_, new)) = RENAMED_KINDS.iter().find(|(old, _)| meta.kind == *old) {
            meta.kind = new.to_string();
        }
        let err = |message: String| Error::Checkpoint {
            path: dir.to_path_buf(),
            message,
        };
        if meta.format_version != CHECKPOINT_VERSION {
            return Err(err(format!(
                "format version {} is not supported (this build reads {CHECKPOINT_VERSION})",
                meta.format_version
            )));
        }
        if let Some(kind) = expected_kind {
            if meta.kind != kind {
                return Err(err(format!(
                    "holds a `{}` model, expected `{kind}`",
                    meta.kind
                )));
            }
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            meta,
        })
    }

    /// The raw bytes of one part, checked against the checksum its metadata records.
    pub fn part(&self, name: &str) -> Result<Vec<u8>> {
        let file = self.dir.join(format!("{name}.bpk"));
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        if self.meta.checksums.is_empty() {
            return Ok(bytes); // written before checksums
        }
        let bad = |message: String| Error::Checkpoint {
            path: file.clone(),
            message,
        };
        let recorded = self.meta.checksums.get(name).ok_or_else(|| {
            bad("meta.json records no checksum for this part: the checkpoint was altered".into())
        })?;
        let content = crate::checksum::of(&bytes);
        if &content != recorded {
            return Err(bad(format!(
                "the parameters do not match the checksum in meta.json (recorded {recorded}, \
                 content {content}): the file is corrupted or was altered; restore it, or delete \
                 this checkpoint folder to resume from the one before"
            )));
        }
        Ok(bytes)
    }

    /// Load one part's parameters into `module` (built from the checkpoint's config).
    pub fn load_module<M: Module>(&self, name: &str, module: M) -> Result<M> {
        let bytes = self.part(name)?;
        let record =
            ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| {
                Error::Checkpoint {
                    path: self.dir.join(format!("{name}.bpk")),
                    message: format!("unreadable parameters: {e}"),
                }
            })?;
        module
            .try_load_record(record)
            .map_err(|e| Error::Checkpoint {
                path: self.dir.join(format!("{name}.bpk")),
                message: format!("parameters do not fit the model: {e}"),
            })
    }

    /// The newest complete checkpoint below `checkpoints` (folders named `step-NNNNNNNN`).
    pub fn latest(checkpoints: &Path) -> Result<Option<PathBuf>> {
        Ok(step_dirs(checkpoints)?
            .into_iter()
            .filter(|(_, path)| path.join("meta.json").is_file())
            .max_by_key(|(step, _)| *step)
            .map(|(_, path)| path))
    }

    /// Delete all but the `keep` newest checkpoints below `checkpoints` (`keep == 0` keeps all).
    pub fn prune(checkpoints: &Path, keep: usize) -> Result<()> {
        if keep == 0 {
            return Ok(());
        }
        let mut steps = step_dirs(checkpoints)?;
        steps.sort();
        let old = steps.len().saturating_sub(keep);
        for (_, path) in &steps[..old] {
            std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    /// A checkpoint folder given either itself or a run directory (then its newest checkpoint).
    pub fn resolve(path: &Path) -> Result<PathBuf> {
        if path.join("meta.json").is_file() {
            return Ok(path.to_path_buf());
        }
        Checkpoint::latest(&path.join("checkpoints"))?.ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            message: "neither a checkpoint folder (meta.json) nor a run directory with checkpoints"
                .into(),
        })
    }

    /// The folder name used for the checkpoint at `step`.
    pub fn dir_for_step(checkpoints: &Path, step: usize) -> PathBuf {
        checkpoints.join(format!("step-{step:08}"))
    }
}

/// `(step, folder)` of every `step-NNNNNNNN` folder below `checkpoints` (none if it is absent).
fn step_dirs(checkpoints: &Path) -> Result<Vec<(usize, PathBuf)>> {
    if !checkpoints.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(checkpoints).map_err(|e| Error::io(checkpoints, e))? {
        let path = entry.map_err(|e| Error::io(checkpoints, e))?.path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(step) = step {
            found.push((step, path));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::MlpConfig;
    use burn::tensor::{Device, Tensor, TensorData};

    #[test]
    fn module_round_trip_is_exact() {
        let device = Device::flex();
        crate::backend::seed(&device, 7);
        let cfg = MlpConfig::new(4, 2).with_width(8);
        let mlp = cfg.init(&device);
        let dir = tempfile::tempdir().unwrap();
        let meta = CheckpointMeta {
            format_version: CHECKPOINT_VERSION,
            kind: "test".into(),
            step: 5,
            config: serde_json::json!({"width": 8}),
            extra: serde_json::Value::Null,
            checksums: BTreeMap::new(),
        };
        let ck_dir = Checkpoint::dir_for_step(dir.path(), 5);
        Checkpoint::save(&ck_dir, &meta, &[("mlp", module_bytes(&mlp).unwrap())]).unwrap();
        assert_eq!(
            Checkpoint::latest(dir.path()).unwrap(),
            Some(ck_dir.clone())
        );

        let ck = Checkpoint::open(&ck_dir, Some("test")).unwrap();
        assert_eq!(ck.meta.config, meta.config);
        assert_eq!(ck.meta.checksums.len(), 1);
        // A freshly initialised model differs; loading must make it identical.
        let fresh = cfg.init(&device);
        let loaded = ck.load_module("mlp", fresh).unwrap();
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![0.3f32, -1.0, 2.0, 0.5], [1, 4]),
            &device,
        );
        let a = crate::nn::to_vec(mlp.forward(x.clone()));
        let b = crate::nn::to_vec(loaded.forward(x));
        assert_eq!(a, b);

        assert!(Checkpoint::open(&ck_dir, Some("iql")).is_err());

        // A checkpoint of a renamed kind opens under its new name.
        let old_dir = dir.path().join("old");
        let old = CheckpointMeta {
            kind: "prior".into(),
            ..meta.clone()
        };
        Checkpoint::save(&old_dir, &old, &[("mlp", module_bytes(&mlp).unwrap())]).unwrap();
        let ck = Checkpoint::open(&old_dir, Some("diffusion-bc")).unwrap();
        assert_eq!(ck.meta.kind, "diffusion-bc");

        // Altered weights (same size, one byte changed) are refused, naming the part.
        let file = ck_dir.join("mlp.bpk");
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&file, &bytes).unwrap();
        let err = Checkpoint::open(&ck_dir, None)
            .unwrap()
            .load_module("mlp", cfg.init(&device))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mlp.bpk") && err.contains("checksum"), "{err}");
        bytes[last] ^= 0x40;
        std::fs::write(&file, &bytes).unwrap();

        // Pruning keeps the newest.
        let later = Checkpoint::dir_for_step(dir.path(), 12);
        Checkpoint::save(&later, &meta, &[]).unwrap();
        Checkpoint::prune(dir.path(), 1).unwrap();
        assert!(!ck_dir.exists() && later.exists());
        assert_eq!(Checkpoint::latest(dir.path()).unwrap(), Some(later));
        // A run directory resolves to its newest checkpoint, a checkpoint folder to itself.
        let run = dir.path().parent().unwrap().join(format!(
            "{}-run",
            dir.path().file_name().unwrap().to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(&run);
        let older = Checkpoint::dir_for_step(&run.join("checkpoints"), 2);
        let newer = Checkpoint::dir_for_step(&run.join("checkpoints"), 10);
        Checkpoint::save(&older, &meta, &[]).unwrap();
        Checkpoint::save(&newer, &meta, &[]).unwrap();
        assert_eq!(Checkpoint::resolve(&run).unwrap(), newer);
        assert_eq!(Checkpoint::resolve(&older).unwrap(), older);
        assert!(Checkpoint::resolve(dir.path()).is_err());
        std::fs::remove_dir_all(&run).unwrap();
    }
}
