//! RTB update speed at Hopper dims (obs 11, act 3) on the burn-flex CPU backend: one on-policy
//! and one off-policy update (sampling / noising, frozen terms, chunked backward, Adam) at the
//! paper's shape (64 states × 64 trajectories × T = 75, prior and correction 3 × 256, c(t) 2 × 128,
//! twin Q 2 × 256) and at the CPU profile's (`configs/rtb-cpu.toml`: 32 × 16 × T = 20).
//!
//! `cargo bench --bench rtb` (add `-- paper` or `-- cpu` to pick a shape). Each iteration is
//! seconds long, so criterion's sample count is at its minimum (10). The achieved GFLOP/s are
//! printed from the analytic FLOP count of `support::flops`; compare with
//! `benches/reference/rtb_torch.py` (PyTorch, the same shapes and math, 2 threads). Peak memory:
//! `examples/rtb_memory.rs`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "support/rtb_setup.rs"]
mod support;
use support::{batch, build, flops, SHAPES};

fn bench_updates(c: &mut Criterion) {
    for shape in &SHAPES {
        let mut rtb = build(shape, 512);
        let (obs, act) = batch(shape, 1);
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let mut group = c.benchmark_group(format!(
            "rtb_{}_{}x{}xT{}",
            shape.name, shape.states, shape.k, shape.steps
        ));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_secs(1));
        for on_policy in [true, false] {
            let label = if on_policy { "on_policy" } else { "off_policy" };
            let mut seconds = Vec::new();
            group.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        if on_policy {
                            rtb.on_policy_update(obs.clone(), &mut rng);
                        } else {
                            rtb.off_policy_update(obs.clone(), act.clone(), &mut rng);
                        }
                    }
                    let t = start.elapsed();
                    seconds.push(t.as_secs_f64() / iters as f64);
                    t
                })
            });
            if seconds.is_empty() {
                continue; // filtered out on the command line
            }
            seconds.sort_by(f64::total_cmp);
            let median = seconds[seconds.len() / 2];
            let f = flops(shape, on_policy);
            eprintln!(
                "{} {label}: {median:.3} s/update, {:.0} GFLOP/update, {:.1} GFLOP/s",
                shape.name,
                f / 1e9,
                f / median / 1e9
            );
        }
        group.finish();
    }
}

criterion_group!(benches, bench_updates);
criterion_main!(benches);
