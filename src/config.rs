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

/// `path` made absolute, as a config value (so that a resumed run compares equal from any
/// folder). Config values are text: a path that is not UTF-8 is refused by name rather than
/// mangled into one that does not exist.
pub fn path_value(path: &Path) -> Result<String> {
    let abs = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    abs.to_str().map(str::to_string).ok_or_else(|| {
        Error::Config(format!(
            "{}: the path is not valid UTF-8, and the run's config records it as text; rename \
             it, or pass a symlink with a UTF-8 name",
            path.display()
        ))
    })
}

/// Resolve a config: `defaults` ← `file` ← `overrides`. `file` is a TOML file, or the name of a
/// built-in one (`configs/NAME.toml`, compiled in: `rtb-cpu`) when no such file exists.
pub fn resolve<T: Serialize + DeserializeOwned>(
    defaults: &T,
    file: Option<&Path>,
    overrides: &[String],
) -> Result<T> {
    let mut value = serde_json::to_value(defaults).map_err(|e| Error::Config(e.to_string()))?;
    if let Some(path) = file {
        let built_in = path
            .to_str()
            .filter(|_| !path.exists())
            .and_then(crate::embedded::config);
        let text = match built_in {
            Some(text) => text.to_string(),
            None => std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?,
        };
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        let origin = path.display().to_string();
        for (k, v) in &table {
            ensure_finite(v, k, &origin)?;
        }
        let patch = serde_json::to_value(table).map_err(|e| Error::format(path, e.to_string()))?;
        merge(&mut value, patch, "", &path.display().to_string())?;
    }
    for item in overrides {
        let (key, raw) = item.split_once('=').ok_or_else(|| {
            Error::Config(format!("override `{item}` is not of the form key=value"))
        })?;
        let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|t| t.get("v").cloned());
        if let Some(v) = &parsed {
            ensure_finite(v, key.trim(), "--set")?;
        }
        let parsed: Value = parsed
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

/// Dotted keys whose values differ between two JSON objects.
pub fn diff(a: &Value, b: &Value) -> Vec<String> {
    fn walk(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            // 1 and 1.0 are the same setting.
            (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
            _ if a == b => {}
            _ => out.push(format!("{prefix}: {a} → {b}")),
        }
    }
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    out
}

/// JSON has no NaN or infinity: name the key rather than let it turn into `null`.
fn ensure_finite(v: &toml::Value, key: &str, origin: &str) -> Result<()> {
    match v {
        toml::Value::Float(f) if !f.is_finite() => Err(Error::Config(format!(
            "{origin}: `{key}` = {f} is not a finite number"
        ))),
        toml::Value::Table(t) => t
            .iter()
            .try_for_each(|(k, v)| ensure_finite(v, &format!("{key}.{k}"), origin)),
        toml::Value::Array(a) => a.iter().try_for_each(|v| ensure_finite(v, key, origin)),
        _ => Ok(()),
    }
}

/// Checks of hyperparameters before any work: each names the key, the value and what is
/// allowed.
pub mod check {
    use crate::error::{Error, Result};

    fn fail(key: &str, v: impl std::fmt::Display, want: &str) -> Result<()> {
        Err(Error::Config(format!("`{key}` = {v}: must be {want}")))
    }

    /// A finite number above 0 (learning rates, temperatures, ε).
    pub fn positive(key: &str, v: f64) -> Result<()> {
        if v > 0.0 && v.is_finite() {
            return Ok(());
        }
        fail(key, v, "a finite number above 0")
    }

    /// A finite number ≥ 0 (weights of loss terms, noise scales).
    pub fn non_negative(key: &str, v: f64) -> Result<()> {
        if v >= 0.0 && v.is_finite() {
            return Ok(());
        }
        fail(key, v, "a finite number ≥ 0")
    }

    /// A discount factor, in [0, 1).
    pub fn discount(key: &str, v: f64) -> Result<()> {
        if (0.0..1.0).contains(&v) {
            return Ok(());
        }
        fail(key, v, "in [0, 1)")
    }

    /// A rate or fraction in (0, 1] (soft-update rates).
    pub fn rate(key: &str, v: f64) -> Result<()> {
        if v > 0.0 && v <= 1.0 {
            return Ok(());
        }
        fail(key, v, "in (0, 1]")
    }

    /// Strictly between 0 and 1 (expectiles, quantiles).
    pub fn open_unit(key: &str, v: f64) -> Result<()> {
        if v > 0.0 && v < 1.0 {
            return Ok(());
        }
        fail(key, v, "strictly between 0 and 1")
    }

    /// A count of at least 1.
    pub fn count(key: &str, n: usize) -> Result<()> {
        if n >= 1 {
            return Ok(());
        }
        fail(key, n, "at least 1")
    }

    /// `low < high`, both finite (e.g. log-std bounds).
    pub fn ordered(low_key: &str, low: f64, high_key: &str, high: f64) -> Result<()> {
        if low.is_finite() && high.is_finite() && low < high {
            return Ok(());
        }
        Err(Error::Config(format!(
            "`{low_key}` = {low} must be below `{high_key}` = {high} (both finite)"
        )))
    }
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

/// `serde(default)` of switches added after checkpoints were first written, on before them.
pub fn on() -> bool {
    true
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
