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
    /// Number of seeds (0..N), or use --seed-list.
    #[arg(long, default_value_t = 3)]
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
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.cell {
        Some(BenchCommand::Cell(c)) => run_cell(c),
        None => run_grid(args.grid).map(|_| ()),
    }
}

/// The README's main job: the Pendulum suite with the quick profile.
pub fn quickstart(out: Option<PathBuf>) -> anyhow::Result<()> {
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
        seed_list: vec![],
        profile: "quick".into(),
        jobs: 1,
        out: Some(out.unwrap_or_else(|| "runs/quickstart".into())),
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
    let suite_dir = registry::registry_dir().join(&args.suite);
    let mut datasets: Vec<String> = registry::list(&suite_dir)
        .with_context(|| format!("suite `{}`", args.suite))?
        .into_iter()
        .map(|m| format!("{}/{m}", args.suite))
        .collect();
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
    // Dependencies run first: they are cells of their own, shown in the table too.
    let mut algos: Vec<String> = Vec::new();
    for a in &args.algos {
        for dep in cell::dependencies(a)? {
            if !algos.iter().any(|x| x == dep) {
                algos.push(dep.to_string());
            }
        }
        if !algos.contains(a) {
            algos.push(a.clone());
        }
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

    let exe = std::env::current_exe().context("locating the offrl executable")?;
    let backend = clap::ValueEnum::to_possible_value(&args.backend)
        .expect("every backend has a name")
        .get_name()
        .to_string();
    // Cells in dependency waves: algorithms without dependencies first.
    let (base, dependent): (Vec<String>, Vec<String>) = algos
        .iter()
        .cloned()
        .partition(|a| cell::dependencies(a).map(|d| d.is_empty()).unwrap_or(true));
    let mut results = Vec::new();
    for wave in [base, dependent] {
        if wave.is_empty() {
            continue;
        }
        let spec = GridSpec {
            algos: wave,
            datasets: datasets.clone(),
            seeds: seeds.clone(),
            profile: args.profile.clone(),
            jobs: args.jobs,
            out: out.clone(),
            cell_args: vec!["--backend".into(), backend.clone()],
        };
        results.extend(bench::run_grid(&spec, &exe)?);
    }
    let table = Table::new(&algos, &datasets, &results);
    bench::write_report(&out, &table, &results)?;
    println!("{}", table.markdown());
    println!("results: {}", out.join("results.md").display());
    let expected = datasets.len() * algos.len() * seeds.len();
    anyhow::ensure!(
        results.len() == expected,
        "{} of {expected} cells failed (their logs are under {})",
        expected - results.len(),
        out.join("cells").display()
    );
    Ok(table)
}

fn run_cell(args: CellArgs) -> anyhow::Result<()> {
    let profile = cell::Profile::load(&args.profile)?;
    let grid_out = args
        .dir
        .ancestors()
        .nth(4)
        .context("a cell folder lives at OUT/cells/DATASET/ALGO/seed-N")?
        .to_path_buf();
    let data_path = cell::prepare_dataset(&args.dataset, profile.scale, &grid_out.join("data"))?;
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
    };
    let r = cell::run_cell(&spec)?;
    eprintln!(
        "{} on {} (seed {}): return {:.1} ± {:.1}, score {:?}",
        r.algo, r.dataset, r.seed, r.mean_return, r.std_return, r.normalized_score
    );
    Ok(())
}
