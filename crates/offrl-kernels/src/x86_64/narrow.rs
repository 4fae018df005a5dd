//! Products with two to four output columns (the ε-network's action output, a Q or V head,
//! their weight gradients) on AVX-512 CPUs. The `gemm` crate tiles outputs in blocks of 16 × 6 or
//! 64 × 6 entries, and at three columns (`[4800, 256] · [256, 3]`, one core of this machine) it
//! reached 25 GFLOP/s where a hidden layer's product reaches 263: these thin products took about
//! 3 % of an RTB update. Other CPUs keep the `gemm` crate for them.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use crate::layout::Mat;

/// The output widths handled here (a single column, a matrix-vector product, is faster through
/// the `gemm` crate: offrl's `benches/RESULTS.md`, "Measurements behind the design constants").
pub const COLS: std::ops::RangeInclusive<usize> = 2..=4;

/// Lanes of one register.
const LANES: usize = 16;

/// `out (+)= a · b` for `n` in [`COLS`] output columns, on the calling thread (a product this
/// thin is one read of `a`):
/// - `a` read row by row (a layer's forward pass, `x · W`): every output is a dot product
///   along a row of `a`, four rows and all columns at a time;
/// - `a` a transpose (a weight gradient, `xᵀ · dz`, `x` stored `[k, m]`): every row of `x`
///   is a rank-one update of the output, four rows at a time, in row order.
///
/// # Safety
/// The CPU has AVX-512F, and `out` is as for [`crate::gemm::gemm`].
#[target_feature(enable = "avx512f")]
pub unsafe fn product(out: *mut f32, a: Mat<'_>, b: Mat<'_>, accumulate: bool) {
    let ((m, k), (_, n)) = (a.shape(), b.shape());
    // `b`'s columns, each contiguous.
    let mut bt = vec![0.0f32; n * k];
    for (j, col) in bt.chunks_exact_mut(k).enumerate() {
        for (r, v) in col.iter_mut().enumerate() {
            *v = b.at(r, j);
        }
    }
    // SAFETY: `out` is valid for m × n writes, and reads when accumulating (the caller's
    // contract); it is read only then.
    let out = unsafe { std::slice::from_raw_parts_mut(out.cast::<MaybeUninit<f32>>(), m * n) };
    // SAFETY (both kernels): AVX-512F is there (this function's contract); the buffers have
    // the sizes the kernels index.
    if !a.transposed {
        // Each output is written once, straight into `out`.
        unsafe {
            match n {
                2 => dot_rows::<4, 2>(out, a.data, k, &bt, accumulate),
                3 => dot_rows::<4, 3>(out, a.data, k, &bt, accumulate),
                _ => dot_rows::<4, 4>(out, a.data, k, &bt, accumulate),
            }
        }
        return;
    }
    // Rank-one updates accumulate along contiguous rows of `x`: into `[n, m]` sums (a weight
    // gradient's size), transposed into `out` at the end.
    let mut sums = vec![0.0f32; n * m];
    unsafe {
        match n {
            2 => rank_updates::<2>(&mut sums, a.data, m, &bt),
            3 => rank_updates::<3>(&mut sums, a.data, m, &bt),
            _ => rank_updates::<4>(&mut sums, a.data, m, &bt),
        }
    }
    for i in 0..m {
        for j in 0..n {
            // SAFETY: initialised when accumulating (the caller's contract).
            unsafe { store(&mut out[i * n + j], sums[j * m + i], accumulate) };
        }
    }
}

/// `o = v`, or `o += v` with `accumulate`.
///
/// # Safety
/// With `accumulate`, `o` is initialised.
#[inline(always)]
unsafe fn store(o: &mut MaybeUninit<f32>, v: f32, accumulate: bool) {
    // SAFETY: the contract.
    let before = if accumulate {
        unsafe { o.assume_init() }
    } else {
        0.0
    };
    o.write(before + v);
}

/// Mask of the first `len` lanes of a chunk (all of them for `len ≥ LANES`).
#[inline(always)]
fn lanes(len: usize) -> __mmask16 {
    if len >= LANES {
        !0
    } else {
        (1u16 << len) - 1
    }
}

