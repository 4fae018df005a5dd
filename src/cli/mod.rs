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

#[cfg(test)]
mod tests {
    /// "nope.parquet: No such file or directory (os error 2): No such file or directory (os
    /// error 2)" was what a missing dataset printed.
    #[test]
    fn an_error_report_says_each_thing_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = anyhow::Error::new(crate::error::Error::io("nope.parquet", io));
        let plain = crate::error::report(err.as_ref());
        assert_eq!(plain.matches("not found").count(), 1, "{plain}");
        let wrapped = err.context("loading the dataset nope.parquet");
        let text = crate::error::report(wrapped.as_ref());
        assert_eq!(text.matches("nope.parquet").count(), 1, "{text}");
        assert!(
            text.starts_with("loading the dataset nope.parquet: "),
            "{text}"
        );
        assert!(text.ends_with("not found"), "{text}");
        // Different causes are all kept.
        let chain = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(crate::error::report(chain.as_ref()), "outer: middle: inner");
    }
}
