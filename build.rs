//! Records the source revision in the binary (`OFFRL_COMMIT`, e.g. `6f9927c` or `6f9927c-dirty`),
//! so that every benchmark result names the code that produced it. `unknown` outside a git
//! checkout (a crates.io build, say).
//!
//! Also embeds the built-in text assets (`configs/**.toml`, the dataset registry's cards
//! `datasets/**.toml`) as `$OUT_DIR/embedded.rs`, so a binary or library moved away from the
//! source tree (an installed binary, a Python wheel) still knows its profiles and datasets.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    for path in [
        "src",
        "configs",
        "datasets",
        "build.rs",
        ".git/HEAD",
        ".git/index",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    embed_assets();
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=OFFRL_COMMIT={commit}");
}

/// `(name, absolute path)` of every `.toml` below `dir`, the name relative to `dir` without the
/// extension (`locomotion-v5/hopper-medium`), sorted.
fn tomls(dir: &Path) -> Vec<(String, PathBuf)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "toml") {
                let rel = path
                    .strip_prefix(root)
                    .expect("below root")
                    .with_extension("");
                let name = rel.to_string_lossy().replace('\\', "/");
                out.push((name, path.canonicalize().expect("an existing file")));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn embed_assets() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let table = |name: &str, files: &[(String, PathBuf)]| {
        let rows: String = files
            .iter()
            .map(|(n, p)| {
                format!(
                    "    ({n:?}, include_str!({:?})),\n",
                    p.display().to_string()
                )
            })
            .collect();
        format!("pub const {name}: &[(&str, &str)] = &[\n{rows}];\n")
    };
    let configs = tomls(&root.join("configs"));
    let text = format!(
        "{}{}",
        table("CONFIGS", &configs),
        table("CARDS", &tomls(&root.join("datasets")))
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("embedded.rs");
    std::fs::write(&out, text).expect("write embedded.rs");
}
