//! `offrl train ...`: one subcommand per trainable model.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::backend::BackendKind;

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train the diffusion behaviour prior μ(a|s) on a dataset (resumes a run found in --out).
    Prior(TrainArgs),
}

/// Arguments every training command takes.
#[derive(Args)]
pub struct TrainArgs {
    /// Dataset (Parquet file written by `offrl dataset`).
    #[arg(long)]
    pub dataset: PathBuf,
    /// TOML config file (keys as in the command's config struct; missing keys keep defaults).
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
        TrainCommand::Prior(args) => train_prior(&args),
    }
}

fn train_prior(args: &TrainArgs) -> anyhow::Result<()> {
    use crate::diffusion::train::{train, PriorConfig};
    let mut config: PriorConfig =
        crate::config::resolve(&PriorConfig::default(), args.config.as_deref(), &args.set)?;
    config.seed = args.seed;
    let data = load_dataset(&args.dataset)?;
    let device = args.backend.train_device()?;
    let out = train(&data, &config, &args.out, &device)
        .with_context(|| format!("training the prior into {}", args.out.display()))?;
    println!(
        "prior trained: final loss {:.5}, checkpoint {}",
        out.final_loss,
        out.checkpoint.display()
    );
    Ok(())
}

fn load_dataset(path: &Path) -> anyhow::Result<crate::dataset::Dataset> {
    // TODO(merge): `crate::dataset::io::load(path)` once the dataset IO lands on main.
    anyhow::bail!(
        "{}: loading Parquet datasets needs offrl::dataset::io (not merged yet)",
        path.display()
    )
}
