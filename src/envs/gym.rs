//! gymnasium environments through pyo3 (feature `python`): any registered id, MuJoCo v5 included.
//!
//! Speed: one Python call per `step`. The action crosses as raw float32 bytes
//! (`np.frombuffer`), the observation comes back as `obs.astype(np.float32).tobytes()`, so there
//! is no per-element conversion; a small helper module compiled once does the glue in Python.
//!
//! Errors: a missing gymnasium or MuJoCo says how to install it, an unknown id says so (with
//! gymnasium's "did you mean"), a wrong action shape is caught before Python sees it, and any
//! exception raised inside the environment comes back as [`Error::Env`] with its Python type,
//! message and traceback. Nothing here panics on a Python error.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyModule};

use super::{BoxSpace, Env, Step};
use crate::error::{Error, Result};
use crate::python;

const INSTALL_HINT: &str = ".venv/bin/pip install -r envs/python/requirements.txt";

/// The Python side of the bridge.
const HELPER: &std::ffi::CStr = cr#"
import numpy as np
import gymnasium as gym

def make(env_id):
    try:
        env = gym.make(env_id)
    except gym.error.DependencyNotInstalled as e:
        return ("missing", str(e))
    except (gym.error.UnregisteredEnv, gym.error.DeprecatedEnv) as e:
        return ("unknown", str(e))
    except ImportError as e:
        return ("missing", f"{type(e).__name__}: {e}")
    for name, space in (("observation", env.observation_space), ("action", env.action_space)):
        if not isinstance(space, gym.spaces.Box):
            env.close()
            return ("unsupported", f"{name} space is {space}; only Box spaces are supported")
    spec = env.spec
    return ("ok", (
        env,
        np.asarray(env.observation_space.low, np.float32).ravel().tolist(),
        np.asarray(env.observation_space.high, np.float32).ravel().tolist(),
        np.asarray(env.action_space.low, np.float32).ravel().tolist(),
        np.asarray(env.action_space.high, np.float32).ravel().tolist(),
        tuple(env.action_space.shape),
        None if spec is None else spec.max_episode_steps,
    ))

def bind(env, act_shape):
    step, reset = env.step, env.reset
    frombuffer, f32 = np.frombuffer, np.float32
    def do_step(action):
        obs, reward, terminated, truncated, _ = step(frombuffer(action, f32).reshape(act_shape))
        return np.asarray(obs).astype(f32).tobytes(), float(reward), bool(terminated), bool(truncated)
    def do_reset(seed):
        obs, _ = reset(seed=seed)
        return np.asarray(obs).astype(f32).tobytes()
    return do_step, do_reset

def versions():
    out = {"gymnasium": gym.__version__, "numpy": np.__version__}
    try:
        import mujoco
        out["mujoco"] = mujoco.__version__
    except ImportError:
        out["mujoco"] = None
    return out
"#;

/// The helper module, compiled once per process (after the venv is on `sys.path`).
fn helper(py: Python<'_>) -> Result<Bound<'_, PyModule>> {
    static MODULE: std::sync::OnceLock<Py<PyModule>> = std::sync::OnceLock::new();
    if let Some(m) = MODULE.get() {
        return Ok(m.bind(py).clone());
    }
    // Wait for the one-time interpreter set-up without holding the GIL: the thread running it
    // needs the GIL, so waiting with it held deadlocks when two threads start at once.
    py.detach(python::init)?;
    python::import(py, "gymnasium", INSTALL_HINT)?;
    python::import(py, "numpy", INSTALL_HINT)?;
    let m = PyModule::from_code(py, HELPER, c"offrl_gym_bridge.py", c"offrl_gym_bridge")
        .map_err(|e| Error::Python(python::describe(py, &e)))?;
    Ok(MODULE.get_or_init(|| m.unbind()).bind(py).clone())
}

/// Versions of gymnasium, MuJoCo (null when absent) and numpy, for dataset provenance.
pub fn versions() -> Result<serde_json::Value> {
    Python::attach(|py| {
        let v = helper(py)?
            .call_method0("versions")
            .map_err(|e| Error::Python(python::describe(py, &e)))?;
        let pairs: Vec<(String, Option<String>)> = v
            .call_method0("items")
            .and_then(|items| items.try_iter()?.map(|kv| kv?.extract()).collect())
            .map_err(|e| Error::Python(python::describe(py, &e)))?;
        Ok(serde_json::Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        v.map_or(serde_json::Value::Null, serde_json::Value::String),
                    )
                })
                .collect(),
        ))
    })
}

/// A gymnasium environment made with `gym.make(id)` (so with its TimeLimit wrapper).
pub struct GymEnv {
    id: String,
    obs_space: BoxSpace,
    act_space: BoxSpace,
    max_steps: Option<usize>,
    env: Py<PyAny>,
    do_step: Py<PyAny>,
    do_reset: Py<PyAny>,
    reset_done: bool,
}

