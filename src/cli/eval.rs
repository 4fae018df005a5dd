//! `offrl eval --checkpoint C [--env E] [--episodes 10] [--envs 10] [--seed S] [--dataset D]
//! [--critic Q [--set samples=K]...] [--json OUT]`
//!
//! Evaluates the policy of any `offrl train` model (a run directory: its newest checkpoint; or a
//! checkpoint folder): the kind, config and data spec come from the checkpoint's metadata
//! ([`algos::load_checkpoint`], what resume uses). With `--critic`, a prior checkpoint and an IQL
//! critic make the IDQL policy. Prints per-episode returns, mean ± std and the D4RL-normalised
//! score; `--json` writes the same as JSON.
//!
//! The environment is `--env`, else the dataset's (`--dataset`), else the one the run recorded.
//! Reference returns: the first that is about that environment and has them of the dataset's
//! metadata (`--dataset`), the run's record, D4RL's table, the registry's cards.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

use crate::algos::idql::{self, IdqlConfig};
use crate::algos::{self, AlgoKind};
use crate::backend::BackendKind;
use crate::dataset::ReferenceScores;
use crate::eval::EvalReport;
use crate::policy::Policy;
use crate::train::checkpoint::Checkpoint;
use crate::train::DatasetInfo;

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Run directory (its newest checkpoint) or checkpoint folder of any `offrl train` model.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Environment id (default: the dataset's with --dataset, else the one the run recorded).
    #[arg(long)]
    pub env: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub episodes: usize,
    /// Environments stepped together (one batched policy call per step for all of them).
    #[arg(long, default_value_t = 10)]
    pub envs: usize,
    /// Episode k is reset with seed `seed + k`; also seeds stochastic policies (IDQL).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Dataset (Parquet) whose metadata gives the environment and the reference returns.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// IQL critic (run directory or checkpoint of `offrl train critic` / `iql`): with a prior
    /// checkpoint, evaluate the IDQL policy (prior proposals, critic selection).
    #[arg(long)]
    pub critic: Option<PathBuf>,
    /// With --critic, an IDQL setting (`--set samples=64`, `--set selection.kind=greedy`);
    /// without, a patch of the model's recorded config for acting, e.g. `--set
    /// act_noise_scale=0.5` or `--set eval_extra_steps=20` (the weights are the checkpoint's).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Also write the report as JSON to this file (written atomically).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
}

/// What `--json` writes.
#[derive(Debug, Serialize)]
struct EvalOutput<'a> {
    /// Paths as text (JSON holds only UTF-8; other bytes become U+FFFD).
    checkpoint: String,
    kind: &'a str,
    step: usize,
    env_id: &'a str,
    episodes: usize,
    n_envs: usize,
    seed: u64,
    reference_scores: Option<ReferenceScores>,
    /// The IDQL settings, when evaluated with `--critic`.
    idql: Option<IdqlConfig>,
    critic: Option<String>,
    #[serde(flatten)]
    report: &'a EvalReport,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if !args.checkpoint.exists() {
        bail!(
            "--checkpoint {}: no such file or directory",
            args.checkpoint.display()
        );
    }
    let dir = Checkpoint::resolve(&args.checkpoint)?;
    let ck = Checkpoint::open(&dir, None)?;
    let recorded = DatasetInfo::recorded(&ck);
    let dataset = match &args.dataset {
        Some(path) => Some(
            crate::dataset::io::read_metadata(path)
                .with_context(|| format!("reading the metadata of --dataset {}", path.display()))?,
        ),
        None => None,
    };
    let env_id = match (&args.env, &dataset, &recorded) {
        (Some(env), _, _) => env.clone(),
        (None, Some(meta), _) => meta.env_id.clone(),
        (None, None, Some(rec)) => rec.env_id.clone(),
        (None, None, None) => bail!(
            "{} does not record the environment it was trained for; pass --env (or --dataset)",
            dir.display()
        ),
    };
    // The first source that is about this environment and knows its reference returns.
    let same_env = |id: &str, r: Option<ReferenceScores>| r.filter(|_| id == env_id);
    let reference = match dataset
        .as_ref()
        .and_then(|m| same_env(&m.env_id, m.reference_scores))
        .or_else(|| {
            recorded
                .as_ref()
                .and_then(|r| same_env(&r.env_id, r.reference_scores))
        }) {
        Some(r) => Some(r),
        None => crate::dataset::registry::Registry::from_env().reference_scores_for_env(&env_id)?,
    };

    let (mut policy, (obs_dim, act_dim), idql_config) = build_policy(&args, &ck)?;
    let probe = crate::envs::make(&env_id)
        .with_context(|| format!("making the evaluation environment `{env_id}`"))?;
    let env_dims = (probe.observation_space().dim(), probe.action_space().dim());
    drop(probe);
    if env_dims != (obs_dim, act_dim) {
        bail!(
            "environment `{env_id}` has obs {} / act {}, but the model in {} was trained for obs \
             {obs_dim} / act {act_dim}; pass the --env it was trained on",
            env_dims.0,
            env_dims.1,
            dir.display()
        );
    }
    println!(
        "evaluating {} (step {}) from {} on {env_id}: {} episodes, {} environments, seed {}",
        ck.meta.kind,
        ck.meta.step,
        dir.display(),
        args.episodes,
        args.envs,
        args.seed
    );
    let report = crate::eval::evaluate(
        policy.as_mut(),
        || crate::envs::make(&env_id),
        args.envs,
        args.episodes,
        args.seed,
        reference,
    )?;
    for (k, (ret, len)) in report.returns.iter().zip(&report.lengths).enumerate() {
        println!(
            "episode {k} (seed {}): return {ret:.3}, {len} steps",
            args.seed.wrapping_add(k as u64)
        );
    }
    println!("{report}");
    if reference.is_none() {
        println!("no reference returns for `{env_id}`: pass --dataset to normalise the score");
    }
    if let Some(path) = &args.json {
        let out = EvalOutput {
            checkpoint: dir.display().to_string(),
            kind: &ck.meta.kind,
            step: ck.meta.step,
            env_id: &env_id,
            episodes: args.episodes,
            n_envs: args.envs,
            seed: args.seed,
            reference_scores: reference,
            idql: idql_config,
            critic: args.critic.as_ref().map(|p| p.display().to_string()),
            report: &report,
        };
        let text = serde_json::to_string_pretty(&out).expect("the report serialises");
        crate::output::write_atomic(path, text.as_bytes())
            .with_context(|| format!("writing --json {}", path.display()))?;
    }
    Ok(())
}

