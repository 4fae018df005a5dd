//! The kernels against plain reference computations and libm.

use crate::math::exp;
use crate::testing::assert_close;
use crate::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

/// `product` writes into fresh memory without reading it: recycled memory full of NaN
/// (freed just before, the allocator hands it back) must not leak into the result, and the
/// result equals `gemm` into zeros, bit for bit, for either operand layout.
#[test]
fn product_ignores_what_fresh_memory_held() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (m, k, n) in [(300, 37, 256), (257, 256, 3), (5, 1, 7)] {
        let (a, b) = (random(&mut rng, m * k), random(&mut rng, k * n));
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        for transposed in [false, true] {
            let rhs = if transposed {
                Mat::new(&bt, n, k).t()
            } else {
                Mat::new(&b, k, n)
            };
            let mut expected = vec![0.0f32; m * n];
            gemm(&mut expected, Mat::new(&a, m, k), rhs, false);
            drop(vec![f32::NAN; m * n]);
            let got = product(Mat::new(&a, m, k), rhs);
            assert!(got.iter().all(|v| v.is_finite()), "{m}x{k}x{n}: NaN leaked");
            assert_eq!(got, expected, "{m}x{k}x{n} (transposed {transposed})");
        }
    }
}

/// `a · b` in f64 (`a` row-major `[m, k]`, `b` `[k, n]`), the reference for the kernels.
fn reference_product(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    (0..m * n)
        .map(|e| {
            let (i, j) = (e / n, e % n);
            (0..k)
                .map(|c| f64::from(a[i * k + c]) * f64::from(b[c * n + j]))
                .sum()
        })
        .collect()
}

/// The transpose of row-major `[rows, cols]` `x`, stored row-major `[cols, rows]`.
fn transposed(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|e| x[(e % rows) * cols + e / rows])
        .collect()
}

/// Thin products (two to four output columns, the kernels of `narrow` on AVX-512 CPUs,
/// the `gemm` crate elsewhere) equal an f64 reference: forward-pass layout (`x · W`) and
/// weight-gradient layout (`xᵀ · dz`), rows and depths that are not multiples of the
/// kernels' 4 rows and 16 lanes, writing and accumulating.
#[test]
fn thin_products_match_a_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (m, k, n) in [
        (4800, 256, 3),
        (7, 19, 2),
        (3, 5, 4),
        (1, 256, 3),
        (256, 9, 2),
    ] {
        let (a, b) = (random(&mut rng, m * k), random(&mut rng, k * n));
        let start = random(&mut rng, m * n);
        let reference: Vec<f32> = reference_product(&a, &b, m, k, n)
            .iter()
            .zip(&start)
            .map(|(dot, &s)| (f64::from(s) + dot) as f32)
            .collect();
        // `a` as stored, and as the transpose of its own transposed copy.
        let at = transposed(&a, m, k);
        for (lhs, layout) in [
            (Mat::new(&a, m, k), "x·W"),
            (Mat::new(&at, k, m).t(), "xᵀ·dz"),
        ] {
            let mut out = start.clone();
            gemm(&mut out, lhs, Mat::new(&b, k, n), true);
            assert_close(
                &out,
                &reference,
                1e-5,
                &format!("{m}x{k}x{n} {layout} (+=)"),
            );
            let fresh = product(lhs, Mat::new(&b, k, n));
            let sums: Vec<f32> = reference.iter().zip(&start).map(|(r, s)| r - s).collect();
            assert_close(&fresh, &sums, 1e-5, &format!("{m}x{k}x{n} {layout}"));
        }
    }
}

