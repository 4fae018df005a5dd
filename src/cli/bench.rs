//! `offrl bench` (algorithms × datasets × seeds → table), `offrl bench cell` (one cell, run by
//! the grid as a separate process) and `offrl quickstart` (the embedded default: the native
//! Pendulum suite, quick profile).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::backend::BackendKind;
use crate::bench::{self, cell, GridSpec, Table};
use crate::dataset::registry;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub cell: Option<BenchCommand>,
    #[command(flatten)]
    pub grid: GridArgs,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Run one (algorithm, dataset, seed) cell (what the grid spawns; rarely called by hand).
    Cell(CellArgs),
    /// Rebuild a grid's tables, curves and statistics (IQM, mean, median, optimality gap with
    /// stratified bootstrap intervals; probability of improvement; score distributions) from
    /// whatever cells have finished: DIR/results.md, stats.md, stats.json, profiles.png.
    Report(ReportArgs),
}

#[derive(Args, Clone)]
pub struct ReportArgs {
    /// The grid's folder (`offrl bench --out`), or a folder of committed results
    /// (`results/STUDY`: base files only, not `__TAG` variants).
    pub dir: PathBuf,
    /// Where the report's files go (default: DIR for a grid; none for committed results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bootstrap resamples per interval (rliable's default).
    #[arg(long, default_value_t = 50_000)]
    pub reps: usize,
    /// Coverage of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the statistics between `<!-- report: DIR -->` and `<!-- /report -->` in this file.
    #[arg(long, conflicts_with = "check")]
    pub into: Option<PathBuf>,
    /// Fail when this file's `<!-- report: DIR -->` block is not what the results give (CI).
    #[arg(long)]
    pub check: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct GridArgs {
    /// Dataset suite: a folder of the registry (e.g. `pendulum`, `locomotion-v5`).
    #[arg(long, default_value = "pendulum")]
    pub suite: String,
    /// Only these members of the suite (comma-separated names without the suite prefix).
    #[arg(long, value_delimiter = ',')]
    pub datasets: Vec<String>,
    /// Algorithms (comma-separated): bc, td3bc, iql, cql, diffusion-bc, idql, rtb.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bc,iql,diffusion-bc,idql,rtb"
    )]
    pub algos: Vec<String>,
    /// Number of seeds (0..N, at least 1), or use --seed-list.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// Explicit seeds (comma-separated); overrides --seeds.
    #[arg(long, value_delimiter = ',')]
    pub seed_list: Vec<u64>,
    /// Profile: `quick`, `paper`, or a path to a profile TOML.
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Cells run at the same time (each is its own process).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Output folder (results.md/csv/json, curves/, cells/, data/). Re-running resumes it.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Extra config override for one algorithm's cells, `ALGO.KEY=VALUE` (e.g.
    /// `--set rtb.alpha=0.05 --set iql.train.steps=20000`); applied after the profile's (repeatable).
    #[arg(long = "set", value_name = "ALGO.KEY=VALUE")]
    pub set: Vec<String>,
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
}

#[derive(Args)]
pub struct CellArgs {
    #[arg(long)]
    pub algo: String,
    /// Registry name of the dataset.
    #[arg(long)]
    pub dataset: String,
    #[arg(long)]
    pub seed: u64,
    #[arg(long)]
    pub profile: String,
    /// The cell's folder (inside the grid's `cells/`).
    #[arg(long)]
    pub dir: PathBuf,
    /// Train on this Parquet file instead of making the registry dataset `--dataset` names.
    #[arg(long)]
    pub data_file: Option<PathBuf>,
    /// Extra overrides, `ALGO.KEY=VALUE` (as `offrl bench --set`).
    #[arg(long = "set", value_name = "ALGO.KEY=VALUE")]
    pub set: Vec<String>,
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
}

/// `offrl pipeline`: the whole method on one dataset file.
#[derive(Args)]
pub struct PipelineArgs {
    /// The dataset (Parquet, from `offrl dataset import/make` or `offrl collect`).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Profile of step counts and evaluation protocol: `quick`, `cpu`, `paper`, or a TOML path.
    #[arg(long, default_value = "cpu")]
    pub profile: String,
    /// Algorithms beside the pipeline's own (diffusion-bc = the prior, iql = the critic, rtb),
    /// evaluated the same way, e.g. `--compare idql,bc`.
    #[arg(long, value_delimiter = ',')]
    pub compare: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run directory (default `runs/pipeline-<dataset file stem>`); re-running resumes it.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Config override for one stage, `ALGO.KEY=VALUE` (e.g. `--set rtb.alpha=0.05`).
    #[arg(long = "set", value_name = "ALGO.KEY=VALUE")]
    pub set: Vec<String>,
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.cell {
        Some(BenchCommand::Cell(c)) => run_cell(c),
        Some(BenchCommand::Report(r)) => {
            anyhow::ensure!(
                r.reps > 0 && r.confidence > 0.0 && r.confidence < 1.0,
                "--reps must be positive and --confidence inside (0, 1) (got {} and {})",
                r.reps,
                r.confidence
            );
            let cfg = bench::report::StatsConfig {
                reps: r.reps,
                confidence: r.confidence,
                seed: r.seed,
            };
            let out = r
                .out
                .clone()
                .or_else(|| r.dir.join("cells").is_dir().then(|| r.dir.clone()));
            let report = bench::report::report(&r.dir, out.as_deref(), &cfg)?;
            let Some(doc) = r.into.as_ref().or(r.check.as_ref()) else {
                println!("{}\n{}", report.table, report.stats);
                return Ok(());
            };
            let text = std::fs::read_to_string(doc)
                .with_context(|| format!("reading {}", doc.display()))?;
            let key = r.dir.display().to_string();
            let new = bench::report::splice(doc, &text, &key, &report.stats)?;
            if r.check.is_some() {
                anyhow::ensure!(
                    new == text,
                    "{}: the statistics of {key} are not what its results give; run `offrl bench \
                     report {key} --reps {} --seed {} --into {}`",
                    doc.display(),
                    r.reps,
                    r.seed,
                    doc.display()
                );
                println!("{}: {key} in sync", doc.display());
            } else {
                crate::output::write_atomic(doc, new.as_bytes())?;
            }
            Ok(())
        }
        None => run_grid(args.grid).map(|_| ()),
    }
}

