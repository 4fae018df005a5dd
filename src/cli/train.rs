//! `offrl train <model> ...`: train one model into a run directory (config.json, metrics.jsonl,
//! plots/, checkpoints/; training the same `--out` again resumes it).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::algos::{self, rtb};
use crate::backend::BackendKind;

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train the diffusion behaviour prior μ(a|s) on a dataset (resumes a run found in --out).
    Prior(CommonArgs),
    /// Fine-tune a diffusion prior with RTB, the critic's Q as reward (log r = Q/α).
    Rtb(RtbArgs),
}

/// What every `train` command takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// The dataset (Parquet).
    #[arg(long)]
    pub dataset: PathBuf,
    /// A TOML config patched onto the defaults (e.g. configs/rtb-cpu.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// `key=value` overrides (dotted keys reach tables), applied after --config.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The run directory.
    #[arg(long, short)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
    /// Environments stepped together when evaluating every `train.eval_every` steps.
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

pub fn run(cmd: TrainCommand) -> anyhow::Result<()> {
    match cmd {
        TrainCommand::Prior(args) => train_prior(&args),
        TrainCommand::Rtb(args) => train_rtb(args),
    }
}

fn train_prior(args: &CommonArgs) -> anyhow::Result<()> {
    use crate::diffusion::train::{train, PriorConfig};
    let mut config: PriorConfig =
        crate::config::resolve(&PriorConfig::default(), args.config.as_deref(), &args.set)?;
    config.seed = args.seed;
    let data = crate::dataset::io::load(&args.dataset)?;
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

/// An absolute path as a config string (so that a resumed run compares equal from any folder).
fn path_value(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let abs =
        std::fs::canonicalize(path).with_context(|| format!("--{what} {}", path.display()))?;
    Ok(abs.display().to_string())
}

fn train_rtb(args: RtbArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let mut overrides = common.set.clone();
    // Flags win over --config and --set; paths are TOML strings.
    let quoted = |s: String| format!("{s:?}");
    overrides.push(format!(
        "prior={}",
        quoted(path_value(&args.prior, "prior")?)
    ));
    overrides.push(format!(
        "critic={}",
        quoted(path_value(&args.critic, "critic")?)
    ));
    if let Some(alpha) = args.alpha {
        overrides.push(format!("alpha={alpha:e}"));
    }
    let config: rtb::RtbConfig = crate::config::resolve(
        &rtb::RtbConfig::default(),
        common.config.as_deref(),
        &overrides,
    )?;
    let data = crate::dataset::io::load(&common.dataset)?;
    let device = common.backend.train_device()?;
    let env_id = data.meta.env_id.clone();
    let evaluate = common.eval_episodes > 0 && config.train.eval_every > 0;
    if evaluate {
        crate::envs::make(&env_id).with_context(|| {
            format!("evaluation needs the environment `{env_id}` (or pass --eval-episodes 0)")
        })?;
    }
    let mut hook =
        |step: usize, algo: &dyn algos::OfflineAlgorithm| -> crate::Result<algos::Metrics> {
            let mut policy = algo.policy()?;
            let report = crate::bench::cell::evaluate_on(
                &data,
                policy.as_mut(),
                common.eval_episodes,
                common.eval_envs,
                common.seed.wrapping_add(step as u64),
            )?;
            tracing::info!(
                "step {step}: return {:.1} ± {:.1}{}",
                report.mean,
                report.std,
                report
                    .normalized
                    .map(|s| format!(", normalised {s:.1}"))
                    .unwrap_or_default()
            );
            let mut m = vec![("eval/return", report.mean)];
            if let Some(s) = report.normalized {
                m.push(("eval/score", s));
            }
            Ok(m)
        };
    let hook: Option<algos::EvalHook<'_>> = if evaluate { Some(&mut hook) } else { None };
    rtb::train(&config, &data, &common.out, common.seed, &device, hook)?;
    println!("{}", common.out.display());
    Ok(())
}
