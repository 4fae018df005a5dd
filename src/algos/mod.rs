//! Offline RL algorithms: the IQL critic (with its AWR actor) and the baselines BC, TD3+BC and
//! CQL. Each algorithm is one file that reads top to bottom, its config struct at the top; what
//! they share lives in [`common`] (data spec, networks, target updates, noise) and here (the
//! [`OfflineAlgorithm`] trait and the one training loop, [`fit`] / [`train`]).
//!
//! Training any algorithm by name (what `offrl train <algo>` and the benchmark runner do):
//! ```no_run
//! # fn main() -> offrl::Result<()> {
//! use offrl::algos::{self, AlgoKind};
//! # let data: offrl::dataset::Dataset = todo!();
//! let device = burn::tensor::Device::flex().autodiff();
//! let config = offrl::config::resolve(&AlgoKind::Iql.default_config(), None, &["train.steps=1000".into()])?;
//! // Into a run directory (metrics, plots, TensorBoard events, checkpoints):
//! let run = std::path::Path::new("runs/iql");
//! let trained = algos::train(AlgoKind::Iql, &config, &data, Some(run), 0, &device, None)?;
//! let mut policy = trained.algo.policy()?; // offrl::policy::Policy: batched act
//! // In memory: nothing written, the logged lines returned.
//! let trained = algos::train(AlgoKind::Iql, &config, &data, None, 0, &device, None)?;
//! for (step, metrics) in &trained.history {
//!     println!("{step}: {metrics:?}");
//! }
//! # Ok(()) }
//! ```
//! A run directory resumes from its newest checkpoint when trained again with the same config.

pub mod bc;
pub mod common;
pub mod cql;
pub mod diffusion_bc;
pub mod dxmi;
pub mod flow_bc;
pub mod fql;
pub mod idql;
pub mod iql;
pub mod outsourced;
pub mod rtb;
pub mod td3bc;

use std::path::Path;

use burn::tensor::Device;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::dataset::spec::{DataConfig, DataSpec};
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::train::checkpoint::Checkpoint;
use crate::train::{
    fit, DatasetInfo, EvalHook, History, LoopConfig, OfflineAlgorithm, RunDir, RunLock, RunRecord,
};

/// The algorithms, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum AlgoKind {
    Iql,
    Rtb,
    /// The diffusion behaviour prior μ(a|s) (`crate::diffusion`), whose policy is diffusion BC
    /// (`prior` before it had one name: still read from old configs and checkpoints).
    #[serde(rename = "diffusion-bc", alias = "prior")]
    #[cfg_attr(feature = "cli", value(name = "diffusion-bc", alias = "prior"))]
    DiffusionBc,
    Bc,
    Td3bc,
    Cql,
    /// Flow-matching behaviour cloning (`flow-bc`).
    #[serde(rename = "flow-bc")]
    #[cfg_attr(feature = "cli", value(name = "flow-bc"))]
    FlowBc,
    Fql,
    /// Noise-space (outsourced) posterior sampling on a flow-BC map.
    Outsourced,
    /// An energy and a few-step diffusion sampler from demonstrations (DxMI's DxDP).
    Dxmi,
    /// The same minimax with the sampler trained through its chain (GCD).
    Gcd,
}

/// A trained run an algorithm starts from: the config key that names it and the algorithm that
/// trains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    pub key: &'static str,
    pub from: &'static str,
    /// A required input is among the algorithm's `needs`; an optional one (DxMI's prior) only
    /// changes where it starts.
    pub required: bool,
    /// The config key whose value names the algorithm the input comes from, when it may come
    /// from another than `from` (the outsourced sampler's `behavior_kind`).
    pub kind_key: Option<&'static str>,
}

impl Input {
    const fn needed(key: &'static str, from: &'static str) -> Self {
        Self {
            key,
            from,
            required: true,
            kind_key: None,
        }
    }

    const fn optional(key: &'static str, from: &'static str) -> Self {
        Self {
            key,
            from,
            required: false,
            kind_key: None,
        }
    }

    /// An input from `from` by default, from the algorithm the config's `kind_key` names
    /// otherwise.
    const fn chosen_by(self, kind_key: &'static str) -> Self {
        Self {
            kind_key: Some(kind_key),
            ..self
        }
    }

