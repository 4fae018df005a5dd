//! `offrl train <what> --dataset D.parquet [--config FILE] [--set key=value]... --seed S --out DIR`
//!
//! One generic path for every algorithm: resolve the config (defaults ← file ← `--set`), load
//! the dataset, train into the run directory (resuming from its newest checkpoint).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::algos::{self, AlgoKind};
use crate::backend::BackendKind;

#[derive(Subcommand)]
pub enum TrainCommand {
    /// The IQL critic only (twin Q + V, no actor), for RTB / IDQL. Config: configs/iql.toml.
    Critic(AlgoArgs),
    /// IQL: critic + advantage-weighted actor. Config: configs/iql.toml.
    Iql(AlgoArgs),
    /// Behaviour cloning, Gaussian MLP policy. Config: configs/bc.toml.
    Bc(AlgoArgs),
    /// TD3+BC (Fujimoto & Gu 2021). Config: configs/td3bc.toml.
    Td3bc(AlgoArgs),
}

/// What every `offrl train <algo>` takes.
#[derive(Args, Debug)]
pub struct AlgoArgs {
    /// Dataset file (Parquet, written by `offrl dataset import/make`).
    #[arg(long)]
    pub dataset: PathBuf,
    /// TOML config patched over the built-in defaults (configs/<algo>.toml holds the defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. `--set beta=10 --set train.steps=200000` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Seed of network initialisation, minibatch sampling and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run directory (config.json, metrics.jsonl, plots/, checkpoints/); resumed if it has checkpoints.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    pub backend: BackendKind,
}

pub fn run(cmd: TrainCommand) -> anyhow::Result<()> {
    let (kind, args, forced): (AlgoKind, AlgoArgs, &[&str]) = match cmd {
        // The critic is IQL without its actor; forced last so that it wins over the file.
        TrainCommand::Critic(a) => (AlgoKind::Iql, a, &["train_actor=false"]),
        TrainCommand::Iql(a) => (AlgoKind::Iql, a, &[]),
        TrainCommand::Bc(a) => (AlgoKind::Bc, a, &[]),
        TrainCommand::Td3bc(a) => (AlgoKind::Td3bc, a, &[]),
    };
    train(kind, &args, forced)
}

fn train(kind: AlgoKind, args: &AlgoArgs, forced: &[&str]) -> anyhow::Result<()> {
    let mut sets = args.set.clone();
    sets.extend(forced.iter().map(|s| s.to_string()));
    let config = crate::config::resolve(&kind.default_config(), args.config.as_deref(), &sets)?;
    let data = crate::dataset::io::load(&args.dataset)
        .with_context(|| format!("loading the dataset {}", args.dataset.display()))?;
    let device = args.backend.train_device()?;
    tracing::info!(
        "training {} on {} ({} transitions) into {}",
        kind.name(),
        args.dataset.display(),
        data.len(),
        args.out.display()
    );
    algos::train(kind, &config, &data, &args.out, args.seed, &device, None)?;
    println!(
        "trained {} → {} (checkpoints in {})",
        kind.name(),
        args.out.display(),
        args.out.join("checkpoints").display()
    );
    Ok(())
}
