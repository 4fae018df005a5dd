//! Load a dataset file in a fresh process and report time and peak memory (VmHWM) against the
//! raw size of its f32 columns: `cargo run --release --example dataset_load -- FILE`.
//! With no FILE, writes and uses target/bench-data/hopper-1m.parquet (as benches/dataset.rs).

use std::path::PathBuf;
use std::time::Instant;

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of this (single) thread in seconds: on a busy machine wall time mostly measures
/// waiting for a core, this measures the work.
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns * 1e-9)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = match std::env::args().nth(1) {
        Some(p) => PathBuf::from(p),
        None => {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/bench-data/hopper-1m.parquet");
            if !p.exists() {
                offrl::dataset::io::save(
                    &offrl::dataset::random_dataset(1_000_000, 11, 3, 1000, 0),
                    &p,
                )?;
                // Measure the load alone: restart ourselves on the written file.
                let status = std::process::Command::new(std::env::current_exe()?)
                    .arg(&p)
                    .status()?;
                std::process::exit(status.code().unwrap_or(1));
            }
            p
        }
    };
    let before = status_kb("VmHWM:");
    let (t, cpu) = (Instant::now(), cpu_secs());
    let data = offrl::dataset::io::load(&path)?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu;
    let peak = status_kb("VmHWM:");
    let raw = (data.observations.len()
        + data.next_observations.len()
        + data.actions.len()
        + data.rewards.len())
        * 4
        + data.terminals.len()
        + data.timeouts.len();
    let raw_mb = raw as f64 / (1 << 20) as f64;
    println!(
        "{}: {} transitions in {secs:.3} s ({cpu:.3} s CPU); raw columns {raw_mb:.1} MiB; peak RSS {:.1} MiB \
         ({:.2}× raw; {:.1} MiB before loading, {:.2}× raw for the load alone)",
        path.display(),
        data.len(),
        peak as f64 / 1024.0,
        peak as f64 / 1024.0 / raw_mb,
        before as f64 / 1024.0,
        (peak - before) as f64 / 1024.0 / raw_mb,
    );
    Ok(())
}