/// The README's main job: the Pendulum suite with the quick profile.
pub fn quickstart(out: Option<PathBuf>, seed: u64) -> anyhow::Result<()> {
    let grid = GridArgs {
        suite: "pendulum".into(),
        datasets: vec!["medium".into()],
        algos: vec![
            "diffusion-bc".into(),
            "iql".into(),
            "idql".into(),
            "rtb".into(),
        ],
        seeds: 1,
        seed_list: vec![seed],
        profile: "quick".into(),
        jobs: 1,
        out: Some(out.unwrap_or_else(|| "runs/quickstart".into())),
        set: vec![],
        backend: BackendKind::Flex,
    };
    run_grid(grid).map(|_| ())
}

/// The grid's folder for a cell's data and results: `--out`, else `runs/bench-<suite>-<profile>`.
fn grid_out(args: &GridArgs) -> PathBuf {
    args.out.clone().unwrap_or_else(|| {
        format!(
            "runs/bench-{}-{}",
            args.suite.replace('/', "-"),
            args.profile
        )
        .into()
    })
}

pub fn run_grid(args: GridArgs) -> anyhow::Result<Table> {
    let profile = cell::Profile::load(&args.profile)?;
    let out = grid_out(&args);
    let mut datasets = registry::Registry::from_env().suite(&args.suite)?;
    if !args.datasets.is_empty() {
        for want in &args.datasets {
            let full = format!("{}/{want}", args.suite);
            anyhow::ensure!(
                datasets.contains(&full),
                "suite `{}` has no dataset `{want}` (has: {datasets:?})",
                args.suite
            );
        }
        datasets.retain(|d| {
            args.datasets
                .iter()
                .any(|w| d == &format!("{}/{w}", args.suite))
        });
    }
    let seeds: Vec<u64> = if args.seed_list.is_empty() {
        (0..args.seeds).collect()
    } else {
        args.seed_list.clone()
    };
    // Datasets are made once, by this process, before any cell starts.
    let data_dir = out.join("data");
    for d in &datasets {
        let path = cell::prepare_dataset(d, profile.scale, &data_dir)
            .with_context(|| format!("making dataset `{d}`"))?;
        tracing::info!("dataset {d}: {}", path.display());
    }
    let waves = Waves {
        algos: &args.algos,
        datasets: &datasets,
        seeds: &seeds,
        profile: &args.profile,
        jobs: args.jobs,
        out: &out,
        backend: args.backend,
        set: &args.set,
        data_file: None,
    };
    run_waves(&waves)
}

/// `offrl pipeline`: prior (diffusion-BC) and critic (IQL), then RTB, each evaluated, as the cells
/// of a one-dataset grid (so resuming, progress and the table are the bench runner's).
pub fn pipeline(args: PipelineArgs) -> anyhow::Result<()> {
    cell::Profile::load(&args.profile)?;
    let data = crate::dataset::io::load(&args.dataset)
        .with_context(|| format!("loading the dataset {}", args.dataset.display()))?;
    let name = args
        .dataset
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the dataset path has no file name")?
        .to_string();
    tracing::info!(
        "pipeline on {} ({} transitions, {})",
        args.dataset.display(),
        data.len(),
        data.meta.env_id
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| format!("runs/pipeline-{name}").into());
    let data_file = std::fs::canonicalize(&args.dataset)
        .with_context(|| format!("--dataset {}", args.dataset.display()))?;
    let mut algos: Vec<String> = vec!["diffusion-bc".into(), "iql".into(), "rtb".into()];
    algos.extend(args.compare.iter().cloned());
    let waves = Waves {
        algos: &algos,
        datasets: &[name],
        seeds: &[args.seed],
        profile: &args.profile,
        jobs: 1,
        out: &out,
        backend: args.backend,
        set: &args.set,
        data_file: Some(&data_file),
    };
    run_waves(&waves).map(|_| ())
}

