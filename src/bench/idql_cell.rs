//! The IDQL cell: proposals of the diffusion-BC cell's prior, selection by the IQL cell's critic
//! (same dataset and seed); it trains nothing, so it only evaluates and probes.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;

use crate::algos::idql::{self, IdqlConfig};
use crate::dataset::Dataset;
use crate::error::Result;
use crate::eval::probe::{Probe, POLICY_NAMES, PRIOR_NAMES, PROBE_ROWS};
use crate::eval::EvalReport;

/// Evaluate IDQL with the prior of `prior_run` and the critic of `critic_run` (`overrides` patch
/// [`IdqlConfig`]'s defaults): `episodes` episodes on `envs` environments from `eval_seed`, and the
/// probes of its choices and proposals at `probe_seed`'s dataset states. Returns the report, the
/// resolved config and the probes (named as the training runs' `diag/*` metrics, without the
/// prefix).
#[allow(clippy::too_many_arguments)]
pub fn run(
    prior_run: &Path,
    critic_run: &Path,
    overrides: &[String],
    data: &Dataset,
    episodes: usize,
    envs: usize,
    eval_seed: u64,
    probe_seed: u64,
    device: &Device,
) -> Result<(EvalReport, serde_json::Value, BTreeMap<String, f64>)> {
    let inference = device.clone().without_autodiff();
    let config: IdqlConfig = crate::config::resolve(&IdqlConfig::default(), None, overrides)?;
    let mut policy =
        idql::load_policy(prior_run, critic_run, config.clone(), &inference, eval_seed)?;
    let r = crate::eval::evaluate_on(data, &mut policy, episodes, envs, eval_seed)?;
    // The choices against the proposals: how far IDQL's argmax moves from the data, and
    // how much Q it gains over the prior's samples and the data's actions.
    let probe = Probe::new(data, data, PROBE_ROWS, probe_seed)?;
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
