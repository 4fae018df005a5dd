//! The kernel of [`panel_product`]: tiles of [`panel::ROWS`] rows × [`panel::COLS`] columns
//! whose 24 accumulators stay in registers over the whole inner dimension, with the rows of `a`
//! read in place (no packing) and `W` packed once per weight update instead of once per call
//! (the `gemm` crate packs it at every product: ≈ 4 % of an RTB update went to packing). On one
//! thread, `[2052, 256] · [256, 256]`: 262–277 GFLOP/s against 258–264 for the `gemm` crate, in
//! a one-off comparison when this was written (this CPU's register-only FMA rate: ≈ 283 per
//! core); `cargo bench --bench rtb -- gemm_peak` compares the two on both threads.

use std::arch::x86_64::*;

use crate::layout::{Panels, PANEL_COLS};

/// Columns per panel: two 16-lane registers (the packing's width).
pub const COLS: usize = PANEL_COLS;
/// Rows per tile: 12 × 2 accumulators, leaving registers for the two weight vectors.
pub const ROWS: usize = 12;

/// `out = a · W` for `m` rows, on the calling thread: row tiles outermost, so that a tile of
/// `a` stays in L1 while every panel of `W` (from L2) passes by.
///
/// # Safety
/// The CPU has AVX-512F; `out` is valid for `m × w.n` writes; `a` holds `m × w.k` values.
#[target_feature(enable = "avx512f")]
pub unsafe fn product(out: *mut f32, a: &[f32], m: usize, w: &Panels) {
    let (k, n) = (w.k, w.n);
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(ROWS);
        for p in 0..n / COLS {
            let a = a[i * k..].as_ptr();
            let panel = w.data[p * k * COLS..].as_ptr();
            // SAFETY: rows i..i + rows of `a` and `out` and panel p of `W` are in bounds.
            unsafe {
                let c = out.add(i * n + p * COLS);
                match rows {
                    12 => tile::<12>(a, k, panel, c, n),
                    11 => tile::<11>(a, k, panel, c, n),
                    10 => tile::<10>(a, k, panel, c, n),
                    9 => tile::<9>(a, k, panel, c, n),
                    8 => tile::<8>(a, k, panel, c, n),
                    7 => tile::<7>(a, k, panel, c, n),
                    6 => tile::<6>(a, k, panel, c, n),
                    5 => tile::<5>(a, k, panel, c, n),
                    4 => tile::<4>(a, k, panel, c, n),
                    3 => tile::<3>(a, k, panel, c, n),
                    2 => tile::<2>(a, k, panel, c, n),
                    _ => tile::<1>(a, k, panel, c, n),
                }
            }
        }
        i += rows;
    }
}

/// `R` rows × [`COLS`] columns of the output, summed over the `k` inner terms in order.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize>(
    a: *const f32,
    k: usize,
    panel: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    for kk in 0..k {
        // SAFETY (all loads and stores): within the bounds `product` checked.
        let (w0, w1) = unsafe {
            (
                _mm512_loadu_ps(panel.add(kk * COLS)),
                _mm512_loadu_ps(panel.add(kk * COLS + 16)),
            )
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(unsafe { *a.add(r * k + kk) });
            acc[0] = _mm512_fmadd_ps(x, w0, acc[0]);
            acc[1] = _mm512_fmadd_ps(x, w1, acc[1]);
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        unsafe {
            _mm512_storeu_ps(c.add(r * ldc), acc[0]);
            _mm512_storeu_ps(c.add(r * ldc + 16), acc[1]);
        }
    }
}