#[test]
fn panel_products_match_a_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    // Row counts around the 12-row tile (tails of 1 to 11), odd inner sizes, 1 and 2 panels.
    for (m, k, n) in [
        (1, 3, 32),
        (11, 17, 64),
        (12, 256, 32),
        (1037, 256, 64),
        (25, 1, 32),
    ] {
        let (a, w) = (random(&mut rng, m * k), random(&mut rng, k * n));
        let reference: Vec<f32> = reference_product(&a, &w, m, k, n)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        // `W` as stored, and as the transpose of its transposed copy (an input gradient).
        let wt = transposed(&w, k, n);
        for (b, layout) in [(Mat::new(&w, k, n), "W"), (Mat::new(&wt, n, k).t(), "Wᵀ")] {
            let Some(panels) = Panels::pack(b) else {
                // Not an AVX-512 CPU: the gemm crate runs these products.
                #[cfg(target_arch = "x86_64")]
                assert!(!std::arch::is_x86_feature_detected!("avx512f"));
                continue;
            };
            let out = panel_product(&a, m, &panels);
            assert_close(&out, &reference, 1e-5, &format!("{m}x{k}x{n} {layout}"));
            // Split over threads (a pool task per block of whole tiles) and on one thread.
            let one = on_this_thread(|| panel_product(&a, m, &panels));
            assert_eq!(out, one, "{m}x{k}x{n} {layout}: threads change the result");
        }
    }
    // Widths that are not a multiple of the panel have none.
    assert!(Panels::pack(Mat::new(&[0.0; 48], 2, 24)).is_none());
}

#[test]
fn erf_matches_libm() {
    let mut worst = 0.0f32;
    for i in -6000..=6000 {
        let x = i as f32 * 1e-3;
        worst = worst.max((erf(x) - libm::erff(x)).abs());
    }
    assert!(worst < 1e-6, "max |erf − libm::erff| = {worst}");
}

#[test]
fn tanh_matches_libm() {
    let mut worst = 0.0f64;
    for i in -1_000_000..=1_000_000 {
        let x = i as f32 * 1.2e-5; // ±12, past the clamp
        let want = (x as f64).tanh();
        worst = worst.max((tanh(x) as f64 - want).abs() / want.abs().max(1e-30));
    }
    assert!(worst < 4e-7, "relative error {worst:e}");
    assert_eq!(tanh(0.0), 0.0);
    assert_eq!(
        tanh_all(&[-30.0, 1e-6, 30.0]),
        [tanh(-30.0), tanh(1e-6), tanh(30.0)]
    );
}

#[test]
fn exp_matches_std_on_the_negative_axis() {
    for i in 0..=17_400 {
        let x = -(i as f32) * 5e-3; // down to −87
        let (a, b) = (exp(x), x.exp());
        assert!((a - b).abs() <= 4e-7 * b, "exp({x}): {a} vs {b}");
    }
    // Below the clamp: negligible (GELU's derivative multiplies it by x).
    assert!(exp(-100.0) < 2e-38);
}

#[test]
fn gemm_transposes_and_accumulates() {
    // [2, 3] · [3, 2] by hand, then the same from transposed buffers, then accumulated.
    let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let b = [1.0f32, -1.0, 0.5, 2.0, -2.0, 0.0];
    let want = [-4.0f32, 3.0, -5.5, 6.0];
    let mut out = [0.0f32; 4];
    gemm(&mut out, Mat::new(&a, 2, 3), Mat::new(&b, 3, 2), false);
    assert_eq!(out, want);
    let at = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]; // aᵀ stored [3, 2]
    let bt = [1.0f32, 0.5, -2.0, -1.0, 2.0, 0.0]; // bᵀ stored [2, 3]
    gemm(
        &mut out,
        Mat::new(&at, 3, 2).t(),
        Mat::new(&bt, 2, 3).t(),
        true,
    );
    assert_eq!(out, want.map(|v| 2.0 * v));
}

#[test]
fn shards_cover_the_rows_in_order() {
    for rows in [0, 1, 63, 64, 127, 128, 157, 1000] {
        let shards = Shards::of(rows);
        let ranges = shards.map(|i, r| (i, r));
        assert_eq!(ranges.len(), shards.count());
        assert!(shards.count() <= rayon::current_num_threads().max(1));
        let mut next = 0;
        for (i, (j, r)) in ranges.into_iter().enumerate() {
            assert_eq!((i, r.start), (j, next), "{rows} rows");
            next = r.end;
        }
        assert_eq!(next, rows);
    }
    assert_eq!(
        Shards::of(100).count(),
        1,
        "fewer rows than two shards' worth"
    );
}
