//! The `offrl` command-line interface. Each subcommand lives in `offrl::cli::<area>`.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "offrl",
    version,
    about = "Offline reinforcement learning: datasets, diffusion priors, IQL, RTB fine-tuning, evaluation"
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect, validate, import and build datasets.
    #[command(subcommand)]
    Dataset(offrl::cli::dataset::DatasetCommand),
    /// Roll a behaviour policy out and write a D4RL-style Parquet dataset.
    Collect(offrl::cli::collect::CollectArgs),
    /// Behaviour policies: evaluate built-ins and policy cards.
    #[command(subcommand)]
    Policy(offrl::cli::collect::PolicyCommand),
    /// Train a model into a run directory (resumes an existing one).
    #[command(subcommand)]
    Train(offrl::cli::train::TrainCommand),
    /// Evaluate a trained model's policy (any `offrl train` run or checkpoint; IDQL with --critic).
    Eval(offrl::cli::eval::EvalArgs),
    /// Benchmark algorithms × datasets × seeds and print the results table.
    Bench(Box<offrl::cli::bench::BenchArgs>),
    /// The embedded default: native Pendulum data, prior, critic, RTB, evaluation, table.
    Quickstart {
        /// Output folder (default runs/quickstart; re-running resumes it).
        #[arg(long, short)]
        out: Option<std::path::PathBuf>,
        /// Seed of training and evaluation (the dataset is made from its card, with its seed).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// The method on one dataset: prior and critic, RTB fine-tuning, evaluation of each (one run
    /// directory holding every stage).
    Pipeline(offrl::cli::bench::PipelineArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    offrl::cli::init_logging(cli.verbose);
    offrl::backend::init_cpu_runtime();
    let result = match cli.command {
        Command::Dataset(cmd) => offrl::cli::dataset::run(cmd),
        Command::Collect(args) => offrl::cli::collect::run(args),
        Command::Policy(cmd) => offrl::cli::collect::run_policy(cmd),
        Command::Bench(args) => offrl::cli::bench::run(*args),
        Command::Quickstart { out, seed } => offrl::cli::bench::quickstart(out, seed),
        Command::Pipeline(args) => offrl::cli::bench::pipeline(args),
        Command::Train(cmd) => offrl::cli::train::run(cmd),
        Command::Eval(args) => offrl::cli::eval::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", offrl::error::report(err.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
