//! The library's error type. Every variant names what was wrong (file, column, row, value)
//! so that the binary can print it as is.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what was expected (format, columns, metadata).
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// Values that are present but wrong: NaN/Inf, mismatched lengths or dims, empty data.
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// Invalid configuration or command-line value.
    #[error("invalid config: {0}")]
    Config(String),
    /// Environment errors (unknown id, wrong action shape, an exception inside the env).
    #[error("environment {env}: {message}")]
    Env { env: String, message: String },
    /// The Python bridge is unavailable or raised.
    #[error("python: {0}")]
    Python(String),
    /// Training diverged: names the step and the quantity that became non-finite.
    #[error("training diverged at step {step}: {what} is {value}")]
    NonFinite {
        step: usize,
        what: String,
        value: f64,
    },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// The caller asked the training to stop ([`crate::train::interrupt`]).
    #[error("training stopped on request after step {step}; its run directory (if any) resumes from its last checkpoint")]
    Interrupted { step: usize },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }
    pub fn env(env: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Env {
            env: env.into(),
            message: message.into(),
        }
    }
}

/// An error and its causes on one line, as `{:#}` prints them but each piece once: a cause
/// whose text its parent already ends with (an I/O error inside "FILE: No such file …") is
/// dropped, and a cause that starts by naming what its parent ends with ("loading FILE" then
/// "FILE: …") does not name it again.
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(err);
    while let Some(cause) = next {
        next = cause.source();
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        let text = match text.split_once(": ") {
            Some((head, rest)) if !out.is_empty() && out.ends_with(head) => rest.to_string(),
            _ => text,
        };
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