    /// The algorithm this input comes from under `config` (a resolved config of the algorithm
    /// that takes it).
    pub fn source<'a>(&self, config: &'a Value) -> &'a str {
        self.kind_key
            .and_then(|k| config.get(k))
            .and_then(Value::as_str)
            .unwrap_or(self.from)
    }
}

/// What the CLI, the bench runner and the Python package know about an algorithm: one row per
/// algorithm, one name each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgoInfo {
    /// Its name in commands, bench cells and result files.
    pub name: &'static str,
    /// One line for listings.
    pub summary: &'static str,
    /// The trained models it is built from, by name (the bench runs those cells first, for the
    /// same dataset and seed).
    pub needs: &'static [&'static str],
    /// How it is trained by [`train`]; `None` for a policy composed from `needs` at evaluation
    /// time (IDQL).
    pub trained: Option<AlgoKind>,
    /// Config keys that name trained runs it starts from: the bench fills the required ones
    /// (the `needs`) with the same dataset's and seed's cells, `offrl train` takes each as a flag
    /// (`--prior RUN`).
    pub inputs: &'static [Input],
    /// Other names `offrl train` accepts for it.
    pub aliases: &'static [&'static str],
    /// Numeric config keys `offrl train` also takes as flags (`(key, help)`, e.g. `--alpha`).
    pub flags: &'static [(&'static str, &'static str)],
}

/// The temperature flag of the algorithms that tilt towards `exp(Q/α)`.
const ALPHA_FLAG: (&str, &str) = ("alpha", "temperature α (overrides the config's `alpha`)");

/// Every algorithm, in the order tables list them.
pub const ALGORITHMS: &[AlgoInfo] = &[
    AlgoInfo {
        name: "bc",
        summary: "behaviour cloning, Gaussian MLP policy",
        needs: &[],
        trained: Some(AlgoKind::Bc),
        inputs: &[],
        aliases: &[],
        flags: &[],
    },
    AlgoInfo {
        name: "td3bc",
        summary: "TD3+BC (Fujimoto & Gu 2021)",
        needs: &[],
        trained: Some(AlgoKind::Td3bc),
        inputs: &[],
        aliases: &[],
        flags: &[],
    },
    AlgoInfo {
        name: "iql",
        summary: "IQL (Kostrikov et al. 2022): expectile critic and advantage-weighted actor",
        needs: &[],
        trained: Some(AlgoKind::Iql),
        inputs: &[],
        aliases: &[],
        flags: &[],
    },
    AlgoInfo {
        name: "cql",
        summary: "CQL (Kumar et al. 2020), SAC-based, CORL settings",
        needs: &[],
        trained: Some(AlgoKind::Cql),
        inputs: &[],
        aliases: &[],
        flags: &[],
    },
    AlgoInfo {
        name: "diffusion-bc",
        summary: "the diffusion behaviour prior μ(a|s) acting alone",
        needs: &[],
        trained: Some(AlgoKind::DiffusionBc),
        inputs: &[],
        aliases: &["prior"],
        flags: &[],
    },
    AlgoInfo {
        name: "flow-bc",
        summary: "flow-matching behaviour cloning (rectified flow, FQL's BC flow): a = f(s, z)",
        needs: &[],
        trained: Some(AlgoKind::FlowBc),
        inputs: &[],
        aliases: &[],
        flags: &[],
    },
    AlgoInfo {
        name: "fql",
        summary: "FQL (Park et al. 2025): a one-step policy distilled from a BC flow against −Q",
        needs: &[],
        trained: Some(AlgoKind::Fql),
        inputs: &[],
        aliases: &[],
        flags: &[ALPHA_FLAG],
    },
    AlgoInfo {
        name: "idql",
        summary: "IDQL (Hansen-Estruch et al. 2023): the prior's samples, chosen by the IQL critic",
        needs: &["diffusion-bc", "iql"],
        trained: None,
        inputs: &[],
        aliases: &[],
        flags: &[],
    },
    AlgoInfo {
        name: "rtb",
        summary: "RTB (Venkatraman et al. 2024): the prior fine-tuned towards μ·exp(Q/α)",
        needs: &["diffusion-bc", "iql"],
        trained: Some(AlgoKind::Rtb),
        inputs: &[
            Input::needed("prior", "diffusion-bc"),
            Input::needed("critic", "iql"),
        ],
        aliases: &[],
        flags: &[ALPHA_FLAG],
    },
    AlgoInfo {
        name: "outsourced",
        summary:
            "outsourced sampling (Venkatraman et al. 2025): RTB in the noise space of a flow-BC (or DDIM) map",
        needs: &["flow-bc", "iql"],
        trained: Some(AlgoKind::Outsourced),
        inputs: &[
            Input::needed("behavior", "flow-bc").chosen_by("behavior_kind"),
            Input::needed("critic", "iql"),
        ],
        aliases: &[],
        flags: &[ALPHA_FLAG],
    },
    AlgoInfo {
        name: "dxmi",
        summary: "DxMI (Yoon et al. 2024): an energy and a few-step diffusion sampler, no rewards",
        needs: &[],
        trained: Some(AlgoKind::Dxmi),
        inputs: &[Input::optional("prior", "diffusion-bc")],
        aliases: &[],
        flags: &[],
    },
    AlgoInfo {
        name: "gcd",
        summary: "GCD (Yoon et al. 2023): DxMI's minimax, the sampler trained through its chain",
        needs: &[],
        trained: Some(AlgoKind::Gcd),
        inputs: &[Input::optional("prior", "diffusion-bc")],
        aliases: &[],
        flags: &[],
    },
];

