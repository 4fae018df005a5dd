//! `offrl dataset ...`

use clap::Subcommand;

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// List the named datasets in the registry (datasets/).
    List,
}

pub fn run(cmd: DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::List => {
            for entry in std::fs::read_dir("datasets")? {
                println!("{}", entry?.path().display());
            }
            Ok(())
        }
    }
}
