//! Behaviour-policy cards (`offline-rl-policy-card/1`, see `../shared/behavior-policies/README.md`):
//! a JSON card plus a safetensors file of float32 tensors for a small Gaussian MLP policy.
//! The networks are tiny (two hidden layers of 64–256), so the forward pass is plain f32 loops.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::SafeTensors;
use serde::Deserialize;

use super::Policy;
use crate::config::shared_dir;
use crate::error::{Error, Result};

pub const FORMAT: &str = "offline-rl-policy-card/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CardActivation {
    Relu,
    Tanh,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStdKind {
    Constant,
    Head,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Squash {
    Tanh,
    Clip,
}

/// The JSON card.
#[derive(Debug, Clone, Deserialize)]
pub struct CardSpec {
    pub format: String,
    pub env_family: String,
    pub obs_norm: bool,
    #[serde(default)]
    pub obs_clip: Option<f32>,
    pub n_hidden: usize,
    pub activation: CardActivation,
    pub log_std: LogStdKind,
    pub squash: Squash,
    /// Provenance of the weights (repository, commit, path, model hash).
    pub source: serde_json::Value,
    /// Returns measured by the card's author (`env_id`, deterministic/stochastic mean ± std).
    #[serde(default)]
    pub measured: Option<serde_json::Value>,
}

/// A dense layer, weights row-major `[out, in]` as in the card.
#[derive(Debug, Clone)]
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    d_in: usize,
    d_out: usize,
}

impl Dense {
    fn forward(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            self.w
                .chunks_exact(self.d_in)
                .zip(&self.b)
                .map(|(row, b)| b + offrl_kernels::lane_dot(row, x)),
        );
    }
}

/// A loaded card: a batched [`Policy`], deterministic (`squash(mean)`) unless made stochastic.
#[derive(Debug, Clone)]
pub struct PolicyCard {
    /// The card's name (file stem), e.g. `hopper-trpo`.
    pub name: String,
    pub path: PathBuf,
    pub spec: CardSpec,
    pub obs_dim: usize,
    pub act_dim: usize,
    obs_norm: Option<(Vec<f32>, Vec<f32>)>,
    hidden: Vec<Dense>,
    mean: Dense,
    log_std_const: Option<Vec<f32>>,
    log_std_head: Option<Dense>,
    /// `Some` when sampling from the Gaussian.
    rng: Option<ChaCha8Rng>,
}

/// Where a card name points: a path to a `.json` file as given, else
/// `<shared>/behavior-policies/<name>.json`.
pub fn card_path(name_or_path: &str) -> PathBuf {
    if name_or_path.ends_with(".json") {
        PathBuf::from(name_or_path)
    } else {
        shared_dir()
            .join("behavior-policies")
            .join(format!("{name_or_path}.json"))
    }
}

fn tensor(st: &SafeTensors, path: &Path, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let t = st
        .tensor(name)
        .map_err(|e| Error::format(path, format!("tensor `{name}`: {e}")))?;
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(Error::format(
            path,
            format!("tensor `{name}` is {:?}, expected F32", t.dtype()),
        ));
    }
    if t.shape() != shape {
        return Err(Error::format(
            path,
            format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                t.shape()
            ),
        ));
    }
    let values: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::format(
            path,
            format!("tensor `{name}` element {i} is {}", values[i]),
        ));
    }
    Ok(values)
}

fn shape_of(st: &SafeTensors, path: &Path, name: &str) -> Result<Vec<usize>> {
    Ok(st
        .tensor(name)
        .map_err(|e| Error::format(path, format!("tensor `{name}`: {e}")))?
        .shape()
        .to_vec())
}

fn dense(st: &SafeTensors, path: &Path, prefix: &str, d_in: usize) -> Result<Dense> {
    let shape = shape_of(st, path, &format!("{prefix}.weight"))?;
    if shape.len() != 2 || shape[1] != d_in {
        return Err(Error::format(
            path,
            format!("tensor `{prefix}.weight` has shape {shape:?}, expected [_, {d_in}]"),
        ));
    }
    let d_out = shape[0];
    Ok(Dense {
        w: tensor(st, path, &format!("{prefix}.weight"), &[d_out, d_in])?,
        b: tensor(st, path, &format!("{prefix}.bias"), &[d_out])?,
        d_in,
        d_out,
    })
}

