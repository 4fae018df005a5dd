//! Progress bars for long work (training, collection), drawn to stderr.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar with ETA for `total` steps (drawn to stderr; hidden when stderr is not a terminal).
pub fn progress_bar(total: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}
