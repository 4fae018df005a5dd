//! Shared by the benches of this crate and offrl's `benches/rtb.rs` (which includes this file):
//! a criterion benchmark's median, for the GFLOP/s lines they print.

use std::time::Instant;

use criterion::measurement::WallTime;
use criterion::BenchmarkGroup;

/// Benchmark `run` as `name` in `group` and return the median of criterion's samples in seconds
/// per call (`None` when the name is filtered out on the command line), for the GFLOP/s lines.
pub fn median_seconds(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut run: impl FnMut(),
) -> Option<f64> {
    let mut seconds = Vec::new();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                run();
            }
            let t = start.elapsed();
            seconds.push(t.as_secs_f64() / iters as f64);
            t
        })
    });
    seconds.sort_by(f64::total_cmp);
    seconds.get(seconds.len() / 2).copied()
}
