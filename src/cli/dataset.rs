//! `offrl dataset ...`: list the registry, make / import datasets, inspect and validate files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::dataset::registry::{self, DataSource, ImportFormat};
use crate::dataset::{columns, io, make, Dataset};

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// List the named datasets in the registry (built in, or the folder $OFFRL_DATASETS).
    List,
    /// Summarise a dataset file: sizes, episodes, returns, normalised score, action range.
    Info { file: PathBuf },
    /// Check a dataset file: schema, dims, column lengths, finite values.
    Validate { file: PathBuf },
    /// Convert a D4RL HDF5 file or a Minari dataset folder to offrl Parquet.
    Import {
        #[arg(long, value_enum)]
        format: ImportFormat,
        /// The HDF5 file (d4rl), the dataset folder (minari), or a file with D4RL's column
        /// names (parquet, arrow, npz).
        input: PathBuf,
        /// Environment id, e.g. Hopper-v5 (required for d4rl; minari reads it from the
        /// metadata; parquet/arrow/npz take their spaces from it, or from the data without it).
        #[arg(long)]
        env: Option<String>,
        /// Without --env: check the file's observation dim.
        #[arg(long)]
        obs_dim: Option<usize>,
        /// Without --env: check the file's action dim.
        #[arg(long)]
        act_dim: Option<usize>,
        /// Without --env: actions lie in [-B, B] (default 1, when every action does).
        #[arg(long)]
        action_bound: Option<f32>,
        #[arg(short, long)]
        output: PathBuf,
        /// Drop transitions holding NaN/Inf instead of failing.
        #[arg(long)]
        drop_non_finite: bool,
    },
    /// Build a registry member from its card, e.g. `d4rl-fixtures/hopper-expert-cs285`.
    Make {
        name: String,
        /// Output file (default: data/NAME.parquet).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Multiply collection step counts (quick small versions).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Drop transitions holding NaN/Inf instead of failing.
        #[arg(long)]
        drop_non_finite: bool,
    },
}

pub fn run(cmd: DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::List => list(),
        DatasetCommand::Info { file } => {
            let data = io::load(&file)?;
            print!("{}", summary(&data, Some(&file)));
            Ok(())
        }
        DatasetCommand::Validate { file } => {
            let data = io::load(&file)?;
            let checksum = match io::recorded_fingerprint(&file)? {
                Some(_) => "content matches its checksum",
                None => "no checksum recorded: written by another tool or an older offrl",
            };
            println!(
                "{}: ok ({} transitions, {} episodes, obs_dim {}, act_dim {}, all values finite; {checksum})",
                file.display(),
                data.len(),
                data.episodes().len(),
                data.obs_dim(),
                data.act_dim()
            );
            Ok(())
        }
        DatasetCommand::Import {
            format,
            input,
            env,
            obs_dim,
            act_dim,
            action_bound,
            output,
            drop_non_finite,
        } => {
            let opts = columns::ImportOptions {
                env,
                obs_dim,
                act_dim,
                action_bound,
                drop_non_finite,
            };
            crate::output::ensure_not_input(&output, &input)?;
            let data = crate::dataset::importer::import(format, &input, &opts)?;
            write(&data, &output)
        }
        DatasetCommand::Make {
            name,
            output,
            seed,
            scale,
            drop_non_finite,
        } => {
            let card = registry::load_card(&name)?;
            let opts = make::MakeOptions {
                seed,
                scale,
                drop_non_finite,
                ..Default::default()
            };
            let data = make::make(&name, &card, &opts)?;
            let output =
                output.unwrap_or_else(|| Path::new("data").join(format!("{name}.parquet")));
            write(&data, &output)
        }
    }
}

fn write(data: &Dataset, output: &Path) -> anyhow::Result<()> {
    io::save(data, output).with_context(|| format!("writing {}", output.display()))?;
    print!("{}", summary(data, Some(output)));
    Ok(())
}

