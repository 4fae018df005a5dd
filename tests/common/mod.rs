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
    let rewards: Vec<f32> = (0..n)
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

/// Train `kind` (its defaults patched by `sets`) on `data` into the run directory `out`, seed 3.
pub fn train(
    kind: offrl::algos::AlgoKind,
    sets: &[&str],
    data: &offrl::dataset::Dataset,
    out: &Path,
) -> Box<dyn offrl::train::OfflineAlgorithm> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let config = offrl::config::resolve(&kind.default_config(), None, &sets).unwrap();
    let device = burn::tensor::Device::flex().autodiff();
    offrl::algos::train(kind, &config, data, Some(out), 3, &device, None)
        .unwrap()
        .algo
}

/// Trained for 6 steps in one go, and killed after the step-3 checkpoint and trained again: the
/// same actions (at the data's first two states) and the same `loss` series; reloaded from disk:
/// the same actions. Returns the uninterrupted run's directory.
pub fn assert_resumes_exactly(
    kind: offrl::algos::AlgoKind,
    sets: &[&str],
    data: &offrl::dataset::Dataset,
    root: &Path,
    loss: &str,
) -> PathBuf {
    use offrl::train::checkpoint::Checkpoint;
    let probe = |algo: &dyn offrl::train::OfflineAlgorithm| {
        let obs = &data.observations[..2 * data.obs_dim()];
        algo.policy().unwrap().act(obs, 2).unwrap()
    };
    let mut sets = sets.to_vec();
    sets.extend([
        "train.steps=6",
        "train.batch_size=8",
        "train.log_every=1",
        "train.checkpoint_every=3",
    ]);
    let full_dir = root.join(format!("{}-full", kind.name()));
    let full = train(kind, &sets, data, &full_dir);
    let part_dir = root.join(format!("{}-part", kind.name()));
    train(kind, &sets, data, &part_dir);
    std::fs::remove_dir_all(Checkpoint::dir_for_step(&part_dir.join("checkpoints"), 6)).unwrap();
    let resumed = train(kind, &sets, data, &part_dir);
    let actions = probe(full.as_ref());
    assert_eq!(actions, probe(resumed.as_ref()), "{}", kind.name());
    assert!(actions.iter().all(|a| a.abs() <= 1.0), "{actions:?}");
    let series = |dir: &Path| {
        let m = offrl::train::read_metrics(&dir.join("metrics.jsonl")).unwrap();
        m.iter().find(|(n, _)| n == loss).unwrap().1.clone()
    };
    let whole = series(&full_dir);
    assert_eq!(whole.len(), 6);
    assert!(whole.iter().all(|(_, v)| v.is_finite()));
    assert_eq!(whole, series(&part_dir));
    let reloaded = offrl::algos::load(
        &Checkpoint::resolve(&full_dir).unwrap(),
        &burn::tensor::Device::flex().autodiff(),
    )
    .unwrap();
    assert_eq!(reloaded.name(), kind.name());
    assert_eq!(actions, probe(reloaded.as_ref()));
    full_dir
}

/// The small RTB of the posterior known-answer tests (`rtb_posteriors`, `outsourced_posteriors`):
/// 256 trajectories per state, a 2 × 32 correction with 4 time harmonics, one on-policy update
/// and `off_policy` off-policy ones per step.
pub fn small_rtb_config(lr: f64, off_policy: usize) -> offrl::algos::rtb::RtbConfig {
    use offrl::algos::rtb::{CorrectionConfig, LogZConfig, RtbConfig};
    RtbConfig {
        alpha: 1.0,
        trajectories: 256,
        chunk: 0,
        lr,
        on_policy: 1,
        off_policy,
        log_z: LogZConfig::default(),
        correction: CorrectionConfig {
            net: offrl::diffusion::EpsNetConfig {
                width: 32,
                hidden: 2,
                time_harmonics: 4,
                activation: offrl::nn::Activation::Gelu,
                layer_norm: true,
            },
            langevin_width: 16,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Sample mean and (unbiased) variance.
pub fn mean_var(x: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let v = x.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, v)
}
