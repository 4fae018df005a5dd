//! Cells that build on sibling cells of the same dataset and seed: IDQL (proposals of the
//! diffusion-BC cell's prior, selection by the IQL cell's critic; trains nothing) and the paths
//! RTB fine-tuning starts from. Diffusion-BC and RTB train through the shared algorithm loop
//! like the other algorithms (see [`super::cell`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::cell::CellSpec;
use crate::algos::idql::{self, IdqlConfig};
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::eval::probe::{Probe, POLICY_NAMES, PRIOR_NAMES, PROBE_ROWS};
use crate::eval::EvalReport;

/// The run directory of a sibling cell (same dataset and seed) that this cell builds on.
pub fn sibling_run(spec: &CellSpec<'_>, algo: &str) -> Result<PathBuf> {
    let cell = super::cell_dir(spec.grid_out, algo, spec.dataset_name, spec.seed);
    let run = cell.join("run");
    if super::read_result(&cell)?.is_none() {
        return Err(Error::Config(format!(
            "`{}` needs the finished `{algo}` cell of {} (seed {}) at {}",
            spec.algo,
            spec.dataset_name,
            spec.seed,
            run.display()
        )));
    }
    Ok(run)
}

/// Run a cell built on sibling cells; returns its final evaluation, its config and its probes
/// (`crate::eval::probe`, named as the training runs' `diag/*` metrics without the prefix).
pub fn run(
    spec: &CellSpec<'_>,
    data: &Dataset,
    eval_seed: u64,
    curve: &mut Vec<(f64, f64)>,
) -> Result<(EvalReport, serde_json::Value, BTreeMap<String, f64>)> {
    let profile = spec.profile;
    let inference = spec.device.clone().without_autodiff();
    match spec.algo {
        "idql" => {
            let prior_run = sibling_run(spec, "diffusion-bc")?;
            let critic_run = sibling_run(spec, "iql")?;
            let config: IdqlConfig = crate::config::resolve(
                &IdqlConfig::default(),
                None,
                &profile.overrides_for("idql"),
            )?;
            let mut policy = idql::load_policy(
                &prior_run,
                &critic_run,
                config.clone(),
                &inference,
                eval_seed,
            )?;
            let r = crate::eval::evaluate_on(
                data,
                &mut policy,
                profile.eval_episodes,
                profile.eval_envs,
                eval_seed,
            )?;
            curve.push((0.0, r.normalized.unwrap_or(r.mean)));
            // The choices against the proposals: how far IDQL's argmax moves from the data, and
            // how much Q it gains over the prior's samples and the data's actions.
            let probe = Probe::new(data, data, PROBE_ROWS, spec.seed)?;
            let chosen = probe.act(&mut policy)?;
            let proposed = probe.act(&mut policy.proposals)?;
            let critic = &policy.scorer;
            let mut diag: BTreeMap<String, f64> = probe
                .stats(&chosen)
                .metrics(POLICY_NAMES)
                .into_iter()
                .chain(probe.stats(&proposed).metrics(PRIOR_NAMES))
                .chain([
                    ("diag/q_data", probe.mean_score(critic, &probe.actions)?),
                    ("diag/q_policy", probe.mean_score(critic, &chosen)?),
                    ("diag/q_prior", probe.mean_score(critic, &proposed)?),
                ])
                .map(|(k, v)| (k.trim_start_matches("diag/").to_string(), v))
                .collect();
            diag.retain(|_, v| v.is_finite());
            let config = serde_json::to_value(&config).expect("idql config serialises");
            Ok((r, config, diag))
        }
        other => Err(Error::Config(format!(
            "`{other}` is not a cell built on sibling cells"
        ))),
    }
}
