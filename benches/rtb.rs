//! RTB update speed at Hopper dims (obs 11, act 3) on the burn-flex CPU backend: one on-policy
//! and one off-policy update (sampling / noising, frozen terms, chunked backward, Adam) at the
//! paper's shape (64 states × 64 trajectories × T = 75, prior and correction 3 × 256, c(t) 2 × 128,
//! twin Q 2 × 256) and at the CPU profile's (`configs/rtb-cpu.toml`: 32 × 16 × T = 20). The GEMM
//! peak of this machine the achieved FLOP rate is compared with, and the vector units' ceiling
//! above that, are the kernel crate's bench (`cargo bench -p offrl-kernels`).
//!
//! `cargo bench --bench rtb` (add `-- paper` or `-- cpu` to pick). Each update is
//! seconds long, so criterion's sample count is at its minimum (10). The achieved GFLOP/s are
//! printed from the FLOP count of `support::flops`; `benches/reference/rtb_torch.py` is the
//! PyTorch side (the same shapes and math, 2 threads). Peak memory: `benches/rtb_memory.rs`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

mod support;
#[path = "../crates/offrl-kernels/benches/timing.rs"]
mod timing;
use support::{batch, build, flops, SHAPES};
use timing::median_seconds;

fn bench_updates(c: &mut Criterion) {
    for shape in &SHAPES {
        // Each shape's `chunk` (configs/rtb.toml, configs/rtb-cpu.toml). At the paper shape 128
        // trajectories per backward pass measured 4.3 / 5.1 s (on / off) against 4.5 / 5.2 s at
        // 64 and 5.9 / 6.2 s at 512; the CPU shape's 512 (one chunk) 152 / 136 ms against
        // 165 / 130 ms at 128.
        let mut rtb = build(shape, shape.chunk);
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
            let update = || {
                if on_policy {
                    rtb.on_policy_update(obs.clone(), &mut rng);
                } else {
                    rtb.off_policy_update(obs.clone(), act.clone(), &mut rng);
                }
            };
            let Some(median) = median_seconds(&mut group, label, update) else {
                continue; // filtered out on the command line
            };
            let f = flops(shape);
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
