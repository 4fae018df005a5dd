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
    /// Train a model (critic, iql, ...) on a dataset into a run directory.
    #[command(subcommand)]
    Train(offrl::cli::train::TrainCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    offrl::cli::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Dataset(cmd) => offrl::cli::dataset::run(cmd),
        Command::Train(cmd) => offrl::cli::train::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
