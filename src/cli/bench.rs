//! `offrl bench` (algorithms × datasets × seeds → table), `offrl bench cell` (one cell, run by
//! the grid as a separate process) and `offrl quickstart` (the embedded default: the native
//! Pendulum suite, quick profile).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::backend::BackendKind;
use crate::bench::{self, cell, GridSpec, Table};

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub cell: Option<BenchCommand>,
    #[command(flatten)]
    pub grid: GridArgs,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Run one (algorithm, dataset, seed) cell: a line of a manifest (`--manifest M --index I`,
    /// what Slurm and Ray tasks run), or named by its fields (what the local grid spawns).
    Cell(CellArgs),
    /// Write the grid as a manifest (OUT/manifest.jsonl: one line per cell, in dependency
    /// waves) and make its datasets, without running anything: then run line I anywhere with
    /// `offrl bench cell --manifest OUT/manifest.jsonl --index I`, and `offrl bench report OUT`.
    Plan(GridArgs),
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
    /// A committed study's table instead (algorithms with their variants × datasets, mean ±
    /// std over seeds, seeds × episodes, wall time per run); `--into`/`--check` then use the
    /// `<!-- render: DIR -->` block.
    #[arg(long, conflicts_with = "times")]
    pub table: bool,
    /// With `--table`: also list the learning-curve points.
    #[arg(long, requires = "table")]
    pub curves: bool,
    /// The wall minutes of each base cell per (dataset, seed) of a committed study.
    #[arg(long)]
    pub times: bool,
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
    #[command(flatten)]
    pub executor: ExecutorArgs,
}

#[derive(Args)]
pub struct CellArgs {
    /// A grid's manifest (`offrl bench plan`): run its line `--index` (the other fields come
    /// from it).
    #[arg(long, requires = "index", conflicts_with_all = ["algo", "dataset", "seed", "profile", "dir", "data_file", "set"])]
    pub manifest: Option<PathBuf>,
    /// The manifest line to run (a Slurm array task's `$SLURM_ARRAY_TASK_ID`).
    #[arg(long, requires = "manifest")]
    pub index: Option<usize>,
    #[arg(long, required_unless_present = "manifest")]
    pub algo: Option<String>,
    /// Registry name of the dataset.
    #[arg(long, required_unless_present = "manifest")]
    pub dataset: Option<String>,
    #[arg(long, required_unless_present = "manifest")]
    pub seed: Option<u64>,
    #[arg(long, required_unless_present = "manifest")]
    pub profile: Option<String>,
    /// The cell's folder (inside the grid's `cells/`).
    #[arg(long, required_unless_present = "manifest")]
    pub dir: Option<PathBuf>,
    /// Train on this Parquet file instead of making the registry dataset `--dataset` names.
    #[arg(long)]
    pub data_file: Option<PathBuf>,
    /// Extra overrides, `ALGO.KEY=VALUE` (as `offrl bench --set`).
    #[arg(long = "set", value_name = "ALGO.KEY=VALUE")]
    pub set: Vec<String>,
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
}

/// One cell's fields, named or read from a manifest line.
struct CellFields {
    algo: String,
    dataset: String,
    seed: u64,
    profile: String,
    dir: PathBuf,
    data_file: Option<PathBuf>,
    set: Vec<String>,
    backend: BackendKind,
}

impl CellArgs {
    /// The named cell's fields (without `--manifest`).
    fn fields(self) -> anyhow::Result<CellFields> {
        let missing = "clap requires it without --manifest";
        Ok(CellFields {
            algo: self.algo.context(missing)?,
            dataset: self.dataset.context(missing)?,
            seed: self.seed.context(missing)?,
            profile: self.profile.context(missing)?,
            dir: self.dir.context(missing)?,
            data_file: self.data_file,
            set: self.set,
            backend: self.backend,
        })
    }
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

/// Where the cells run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    /// Local processes, `--jobs` at a time.
    Local,
    /// Slurm job arrays (one per dependency wave) and a report job, submitted with `sbatch`.
    Slurm,
    /// Ray tasks, one per cell, on the cluster at `--ray-address`.
    Ray,
}

#[derive(Args, Clone, Debug)]
pub struct ExecutorArgs {
    #[arg(long, value_enum, default_value_t = Executor::Local)]
    pub executor: Executor,
    /// Slurm: print the job scripts instead of submitting them.
    #[arg(long)]
    pub dry_run: bool,
    /// Slurm: wait for the jobs to end, then print the table (default: return once submitted).
    #[arg(long)]
    pub wait: bool,
    /// CPUs per cell (Slurm `--cpus-per-task`, Ray `num_cpus`).
    #[arg(long, default_value_t = 1)]
    pub cpus_per_cell: usize,
    /// GPUs per cell (Slurm `--gres=gpu:N`, Ray `num_gpus`).
    #[arg(long, default_value_t = 0)]
    pub gpus_per_cell: usize,
    /// Wall-clock limit per cell, minutes (Slurm `--time`).
    #[arg(long, default_value_t = 240)]
    pub minutes_per_cell: u64,
    /// Slurm: array tasks running at once (`--array=…%K`); 0: as many as the cluster allows.
    #[arg(long, default_value_t = 0)]
    pub max_parallel: usize,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Ray: the cluster's address (`auto`: the head started on this machine by `ray start`).
    #[arg(long, default_value = "auto")]
    pub ray_address: String,
    /// Ray: the Python with `ray` installed (default: $OFFRL_VENV/bin/python, else python3).
    #[arg(long)]
    pub python: Option<PathBuf>,
}

