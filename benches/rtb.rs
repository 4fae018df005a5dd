//! RTB update speed at Hopper dims (obs 11, act 3) on the burn-flex CPU backend: one on-policy
//! and one off-policy update (sampling / noising, frozen terms, chunked backward, Adam) at the
//! paper's shape (64 states × 64 trajectories × T = 75, prior and correction 3 × 256, c(t) 2 × 128,
//! twin Q 2 × 256) and at the CPU profile's (`configs/rtb-cpu.toml`: 32 × 16 × T = 20), and the
//! GEMM peak of this machine the achieved FLOP rate is compared with.
//!
//! `cargo bench --bench rtb` (add `-- paper`, `-- cpu` or `-- gemm` to pick). Each update is
//! seconds long, so criterion's sample count is at its minimum (10). The achieved GFLOP/s are
//! printed from the FLOP count of `support::flops`; `benches/reference/rtb_torch.py` is the
//! PyTorch side (the same shapes and math, 2 threads). Peak memory: `examples/rtb_memory.rs`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use offrl::nn::host::{gemm, Mat};

mod support;
use support::{batch, build, flops, SHAPES};

/// `[rows, 256] · [256, 256]`: the shape of the hidden layers' products in an RTB update; and the
/// thin products of the action head (`[4800, 256] · [256, 3]`, one thread's shard of a gradient
/// chunk, and its weight gradient `[4800, 256]ᵀ · [4800, 3]`), which run on a kernel of their
/// own on AVX-512 CPUs (`nn::host`).
fn bench_gemm_peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_peak");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    // (name, lhs [rows, cols], its layout transposed?, rhs [rows, cols])
    let cases = [
        ("4096x256x256", (4096, 256), false, (256, 256)),
        ("38400x256x256", (38_400, 256), false, (256, 256)),
        ("4800x256x3", (4800, 256), false, (256, 3)),
        ("256x4800x3_weight_gradient", (4800, 256), true, (4800, 3)),
    ];
    for (name, (ar, ac), transposed, (br, bc)) in cases {
        let a = vec![0.5f32; ar * ac];
        let b_data = vec![0.25f32; br * bc];
        let lhs = if transposed {
            Mat::new(&a, ar, ac).t()
        } else {
            Mat::new(&a, ar, ac)
        };
        let rows = if transposed { ac } else { ar };
        let mut out = vec![0.0f32; rows * bc];
        let flop = 2.0 * (ar * ac * bc) as f64;
        group.throughput(Throughput::Elements(flop as u64));
        let mut seconds = Vec::new();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    gemm(&mut out, lhs, Mat::new(&b_data, br, bc), false);
                }
                let t = start.elapsed();
                seconds.push(t.as_secs_f64() / iters as f64);
                t
            })
        });
        if let Some(median) = median(&mut seconds) {
            eprintln!("gemm {name}: {:.1} GFLOP/s", flop / median / 1e9);
        }
    }
    group.finish();
}

fn median(seconds: &mut [f64]) -> Option<f64> {
    seconds.sort_by(f64::total_cmp);
    seconds.get(seconds.len() / 2).copied()
}

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
            let mut seconds = Vec::new();
            group.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
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
            let Some(median) = median(&mut seconds) else {
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

criterion_group!(benches, bench_gemm_peak, bench_updates);
criterion_main!(benches);
