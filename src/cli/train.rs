//! `offrl train <model> --dataset D.parquet [--config FILE] [--set key=value]... --seed S --out DIR`
//!
//! One generic path for every model: resolve the config (defaults ← file ← `--set` ← flags),
//! load the dataset, train into the run directory (config.json, metrics.jsonl, plots/,
//! checkpoints/; training the same `--out` again resumes from its newest checkpoint), and
//! optionally evaluate the policy in its environment every `train.eval_every` updates.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches, Subcommand};

use crate::algos::{self, AlgoInfo, AlgoKind};
use crate::backend::BackendKind;

/// `offrl train <algorithm>`: one subcommand per trained algorithm of the registry
/// ([`algos::ALGORITHMS`]), with its aliases, its input flags (`--prior RUN`) and its value
/// flags (`--alpha`), plus `critic` (IQL without its actor, what RTB and IDQL read).
pub struct TrainCommand {
    /// The registry row's name, or `critic`.
    pub name: &'static str,
    pub kind: AlgoKind,
    /// `(config key, run directory or checkpoint)` of the inputs.
    pub inputs: Vec<(&'static str, PathBuf)>,
    /// `(config key, value)` of the value flags given.
    pub values: Vec<(&'static str, f64)>,
    pub common: CommonArgs,
}

/// The critic-only IQL: a subcommand of its own, not an algorithm of the registry.
const CRITIC: &str = "critic";

fn trained() -> impl Iterator<Item = (&'static AlgoInfo, AlgoKind)> {
    algos::ALGORITHMS
        .iter()
        .filter_map(|info| info.trained.map(|kind| (info, kind)))
}

/// `text` with its first letter upper-cased (help lines start with a capital).
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn subcommand(info: &'static AlgoInfo, kind: AlgoKind) -> Command {
    let summary = capitalised(info.summary);
    // The common arguments first: their struct's doc comment would replace the about.
    let mut cmd = CommonArgs::augment_args(Command::new(info.name))
        .about(format!("{summary}. Config: configs/{}.toml", kind.name()))
        .visible_aliases(info.aliases.iter().copied());
    for input in info.inputs {
        let optional = if input.required { "" } else { " (optional)" };
        cmd = cmd.arg(
            Arg::new(input.key)
                .long(input.key)
                .required(input.required)
                .value_name("RUN_OR_CHECKPOINT")
                .value_parser(clap::value_parser!(PathBuf))
                .help(format!(
                    "Run directory or checkpoint of `offrl train {}`{optional}",
                    input.from
                )),
        );
    }
    for (key, help) in info.flags {
        cmd = cmd.arg(
            Arg::new(*key)
                .long(*key)
                .value_name("VALUE")
                .value_parser(clap::value_parser!(f64))
                .help(capitalised(help)),
        );
    }
    cmd
}

impl Subcommand for TrainCommand {
    fn augment_subcommands(mut cmd: Command) -> Command {
        for (info, kind) in trained() {
            cmd = cmd.subcommand(subcommand(info, kind));
        }
        cmd.subcommand(CommonArgs::augment_args(Command::new(CRITIC)).about(
            "The IQL critic only (twin Q + V, no actor), for RTB / IDQL. Config: configs/iql.toml",
        ))
    }

    fn augment_subcommands_for_update(cmd: Command) -> Command {
        Self::augment_subcommands(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        name == CRITIC
            || trained().any(|(info, _)| info.name == name || info.aliases.contains(&name))
    }
}

impl FromArgMatches for TrainCommand {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let Some((name, sub)) = matches.subcommand() else {
            return Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand));
        };
        let common = CommonArgs::from_arg_matches(sub)?;
        if name == CRITIC {
            return Ok(Self {
                name: CRITIC,
                kind: AlgoKind::Iql,
                inputs: Vec::new(),
                values: Vec::new(),
                common,
            });
        }
        let (info, kind) = trained()
            .find(|(info, _)| info.name == name || info.aliases.contains(&name))
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidSubcommand))?;
        let inputs = info
            .inputs
            .iter()
            .filter_map(|i| Some((i.key, sub.get_one::<PathBuf>(i.key)?.clone())))
            .collect();
        let values = info
            .flags
            .iter()
            .filter_map(|(key, _)| Some((*key, *sub.get_one::<f64>(key)?)))
            .collect();
        Ok(Self {
            name: info.name,
            kind,
            inputs,
            values,
            common,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
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

pub fn run(cmd: TrainCommand) -> anyhow::Result<()> {
    // Applied after `--set`, so that the flags win over the file and the sets.
    let mut forced = Vec::new();
    if cmd.name == CRITIC {
        forced.push("train_actor=false".to_string());
    }
    for (key, path) in &cmd.inputs {
        // Paths become absolute TOML strings, so a resumed run compares equal from any folder.
        forced.push(format!("{key}={:?}", absolute(path, key)?));
    }
    for (key, value) in &cmd.values {
        forced.push(format!("{key}={value:e}"));
    }
    train(cmd.kind, &cmd.common, forced)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<TrainCommand, clap::Error> {
        let cmd = TrainCommand::augment_subcommands(Command::new("train"));
        let matches =
            cmd.try_get_matches_from(std::iter::once("train").chain(args.iter().copied()))?;
        TrainCommand::from_arg_matches(&matches)
    }

    /// The subcommands are the registry: every trained algorithm, its aliases, its input and
    /// value flags (and nothing for IDQL, which is not trained).
    #[test]
    fn train_subcommands_are_the_registrys_algorithms() {
        let common = ["--dataset", "d.parquet", "--out", "runs/x"];
        for (info, kind) in trained() {
            let mut args = vec![info.name];
            args.extend(common);
            let flags: Vec<String> = info.inputs.iter().map(|i| format!("--{}", i.key)).collect();
            for flag in &flags {
                args.extend([flag.as_str(), "runs/in"]);
            }
            let cmd = parse(&args).unwrap_or_else(|e| panic!("{}: {e}", info.name));
            assert_eq!((cmd.name, cmd.kind), (info.name, kind));
            assert_eq!(cmd.inputs.len(), info.inputs.len());
            // Without its required inputs it is refused; without its optional ones it is not.
            let bare = parse(&[&[info.name][..], &common[..]].concat());
            assert_eq!(
                bare.is_err(),
                info.inputs.iter().any(|i| i.required),
                "{}",
                info.name
            );
        }
        let cmd = parse(&["prior", "--dataset", "d", "--out", "o"]).unwrap();
        assert_eq!(
            (cmd.name, cmd.kind),
            ("diffusion-bc", AlgoKind::DiffusionBc)
        );
        let cmd = parse(&["critic", "--dataset", "d", "--out", "o"]).unwrap();
        assert_eq!((cmd.name, cmd.kind), ("critic", AlgoKind::Iql));
        let args = [
            "rtb",
            "--dataset",
            "d",
            "--out",
            "o",
            "--prior",
            "p",
            "--critic",
            "c",
        ];
        let cmd = parse(&[&args[..], &["--alpha", "0.25"]].concat()).unwrap();
        assert_eq!(cmd.values, [("alpha", 0.25)]);
        assert!(parse(&["idql", "--dataset", "d", "--out", "o"]).is_err());
    }
}
