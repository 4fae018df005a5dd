//! Command-line front ends: parse arguments, call the library, report with anyhow.

pub mod bench;
pub mod collect;
pub mod dataset;
pub mod eval;
pub mod train;

/// Logging to stderr through `tracing`; `RUST_LOG` overrides the verbosity flag.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
