//! Planning a grid and running one of its lines, as a library (the CLI's `offrl bench plan` /
//! `offrl bench cell --manifest`, and the Python package's `offrl.bench`, which runs the lines
//! in its own process).

use std::path::{Path, PathBuf};

use super::manifest::{CellLine, Header, Manifest, Resources, VERSION};
use super::{cell, cell_dir, read_result, CellResult};
use crate::backend::BackendKind;
use crate::error::{Error, Result};

/// The registry datasets of `suite`, only those named in `wanted` (short names) when given.
pub fn suite_datasets(suite: &str, wanted: &[String]) -> Result<Vec<String>> {
    let mut datasets = crate::dataset::registry::Registry::from_env().suite(suite)?;
    for want in wanted {
        if !datasets.contains(&format!("{suite}/{want}")) {
            return Err(Error::Config(format!(
                "suite `{suite}` has no dataset `{want}` (has: {datasets:?})"
            )));
        }
    }
    if !wanted.is_empty() {
        datasets.retain(|d| wanted.iter().any(|w| d == &format!("{suite}/{w}")));
    }
    Ok(datasets)
}

/// The algorithms of a grid with their dependencies first (cells of their own, in the table
/// too), split into waves: those without inputs, then those that need them.
pub fn algorithm_waves(requested: &[String]) -> Result<(Vec<String>, [Vec<String>; 2])> {
    let mut algos: Vec<String> = Vec::new();
    for a in requested {
        for dep in crate::algos::algorithm(a)?.needs {
            if !algos.iter().any(|x| x == dep) {
                algos.push(dep.to_string());
            }
        }
        if !algos.contains(a) {
            algos.push(a.clone());
        }
    }
    let (base, dependent): (Vec<String>, Vec<String>) = algos.iter().cloned().partition(|a| {
        crate::algos::algorithm(a)
            .map(|info| info.needs.is_empty())
            .unwrap_or(true)
    });
    Ok((algos, [base, dependent]))
}

/// A grid to plan.
pub struct GridPlan<'a> {
    pub algos: &'a [String],
    pub datasets: &'a [String],
    pub seeds: &'a [u64],
    pub profile: &'a str,
    pub sets: &'a [String],
    pub backend: BackendKind,
    /// One dataset file for every cell (the pipeline), instead of registry datasets.
    pub data_file: Option<&'a Path>,
    pub out: &'a Path,
    pub resources: Resources,
}

/// Write the grid's manifest (every cell in wave order) into its folder; returns it and its path.
pub fn plan(p: &GridPlan<'_>) -> Result<(Manifest, PathBuf)> {
    // Checks the overrides before anything is written.
    cell::Profile::load(p.profile)?.with_sets(p.sets)?;
    std::fs::create_dir_all(p.out).map_err(|e| Error::io(p.out, e))?;
    let out = std::fs::canonicalize(p.out).map_err(|e| Error::io(p.out, e))?;
    let (_, waves) = algorithm_waves(p.algos)?;
    let waves: Vec<&Vec<String>> = waves.iter().filter(|a| !a.is_empty()).collect();
    let mut cells = Vec::new();
    for (wave, algos) in waves.iter().enumerate() {
        for dataset in p.datasets {
            for algo in algos.iter() {
                for &seed in p.seeds {
                    cells.push(CellLine {
                        index: cells.len(),
                        wave,
                        algo: algo.clone(),
                        dataset: dataset.clone(),
                        seed,
                        dir: cell_dir(&out, algo, dataset, seed),
                        resources: p.resources.clone(),
                    });
                }
            }
        }
    }
    let manifest = Manifest {
        header: Header {
            offrl_manifest: VERSION,
            out: out.clone(),
            profile: p.profile.to_string(),
            backend: p.backend.name().to_string(),
            sets: p.sets.to_vec(),
            data_file: p.data_file.map(|f| f.to_path_buf()),
            cells: cells.len(),
            waves: waves.len(),
            commit: env!("OFFRL_COMMIT").to_string(),
        },
        cells,
    };
    let path = manifest.write(&out)?;
    Ok((manifest, path))
}

/// One cell, named by its fields.
pub struct CellRun<'a> {
    pub algo: &'a str,
    pub dataset: &'a str,
    pub seed: u64,
    pub profile: &'a str,
    pub dir: &'a Path,
    pub data_file: Option<&'a Path>,
    pub sets: &'a [String],
    pub backend: BackendKind,
}

/// Run one cell in this process: its dataset made if missing, its result written.
pub fn run(c: &CellRun<'_>) -> Result<CellResult> {
    std::fs::create_dir_all(c.dir).map_err(|e| Error::io(c.dir, e))?;
    let profile = cell::Profile::load(c.profile)?.with_sets(c.sets)?;
    let grid_out = c
        .dir
        .ancestors()
        .nth(4)
        .ok_or_else(|| {
            Error::Config(format!(
                "{}: a cell folder lives at OUT/cells/DATASET/ALGO/seed-N",
                c.dir.display()
            ))
        })?
        .to_path_buf();
    let data_path = match c.data_file {
        Some(file) => file.to_path_buf(),
        None => cell::prepare_dataset(c.dataset, profile.scale, &grid_out.join("data"))?,
    };
    let device = c.backend.train_device()?;
    crate::backend::seed(&device, c.seed);
    let spec = cell::CellSpec {
        algo: c.algo,
        dataset_name: c.dataset,
        data_path: &data_path,
        seed: c.seed,
        profile: &profile,
        dir: c.dir,
        grid_out: &grid_out,
        device: &device,
        settings: cell::settings(&profile, c.algo, c.backend.name(), c.data_file),
    };
    cell::run_cell(&spec)
}

/// Run line `index` of the manifest at `path` in this process; `None` when that cell has
/// already finished (it is never recomputed).
pub fn run_line(path: &Path, index: usize) -> Result<Option<CellResult>> {
    let manifest = Manifest::read(path)?;
    let line = manifest.cell(index, path)?;
    if read_result(&line.dir)?.is_some() {
        return Ok(None);
    }
    let h = &manifest.header;
    let backend = BackendKind::from_name(&h.backend)
        .ok_or_else(|| Error::format(path, format!("unknown backend `{}`", h.backend)))?;
    run(&CellRun {
        algo: &line.algo,
        dataset: &line.dataset,
        seed: line.seed,
        profile: &h.profile,
        dir: &line.dir,
        data_file: h.data_file.as_deref(),
        sets: &h.sets,
        backend,
    })
    .map(Some)
}
