//! The embedded Python interpreter (feature `python`): finds the project's virtual environment
//! so that gymnasium, MuJoCo and h5py installed by the README's set-up are importable without
//! the user setting variables by hand.
//!
//! Lookup order for the venv: `$OFFRL_VENV`, then `.venv` in the current directory, then
//! `.venv` in the source checkout the binary was built from.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pyo3::prelude::*;

use crate::error::{Error, Result};

/// Candidate virtual environments, in lookup order.
fn venv_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(v) = std::env::var_os("OFFRL_VENV") {
        out.push(PathBuf::from(v));
    }
    out.push(PathBuf::from(".venv"));
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    out
}

static INIT: OnceLock<std::result::Result<Option<PathBuf>, String>> = OnceLock::new();

/// Start the interpreter (once) and add the first venv found to `sys.path`.
/// Returns the venv used, if any.
pub fn init() -> Result<Option<PathBuf>> {
    INIT.get_or_init(|| {
        Python::attach(|py| -> std::result::Result<Option<PathBuf>, String> {
            let sys = py.import("sys").map_err(|e| e.to_string())?;
            let version: (u32, u32) = sys
                .getattr("version_info")
                .and_then(|v| Ok((v.get_item(0)?.extract()?, v.get_item(1)?.extract()?)))
                .map_err(|e| e.to_string())?;
            let site_of = |venv: &Path| {
                venv.join("lib")
                    .join(format!("python{}.{}", version.0, version.1))
                    .join("site-packages")
            };
            // A venv asked for by name must be one: falling back silently would run with other
            // package versions than the user chose.
            if let Some(asked) = std::env::var_os("OFFRL_VENV").map(PathBuf::from) {
                if !site_of(&asked).is_dir() {
                    return Err(format!(
                        "OFFRL_VENV={} is not a virtual environment of this Python {}.{} (no {}); \
                         unset it to use .venv, or point it at a venv made with python{}.{}",
                        asked.display(),
                        version.0,
                        version.1,
                        site_of(&asked).display(),
                        version.0,
                        version.1
                    ));
                }
            }
            for venv in venv_candidates() {
                let site = site_of(&venv);
                if site.is_dir() {
                    let site = site.canonicalize().unwrap_or(site);
                    py.import("site")
                        .and_then(|s| s.call_method1("addsitedir", (site.to_string_lossy(),)))
                        .map_err(|e| e.to_string())?;
                    return Ok(Some(venv));
                }
            }
            Ok(None)
        })
    })
    .clone()
    .map_err(Error::Python)
}

/// Import a Python module, with an error that says how to install it when it is missing.
pub fn import<'py>(
    py: Python<'py>,
    module: &str,
    install_hint: &str,
) -> Result<Bound<'py, PyModule>> {
    py.import(module).map_err(|e| {
        Error::Python(format!(
            "cannot import `{module}` ({}). Install it with the README's set-up \
             (`bash scripts/setup.sh`, which creates .venv) or `{install_hint}`; \
             set OFFRL_VENV to use another virtual environment",
            e.value(py)
        ))
    })
}

/// Format a Python exception with its type and message (and traceback when available).
pub fn describe(py: Python<'_>, err: &PyErr) -> String {
    let mut msg = format!("{}", err.value(py));
    if let Ok(name) = err.get_type(py).name() {
        msg = format!("{name}: {msg}");
    }
    if let Some(tb) = err.traceback(py) {
        if let Ok(tb) = tb.format() {
            msg.push('\n');
            msg.push_str(&tb);
        }
    }
    msg
}
