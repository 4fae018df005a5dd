//! Helpers shared by the integration tests: the binary, the venv's python, the shared fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `$OFFRL_SHARED` or `../shared`; `None` (and a printed reason) when absent.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("OFFRL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("..").join("shared"));
    if dir.join("fixtures").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: no shared fixtures at {}", dir.display());
        None
    }
}

/// The venv's python (`$OFFRL_VENV` or `.venv` next to Cargo.toml); `None` when absent.
pub fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("OFFRL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join(".venv"));
    let py = venv.join("bin").join("python");
    if py.exists() {
        Some(py)
    } else {
        eprintln!("skipping: no python venv at {}", venv.display());
        None
    }
}

/// Run a python script (source text) with arguments; panics with its stderr on failure.
pub fn run_python(py: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("start python");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Run the `offrl` binary.
pub fn offrl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_offrl"))
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .expect("start offrl")
}

/// Run `offrl args`, expect a clean failure (non-zero exit, no panic) whose stderr contains
/// every one of `needles`.
pub fn assert_fails(args: &[&str], needles: &[&str]) {
    let out = offrl(args);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "{args:?} succeeded:\n{}",
        stdout(&out)
    );
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    for needle in needles {
        assert!(err.contains(needle), "{args:?}: `{needle}` not in:\n{err}");
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Read a raw little-endian f32 file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Read a raw bool (one byte each) file.
pub fn read_bool(path: &Path) -> Vec<bool> {
    std::fs::read(path)
        .unwrap()
        .iter()
        .map(|&b| b != 0)
        .collect()
}

/// Bitwise equality of two f32 slices, naming the first differing index.
pub fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!("{what}[{i}]: got {} want {}", got[i], want[i]);
    }
}

/// 8 episodes of 10 steps, 3-dimensional observations and 2-dimensional actions in [−1, 1]; the
/// reward prefers actions near (0.3, −0.2). The toy data of the fine-tuning tests.
pub fn toy_dataset() -> offrl::dataset::Dataset {
    use rand::{Rng, SeedableRng};
    let (od, ad, n) = (3, 2, 80);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let obs: Vec<f32> = (0..n * od).map(|_| rng.random_range(-1.0..1.0)).collect();
    let act: Vec<f32> = (0..n * ad).map(|_| rng.random_range(-0.9..0.9)).collect();
    let rewards = (0..n)
        .map(|i| -((act[2 * i] - 0.3).powi(2) + (act[2 * i + 1] + 0.2).powi(2)))
        .collect();
    let next: Vec<f32> = (0..n * od).map(|_| rng.random_range(-1.0..1.0)).collect();
    let meta = offrl::dataset::Metadata::new(
        "Toy-v0",
        od,
        ad,
        vec![-1.0; ad],
        vec![1.0; ad],
        serde_json::Value::Null,
    );
    offrl::dataset::Dataset::new(
        meta,
        obs,
        act,
        rewards,
        next,
        vec![false; n],
        (0..n).map(|i| i % 10 == 9).collect(),
    )
    .unwrap()
}