/// The registry row of `name` (error listing the known names).
pub fn algorithm(name: &str) -> Result<&'static AlgoInfo> {
    ALGORITHMS.iter().find(|a| a.name == name).ok_or_else(|| {
        let names: Vec<&str> = ALGORITHMS.iter().map(|a| a.name).collect();
        Error::Config(format!(
            "unknown algorithm `{name}` (known: {})",
            names.join(", ")
        ))
    })
}

fn typed<C: DeserializeOwned>(value: &Value, what: &str) -> Result<C> {
    serde_json::from_value(value.clone()).map_err(|e| Error::Config(format!("{what}: {e}")))
}

impl AlgoKind {
    pub const ALL: [AlgoKind; 11] = [
        AlgoKind::Iql,
        AlgoKind::Bc,
        AlgoKind::Td3bc,
        AlgoKind::Cql,
        AlgoKind::DiffusionBc,
        AlgoKind::FlowBc,
        AlgoKind::Fql,
        AlgoKind::Rtb,
        AlgoKind::Outsourced,
        AlgoKind::Dxmi,
        AlgoKind::Gcd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AlgoKind::Iql => iql::NAME,
            AlgoKind::Rtb => rtb::NAME,
            AlgoKind::DiffusionBc => diffusion_bc::NAME,
            AlgoKind::Bc => bc::NAME,
            AlgoKind::Td3bc => td3bc::NAME,
            AlgoKind::Cql => cql::NAME,
            AlgoKind::FlowBc => flow_bc::NAME,
            AlgoKind::Fql => fql::NAME,
            AlgoKind::Outsourced => outsourced::NAME,
            AlgoKind::Dxmi => dxmi::NAME,
            AlgoKind::Gcd => dxmi::GCD_NAME,
        }
    }

    pub fn from_name(name: &str) -> Result<Self> {
        AlgoKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = AlgoKind::ALL.iter().map(|k| k.name()).collect();
                Error::Config(format!(
                    "unknown algorithm `{name}` (known: {})",
                    known.join(", ")
                ))
            })
    }

    /// The default config (paper / CORL hyperparameters) as JSON, ready for `config::resolve`.
    pub fn default_config(self) -> Value {
        let v = match self {
            AlgoKind::Iql => serde_json::to_value(iql::IqlConfig::default()),
            AlgoKind::Rtb => serde_json::to_value(rtb::RtbConfig::default()),
            AlgoKind::DiffusionBc => serde_json::to_value(crate::diffusion::PriorConfig::default()),
            AlgoKind::Bc => serde_json::to_value(bc::BcConfig::default()),
            AlgoKind::Td3bc => serde_json::to_value(td3bc::Td3BcConfig::default()),
            AlgoKind::Cql => serde_json::to_value(cql::CqlConfig::default()),
            AlgoKind::FlowBc => serde_json::to_value(flow_bc::FlowBcConfig::default()),
            AlgoKind::Fql => serde_json::to_value(fql::FqlConfig::default()),
            AlgoKind::Outsourced => serde_json::to_value(outsourced::OutsourcedConfig::default()),
            AlgoKind::Dxmi => serde_json::to_value(dxmi::DxmiConfig::default()),
            AlgoKind::Gcd => serde_json::to_value(dxmi::DxmiConfig::gcd()),
        };
        v.expect("configs serialise")
    }

    /// Build a fresh algorithm from a (resolved) config.
    pub fn build(
        self,
        config: &Value,
        spec: DataSpec,
        device: &Device,
        seed: u64,
    ) -> Result<Box<dyn OfflineAlgorithm>> {
        let what = self.name();
        Ok(match self {
            AlgoKind::Iql => Box::new(iql::Iql::new(typed(config, what)?, spec, device, seed)?),
            AlgoKind::Rtb => Box::new(rtb::RtbAlgo::new(typed(config, what)?, spec, device, seed)?),
            AlgoKind::DiffusionBc => Box::new(diffusion_bc::PriorAlgo::new(
                typed(config, what)?,
                spec,
                device,
                seed,
            )?),
            AlgoKind::Bc => Box::new(bc::Bc::new(typed(config, what)?, spec, device, seed)?),
            AlgoKind::Td3bc => {
                Box::new(td3bc::Td3Bc::new(typed(config, what)?, spec, device, seed)?)
            }
            AlgoKind::Cql => Box::new(cql::Cql::new(typed(config, what)?, spec, device, seed)?),
            AlgoKind::FlowBc => Box::new(flow_bc::FlowBc::new(
                typed(config, what)?,
                spec,
                device,
                seed,
            )?),
            AlgoKind::Fql => Box::new(fql::Fql::new(typed(config, what)?, spec, device, seed)?),
            AlgoKind::Outsourced => Box::new(outsourced::Outsourced::new(
                typed(config, what)?,
                spec,
                device,
                seed,
            )?),
            AlgoKind::Dxmi | AlgoKind::Gcd => {
                let cfg: dxmi::DxmiConfig = typed(config, what)?;
                let expected = match self {
                    AlgoKind::Dxmi => dxmi::SamplerUpdate::Value,
                    _ => dxmi::SamplerUpdate::Backprop,
                };
                if cfg.sampler_update != expected {
                    return Err(Error::Config(format!(
                        "`sampler_update` = {:?} is the other algorithm's: train `dxmi` for \
                         \"value\" (DxDP), `gcd` for \"backprop\"",
                        cfg.sampler_update
                    )));
                }
                Box::new(dxmi::Dxmi::new(cfg, spec, device, seed)?)
            }
        })
    }
}