impl PolicyCard {
    /// Load a card by name (`hopper-trpo`) or path (`some/dir/hopper-trpo.json`).
    pub fn load(name_or_path: &str) -> Result<Self> {
        let path = card_path(name_or_path);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Config(format!(
                    "no policy card `{name_or_path}` (looked for {}; cards live in \
                     <shared>/behavior-policies, set OFFRL_SHARED to move it)",
                    path.display()
                ))
            } else {
                Error::io(&path, e)
            }
        })?;
        let spec: CardSpec =
            serde_json::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))?;
        if spec.format != FORMAT {
            return Err(Error::format(
                &path,
                format!("format is `{}`, expected `{FORMAT}`", spec.format),
            ));
        }
        let weights_path = path.with_extension("safetensors");
        let bytes = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::format(&weights_path, e.to_string()))?;
        let wp = weights_path.as_path();

        let first = shape_of(&st, wp, "hidden.0.weight")?;
        let obs_dim = *first.get(1).ok_or_else(|| {
            Error::format(
                wp,
                format!("tensor `hidden.0.weight` has shape {first:?}, expected 2-D"),
            )
        })?;
        let mut hidden = Vec::with_capacity(spec.n_hidden);
        let mut d = obs_dim;
        for i in 0..spec.n_hidden {
            let layer = dense(&st, wp, &format!("hidden.{i}"), d)?;
            d = layer.d_out;
            hidden.push(layer);
        }
        let mean = dense(&st, wp, "mean", d)?;
        let act_dim = mean.d_out;
        let obs_norm = if spec.obs_norm {
            if spec.obs_clip.is_none() {
                return Err(Error::format(
                    &path,
                    "obs_norm is true but obs_clip is missing",
                ));
            }
            Some((
                tensor(&st, wp, "obs_mean", &[obs_dim])?,
                tensor(&st, wp, "obs_std", &[obs_dim])?,
            ))
        } else {
            None
        };
        let (log_std_const, log_std_head) = match spec.log_std {
            LogStdKind::Constant => (Some(tensor(&st, wp, "log_std", &[act_dim])?), None),
            LogStdKind::Head => {
                let head = dense(&st, wp, "log_std_head", d)?;
                if head.d_out != act_dim {
                    return Err(Error::format(
                        wp,
                        format!(
                            "log_std_head has {} outputs, mean has {act_dim}",
                            head.d_out
                        ),
                    ));
                }
                (None, Some(head))
            }
            LogStdKind::None => (None, None),
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            name,
            path,
            spec,
            obs_dim,
            act_dim,
            obs_norm,
            hidden,
            mean,
            log_std_const,
            log_std_head,
            rng: None,
        })
    }

    /// Sample from the policy's Gaussian with this seed instead of acting with its mean.
    pub fn stochastic(mut self, seed: u64) -> Result<Self> {
        if self.spec.log_std == LogStdKind::None {
            return Err(Error::Config(format!(
                "policy card {} has no log-std (log_std = \"none\"): it can only act deterministically",
                self.name
            )));
        }
        self.rng = Some(ChaCha8Rng::seed_from_u64(seed));
        Ok(self)
    }

    /// The environment the card's returns were measured in (e.g. `Hopper-v5`).
    pub fn env_id(&self) -> String {
        self.spec
            .measured
            .as_ref()
            .and_then(|m| m.get("env_id"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}-v5", self.spec.env_family))
    }

    /// Provenance for dataset metadata: name, card format, weights source (with its hash).
    pub fn provenance(&self) -> serde_json::Value {
        serde_json::json!({
            "card": self.name,
            "format": self.spec.format,
            "source": self.spec.source,
            "stochastic": self.rng.is_some(),
        })
    }

    fn act_one(&mut self, o: &[f32], out: &mut Vec<f32>, x: &mut Vec<f32>, y: &mut Vec<f32>) {
        x.clear();
        match &self.obs_norm {
            Some((m, s)) => {
                let clip = self.spec.obs_clip.unwrap_or(f32::INFINITY);
                x.extend(
                    o.iter()
                        .zip(m)
                        .zip(s)
                        .map(|((o, m), s)| ((o - m) / s).clamp(-clip, clip)),
                )
            }
            None => x.extend_from_slice(o),
        }
        for layer in &self.hidden {
            layer.forward(x, y);
            match self.spec.activation {
                CardActivation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
                CardActivation::Tanh => y.iter_mut().for_each(|v| *v = v.tanh()),
                CardActivation::None => {}
            }
            std::mem::swap(x, y);
        }
        self.mean.forward(x, y);
        if let Some(rng) = &mut self.rng {
            let log_std: Vec<f32> = match (&self.log_std_const, &self.log_std_head) {
                (Some(c), _) => c.clone(),
                (None, Some(head)) => {
                    let mut s = Vec::new();
                    head.forward(x, &mut s);
                    s.iter().map(|v| v.clamp(-20.0, 2.0)).collect()
                }
                (None, None) => unreachable!("stochastic() refuses cards without log-std"),
            };
            for (m, ls) in y.iter_mut().zip(log_std) {
                let eps: f32 = rng.sample(rand_distr::StandardNormal);
                *m += ls.exp() * eps;
            }
        }
        out.extend(y.iter().map(|&m| match self.spec.squash {
            Squash::Tanh => m.tanh(),
            Squash::Clip => m.clamp(-1.0, 1.0),
        }));
    }
}

impl Policy for PolicyCard {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        super::check_obs(&format!("policy card {}", self.name), obs, n, self.obs_dim)?;
        let mut out = Vec::with_capacity(n * self.act_dim);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for o in obs.chunks_exact(self.obs_dim) {
            self.act_one(o, &mut out, &mut x, &mut y);
        }
        Ok(out)
    }
}
