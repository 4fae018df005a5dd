//! Cells that build on sibling cells of the same dataset and seed: IDQL (proposals of the
//! diffusion-BC cell's prior, selection by the IQL cell's critic; trains nothing) and the paths
//! RTB fine-tuning starts from. Diffusion-BC and RTB train through the shared algorithm loop
//! like the other algorithms (see [`super::cell`]).

use std::path::PathBuf;

use super::cell::CellSpec;
use crate::algos::idql::{self, IdqlConfig};
use crate::dataset::Dataset;
use crate::error::{Error, Result};
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

pub fn run(
    spec: &CellSpec<'_>,
    data: &Dataset,
    eval_seed: u64,
    curve: &mut Vec<(f64, f64)>,
) -> Result<EvalReport> {
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
            let mut policy =
                idql::load_policy(&prior_run, &critic_run, config, &inference, eval_seed)?;
            let r = crate::eval::evaluate_on(
                data,
                &mut policy,
                profile.eval_episodes,
                profile.eval_envs,
                eval_seed,
            )?;
            curve.push((0.0, r.normalized.unwrap_or(r.mean)));
            Ok(r)
        }
        other => Err(Error::Config(format!(
            "`{other}` is not a cell built on sibling cells"
        ))),
    }
}
