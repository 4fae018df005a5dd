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
    /// Train models (diffusion prior, ...).
    #[command(subcommand)]
    Train(offrl::cli::train::TrainCommand),
    /// Benchmark algorithms × datasets × seeds and print the results table.
    Bench(offrl::cli::bench::BenchArgs),
    /// The embedded default: native Pendulum data, prior, critic, RTB, evaluation, table.
    Quickstart {
        /// Output folder (default runs/quickstart; re-running resumes it).
        #[arg(long, short)]
        out: Option<std::path::PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    offrl::cli::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Dataset(cmd) => offrl::cli::dataset::run(cmd),
        Command::Train(cmd) => offrl::cli::train::run(cmd),
        Command::Bench(args) => offrl::cli::bench::run(args),
        Command::Quickstart { out } => offrl::cli::bench::quickstart(out),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