impl Default for ExecutorArgs {
    fn default() -> Self {
        Self {
            executor: Executor::Local,
            dry_run: false,
            wait: false,
            cpus_per_cell: 1,
            gpus_per_cell: 0,
            minutes_per_cell: 240,
            max_parallel: 0,
            partition: None,
            ray_address: "auto".into(),
            python: None,
        }
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.cell {
        Some(BenchCommand::Cell(c)) => run_cell(c),
        Some(BenchCommand::Plan(g)) => {
            let planned = plan_grid(&g)?;
            println!(
                "{}: {} cells in {} waves; run line I with `offrl bench cell --manifest {} --index I`, \
                 then `offrl bench report {}`",
                planned.path.display(),
                planned.manifest.cells.len(),
                planned.manifest.header.waves,
                planned.path.display(),
                planned.manifest.header.out.display()
            );
            Ok(())
        }
        Some(BenchCommand::Report(r)) if r.times => {
            println!("{}", bench::render::times(&r.dir)?);
            Ok(())
        }
        Some(BenchCommand::Report(r)) if r.table => {
            let table = bench::render::render(&r.dir, r.curves)?;
            let Some(doc) = r.into.as_ref().or(r.check.as_ref()) else {
                println!("{table}");
                return Ok(());
            };
            let text = std::fs::read_to_string(doc)
                .with_context(|| format!("reading {}", doc.display()))?;
            let key = r.dir.display().to_string();
            let new = bench::report::splice_block(doc, &text, "render", &key, &table)?;
            if r.check.is_some() {
                anyhow::ensure!(
                    new == text,
                    "{}: the table of {key} is not what its results render; run `offrl bench \
                     report {key} --table --into {}`",
                    doc.display(),
                    doc.display()
                );
                println!("{}: {key} in sync", doc.display());
            } else {
                crate::output::write_atomic(doc, new.as_bytes())?;
            }
            Ok(())
        }
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
        executor: ExecutorArgs::default(),
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
    with_waves(&args, run_waves)
}

/// `offrl bench plan`: the manifest and the datasets, nothing run.
fn plan_grid(args: &GridArgs) -> anyhow::Result<Planned> {
    with_waves(args, plan)
}

/// `then` on the grid `args` describe, its datasets made.
fn with_waves<T>(
    args: &GridArgs,
    then: impl FnOnce(&Waves<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let (datasets, seeds, out) = resolve_grid(args)?;
    then(&Waves {
        algos: &args.algos,
        datasets: &datasets,
        seeds: &seeds,
        profile: &args.profile,
        jobs: args.jobs,
        out: &out,
        backend: args.backend,
        set: &args.set,
        data_file: None,
        executor: &args.executor,
    })
}

/// The grid's datasets (made once, by this process), seeds and folder.
fn resolve_grid(args: &GridArgs) -> anyhow::Result<(Vec<String>, Vec<u64>, PathBuf)> {
    let profile = cell::Profile::load(&args.profile)?;
    let out = grid_out(args);
    let datasets = bench::plan::suite_datasets(&args.suite, &args.datasets)?;
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
    Ok((datasets, seeds, out))
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
        executor: &ExecutorArgs::default(),
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
    executor: &'a ExecutorArgs,
}

/// A written manifest.
struct Planned {
    manifest: bench::manifest::Manifest,
    path: PathBuf,
}

/// Write the grid's manifest: every cell in wave order, with the executor's resources.
fn plan(w: &Waves<'_>) -> anyhow::Result<Planned> {
    let (manifest, path) = bench::plan::plan(&bench::plan::GridPlan {
        algos: w.algos,
        datasets: w.datasets,
        seeds: w.seeds,
        profile: w.profile,
        sets: w.set,
        backend: w.backend,
        data_file: w.data_file,
        out: w.out,
        resources: bench::manifest::Resources {
            cpus: w.executor.cpus_per_cell,
            gpus: w.executor.gpus_per_cell,
            minutes: w.executor.minutes_per_cell,
        },
    })?;
    Ok(Planned { manifest, path })
}

fn run_waves(w: &Waves<'_>) -> anyhow::Result<Table> {
    // Every cell's settings, to tell finished cells computed otherwise (and to check --set).
    let profile = cell::Profile::load(w.profile)?.with_sets(w.set)?;
    let planned = plan(w)?;
    let (algos, waves) = bench::plan::algorithm_waves(w.algos)?;
    let exe = std::env::current_exe().context("locating the offrl executable")?;
    match w.executor.executor {
        Executor::Local => {}
        Executor::Slurm => return run_slurm(&planned, &exe, w.executor, w.out),
        Executor::Ray => return run_ray(&planned, &exe, w.executor, w.out),
    }
    let backend = w.backend.name().to_string();
    let mut cell_args: Vec<String> = vec!["--backend".into(), backend.clone()];
    for s in w.set {
        cell_args.extend(["--set".to_string(), s.clone()]);
    }
    if let Some(file) = w.data_file {
        cell_args.extend(["--data-file".to_string(), file.display().to_string()]);
    }
    // Cells in dependency waves: algorithms without dependencies first.
    let mut results = Vec::new();
    for wave in waves {
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

/// The table and statistics of whatever cells of the grid at `out` have finished.
fn report_table(out: &std::path::Path) -> anyhow::Result<()> {
    let report = bench::report::report(out, Some(out), &bench::report::StatsConfig::default())?;
    println!("{}\n{}", report.table, report.stats);
    println!("results: {}", out.join("results.md").display());
    Ok(())
}

fn run_slurm(
    planned: &Planned,
    exe: &std::path::Path,
    args: &ExecutorArgs,
    out: &std::path::Path,
) -> anyhow::Result<Table> {
    use bench::executor::{slurm_scripts, slurm_submit, slurm_wait, SlurmOptions};
    let opts = SlurmOptions {
        max_parallel: args.max_parallel,
        partition: args.partition.clone(),
    };
    let scripts = slurm_scripts(&planned.manifest, &planned.path, exe, &opts);
    if args.dry_run {
        for (path, text) in &scripts {
            println!("# {}\n{text}", path.display());
        }
        return Ok(Table::new(&[], &[], &[]));
    }
    let ids = slurm_submit(&scripts)?;
    println!(
        "submitted {} jobs ({}): {} cells, the report last; logs in {}",
        ids.len(),
        ids.join(", "),
        planned.manifest.cells.len(),
        out.join("slurm").display()
    );
    if args.wait {
        slurm_wait(&ids, std::time::Duration::from_secs(2))?;
        report_table(out)?;
        ensure_complete(planned)?;
    }
    Ok(Table::new(&[], &[], &[]))
}

fn run_ray(
    planned: &Planned,
    exe: &std::path::Path,
    args: &ExecutorArgs,
    out: &std::path::Path,
) -> anyhow::Result<Table> {
    let python = args.python.clone().unwrap_or_else(|| {
        std::env::var_os("OFFRL_VENV")
            .map(|v| PathBuf::from(v).join("bin").join("python"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| "python3".into())
    });
    let driver = bench::executor::ray_run(&python, &planned.path, exe, &args.ray_address);
    // The report covers what finished even when some cells failed.
    if out.join("cells").is_dir() {
        report_table(out).ok();
    }
    driver?;
    ensure_complete(planned)?;
    Ok(Table::new(&[], &[], &[]))
}

/// Every cell of the manifest has a result.
fn ensure_complete(planned: &Planned) -> anyhow::Result<()> {
    let missing: Vec<String> = planned
        .manifest
        .cells
        .iter()
        .filter(|c| !c.dir.join("result.json").is_file())
        .map(|c| format!("{} ({} / {} / seed {})", c.index, c.algo, c.dataset, c.seed))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{} of {} cells have no result: {}; resubmit to complete the grid (finished cells are kept)",
        missing.len(),
        planned.manifest.cells.len(),
        missing.join(", ")
    );
    Ok(())
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
    if let Some(path) = &args.manifest {
        let index = args.index.context("clap requires --index")?;
        die_with_parent()?;
        match bench::plan::run_line(path, index)? {
            None => eprintln!("cell {index} of {} has already finished", path.display()),
            Some(r) => eprintln!(
                "{} on {} (seed {}): return {:.1} ± {:.1}, score {:?}",
                r.algo, r.dataset, r.seed, r.mean_return, r.std_return, r.normalized_score
            ),
        }
        return Ok(());
    }
    let args = args.fields()?;
    die_with_parent()?;
    let r = bench::plan::run(&bench::plan::CellRun {
        algo: &args.algo,
        dataset: &args.dataset,
        seed: args.seed,
        profile: &args.profile,
        dir: &args.dir,
        data_file: args.data_file.as_deref(),
        sets: &args.set,
        backend: args.backend,
    })?;
    eprintln!(
        "{} on {} (seed {}): return {:.1} ± {:.1}, score {:?}",
        r.algo, r.dataset, r.seed, r.mean_return, r.std_return, r.normalized_score
    );
    Ok(())
}
