//! `offrl train <model> --dataset D.parquet [--config FILE] [--set key=value]... --seed S --out DIR`
//!
//! One generic path for every model: resolve the config (defaults ← file ← `--set` ← flags),
//! load the dataset, train into the run directory (config.json, metrics.jsonl, plots/,
//! checkpoints/; training the same `--out` again resumes from its newest checkpoint), and
//! optionally evaluate the policy in its environment every `train.eval_every` updates.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::algos::{self, AlgoKind};
use crate::backend::BackendKind;

#[derive(Subcommand)]
pub enum TrainCommand {
    /// The diffusion behaviour prior μ(a|s); its policy is diffusion BC. Config: configs/prior.toml.
    Prior(CommonArgs),
    /// The IQL critic only (twin Q + V, no actor), for RTB / IDQL. Config: configs/iql.toml.
    Critic(CommonArgs),
    /// IQL: critic + advantage-weighted actor. Config: configs/iql.toml.
    Iql(CommonArgs),
    /// Behaviour cloning, Gaussian MLP policy. Config: configs/bc.toml.
    Bc(CommonArgs),
    /// TD3+BC (Fujimoto & Gu 2021). Config: configs/td3bc.toml.
    Td3bc(CommonArgs),
    /// Conservative Q-Learning, SAC-based, CORL settings. Config: configs/cql.toml.
    Cql(CommonArgs),
    /// Flow-matching behaviour cloning (FQL's BC flow). Config: configs/flow-bc.toml.
    FlowBc(CommonArgs),
    /// Flow Q-Learning (Park et al. 2025): one-step policy distilled from a BC flow against −Q.
    /// Config: configs/fql.toml (choose `alpha` per dataset).
    Fql(CommonArgs),
    /// Fine-tune a diffusion prior with RTB, the critic's Q as reward (log r = Q/α).
    /// Config: configs/rtb.toml (configs/rtb-cpu.toml: a CPU-sized variant).
    Rtb(RtbArgs),
    /// Noise-space (outsourced) posterior sampling: a diffusion over the noise z of a flow-BC
    /// map a = f(s, z), fine-tuned by RTB towards N(z)·exp(Q(s, f(s, z))/α).
    /// Config: configs/outsourced.toml.
    Outsourced(OutsourcedArgs),
}

/// What every `offrl train <model>` takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Dataset file (Parquet, written by `offrl dataset import/make` or `offrl collect`).
    #[arg(long)]
    pub dataset: PathBuf,
    /// TOML config patched over the built-in defaults (missing keys keep the defaults; unknown
    /// keys are errors). configs/<model>.toml holds the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. `--set train.steps=20000 --set lr=3e-4` (repeatable;
    /// dotted keys reach tables; applied after --config).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Seed of network initialisation, minibatches and noise (same seed, same numbers).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run directory (config.json, metrics.jsonl, plots/, checkpoints/); resumed if it has
    /// checkpoints.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
    /// Environments stepped together when evaluating every `train.eval_every` updates.
    #[arg(long, default_value_t = 10)]
    pub eval_envs: usize,
    /// Episodes per evaluation (0: no evaluation).
    #[arg(long, default_value_t = 10)]
    pub eval_episodes: usize,
}

#[derive(Args, Debug, Clone)]
pub struct RtbArgs {
    /// The behaviour prior: run directory or checkpoint of `offrl train prior`.
    #[arg(long)]
    pub prior: PathBuf,
    /// The critic: run directory or checkpoint of `offrl train critic` (or `iql`).
    #[arg(long)]
    pub critic: PathBuf,
    /// Temperature α (log r = Q/α); overrides the config's.
    #[arg(long)]
    pub alpha: Option<f64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug, Clone)]