/// `out[i, j] (+)= Σ_c a[i, c] · bt[j, c]`, `a` `[m, k]` and `bt` `[N, k]`, `out` `[m, N]`,
/// `R` rows at a time.
///
/// # Safety
/// AVX-512F; with `accumulate`, `out` is initialised.
#[target_feature(enable = "avx512f")]
unsafe fn dot_rows<const R: usize, const N: usize>(
    out: &mut [MaybeUninit<f32>],
    a: &[f32],
    k: usize,
    bt: &[f32],
    accumulate: bool,
) {
    let m = a.len() / k;
    assert!(out.len() == m * N && bt.len() == N * k);
    let mut i = 0;
    while i < m {
        // SAFETY: rows i .. i + R of `a` and row i .. i + R of `out` exist.
        unsafe {
            let (a_i, out_i) = (a[i * k..].as_ptr(), &mut out[i * N..]);
            if i + R <= m {
                dot_block::<R, N>(out_i, a_i, k, bt.as_ptr(), accumulate);
                i += R;
            } else {
                dot_block::<1, N>(out_i, a_i, k, bt.as_ptr(), accumulate);
                i += 1;
            }
        }
    }
}

/// The `R × N` dot products of `R` rows of `a` (from `a`, `k` apart) with those of `bt`.
///
/// # Safety
/// AVX-512F; `a` valid for `R · k` reads, `bt` for `N · k`; `out` at least `R · N` long and
/// initialised with `accumulate`.
#[inline(always)]
unsafe fn dot_block<const R: usize, const N: usize>(
    out: &mut [MaybeUninit<f32>],
    a: *const f32,
    k: usize,
    bt: *const f32,
    accumulate: bool,
) {
    // SAFETY: every load is masked to the `k` elements of its row (the contract).
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); N]; R];
        let mut c = 0;
        while c < k {
            let mask = lanes(k - c);
            let mut w = [_mm512_setzero_ps(); N];
            for (j, w) in w.iter_mut().enumerate() {
                *w = _mm512_maskz_loadu_ps(mask, bt.add(j * k + c));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_maskz_loadu_ps(mask, a.add(r * k + c));
                for (acc, &w) in acc.iter_mut().zip(&w) {
                    *acc = _mm512_fmadd_ps(x, w, *acc);
                }
            }
            c += LANES;
        }
        for (r, acc) in acc.iter().enumerate() {
            for (j, &acc) in acc.iter().enumerate() {
                store(&mut out[r * N + j], _mm512_reduce_add_ps(acc), accumulate);
            }
        }
    }
}

/// `out[j, i] = Σ_r x[r, i] · bt[j, r]`, `x` `[k, m]` and `bt` `[N, k]`, `out` `[N, m]`
/// (zeros on entry).
#[target_feature(enable = "avx512f")]
unsafe fn rank_updates<const N: usize>(out: &mut [f32], x: &[f32], m: usize, bt: &[f32]) {
    const ROWS: usize = 4;
    let k = x.len() / m;
    assert!(out.len() == N * m && bt.len() == N * k);
    let mut r = 0;
    while r < k {
        let rows = (k - r).min(ROWS);
        // The rows' coefficients per column, broadcast (zero past the last row).
        let mut s = [[_mm512_setzero_ps(); ROWS]; N];
        for (j, s) in s.iter_mut().enumerate() {
            for (q, s) in s.iter_mut().enumerate().take(rows) {
                *s = _mm512_set1_ps(bt[j * k + r + q]);
            }
        }
        let mut c = 0;
        while c < m {
            let mask = lanes(m - c);
            // SAFETY: masked to a row's `m` elements; rows r .. r + rows of `x` exist.
            unsafe {
                let mut xs = [_mm512_setzero_ps(); ROWS];
                for (q, xs) in xs.iter_mut().enumerate().take(rows) {
                    *xs = _mm512_maskz_loadu_ps(mask, x.as_ptr().add((r + q) * m + c));
                }
                for (j, s) in s.iter().enumerate() {
                    let dst = out.as_mut_ptr().add(j * m + c);
                    let mut acc = _mm512_maskz_loadu_ps(mask, dst);
                    for (&x, &s) in xs.iter().zip(s) {
                        acc = _mm512_fmadd_ps(x, s, acc);
                    }
                    _mm512_mask_storeu_ps(dst, mask, acc);
                }
            }
            c += LANES;
        }
        r += rows;
    }
}
