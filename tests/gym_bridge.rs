//! The gymnasium bridge's errors: every failure is an `Err` with a message that says what went
//! wrong and what to do; a Python exception never takes the process down.
#![cfg(feature = "python")]

use std::path::Path;
use std::process::Command;

use offrl::envs;
use pyo3::prelude::*;

fn err_of(id: &str) -> String {
    match envs::make(id) {
        Ok(_) => panic!("{id}: expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_ids_and_unsupported_spaces_are_named() {
    let e = err_of("Hoper-v5");
    assert!(
        e.contains("Hoper-v5") && e.contains("no such environment") && e.contains("Did you mean"),
        "{e}"
    );
    assert!(e.contains("Pendulum-v1"), "native ids listed: {e}");
    let e = err_of("Hopper-v99");
    assert!(e.contains("no such environment"), "{e}");
    let e = err_of("CartPole-v1");
    assert!(
        e.contains("action space is Discrete(2)") && e.contains("only Box"),
        "{e}"
    );
}

#[test]
fn mujoco_env_steps_and_wrong_action_shapes_are_refused() {
    let mut env = envs::make("Hopper-v5").unwrap();
    assert_eq!(env.id(), "Hopper-v5");
    assert_eq!(
        (env.observation_space().dim(), env.action_space().dim()),
        (11, 3)
    );
    assert_eq!(env.max_episode_steps(), Some(1000));
    assert_eq!(env.action_space().low, vec![-1.0; 3]);
    let e = env.step(&[0.0; 3]).unwrap_err().to_string();
    assert!(e.contains("before reset"), "{e}");
    let o1 = env.reset(Some(5)).unwrap();
    assert_eq!(o1.len(), 11);
    let e = env.step(&[0.0; 2]).unwrap_err().to_string();
    assert!(
        e.contains("Hopper-v5") && e.contains("action has 2 elements, the action space has 3"),
        "{e}"
    );
    let s = env.step(&[0.1, -0.2, 0.3]).unwrap();
    assert_eq!(s.obs.len(), 11);
    assert!(s.reward.is_finite() && !s.truncated);
    // Same seed, same start.
    assert_eq!(env.reset(Some(5)).unwrap(), o1);
    let versions = envs::gym::versions().unwrap();
    assert_eq!(versions["gymnasium"], "1.4.0");
    assert!(versions["mujoco"].is_string());
}

/// Registers two environments that raise: in `step` (on the 3rd call) and in the constructor.
fn register_raising_envs() {
    offrl::python::init().unwrap();
    Python::attach(|py| {
        py.run(
            cr#"
import gymnasium as gym, numpy as np
class Raising(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}
    def step(self, action):
        self.t += 1
        if self.t == 3:
            raise RuntimeError("boom at step 3")
        return np.zeros(2, np.float32), 0.0, False, False, {}
class BadInit(gym.Env):
    def __init__(self):
        raise ValueError("cannot build this one")
if "OffrlRaising-v0" not in gym.registry:
    gym.register(id="OffrlRaising-v0", entry_point=Raising, max_episode_steps=10)
    gym.register(id="OffrlBadInit-v0", entry_point=BadInit)
"#,
            None,
            None,
        )
        .unwrap();
    });
}

#[test]
fn exceptions_inside_the_env_become_errors() {
    register_raising_envs();
    let mut env = envs::make("OffrlRaising-v0").unwrap();
    env.reset(Some(0)).unwrap();
    env.step(&[0.0]).unwrap();
    env.step(&[0.0]).unwrap();
    let e = env.step(&[0.0]).unwrap_err().to_string();
    assert!(
        e.contains("OffrlRaising-v0") && e.contains("RuntimeError: boom at step 3"),
        "{e}"
    );
    // The process and the env survive: a reset starts over.
    env.reset(Some(1)).unwrap();
    env.step(&[0.0]).unwrap();
    let e = err_of("OffrlBadInit-v0");
    assert!(e.contains("ValueError: cannot build this one"), "{e}");
}

// --- missing Python packages, checked in child processes (the venv is chosen once per process) ---

const CHILD_VAR: &str = "OFFRL_BRIDGE_PROBE_ENV";

/// In a child process (with `OFFRL_BRIDGE_PROBE_ENV` set) make that env and print the outcome.
#[test]
fn child_probe() {
    if let Ok(id) = std::env::var(CHILD_VAR) {
        match envs::make(&id) {
            Ok(_) => println!("PROBE-OK"),
            Err(e) => println!("PROBE-ERR: {e}"),
        }
    }
}

fn probe(venv: &Path, id: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_probe",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_VAR, id)
        .env("OFFRL_VENV", venv)
        .current_dir(venv)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child crashed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.find("PROBE-").map(|i| l[i..].to_string()))
        .unwrap_or_else(|| panic!("no probe line in {stdout}"))
}

fn fake_venv(dir: &Path) -> std::path::PathBuf {
    let version = Python::attach(|py| {
        let v = py.version_info();
        format!("python{}.{}", v.major, v.minor)
    });
    let site = dir.join("lib").join(version).join("site-packages");
    std::fs::create_dir_all(&site).unwrap();
    site
}

#[test]
fn missing_gymnasium_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    fake_venv(dir.path());
    let line = probe(dir.path(), "Hopper-v5");
    if line == "PROBE-OK" {
        println!("skipped: gymnasium is importable outside any venv on this machine");
        return;
    }
    assert!(
        line.contains("cannot import `numpy`") || line.contains("cannot import `gymnasium`"),
        "{line}"
    );
    assert!(
        line.contains("scripts/setup.sh") && line.contains("requirements.txt"),
        "{line}"
    );
    // Native environments need no Python at all.
    assert_eq!(probe(dir.path(), "Pendulum-v1"), "PROBE-OK");
}

/// `OFFRL_VENV` naming something that is not a venv is an error, not a silent fallback to
/// `.venv` (which would run with packages the user did not choose).
#[test]
fn a_bad_offrl_venv_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let line = probe(dir.path(), "Hopper-v5");
    assert!(
        line.contains("is not a virtual environment") && line.contains("OFFRL_VENV="),
        "{line}"
    );
}

#[test]
fn missing_mujoco_says_how_to_install_it() {
    // A venv whose site-packages shadows `mujoco` with a module that fails to import, then
    // falls through (.pth) to the real site-packages for gymnasium and numpy.
    let real = offrl::python::init()
        .unwrap()
        .expect("project .venv (scripts/setup.sh)");
    let real_site = std::fs::read_dir(real.join("lib"))
        .unwrap()
        .map(|e| e.unwrap().path().join("site-packages"))
        .find(|p| p.is_dir())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let site = fake_venv(dir.path());
    std::fs::create_dir_all(site.join("mujoco")).unwrap();
    std::fs::write(
        site.join("mujoco/__init__.py"),
        "raise ImportError('No module named mujoco (simulated)')\n",
    )
    .unwrap();
    std::fs::write(
        site.join("real.pth"),
        format!("{}\n", real_site.canonicalize().unwrap().display()),
    )
    .unwrap();
    let line = probe(dir.path(), "Hopper-v5");
    assert!(
        line.contains("Hopper-v5") && line.contains("MuJoCo is not installed"),
        "{line}"
    );
    assert!(
        line.contains("scripts/setup.sh") && line.contains("requirements.txt"),
        "{line}"
    );
    // Classic-control environments still work without MuJoCo.
    assert_eq!(probe(dir.path(), "MountainCarContinuous-v0"), "PROBE-OK");
}
