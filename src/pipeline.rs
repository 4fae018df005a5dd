//! The method as one library call: the diffusion behaviour prior μ(a|s) (diffusion-BC), the IQL
//! critic, then RTB fine-tuning μ towards μ·exp(Q/α), on one dataset, in this process.
//!
//! ```no_run
//! # fn main() -> offrl::Result<()> {
//! let data = offrl::dataset::io::load("hopper.parquet".as_ref())?;
//! let config = offrl::pipeline::PipelineConfig::from_profile("quick", &[])?;
//! let device = burn::tensor::Device::flex().autodiff();
//! let trained = offrl::pipeline::run(&data, &config, 0, &device, None)?;
//! let mut policy = offrl::train::OfflineAlgorithm::policy(&trained.rtb)?;
//! # Ok(()) }
//! ```
//!
//! `offrl pipeline` runs the same stages as cells of the bench runner (one process each, with
//! evaluations and baselines to compare); this is what a program or the Python package calls.
//! The stages and their configs are the bench's: `diffusion-bc`, `iql` (whose target twin Q and
//! V are the critic) and `rtb`, each resolved from the defaults and a profile's overrides.

use std::path::Path;

use burn::tensor::Device;
use serde_json::Value;

use crate::algos::diffusion_bc::PriorAlgo;
use crate::algos::iql::{Iql, IqlCritic};
use crate::algos::rtb::{RtbAlgo, RtbConfig};
use crate::algos::{train, AlgoKind};
use crate::dataset::spec::DataSpec;
use crate::dataset::Dataset;
use crate::diffusion::DiffusionPrior;
use crate::error::{Error, Result};
use crate::train::{fit, History, OfflineAlgorithm};

/// The three stages' configs (as `offrl train` resolves them: JSON of the algorithms' configs).
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    pub prior: Value,
    pub critic: Value,
    pub rtb: Value,
}

impl PipelineConfig {
    /// The built-in defaults with the overrides of `profile` (`quick`, `cpu`, `paper` or a
    /// profile TOML) and then `sets` (`ALGO.KEY=VALUE`, ALGO one of `diffusion-bc`, `iql`,
    /// `rtb`), as the bench runner resolves its cells.
    pub fn from_profile(profile: &str, sets: &[String]) -> Result<Self> {
        let profile = crate::bench::cell::Profile::load(profile)?.with_sets(sets)?;
        let resolve = |kind: AlgoKind, algo: &str| {
            crate::config::resolve(&kind.default_config(), None, &profile.overrides_for(algo))
        };
        Ok(Self {
            prior: resolve(AlgoKind::DiffusionBc, "diffusion-bc")?,
            critic: resolve(AlgoKind::Iql, "iql")?,
            rtb: resolve(AlgoKind::Rtb, "rtb")?,
        })
    }
}

/// What [`run`] trained: the prior (the weights that act: their moving average when the config
/// keeps one), the critic, RTB (its [`OfflineAlgorithm::policy`] is the fine-tuned π), and the
/// lines each stage logged.
pub struct Pipeline {
    pub prior: DiffusionPrior,
    pub critic: IqlCritic,
    pub rtb: RtbAlgo,
    pub history: StageHistories,
}

/// The logged lines of each stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageHistories {
    pub prior: History,
    pub critic: History,
    pub rtb: History,
}