fn f32s_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl GymEnv {
    pub fn new(id: &str) -> Result<Self> {
        Python::attach(|py| {
            let py_err = |e: PyErr| Error::env(id, python::describe(py, &e));
            let made = helper(py)?.call_method1("make", (id,)).map_err(py_err)?;
            let (status, payload): (String, Bound<'_, PyAny>) = made.extract().map_err(py_err)?;
            match status.as_str() {
                "ok" => {}
                "missing" => {
                    return Err(Error::env(
                        id,
                        format!(
                            "a dependency is not installed ({}); install the Python side with \
                             `bash scripts/setup.sh` or `{INSTALL_HINT}`",
                            payload.extract::<String>().unwrap_or_default()
                        ),
                    ))
                }
                "unknown" => {
                    return Err(Error::env(
                        id,
                        format!(
                        "no such environment, neither native ({}) nor registered in gymnasium: {}",
                        super::NATIVE_IDS.join(", "),
                        payload.extract::<String>().unwrap_or_default()
                    ),
                    ))
                }
                _ => {
                    return Err(Error::env(
                        id,
                        payload.extract::<String>().unwrap_or_default(),
                    ))
                }
            }
            #[allow(clippy::type_complexity)]
            let (env, obs_low, obs_high, act_low, act_high, act_shape, max_steps): (
                Bound<'_, PyAny>,
                Vec<f32>,
                Vec<f32>,
                Vec<f32>,
                Vec<f32>,
                Bound<'_, PyAny>,
                Option<usize>,
            ) = payload.extract().map_err(py_err)?;
            let (do_step, do_reset): (Py<PyAny>, Py<PyAny>) = helper(py)?
                .call_method1("bind", (&env, act_shape))
                .and_then(|b| b.extract())
                .map_err(py_err)?;
            Ok(Self {
                id: id.to_string(),
                obs_space: BoxSpace::new(obs_low, obs_high),
                act_space: BoxSpace::new(act_low, act_high),
                max_steps,
                env: env.unbind(),
                do_step,
                do_reset,
                reset_done: false,
            })
        })
    }

    fn decode_obs(&self, bytes: &[u8]) -> Result<Vec<f32>> {
        let obs = f32s_from_bytes(bytes);
        if obs.len() != self.obs_space.dim() {
            return Err(Error::env(
                &self.id,
                format!(
                    "observation has {} elements, observation space has {}",
                    obs.len(),
                    self.obs_space.dim()
                ),
            ));
        }
        Ok(obs)
    }
}

impl Env for GymEnv {
    fn id(&self) -> &str {
        &self.id
    }
    fn observation_space(&self) -> &BoxSpace {
        &self.obs_space
    }
    fn action_space(&self) -> &BoxSpace {
        &self.act_space
    }
    fn max_episode_steps(&self) -> Option<usize> {
        self.max_steps
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<Vec<f32>> {
        let bytes = Python::attach(|py| -> Result<Vec<u8>> {
            let out = self.do_reset.bind(py).call1((seed,)).map_err(|e| {
                Error::env(
                    &self.id,
                    format!("reset raised {}", python::describe(py, &e)),
                )
            })?;
            Ok(out
                .cast::<PyBytes>()
                .map_err(|e| Error::env(&self.id, e.to_string()))?
                .as_bytes()
                .to_vec())
        })?;
        self.reset_done = true;
        self.decode_obs(&bytes)
    }

    fn step(&mut self, action: &[f32]) -> Result<Step> {
        if action.len() != self.act_space.dim() {
            return Err(Error::env(
                &self.id,
                format!(
                    "action has {} elements, the action space has {}",
                    action.len(),
                    self.act_space.dim()
                ),
            ));
        }
        if !self.reset_done {
            return Err(Error::env(&self.id, "step called before reset"));
        }
        let bytes: Vec<u8> = action.iter().flat_map(|a| a.to_le_bytes()).collect();
        let (obs, reward, terminated, truncated) = Python::attach(|py| -> Result<_> {
            let out = self
                .do_step
                .bind(py)
                .call1((PyBytes::new(py, &bytes),))
                .map_err(|e| {
                    Error::env(
                        &self.id,
                        format!("step raised {}", python::describe(py, &e)),
                    )
                })?;
            let (obs, reward, terminated, truncated): (Bound<'_, PyBytes>, f64, bool, bool) = out
                .extract()
                .map_err(|e: PyErr| Error::env(&self.id, e.to_string()))?;
            Ok((obs.as_bytes().to_vec(), reward, terminated, truncated))
        })?;
        let obs = self.decode_obs(&obs)?;
        Ok(Step {
            obs,
            reward,
            terminated,
            truncated,
        })
    }
}

impl Drop for GymEnv {
    fn drop(&mut self) {
        Python::attach(|py| {
            let _ = self.env.bind(py).call_method0("close");
        });
    }
}