/// The `[train]` and `[data]` tables every config has.
/// The `[train]` and `[data]` tables of an algorithm's config.
pub(crate) fn loop_and_data(config: &Value) -> Result<(LoopConfig, DataConfig)> {
    let get = |key: &str| {
        config
            .get(key)
            .ok_or_else(|| Error::Config(format!("config has no `[{key}]` table")))
    };
    Ok((
        typed(get("train")?, "[train]")?,
        typed(get("data")?, "[data]")?,
    ))
}

/// What a run directory and its checkpoints record as "the config": algorithm, seed, settings.
pub fn run_config(kind: AlgoKind, config: &Value, seed: u64) -> Value {
    json!({ "algo": kind.name(), "seed": seed, "config": config })
}

/// A trained algorithm and the lines its training logged.
pub struct Trained {
    pub algo: Box<dyn OfflineAlgorithm>,
    pub history: History,
}

impl Trained {
    /// The trained algorithm as its own type `A` (e.g. [`iql::Iql`] for its critic), or an
    /// error naming what it is.
    pub fn into_model<A: OfflineAlgorithm>(self) -> Result<A> {
        let name = self.algo.name();
        let any: Box<dyn std::any::Any> = self.algo;
        any.downcast::<A>().map(|a| *a).map_err(|_| {
            Error::Config(format!(
                "a trained `{name}` is not a {}",
                std::any::type_name::<A>()
            ))
        })
    }
}

