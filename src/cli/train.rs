//! `offrl train ...`: one subcommand per trainable model, all through [`crate::algos::train`].

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::algos::{self, AlgoKind};
use crate::backend::BackendKind;

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train the diffusion behaviour prior μ(a|s) (configs/prior.toml); resumes a run in --out.
    Prior(TrainArgs),
}

/// Arguments every training command takes.
#[derive(Args)]
pub struct TrainArgs {
    /// Dataset (Parquet file written by `offrl dataset`).
    #[arg(long)]
    pub dataset: PathBuf,
    /// TOML config file (missing keys keep the defaults; unknown keys are errors).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. `--set lr=3e-4 --set schedule.kind=cosine` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Seed of parameter initialisation, minibatches and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run directory (config.json, metrics.jsonl, plots/, checkpoints/).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
}

pub fn run(cmd: TrainCommand) -> anyhow::Result<()> {
    match cmd {
        TrainCommand::Prior(args) => train(AlgoKind::Prior, &args),
    }
}

fn train(kind: AlgoKind, args: &TrainArgs) -> anyhow::Result<()> {
    let config = crate::config::resolve(&kind.default_config(), args.config.as_deref(), &args.set)?;
    let data = crate::dataset::io::load(&args.dataset)?;
    let device = args.backend.train_device()?;
    algos::train(kind, &config, &data, &args.out, args.seed, &device, None)
        .with_context(|| format!("training {} into {}", kind.name(), args.out.display()))?;
    let latest = crate::train::checkpoint::Checkpoint::latest(&args.out.join("checkpoints"))?;
    if let Some(dir) = latest {
        println!("{} trained: {}", kind.name(), dir.display());
    }
    Ok(())
}
