//! Run configs: a config struct's defaults, patched by an optional TOML file, patched by
//! `--set key=value` overrides from the command line (dotted keys reach nested tables; values
//! are parsed as TOML, so `--set lr=3e-4`, `--set schedule="cosine"` and `--set hidden=[256,256]`
//! all work, and a bare word is taken as a string). Unknown keys are errors, not silently ignored.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

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

/// Resolve a config: `defaults` ← `file` ← `overrides`.
pub fn resolve<T: Serialize + DeserializeOwned>(
    defaults: &T,
    file: Option<&Path>,
    overrides: &[String],
) -> Result<T> {
    let mut value = serde_json::to_value(defaults).map_err(|e| Error::Config(e.to_string()))?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        let patch = serde_json::to_value(table).map_err(|e| Error::format(path, e.to_string()))?;
        merge(&mut value, patch, "", &path.display().to_string())?;
    }
    for item in overrides {
        let (key, raw) = item.split_once('=').ok_or_else(|| {
            Error::Config(format!("override `{item}` is not of the form key=value"))
        })?;
        let parsed: Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|t| t.get("v").cloned())
            .map(|v| serde_json::to_value(v).expect("toml value converts to json"))
            .unwrap_or_else(|| Value::String(raw.to_string()));
        let mut patch = parsed;
        for part in key.trim().rsplit('.') {
            let mut obj = serde_json::Map::new();
            obj.insert(part.to_string(), patch);
            patch = Value::Object(obj);
        }
        merge(&mut value, patch, "", "--set")?;
    }
    serde_json::from_value(value).map_err(|e| Error::Config(format!("{e}")))
}

/// `patch` (e.g. a config recorded by an older version, which lacks newer keys) over `base`
/// (e.g. today's defaults); every key of the patch must exist in the base.
pub fn overlay(base: &Value, patch: Value, origin: &str) -> Result<Value> {
    let mut value = base.clone();
    merge(&mut value, patch, "", origin)?;
    Ok(value)
}

/// `serde(default)` of settings added after checkpoints were first written, whose default is 1.
pub fn one() -> f64 {
    1.0
}

/// Merge `patch` into `base`; every key of the patch must exist in the base (typo protection).
fn merge(base: &mut Value, patch: Value, prefix: &str, origin: &str) -> Result<()> {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (k, v) in patch {
                let full = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match base.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => {
                        merge(slot, v, &full, origin)?
                    }
                    Some(slot) => {
                        // Integers given where floats are expected (lr = 1) are fine either way in JSON.
                        *slot = v;
                    }
                    None => {
                        let known: Vec<&String> = base.keys().collect();
                        return Err(Error::Config(format!(
                            "{origin}: unknown config key `{full}` (known: {known:?})"
                        )));
                    }
                }
            }
            Ok(())
        }
        (slot, v) => {
            *slot = v;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Inner {
        gamma: f64,
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Cfg {
        lr: f64,
        steps: usize,
        name: String,
        hidden: Vec<usize>,
        inner: Inner,
    }

    fn defaults() -> Cfg {
        Cfg {
            lr: 1e-3,
            steps: 10,
            name: "a".into(),
            hidden: vec![8],
            inner: Inner { gamma: 5.0 },
        }
    }

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "steps = 20\n[inner]\ngamma = 2.0\n").unwrap();
        let cfg = resolve(
            &defaults(),
            Some(&file),
            &[
                "lr=3e-4".into(),
                "name=cosine".into(),
                "hidden=[4, 4]".into(),
                "inner.gamma=1.5".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            cfg,
            Cfg {
                lr: 3e-4,
                steps: 20,
                name: "cosine".into(),
                hidden: vec![4, 4],
                inner: Inner { gamma: 1.5 }
            }
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let e = resolve(&defaults(), None, &["lrr=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown config key `lrr`"), "{e}");
        let e = resolve(&defaults(), None, &["steps=many".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid"), "{e}");
        assert!(resolve(&defaults(), None, &["steps".into()]).is_err());
    }
}