/// Train `kind` on `data`. With `out`, into that run directory (metrics, plots, checkpoints),
/// resuming from its newest checkpoint if there is one (the config and seed must then be the
/// same); without, in memory: nothing is written, and the logged lines come back in
/// [`Trained::history`]. `eval` is called every `train.eval_every` updates; its metrics are
/// logged with the losses.
pub fn train(
    kind: AlgoKind,
    config: &Value,
    data: &Dataset,
    out: Option<&Path>,
    seed: u64,
    device: &Device,
    eval: Option<EvalHook<'_>>,
) -> Result<Trained> {
    let (loop_cfg, data_cfg) = loop_and_data(config)?;
    let Some(out) = out else {
        let mut algo = build_for(kind, config, &data_cfg, data, device, seed)?;
        let history = fit(algo.as_mut(), data, &loop_cfg, None, seed, 0, eval)?;
        return Ok(Trained { algo, history });
    };
    // Held until training returns: another process training into `out` fails at once.
    let _lock = RunLock::acquire(out)?;
    let recorded = run_config(kind, config, seed);
    let latest = Checkpoint::latest(&out.join("checkpoints"))?;
    let (mut algo, start) = match latest {
        Some(dir) => {
            let ck = Checkpoint::open(&dir, Some(kind.name()))?;
            let diff = crate::config::diff(&ck.meta.config, &recorded);
            if !diff.is_empty() {
                return Err(Error::Config(format!(
                    "{} holds a run with a different config ({}); resume with the same \
                     config and seed, or train into a new --out",
                    out.display(),
                    diff.join(", ")
                )));
            }
            if let Some(info) = DatasetInfo::recorded(&ck) {
                info.ensure_same_data(data, out)?;
            }
            tracing::info!("resuming {} from step {}", out.display(), ck.meta.step);
            (load_checkpoint(&ck, device)?, ck.meta.step)
        }
        None => (build_for(kind, config, &data_cfg, data, device, seed)?, 0),
    };
    check_dims(algo.spec(), data)?;
    let mut dir = RunDir::open(out, &recorded, Some(start))?;
    let run = RunRecord {
        dir: &mut dir,
        config: &recorded,
    };
    let history = fit(algo.as_mut(), data, &loop_cfg, Some(run), seed, start, eval)?;
    Ok(Trained { algo, history })
}

/// A fresh `kind` for `data` (its spec from the data), prepared to train.
fn build_for(
    kind: AlgoKind,
    config: &Value,
    data_cfg: &DataConfig,
    data: &Dataset,
    device: &Device,
    seed: u64,
) -> Result<Box<dyn OfflineAlgorithm>> {
    let spec = DataSpec::from_dataset(data, data_cfg)?;
    check_dims(&spec, data)?;
    let mut algo = kind.build(config, spec, device, seed)?;
    algo.prepare(data)?;
    Ok(algo)
}

fn check_dims(spec: &DataSpec, data: &Dataset) -> Result<()> {
    if spec.obs_dim != data.obs_dim() || spec.act_dim != data.act_dim() {
        return Err(Error::InvalidData(format!(
            "dataset dims (obs {}, act {}) differ from the model's (obs {}, act {})",
            data.obs_dim(),
            data.act_dim(),
            spec.obs_dim,
            spec.act_dim
        )));
    }
    Ok(())
}

/// Rebuild an algorithm from a checkpoint folder or a run directory (its newest checkpoint):
/// kind, config, data spec and state come from the metadata. What resume and `offrl eval` use.
pub fn load(path: &Path, device: &Device) -> Result<Box<dyn OfflineAlgorithm>> {
    let ck = Checkpoint::open(&Checkpoint::resolve(path)?, None)?;
    load_checkpoint(&ck, device)
}

/// A behaviour prior μ for RTB and IDQL from a run directory or checkpoint folder: a
/// diffusion-BC run's chain, or the few-step sampler of a `dxmi` / `gcd` run
/// ([`dxmi::Dxmi::as_prior`]; issue 22: a 4-step μ in place of a 75-step chain).
pub fn load_prior(path: &Path, device: &Device) -> Result<crate::diffusion::DiffusionPrior> {
    let dir = Checkpoint::resolve(path)?;
    let ck = Checkpoint::open(&dir, None)?;
    if dxmi::KINDS.contains(&ck.meta.kind.as_str()) {
        let model: Box<dyn std::any::Any> = load_checkpoint(&ck, device)?;
        let sampler = model
            .downcast::<dxmi::Dxmi>()
            .expect("dxmi and gcd checkpoints rebuild a Dxmi");
        return sampler.as_prior().map_err(|e| Error::Checkpoint {
            path: dir,
            message: format!("not usable as a prior: {e}"),
        });
    }
    crate::diffusion::DiffusionPrior::load(&dir, device)
}

