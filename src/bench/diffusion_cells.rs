//! Cells of the diffusion-based algorithms: diffusion-BC (the prior as the policy), IDQL
//! (prior proposals, critic selection) and RTB (the prior fine-tuned with the critic as reward).

use std::path::Path;

use super::cell::CellSpec;
use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::eval::EvalReport;

pub fn run(
    spec: &CellSpec<'_>,
    _data: &Dataset,
    _run_dir: &Path,
    _eval_seed: u64,
    _curve: &mut Vec<(f64, f64)>,
) -> Result<EvalReport> {
    Err(Error::Config(format!(
        "algorithm `{}` is not available in this build yet",
        spec.algo
    )))
}