/// The policy to evaluate, the (obs, act) dims it was trained for, and the IDQL settings when
/// it is IDQL.
type Built = (Box<dyn Policy>, (usize, usize), Option<IdqlConfig>);

fn build_policy(args: &EvalArgs, ck: &Checkpoint) -> anyhow::Result<Built> {
    let Some(critic) = &args.critic else {
        let device = args.backend.train_device()?;
        let mut ck = ck.clone();
        if !args.set.is_empty() {
            // Today's defaults under the recorded config: older runs lack newer (acting) keys.
            let kind = AlgoKind::from_name(&ck.meta.kind)?;
            let recorded = ck.meta.config.get("config").cloned().unwrap_or_default();
            let config = crate::config::overlay(
                &kind.default_config(),
                recorded,
                &ck.dir.display().to_string(),
            )?;
            ck.meta.config["config"] = crate::config::resolve(&config, None, &args.set)
                .with_context(|| format!("--set on the config of {}", ck.dir.display()))?;
        }
        let algo = algos::load_checkpoint(&ck, &device)?;
        let spec = algo.spec();
        let dims = (spec.obs_dim, spec.act_dim);
        let policy = algo.policy().with_context(|| {
            let hint = if algo.name() == AlgoKind::Iql.name() {
                " (a critic is evaluated inside IDQL: --checkpoint PRIOR --critic THIS)"
            } else {
                ""
            };
            format!("the `{}` model in {}{hint}", ck.meta.kind, ck.dir.display())
        })?;
        return Ok((policy, dims, None));
    };
    let kind = ck.meta.kind.as_str();
    if kind != AlgoKind::DiffusionBc.name() && !algos::dxmi::KINDS.contains(&kind) {
        bail!(
            "--critic evaluates IDQL, which needs a diffusion prior checkpoint (`offrl train \
             prior`, or a dxmi / gcd run's sampler); {} holds a `{}` model",
            ck.dir.display(),
            ck.meta.kind
        );
    }
    let config: IdqlConfig = crate::config::resolve(&IdqlConfig::default(), None, &args.set)?;
    let device = args.backend.device()?;
    let policy = idql::load_policy(&ck.dir, critic, config.clone(), &device, args.seed)
        .with_context(|| {
            format!(
                "building IDQL from {} and {}",
                ck.dir.display(),
                critic.display()
            )
        })?;
    let dims = (
        policy.proposals.prior.spec.obs_dim(),
        policy.proposals.prior.spec.act_dim(),
    );
    Ok((Box::new(policy), dims, Some(config)))
}
