//! `offrl collect`: roll a behaviour policy out and write a D4RL-style Parquet dataset, and
//! `offrl policy eval`: measure a behaviour policy's return.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::dataset::{collect, io, registry::CollectPart};
use crate::envs;
use crate::eval;
use crate::policy;

#[derive(Args)]
pub struct CollectArgs {
    /// Environment id: native (Pendulum-v1, Nav2d-v0) or any gymnasium id (Hopper-v5, ...).
    #[arg(long)]
    pub env: String,
    /// `random`, a built-in controller (pendulum-swingup, nav2d-routes), a policy card name in
    /// <shared>/behavior-policies (hopper-trpo) or a path to a card's .json.
    #[arg(long)]
    pub policy: String,
    /// Number of transitions to collect (at least 1).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub steps: usize,
    /// Sample actions from the policy's Gaussian instead of using its mean.
    #[arg(long)]
    pub stochastic: bool,
    /// Extra Gaussian action noise (standard deviation), clipped to the action bounds.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub noise: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output Parquet file (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// A finite number ≥ 0 (noise levels): NaN and negative values are refused by name.
fn non_negative(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        Ok(v) => Err(format!("{v} is not a finite number ≥ 0")),
        Err(e) => Err(e.to_string()),
    }
}

pub fn run(args: CollectArgs) -> anyhow::Result<()> {
    let part = CollectPart {
        policy: args.policy,
        steps: args.steps,
        stochastic: args.stochastic,
        noise: args.noise,
    };
    let data = collect::collect(&args.env, &[part], args.seed, 1.0, None, true)?;
    io::save(&data, &args.output).with_context(|| format!("writing {}", args.output.display()))?;
    print!("{}", super::dataset::summary(&data, Some(&args.output)));
    let returns: Vec<f64> = serde_json::from_value(data.meta.source["episode_returns"].clone())?;
    let (mean, std) = eval::mean_std(&returns);
    print!(
        "{}: {} transitions of {}, {} finished episodes, return {mean:.1} ± {std:.1}",
        args.output.display(),
        data.len(),
        data.meta.env_id,
        returns.len()
    );
    match data.normalized_score(mean) {
        Some(s) => println!(" (normalised {s:.1})"),
        None => println!(),
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Evaluate a behaviour policy (vectorised, one batched call per step).
    Eval {
        #[arg(long)]
        env: String,
        /// As for `offrl collect --policy`.
        #[arg(long)]
        policy: String,
        #[arg(long, default_value_t = 10)]
        episodes: usize,
        /// Environments stepped together.
        #[arg(long, default_value_t = 10)]
        n_envs: usize,
        #[arg(long)]
        stochastic: bool,
        #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
        noise: f32,
        /// Episode k is reset with seed `seed + k`.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

pub fn run_policy(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Eval {
            env,
            policy,
            episodes,
            n_envs,
            stochastic,
            noise,
            seed,
        } => {
            let probe = envs::make(&env)?;
            let mut pol = policy::by_name(&policy, probe.as_ref(), stochastic, noise, seed)?;
            drop(probe);
            let reference = crate::dataset::reference_scores_for(&env);
            let report = eval::evaluate(
                &mut pol,
                || envs::make(&env),
                n_envs,
                episodes,
                seed,
                reference,
            )?;
            println!("{policy} on {env}: {report}");
            Ok(())
        }
    }
}
