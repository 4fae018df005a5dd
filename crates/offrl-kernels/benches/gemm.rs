//! The GEMM peak of this machine and the ceiling above it: the products the networks run (hidden
//! layers `[rows, 256] · [256, 256]` through the `gemm` crate and through packed [`Panels`]; the
//! thin products of the heads), against the vector units' multiply-add rate with every operand in
//! registers. `cargo bench -p offrl-kernels` (add `-- gemm` or `-- fma` to pick); the figures
//! are kept in offrl's `benches/RESULTS.md`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use offrl_kernels::{gemm, panel_product_into, Mat, Panels};

mod timing;
use timing::median_seconds;

/// `[rows, 256] · [256, 256]`: the shape of the hidden layers' products in an RTB update; and the
/// thin products of the action head (`[4800, 256] · [256, 3]`, one thread's shard of a gradient
/// chunk, and its weight gradient `[4800, 256]ᵀ · [4800, 3]`), which run on a kernel of their
/// own on AVX-512 CPUs.
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
        let rhs = Mat::new(&b_data, br, bc);
        let run = || gemm(&mut out, lhs, rhs, false);
        if let Some(median) = median_seconds(&mut group, name, run) {
            eprintln!("gemm {name}: {:.1} GFLOP/s", flop / median / 1e9);
        }
    }
    // The hidden layers' products as the networks run them at these sizes: weights packed once
    // ([`Panels`], AVX-512 CPUs only), activations read in place.
    for rows in [4096, 38_400] {
        let a = vec![0.5f32; rows * 256];
        let w = vec![0.25f32; 256 * 256];
        let mut out = vec![std::mem::MaybeUninit::new(0.0f32); rows * 256];
        let Some(panels) = Panels::pack(Mat::new(&w, 256, 256)) else {
            eprintln!("gemm_peak/{rows}x256x256_packed: skipped (no panel kernel on this CPU)");
            continue;
        };
        let flop = 2.0 * (rows * 256 * 256) as f64;
        group.throughput(Throughput::Elements(flop as u64));
        let name = format!("{rows}x256x256_packed");
        let run = || panel_product_into(&mut out, &a, rows, &panels);
        if let Some(median) = median_seconds(&mut group, &name, run) {
            eprintln!("gemm {name}: {:.1} GFLOP/s", flop / median / 1e9);
        }
    }
    group.finish();
}

/// Multiply-adds the vector units can retire with no memory traffic at all: every core runs 16
/// independent chains of fused multiply-adds on full-width registers (AVX-512 where the CPU has
/// it, else AVX2 + FMA). No product, however well blocked, exceeds this; the GEMM peak above is
/// measured against it.
fn bench_fma_ceiling(c: &mut Criterion) {
    let Some(kernel) = fma_chains::kernel() else {
        eprintln!("fma_ceiling: skipped (no FMA vector unit detected)");
        return;
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // 2^22 rounds of 16 chains per thread, about 8 ms per iteration on this machine: long enough
    // that starting the threads is below the noise.
    let rounds = 1u64 << 22;
    let flop = 2.0 * (threads as u64 * rounds * 16 * kernel.lanes) as f64;
    let mut group = c.benchmark_group("fma_ceiling");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(flop as u64));
    let run_all = || {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| scope.spawn(|| (kernel.run)(rounds)))
                .collect();
            for h in handles {
                std::hint::black_box(h.join().expect("FMA thread panicked"));
            }
        })
    };
    if let Some(median) = median_seconds(&mut group, &format!("{threads}_threads"), run_all) {
        eprintln!(
            "fma ceiling ({threads} threads): {:.1} GFLOP/s",
            flop / median / 1e9
        );
    }
    group.finish();
}

mod fma_chains {
    pub struct Kernel {
        pub lanes: u64,
        pub run: fn(u64) -> f32,
    }

    #[cfg(target_arch = "x86_64")]
    pub fn kernel() -> Option<Kernel> {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY (both): the feature was detected on this CPU.
            Some(Kernel {
                lanes: 16,
                run: |r| unsafe { avx512(r) },
            })
        } else if std::arch::is_x86_feature_detected!("fma") {
            Some(Kernel {
                lanes: 8,
                run: |r| unsafe { avx2(r) },
            })
        } else {
            None
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn kernel() -> Option<Kernel> {
        None
    }

    /// 16 accumulators, each one multiply-add per round: enough independent chains to cover the
    /// FMA latency on both pipes. The multiplier keeps the values finite for any round count.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512(rounds: u64) -> f32 {
        use std::arch::x86_64::*;
        let m = _mm512_set1_ps(0.999_999);
        let a = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); 16];
        for _ in 0..rounds {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, m, a);
            }
        }
        let total = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
        _mm512_reduce_add_ps(total)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(rounds: u64) -> f32 {
        use std::arch::x86_64::*;
        let m = _mm256_set1_ps(0.999_999);
        let a = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); 16];
        for _ in 0..rounds {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, m, a);
            }
        }
        let total = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), total);
        lanes.iter().sum()
    }
}

criterion_group!(benches, bench_fma_ceiling, bench_gemm_peak);
criterion_main!(benches);