pub struct OutsourcedArgs {
    /// The behaviour map: run directory or checkpoint of `offrl train flow-bc`.
    #[arg(long)]
    pub behavior: PathBuf,
    /// The critic: run directory or checkpoint of `offrl train critic` (or `iql`).
    #[arg(long)]
    pub critic: PathBuf,
    /// Temperature α (log r = Q/α, in the config's `alpha_scale` units); overrides the config's.
    #[arg(long)]
    pub alpha: Option<f64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(cmd: TrainCommand) -> anyhow::Result<()> {
    match cmd {
        TrainCommand::Prior(a) => train(AlgoKind::Prior, &a, Vec::new()),
        // The critic is IQL without its actor; forced last so that it wins over the file.
        TrainCommand::Critic(a) => train(AlgoKind::Iql, &a, vec!["train_actor=false".into()]),
        TrainCommand::Iql(a) => train(AlgoKind::Iql, &a, Vec::new()),
        TrainCommand::Bc(a) => train(AlgoKind::Bc, &a, Vec::new()),
        TrainCommand::Td3bc(a) => train(AlgoKind::Td3bc, &a, Vec::new()),
        TrainCommand::Cql(a) => train(AlgoKind::Cql, &a, Vec::new()),
        TrainCommand::FlowBc(a) => train(AlgoKind::FlowBc, &a, Vec::new()),
        TrainCommand::Fql(a) => train(AlgoKind::Fql, &a, Vec::new()),
        TrainCommand::Rtb(a) => {
            // Paths become absolute TOML strings, so a resumed run compares equal from any folder.
            let mut forced = vec![
                format!("prior={:?}", absolute(&a.prior, "prior")?),
                format!("critic={:?}", absolute(&a.critic, "critic")?),
            ];
            if let Some(alpha) = a.alpha {
                forced.push(format!("alpha={alpha:e}"));
            }
            train(AlgoKind::Rtb, &a.common, forced)
        }
        TrainCommand::Outsourced(a) => {
            let mut forced = vec![
                format!("behavior={:?}", absolute(&a.behavior, "behavior")?),
                format!("critic={:?}", absolute(&a.critic, "critic")?),
            ];
            if let Some(alpha) = a.alpha {
                forced.push(format!("alpha={alpha:e}"));
            }
            train(AlgoKind::Outsourced, &a.common, forced)
        }
    }
}

fn absolute(path: &Path, flag: &str) -> anyhow::Result<String> {
    crate::config::path_value(path).with_context(|| format!("--{flag}"))
}

fn train(kind: AlgoKind, args: &CommonArgs, forced: Vec<String>) -> anyhow::Result<()> {
    let mut sets = args.set.clone();
    sets.extend(forced);
    let config = crate::config::resolve(&kind.default_config(), args.config.as_deref(), &sets)?;
    let data = crate::dataset::io::load(&args.dataset)
        .with_context(|| format!("loading the dataset {}", args.dataset.display()))?;
    let device = args.backend.train_device()?;
    let env_id = data.meta.env_id.clone();
    let eval_every = config
        .pointer("/train/eval_every")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let evaluate = args.eval_episodes > 0 && eval_every > 0;
    if evaluate {
        crate::envs::make(&env_id).with_context(|| {
            format!("evaluation needs the environment `{env_id}` (or pass --eval-episodes 0)")
        })?;
    }
    tracing::info!(
        "training {} on {} ({} transitions) into {}",
        kind.name(),
        args.dataset.display(),
        data.len(),
        args.out.display()
    );
    let mut hook = |step: usize,
                    algo: &dyn crate::train::OfflineAlgorithm|
     -> crate::Result<crate::train::Metrics> {
        let mut policy = algo.policy()?;
        let report = crate::eval::evaluate_on(
            &data,
            policy.as_mut(),
            args.eval_episodes,
            args.eval_envs,
            args.seed.wrapping_add(step as u64),
        )?;
        tracing::info!("step {step}: {report}");
        let mut m = vec![("eval/return", report.mean)];
        if let Some(s) = report.normalized {
            m.push(("eval/score", s));
        }
        Ok(m)
    };
    let hook: Option<crate::train::EvalHook<'_>> = if evaluate { Some(&mut hook) } else { None };
    algos::train(
        kind,
        &config,
        &data,
        Some(&args.out),
        args.seed,
        &device,
        hook,
    )
    .with_context(|| format!("training {} into {}", kind.name(), args.out.display()))?;
    let latest = crate::train::checkpoint::Checkpoint::latest(&args.out.join("checkpoints"))?;
    println!(
        "trained {} → {} (newest checkpoint: {})",
        kind.name(),
        args.out.display(),
        latest.map(|p| p.display().to_string()).unwrap_or_default()
    );
    Ok(())
}