/// A grid to run: every (dataset, algorithm, seed) cell, in dependency waves.
struct Waves<'a> {
    algos: &'a [String],
    datasets: &'a [String],
    seeds: &'a [u64],
    profile: &'a str,
    jobs: usize,
    out: &'a std::path::Path,
    backend: BackendKind,
    set: &'a [String],
    /// One dataset file for every cell (the pipeline), instead of registry datasets.
    data_file: Option<&'a std::path::Path>,
}

fn run_waves(w: &Waves<'_>) -> anyhow::Result<Table> {
    // Every cell's settings, to tell finished cells computed otherwise (and to check --set).
    let profile = cell::Profile::load(w.profile)?.with_sets(w.set)?;
    // Dependencies run first: they are cells of their own, shown in the table too.
    let mut algos: Vec<String> = Vec::new();
    for a in w.algos {
        for dep in crate::algos::algorithm(a)?.needs {
            if !algos.iter().any(|x| x == dep) {
                algos.push(dep.to_string());
            }
        }
        if !algos.contains(a) {
            algos.push(a.clone());
        }
    }
    let exe = std::env::current_exe().context("locating the offrl executable")?;
    let backend = w.backend.name().to_string();
    let mut cell_args: Vec<String> = vec!["--backend".into(), backend.clone()];
    for s in w.set {
        cell_args.extend(["--set".to_string(), s.clone()]);
    }
    if let Some(file) = w.data_file {
        cell_args.extend(["--data-file".to_string(), file.display().to_string()]);
    }
    // Cells in dependency waves: algorithms without dependencies first.
    let (base, dependent): (Vec<String>, Vec<String>) = algos.iter().cloned().partition(|a| {
        crate::algos::algorithm(a)
            .map(|info| info.needs.is_empty())
            .unwrap_or(true)
    });
    let mut results = Vec::new();
    for wave in [base, dependent] {
        if wave.is_empty() {
            continue;
        }
        let spec = GridSpec {
            algos: wave,
            datasets: w.datasets.to_vec(),
            seeds: w.seeds.to_vec(),
            profile: w.profile.to_string(),
            jobs: w.jobs,
            out: w.out.to_path_buf(),
            cell_args: cell_args.clone(),
            settings: profile.clone(),
            backend: backend.clone(),
            data_file: w.data_file.map(|p| p.to_path_buf()),
        };
        results.extend(bench::run_grid(&spec, &exe)?);
    }
    let table = Table::new(&algos, w.datasets, &results);
    bench::write_report(w.out, &table, &results)?;
    println!("{}", table.markdown());
    println!("results: {}", w.out.join("results.md").display());
    let expected = w.datasets.len() * algos.len() * w.seeds.len();
    anyhow::ensure!(
        results.len() == expected,
        "{} of {expected} cells failed (their logs are under {})",
        expected - results.len(),
        w.out.join("cells").display()
    );
    Ok(table)
}

/// A cell dies with the process that started it (the grid, or a shell): left running, it would
/// train unattended until it failed writing to a closed pipe. Its training resumes from its last
/// checkpoint when the grid is run again.
#[cfg(target_os = "linux")]
fn die_with_parent() -> anyhow::Result<()> {
    // The grid names itself; a cell started by hand dies with whatever started it.
    let parent = std::env::var(crate::bench::GRID_PID_VAR)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or_else(std::os::unix::process::parent_id);
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) };
    anyhow::ensure!(rc == 0, "prctl(PR_SET_PDEATHSIG) failed");
    // The parent may have died before the call (even before this process first ran): then no
    // signal will come, and the process that adopted this one is not the grid.
    anyhow::ensure!(
        std::os::unix::process::parent_id() == parent,
        "the process that started this cell is gone"
    );
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent() -> anyhow::Result<()> {
    Ok(())
}

fn run_cell(args: CellArgs) -> anyhow::Result<()> {
    die_with_parent()?;
    let profile = cell::Profile::load(&args.profile)?.with_sets(&args.set)?;
    let grid_out = args
        .dir
        .ancestors()
        .nth(4)
        .context("a cell folder lives at OUT/cells/DATASET/ALGO/seed-N")?
        .to_path_buf();
    let data_path = match &args.data_file {
        Some(file) => file.clone(),
        None => cell::prepare_dataset(&args.dataset, profile.scale, &grid_out.join("data"))?,
    };
    let device = args.backend.train_device()?;
    crate::backend::seed(&device, args.seed);
    let spec = cell::CellSpec {
        algo: &args.algo,
        dataset_name: &args.dataset,
        data_path: &data_path,
        seed: args.seed,
        profile: &profile,
        dir: &args.dir,
        grid_out: &grid_out,
        device: &device,
        settings: cell::settings(
            &profile,
            &args.algo,
            args.backend.name(),
            args.data_file.as_deref(),
        ),
    };
    let r = cell::run_cell(&spec)?;
    eprintln!(
        "{} on {} (seed {}): return {:.1} ± {:.1}, score {:?}",
        r.algo, r.dataset, r.seed, r.mean_return, r.std_return, r.normalized_score
    );
    Ok(())
}