fn list() -> anyhow::Result<()> {
    let reg = registry::Registry::from_env();
    let names = reg.names().with_context(|| format!("reading {reg}"))?;
    for name in names {
        let card = reg.load_card(&name)?;
        let kind = match card.source {
            DataSource::Import { .. } => "import",
            DataSource::Collect { .. } => "collect",
            DataSource::Concat { .. } => "concat",
        };
        println!("{name:<48} {:<14} {kind:<8} {}", card.env, card.description);
    }
    Ok(())
}

fn min_mean_max(v: impl IntoIterator<Item = f64>) -> (f64, f64, f64) {
    let (mut lo, mut hi, mut sum, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
    for x in v {
        lo = lo.min(x);
        hi = hi.max(x);
        sum += x;
        n += 1;
    }
    (lo, sum / n.max(1) as f64, hi)
}

fn fmt_vec(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
    format!("[{}]", parts.join(", "))
}

/// The text of `offrl dataset info`.
pub fn summary(data: &Dataset, file: Option<&Path>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let m = &data.meta;
    if let Some(f) = file {
        let size = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        let _ = writeln!(
            s,
            "file:          {} ({:.1} MB)",
            f.display(),
            size as f64 / 1e6
        );
    }
    let episodes = data.episodes();
    let returns = data.episode_returns();
    let ends = |v: &[bool]| episodes.iter().filter(|r| v[r.end - 1]).count();
    let (terminal, timeout) = (ends(&data.terminals), ends(&data.timeouts));
    let unmarked = episodes
        .iter()
        .filter(|r| !data.terminals[r.end - 1] && !data.timeouts[r.end - 1])
        .count();
    let _ = writeln!(s, "env:           {}", m.env_id);
    let _ = writeln!(
        s,
        "transitions:   {} (obs_dim {}, act_dim {}; {:.1} MB as f32)",
        data.len(),
        m.obs_dim,
        m.act_dim,
        ((2 * m.obs_dim + m.act_dim + 1) * 4 + 2) as f64 * data.len() as f64 / 1e6
    );
    let _ = writeln!(
        s,
        "episodes:      {} ({terminal} terminal, {timeout} time-out, {unmarked} unmarked end)",
        episodes.len()
    );
    let (lo, mean, hi) = min_mean_max(episodes.iter().map(|r| r.len() as f64));
    let _ = writeln!(
        s,
        "length:        min {lo:.0} / mean {mean:.1} / max {hi:.0}"
    );
    let (lo, mean, hi) = min_mean_max(returns.iter().copied());
    let _ = writeln!(
        s,
        "return:        min {lo:.2} / mean {mean:.2} / max {hi:.2}"
    );
    match m.reference_scores {
        Some(r) => {
            let _ = writeln!(
                s,
                "normalised:    min {:.2} / mean {:.2} / max {:.2} (reference returns: random {}, expert {})",
                r.normalize(lo),
                r.normalize(mean),
                r.normalize(hi),
                r.random,
                r.expert
            );
        }
        None => {
            let _ = writeln!(
                s,
                "normalised:    n/a (no reference returns for {})",
                m.env_id
            );
        }
    }
    let (lo, mean, hi) = min_mean_max(data.rewards.iter().map(|&r| f64::from(r)));
    let _ = writeln!(
        s,
        "reward:        min {lo:.4} / mean {mean:.4} / max {hi:.4}"
    );
    let ad = m.act_dim;
    let (amin, amax) = data.action_range();
    let _ = writeln!(s, "action min:    {}", fmt_vec(&amin));
    let _ = writeln!(s, "action max:    {}", fmt_vec(&amax));
    let _ = writeln!(
        s,
        "action bounds: {} … {}",
        fmt_vec(&m.action_low),
        fmt_vec(&m.action_high)
    );
    let outside = data
        .actions
        .chunks_exact(ad)
        .filter(|row| (0..ad).any(|j| row[j] < m.action_low[j] || row[j] > m.action_high[j]))
        .count();
    if outside > 0 {
        let _ = writeln!(
            s,
            "               {outside} transitions have actions outside the bounds"
        );
    }
    let _ = writeln!(s, "source:        {}", m.source);
    s
}