/// [`load`] for an opened checkpoint.
pub fn load_checkpoint(ck: &Checkpoint, device: &Device) -> Result<Box<dyn OfflineAlgorithm>> {
    let bad = |message: String| Error::Checkpoint {
        path: ck.dir.clone(),
        message,
    };
    let kind =
        AlgoKind::from_name(&ck.meta.kind).map_err(|e| bad(format!("cannot rebuild it: {e}")))?;
    let meta = &ck.meta;
    let config = meta
        .config
        .get("config")
        .ok_or_else(|| bad("metadata has no `config`".into()))?;
    let seed = meta.config.get("seed").and_then(Value::as_u64).unwrap_or(0);
    let spec: DataSpec =
        serde_json::from_value(meta.extra.get("spec").cloned().unwrap_or_default())
            .map_err(|e| bad(format!("bad data spec: {e}")))?;
    let mut algo = kind.build(config, spec, device, seed)?;
    let state = meta.extra.get("state").unwrap_or(&Value::Null);
    algo.parts(&mut crate::train::Parts::loading(ck, state))?;
    Ok(algo)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bad settings stop the build before any network exists (`actor_net.width=0` used to
    /// panic), naming the key; NaN, which JSON cannot hold, is named when the config resolves.
    #[test]
    fn bad_hyperparameters_are_named_before_any_work() {
        let data = crate::dataset::testing::two_state_bandit();
        let plain = DataConfig {
            normalize_obs: false,
            reward_norm: crate::dataset::spec::RewardNorm::None,
        };
        let spec = DataSpec::from_dataset(&data, &plain).unwrap();
        let device = Device::flex().autodiff();
        let cases = [
            (AlgoKind::Bc, "actor_net.width=0", "`actor_net.width` = 0"),
            (
                AlgoKind::Iql,
                "critic_net.width=0",
                "`critic_net.width` = 0",
            ),
            (
                AlgoKind::Iql,
                "actor_net.hidden=0",
                "`actor_net.hidden` = 0",
            ),
            (AlgoKind::Bc, "lr=0", "`lr` = 0"),
            (AlgoKind::Bc, "lr=-1", "`lr` = -1"),
            (AlgoKind::Iql, "discount=2", "`discount` = 2"),
            (AlgoKind::Iql, "beta=-3", "`beta` = -3"),
            (AlgoKind::Iql, "expectile=1", "`expectile` = 1"),
            (AlgoKind::Td3bc, "policy_freq=0", "`policy_freq` = 0"),
            (AlgoKind::Td3bc, "target_ema=0", "`target_ema` = 0"),
            (AlgoKind::Cql, "cql_temp=0", "`cql_temp` = 0"),
            (AlgoKind::Cql, "critic_lr=-0.1", "`critic_lr` = -0.1"),
            (AlgoKind::Iql, "train.steps=0", "`train.steps` = 0"),
            (AlgoKind::Bc, "train.holdout=1", "`train.holdout` = 1"),
        ];
        for (kind, set, want) in cases {
            let config =
                crate::config::resolve(&kind.default_config(), None, &[set.into()]).unwrap();
            let err = match kind.build(&config, spec.clone(), &device, 0) {
                Ok(_) => panic!("{kind:?} --set {set} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(want), "{kind:?} --set {set}: {err}");
        }
        for set in ["critic_lr=nan", "critic_net.width=inf"] {
            let err = crate::config::resolve(&AlgoKind::Iql.default_config(), None, &[set.into()])
                .unwrap_err()
                .to_string();
            let key = set.split('=').next().unwrap();
            assert!(
                err.contains(key) && err.contains("not a finite number"),
                "{err}"
            );
        }
    }

    /// Resuming with other data of the same shape is refused, naming the fingerprints; the same
    /// data resumes (here: a finished run, so nothing more to do).
    #[test]
    fn resuming_on_another_dataset_is_refused() {
        let data = crate::dataset::testing::two_state_bandit();
        let mut other = data.clone();
        other.rewards[0] += 1.0;
        assert_ne!(data.fingerprint(), other.fingerprint());
        assert_eq!(data.fingerprint(), data.clone().fingerprint());
        let sets = [
            "train.steps=4".to_string(),
            "train.checkpoint_every=2".to_string(),
        ];
        let config = crate::config::resolve(&AlgoKind::Bc.default_config(), None, &sets).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bc = |data: &Dataset| {
            let device = Device::flex().autodiff();
            train(
                AlgoKind::Bc,
                &config,
                data,
                Some(dir.path()),
                0,
                &device,
                None,
            )
        };
        bc(&data).unwrap();
        let err = bc(&other).err().unwrap().to_string();
        assert!(
            err.contains("another dataset") && err.contains(&data.fingerprint()),
            "{err}"
        );
        bc(&data).unwrap();
    }

    /// Training without a run directory writes nothing, and gives the policy and the logged
    /// lines of the same training into a run directory.
    #[test]
    fn training_in_memory_equals_a_run_directory() {
        let data = crate::dataset::testing::two_state_bandit();
        let sets = [
            "train.steps=6".to_string(),
            "train.log_every=2".to_string(),
            "train.checkpoint_every=3".to_string(),
        ];
        let config = crate::config::resolve(&AlgoKind::Bc.default_config(), None, &sets).unwrap();
        let device = Device::flex().autodiff();
        let cwd_before: Vec<_> = std::fs::read_dir(".")
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let memory = train(AlgoKind::Bc, &config, &data, None, 4, &device, None).unwrap();
        let cwd_after: Vec<_> = std::fs::read_dir(".")
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(cwd_before.len(), cwd_after.len(), "something was written");
        let dir = tempfile::tempdir().unwrap();
        let disk = train(
            AlgoKind::Bc,
            &config,
            &data,
            Some(dir.path()),
            4,
            &device,
            None,
        )
        .unwrap();
        let steps: Vec<usize> = memory.history.iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, [2, 3, 4, 6]);
        assert_eq!(memory.history, disk.history);
        let (obs, n) = (&data.observations, data.len());
        let act = |t: &Trained| t.algo.policy().unwrap().act(obs, n).unwrap();
        assert_eq!(act(&memory), act(&disk));
    }

    #[test]
    fn config_diff_names_changed_keys() {
        let a = json!({"seed": 1, "config": {"lr": 1, "train": {"steps": 5}}});
        let b = json!({"seed": 1, "config": {"lr": 1.0, "train": {"steps": 6}}});
        assert_eq!(
            crate::config::diff(&a, &b),
            vec!["config.train.steps: 5 → 6"]
        );
        assert!(crate::config::diff(&a, &a).is_empty());
    }

    #[test]
    fn default_configs_round_trip_and_names() {
        for kind in AlgoKind::ALL {
            let v = kind.default_config();
            assert!(loop_and_data(&v).is_ok(), "{kind:?}");
            assert_eq!(AlgoKind::from_name(kind.name()).unwrap(), kind);
        }
        assert!(AlgoKind::from_name("sac").is_err());
    }

    /// `configs/<algo>.toml` records exactly the built-in defaults.
    #[test]
    fn config_files_match_defaults() {
        let idql = serde_json::to_value(idql::IdqlConfig::default()).unwrap();
        let all = AlgoKind::ALL
            .iter()
            .map(|k| (k.name(), k.default_config()))
            .chain([("idql", idql)]);
        for (name, defaults) in all {
            let file = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("configs")
                .join(format!("{name}.toml"));
            let resolved = crate::config::resolve(&defaults, Some(&file), &[]).unwrap();
            let diff = crate::config::diff(&defaults, &resolved);
            assert!(diff.is_empty(), "{}: {diff:?}", file.display());
            // Every key of the defaults is written in the file.
            let text: toml::Table =
                toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let from_file = serde_json::to_value(text).unwrap();
            let missing = crate::config::diff(&from_file, &defaults);
            assert!(missing.is_empty(), "{} lacks {missing:?}", file.display());
        }
        // A built-in config by name (no such file in the working folder) is the file's content.
        let by_name = Path::new("rtb-cpu");
        assert!(!by_name.exists());
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/rtb-cpu.toml");
        let rtb = AlgoKind::Rtb.default_config();
        assert_eq!(
            crate::config::resolve(&rtb, Some(by_name), &[]).unwrap(),
            crate::config::resolve(&rtb, Some(&file), &[]).unwrap()
        );
    }
}