/// Train the prior, the critic and RTB on `data` with `seed` on `device` (an autodiff device).
/// With `out`, each stage trains into its run directory `out/diffusion-bc`, `out/iql`,
/// `out/rtb` (metrics, plots, checkpoints; a repeated call resumes each from its newest
/// checkpoint, and a finished stage is not trained again); without, nothing is written.
pub fn run(
    data: &Dataset,
    config: &PipelineConfig,
    seed: u64,
    device: &Device,
    out: Option<&Path>,
) -> Result<Pipeline> {
    let stage = |name: &str| out.map(|o| o.join(name));
    let (prior_run, critic_run) = (stage("diffusion-bc"), stage("iql"));
    let fit_stage = |kind: AlgoKind, config: &Value, run: Option<&Path>| {
        train(kind, config, data, run, seed, device, None)
    };
    let trained = fit_stage(AlgoKind::DiffusionBc, &config.prior, prior_run.as_deref())?;
    let prior_history = trained.history.clone();
    let prior = trained.into_model::<PriorAlgo>()?.acting();
    let trained = fit_stage(AlgoKind::Iql, &config.critic, critic_run.as_deref())?;
    let critic_history = trained.history.clone();
    let critic = trained.into_model::<Iql>()?.critic();
    let (rtb, rtb_history) = match (out, prior_run, critic_run) {
        (Some(out), Some(prior_run), Some(critic_run)) => {
            // From the stages' run directories, so that a repeated call resumes RTB too.
            let mut cfg = config.rtb.clone();
            cfg["prior"] = crate::config::path_value(&prior_run)?.into();
            cfg["critic"] = crate::config::path_value(&critic_run)?.into();
            let trained = fit_stage(AlgoKind::Rtb, &cfg, Some(&out.join("rtb")))?;
            let history = trained.history.clone();
            (trained.into_model::<RtbAlgo>()?, history)
        }
        _ => {
            let (loop_config, data_config) = crate::algos::loop_and_data(&config.rtb)?;
            let rtb_config: RtbConfig = serde_json::from_value(config.rtb.clone())
                .map_err(|e| Error::Config(format!("rtb: {e}")))?;
            let spec = DataSpec::from_dataset(data, &data_config)?;
            let mut rtb = RtbAlgo::from_models(
                rtb_config,
                prior.clone(),
                critic.clone(),
                spec,
                device,
                seed,
            )?;
            rtb.prepare(data)?;
            let history = fit(&mut rtb, data, &loop_config, None, seed, 0, None)?;
            (rtb, history)
        }
    };
    Ok(Pipeline {
        prior,
        critic,
        rtb,
        history: StageHistories {
            prior: prior_history,
            critic: critic_history,
            rtb: rtb_history,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few updates of each stage, small networks.
    fn tiny() -> PipelineConfig {
        let sets = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let steps = [
            "train.steps=4",
            "train.log_every=2",
            "train.checkpoint_every=4",
        ];
        let mut prior = sets(&steps);
        prior.extend(sets(&["net.width=16", "net.hidden=2", "schedule.steps=4"]));
        prior.extend(sets(&["net.time_harmonics=2", "train.batch_size=8"]));
        let mut critic = sets(&steps);
        critic.extend(sets(&["critic_net.width=16", "actor_net.width=16"]));
        let mut rtb = sets(&steps);
        rtb.extend(sets(&[
            "trajectories=4",
            "train.batch_size=4",
            "correction.net.width=16",
        ]));
        rtb.extend(sets(&[
            "correction.net.hidden=2",
            "correction.net.time_harmonics=2",
        ]));
        rtb.extend(sets(&["correction.langevin_width=8"]));
        let resolve = |kind: AlgoKind, overrides: &[String]| {
            crate::config::resolve(&kind.default_config(), None, overrides).unwrap()
        };
        PipelineConfig {
            prior: resolve(AlgoKind::DiffusionBc, &prior),
            critic: resolve(AlgoKind::Iql, &critic),
            rtb: resolve(AlgoKind::Rtb, &rtb),
        }
    }

    /// In memory and into run directories, the three stages log the same lines and RTB acts
    /// the same; a second call on the folders trains nothing more and gives the same policy.
    #[test]
    fn the_pipeline_in_memory_equals_its_run_directories() {
        let data = crate::dataset::testing::two_state_bandit();
        let config = tiny();
        let device = Device::flex().autodiff();
        let memory = run(&data, &config, 2, &device, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let disk = run(&data, &config, 2, &device, Some(dir.path())).unwrap();
        for stage in ["diffusion-bc", "iql", "rtb"] {
            assert!(
                dir.path().join(stage).join("metrics.jsonl").is_file(),
                "{stage}"
            );
        }
        assert_eq!(memory.history, disk.history);
        assert_eq!(memory.history.rtb.len(), 2);
        let (obs, n) = (&data.observations, data.len());
        let act = |p: &Pipeline| p.rtb.policy().unwrap().act(obs, n).unwrap();
        assert_eq!(act(&memory), act(&disk));
        let again = run(&data, &config, 2, &device, Some(dir.path())).unwrap();
        assert!(again.history.rtb.is_empty(), "{:?}", again.history.rtb);
        assert_eq!(act(&again), act(&disk));
    }

    #[test]
    fn profiles_resolve_to_the_bench_cells_configs() {
        let config = PipelineConfig::from_profile("quick", &["rtb.alpha=0.25".into()]).unwrap();
        assert_eq!(config.rtb["alpha"], 0.25);
        let e = PipelineConfig::from_profile("quick", &["rtb.no_such_key=1".into()]);
        assert!(e.is_err());
    }
}
