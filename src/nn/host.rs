//! Host (CPU) execution of the MLPs on plain row-major `f32` buffers: forward passes, and
//! backward passes that give input and parameter gradients. On the CPU backend the tensor
//! library's per-op cost (a separate pass over memory for every bias add, LayerNorm statistic and
//! activation, a scalar `erf` per GELU, the autodiff graph) dominates these small networks; here
//! each layer is one GEMM (the `gemm` kernels burn-flex itself uses) followed by one fused pass
//! for bias, LayerNorm and activation.
//!
//! Training goes through burn for everything but the networks: a host forward's output enters
//! the autodiff graph as a leaf ([`leaf`]), the loss is written with tensors as usual, and after
//! `loss.backward()` the leaf's gradient is pushed back through the network here
//! ([`HostMlp::backward`]) and registered for the module's parameters
//! ([`MlpGrads::register`]), so that the burn optimizer steps them. Results equal burn's own
//! forward and autodiff to float rounding (tested at 1e-5).

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ops::{AddAssign, Range};
use std::sync::OnceLock;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{LayerNorm, Linear};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Gradients, Tensor};

use rayon::prelude::*;

use super::{Activation, Mlp};

// ---------------------------------------------------------------------------------------------
// GEMM
// ---------------------------------------------------------------------------------------------

/// A row-major `[rows, cols]` buffer, read as itself or as its transpose.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl<'a> Mat<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "buffer is not [{rows}, {cols}]");
        Self {
            data,
            rows,
            cols,
            transposed: false,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            transposed: !self.transposed,
            ..self
        }
    }

    /// Logical `(rows, cols)`.
    fn shape(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// The element at logical `(i, j)`.
    #[inline]
    fn at(&self, i: usize, j: usize) -> f32 {
        if self.transposed {
            self.data[j * self.cols + i]
        } else {
            self.data[i * self.cols + j]
        }
    }

    /// Logical `(row stride, column stride)`.
    fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

thread_local! {
    static ONE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every kernel it calls on this thread only (no GEMM or row pass is split).
fn on_this_thread<R>(f: impl FnOnce() -> R) -> R {
    let before = ONE_THREAD.with(|c| c.replace(true));
    let out = f();
    ONE_THREAD.with(|c| c.set(before));
    out
}

fn on_one_thread() -> bool {
    ONE_THREAD.with(|c| c.get())
}

/// Multiply-adds from which a product is split over threads.
const PARALLEL_MACS: usize = 1 << 21;

/// `out = a · b`, or `out += a · b` with `accumulate`; `out` is row-major `[m, n]`.
pub fn gemm(out: &mut [f32], a: Mat<'_>, b: Mat<'_>, accumulate: bool) {
    let ((m, _), (_, n)) = (a.shape(), b.shape());
    assert_eq!(out.len(), m * n, "output is not [{m}, {n}]");
    // SAFETY: `out` holds m × n initialised elements (asserted) and, being a unique borrow,
    // aliases neither input.
    unsafe { gemm_raw(out.as_mut_ptr(), a, b, accumulate) }
}

/// `a · b` in a new row-major `[m, n]` buffer. The product is written straight into fresh
/// memory: no zero-fill first (a whole extra pass over the output at the training shapes).
pub fn product(a: Mat<'_>, b: Mat<'_>) -> Vec<f32> {
    let ((m, k), (_, n)) = (a.shape(), b.shape());
    if k == 0 {
        return vec![0.0; m * n];
    }
    let mut out = Vec::with_capacity(m * n);
    // SAFETY: the buffer has room for m × n elements; with k > 0 and `accumulate` false the
    // GEMM writes every one of them without reading any (its destination is never read when
    // not accumulating), so all are initialised when the length is set.
    unsafe {
        gemm_raw(out.spare_capacity_mut().as_mut_ptr().cast(), a, b, false);
        out.set_len(m * n);
    }
    out
}

/// `out (+)= a · b` through a pointer to row-major `[m, n]` storage.
///
/// # Safety
/// `out` must be valid for writes of m × n elements (and reads, with `accumulate`) and alias
/// neither input.
unsafe fn gemm_raw(out: *mut f32, a: Mat<'_>, b: Mat<'_>, accumulate: bool) {
    let ((m, k), (k2, n)) = (a.shape(), b.shape());
    assert_eq!(k, k2, "inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            // SAFETY: valid for m × n writes (the caller's contract).
            unsafe { std::ptr::write_bytes(out, 0, m * n) };
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if narrow::COLS.contains(&n) && std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; the rest is the caller's contract.
        return unsafe { narrow::product(out, a, b, accumulate) };
    }
    let parallelism = if m * n * k >= PARALLEL_MACS && !on_one_thread() {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let ((a_rs, a_cs), (b_rs, b_cs)) = (a.strides(), b.strides());
    // SAFETY: `Mat::new` checked that each buffer holds its rows × cols elements and the strides
    // describe exactly that layout (or its transpose); `out` is the caller's m × n buffer.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A weight matrix `[k, n]` (or `Wᵀ`) repacked once for [`panel_product`]: column panels of 32
/// columns, each `[k, 32]` contiguous. Only on AVX-512 CPUs and for `n` a multiple of the panel
/// width (the hidden layers); `None` otherwise, and the `gemm` crate runs the product.
#[derive(Debug, Clone)]
pub struct Panels {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl Panels {
    pub fn pack(b: Mat<'_>) -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            let (k, n) = b.shape();
            let fits = k > 0 && n > 0 && n % panel::COLS == 0;
            if !fits || !std::arch::is_x86_feature_detected!("avx512f") {
                return None;
            }
            const C: usize = panel::COLS;
            let mut data = vec![0.0f32; k * n];
            for (p, panel) in data.chunks_exact_mut(k * C).enumerate() {
                if b.transposed {
                    // Column j of the product is row j of the stored buffer: scatter it.
                    for jj in 0..C {
                        let stored = &b.data[(p * C + jj) * k..][..k];
                        for (r, &v) in stored.iter().enumerate() {
                            panel[r * C + jj] = v;
                        }
                    }
                } else {
                    for (r, dst) in panel.chunks_exact_mut(C).enumerate() {
                        dst.copy_from_slice(&b.data[r * n + p * C..][..C]);
                    }
                }
            }
            Some(Self { data, k, n })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = b;
            None
        }
    }
}

/// `a · W` in a new row-major `[m, n]` buffer, `W` as packed in `w` (`a` row-major `[m, k]`).
/// Rows are split over threads as [`gemm`] does.
pub fn panel_product(a: &[f32], m: usize, w: &Panels) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(m * w.n);
    panel_product_into(&mut out.spare_capacity_mut()[..m * w.n], a, m, w);
    // SAFETY: `panel_product_into` wrote all m × n elements.
    unsafe { out.set_len(m * w.n) };
    out
}

/// [`panel_product`] into `out` (`[m, n]`, overwritten; fresh memory is fine).
pub fn panel_product_into(out: &mut [MaybeUninit<f32>], a: &[f32], m: usize, w: &Panels) {
    assert_eq!(a.len(), m * w.k, "lhs is not [{m}, {}]", w.k);
    let n = w.n;
    assert_eq!(out.len(), m * n, "output is not [{m}, {n}]");
    let rows_per_task = if m * n * w.k >= PARALLEL_MACS && !on_one_thread() {
        // Whole tiles per task, about two tasks per thread.
        let tasks = 2 * rayon::current_num_threads();
        m.div_ceil(tasks).div_ceil(panel::ROWS) * panel::ROWS
    } else {
        m.max(1)
    };
    let run = |(i, block): (usize, &mut [MaybeUninit<f32>])| {
        let rows = block.len() / n;
        let a = &a[i * rows_per_task * w.k..][..rows * w.k];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Panels` exist only where the CPU has AVX-512F; `block` is `[rows, n]`.
        unsafe {
            panel::product(block.as_mut_ptr().cast(), a, rows, w)
        };
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (a, rows);
            unreachable!("`Panels::pack` makes none off x86-64");
        }
    };
    if rows_per_task >= m {
        run((0, out));
    } else {
        use rayon::prelude::*;
        out.par_chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(run);
    }
}

/// The kernel of [`panel_product`]: tiles of [`panel::ROWS`] rows × [`panel::COLS`] columns
/// whose 24 accumulators stay in registers over the whole inner dimension, with the rows of `a`
/// read in place (no packing) and `W` packed once per weight update instead of once per call
/// (the `gemm` crate packs it at every product: ≈ 4 % of an RTB update went to packing). On one
/// thread, `[2052, 256] · [256, 256]`: 262–277 GFLOP/s against 258–264 for the `gemm` crate, in
/// a one-off comparison when this was written (this CPU's register-only FMA rate: ≈ 283 per
/// core); `cargo bench --bench rtb -- gemm_peak` compares the two on both threads.
#[cfg(target_arch = "x86_64")]
mod panel {
    use std::arch::x86_64::*;

    use super::Panels;

    /// Columns per panel: two 16-lane registers.
    pub const COLS: usize = 32;
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
}

/// Products with two to four output columns (the ε-network's action output, a Q or V head,
/// their weight gradients) on AVX-512 CPUs. The `gemm` crate tiles outputs in blocks of 16 × 6 or
/// 64 × 6 entries, and at three columns (`[4800, 256] · [256, 3]`, one core of this machine) it
/// reached 25 GFLOP/s where a hidden layer's product reaches 263: these thin products took about
/// 3 % of an RTB update. Other CPUs keep the `gemm` crate for them.
#[cfg(target_arch = "x86_64")]
mod narrow {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::Mat;

    /// The output widths handled here (a single column, a matrix-vector product, is as fast
    /// through the `gemm` crate: 46 µs against 58 for `[4800, 256] · [256, 1]` on one core, in a
    /// one-off timing loop when these kernels were written).
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
    /// The CPU has AVX-512F, and `out` is as for [`super::gemm_raw`].
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
}

/// Column sums of a row-major `[rows, cols]` buffer, added to `out` (`[cols]`).
fn add_column_sums(out: &mut [f32], x: &[f32], cols: usize) {
    for row in x.chunks_exact(cols) {
        add_to(out, row);
    }
}

/// `row += b` for every row of `block` (rows of `b.len()`).
#[inline]
fn add_rows(block: &mut [f32], b: &[f32]) {
    for row in block.chunks_exact_mut(b.len()) {
        add_to(row, b);
    }
}

/// `dst += src`, element-wise.
#[inline]
pub fn add_to(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

/// Below this many elements a row-wise pass runs on the calling thread: handing it to the
/// thread pool costs more than it saves (sampling for a few states stays latency-bound).
const PARALLEL_ELEMS: usize = 1 << 15;

/// Runs `f(first_row, block)` over blocks of whole rows of `z` (rows of `width`), on rayon's
/// pool when `z` is large. The GEMMs already use every core; without this the LayerNorm,
/// activation and bias passes between them ran on one.
pub(crate) fn par_rows<T: Send>(z: &mut [T], width: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let Some(per_task) = rows_per_task(z.len() / width.max(1), width) else {
        return f(0, z);
    };
    z.par_chunks_mut(per_task * width)
        .enumerate()
        .for_each(|(i, block)| f(i * per_task, block));
}

/// A new row-major `[rows, width]` buffer whose rows `f(first_row, block)` writes (on the pool
/// when large, as [`par_rows`]), with no zero-fill before.
///
/// # Safety
/// `f` must initialise every element of each block it is given.
pub(crate) unsafe fn new_rows(
    rows: usize,
    width: usize,
    f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * width);
    par_rows(&mut out.spare_capacity_mut()[..rows * width], width, f);
    // SAFETY: `f` initialised every element (the caller's contract).
    unsafe { out.set_len(rows * width) };
    out
}

/// Rows per task of a pass over `rows` rows of `width`, or `None` when the pass should stay on
/// the calling thread.
fn rows_per_task(rows: usize, width: usize) -> Option<usize> {
    (rows * width >= PARALLEL_ELEMS && rows >= 2 && !on_one_thread())
        .then(|| rows.div_ceil(4 * rayon::current_num_threads()))
}

/// [`par_rows`] with a second buffer of `aux_width` values per row (`aux`, `[rows, aux_width]`)
/// and a per-row buffer (`per_row`, `[rows]`) handed out alongside each block.
fn par_rows_with<A: Send>(
    z: &mut [f32],
    width: usize,
    aux: &mut [A],
    aux_width: usize,
    per_row: &mut [f32],
    f: impl Fn(&mut [f32], &mut [A], &mut [f32]) + Sync,
) {
    let Some(per_task) = rows_per_task(per_row.len(), width) else {
        return f(z, aux, per_row);
    };
    z.par_chunks_mut(per_task * width)
        .zip(aux.par_chunks_mut(per_task * aux_width))
        .zip(per_row.par_chunks_mut(per_task))
        .for_each(|((block, aux), out)| f(block, aux, out));
}

/// [`par_rows`] whose blocks each return a vector (`len` long), summed.
fn par_rows_sum(
    z: &mut [f32],
    width: usize,
    len: usize,
    f: impl Fn(usize, &mut [f32]) -> Vec<f32> + Sync,
) -> Vec<f32> {
    let Some(per_task) = rows_per_task(z.len() / width.max(1), width) else {
        return f(0, z);
    };
    z.par_chunks_mut(per_task * width)
        .enumerate()
        .map(|(i, block)| f(i * per_task, block))
        .reduce(
            || vec![0.0; len],
            |mut a, b| {
                add_to(&mut a, &b);
                a
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Row shards: one thread per slice of a training batch
// ---------------------------------------------------------------------------------------------

/// Fewest rows a shard gets a thread for.
const MIN_SHARD_ROWS: usize = 64;

/// A training batch cut into one contiguous block of rows per thread.
///
/// Each shard's forward and backward pass runs on one thread from start to end, its GEMMs and
/// row passes unsplit, and the parameter gradients are summed over shards: one hand-off per pass
/// where splitting every GEMM and row pass over the threads meant one per kernel, each with a
/// wait for the slower half. At the prior's batch of 512 that took the network's forward and
/// backward pass from ≈ 2.4 to ≈ 2.1 ms (a timing loop on this 2-core machine).
#[derive(Debug, Clone)]
pub struct Shards(Vec<Range<usize>>);

impl Shards {
    /// The shards of `rows` rows: one per thread, at least [`MIN_SHARD_ROWS`] rows each (one
    /// shard when the batch is smaller, or inside [`join`]'s tasks).
    pub fn of(rows: usize) -> Self {
        let threads = if on_one_thread() {
            1
        } else {
            rayon::current_num_threads()
        };
        let count = (rows / MIN_SHARD_ROWS).clamp(1, threads);
        let per = rows.div_ceil(count);
        Self(
            (0..count)
                .map(|i| (i * per).min(rows)..((i + 1) * per).min(rows))
                .collect(),
        )
    }

    /// How many shards.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// `f(i, rows)` for every shard `i`, in order. With several shards each runs on a thread of
    /// its own and its kernels on that thread only; a single shard runs here, its kernels free
    /// to split.
    pub fn map<R: Send>(&self, f: impl Fn(usize, Range<usize>) -> R + Sync) -> Vec<R> {
        if let [rows] = &self.0[..] {
            return vec![f(0, rows.clone())];
        }
        self.0
            .par_iter()
            .enumerate()
            .map(|(i, rows)| on_this_thread(|| f(i, rows.clone())))
            .collect()
    }

    /// [`Shards::map`] for row outputs: the shards' rows, in order, in one buffer. One shard's
    /// output is returned as it is (no copy: a few rows are latency-bound).
    pub fn map_concat<T: Clone + Send>(
        &self,
        f: impl Fn(usize, Range<usize>) -> Vec<T> + Sync,
    ) -> Vec<T> {
        match &self.0[..] {
            [rows] => f(0, rows.clone()),
            _ => self.map(f).concat(),
        }
    }
}

/// Two independent parts of a training step: with `parallel`, at once, each on a thread of its
/// own with its kernels unsplit (like a [`Shards`] shard); otherwise one after the other.
pub fn join<A: Send, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if parallel {
        rayon::join(|| on_this_thread(a), || on_this_thread(b))
    } else {
        (a(), b())
    }
}

/// Lanes of the partial sums below: independent accumulators let the compiler use whole
/// vectors (one running sum would be a chain of dependent scalar adds).
const LANES: usize = 16;

/// `Σ_i f(x_i)`, summed in [`LANES`] interleaved partial sums.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ_i x_i y_i`, summed in [`LANES`] interleaved partial sums.
#[inline(always)]
pub(crate) fn lane_dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for ((s, &u), &v) in acc.iter_mut().zip(a).zip(b) {
            *s += u * v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

// ---------------------------------------------------------------------------------------------
// Element-wise kernels (compiled for AVX-512 / AVX2 and picked at run time)
// ---------------------------------------------------------------------------------------------

/// Exact GELU, `x·Φ(x)`, with a rational erf that vectorises (no branches, no exp).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `d gelu / dx = Φ(x) + x φ(x)`.
#[inline(always)]
fn gelu_grad(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x)
}

/// erf(x) = x·P(x²)/Q(x²) on [−4, 4] (±1 beyond, to f32 precision): the minimax rational
/// approximation used by Eigen and XLA for single precision (max error ≈ 1e-7, tested below).
/// Horner steps are fused multiply-adds: one instruction each under AVX2 / AVX-512 (half the
/// arithmetic of a multiply and an add; GELU's passes are compute-bound), the same values (more
/// slowly) from libm's `fmaf` on CPUs without FMA.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    for c in [
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ] {
        p = p.mul_add(x2, c);
    }
    let mut q = -1.456_607_2e-5_f32;
    for c in [-2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
        q = q.mul_add(x2, c);
    }
    x * p / q
}

/// tanh(x) = x·P(x²)/Q(x²) on [−7.9, 7.9] (±(1 − 2e-7) beyond): the minimax rational
/// approximation Eigen uses for single precision (within 4e-7 of libm, tested below), in fused
/// multiply-adds. libm's `tanhf` is a scalar call per element: in RTB's reward gradient (three
/// per action entry and chain step) it took about 1 % of an update.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16_f32;
    for c in [
        2.000_188e-13,
        -8.604_672e-11,
        5.122_297_1e-8,
        1.485_722_4e-5,
        6.372_619_3e-4,
        4.893_524_6e-3,
    ] {
        p = p.mul_add(x2, c);
    }
    let mut q = 1.198_258_4e-6_f32;
    for c in [1.185_347_1e-4, 2.268_434_6e-3, 4.893_525e-3] {
        q = q.mul_add(x2, c);
    }
    x * p / q
}

/// [`tanh`] of every element, vectorised.
pub fn tanh_all(x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    // A plain loop: `collect` would run the element function outside the vectorised body (a
    // generic function the target-feature wrapper does not inline), with `mul_add` as a call.
    simd!(for (o, &v) in out.iter_mut().zip(x) {
        *o = tanh(v);
    });
    out
}

/// `e^x` for x ≤ 0 down to underflow (what GELU's derivative needs): range reduction to
/// `2^n · e^r`, |r| ≤ ln2/2, and a degree-6 Taylor polynomial (relative error < 2e-7). Rounding
/// by the 1.5·2²³ trick keeps it branch-free and vectorisable without SSE4.1; the polynomial in
/// fused multiply-adds, as [`erf`].
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23
    let x = x.clamp(-87.0, 0.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let mut p = 1.0_f32 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p.mul_add(r, c);
    }
    // `shifted`'s low mantissa bits hold n in two's complement: 2^n by integer ops on the bits.
    // (`n as i32` is a saturating conversion, which compiles to scalar code lane by lane.)
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    p * f32::from_bits((n_int.wrapping_add(127) << 23) as u32)
}

/// Run `$body` compiled for AVX-512F or AVX2 + FMA when the CPU has them (the build targets plain
/// x86-64, whose SSE2 vectors are 4 wide), else as is.
macro_rules! simd {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has the feature the function was compiled for.
                unsafe { avx512(|| $body) }
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above.
                unsafe { avx2(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}

pub(crate) use simd;

/// The activation, in place.
fn activate(act: Activation, v: &mut [f32]) {
    match act {
        Activation::Relu => simd!(v.iter_mut().for_each(|x| *x = x.max(0.0))),
        Activation::Gelu => simd!(v.iter_mut().for_each(|x| *x = gelu(*x))),
        Activation::Tanh => simd!(v.iter_mut().for_each(|x| *x = tanh(*x))),
        Activation::Mish => v.iter_mut().for_each(|x| *x *= x.exp().ln_1p().tanh()),
    }
}

/// `d *= act'(x)`, in place, from the activation's input `x` (for ReLU its output serves as well:
/// both are positive at the same places).
fn activation_backward(act: Activation, pre: &[f32], d: &mut [f32]) {
    match act {
        // burn's ReLU passes the gradient where the output is positive. A select, not a
        // branch: the sign of a pre-activation is a coin flip to the branch predictor.
        Activation::Relu => simd!(d
            .iter_mut()
            .zip(pre)
            .for_each(|(d, &x)| *d = if x > 0.0 { *d } else { 0.0 })),
        Activation::Gelu => simd!(d.iter_mut().zip(pre).for_each(|(d, &x)| *d *= gelu_grad(x))),
        Activation::Tanh => simd!(d.iter_mut().zip(pre).for_each(|(d, &x)| {
            let t = tanh(x);
            *d *= 1.0 - t * t
        })),
        Activation::Mish => d.iter_mut().zip(pre).for_each(|(d, &x)| {
            let sp = x.exp().ln_1p();
            let t = sp.tanh();
            let sigmoid = 1.0 / (1.0 + (-x).exp());
            *d *= t + x * (1.0 - t * t) * sigmoid
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/// burn's `LayerNormConfig` default, which every LayerNorm here uses.
const LAYER_NORM_EPS: f32 = 1e-5;

/// A linear layer's parameters: `w` `[d_in, d_out]` row-major (burn's layout), optional bias.
#[derive(Debug, Clone)]
pub struct HostLinear {
    w: Vec<f32>,
    pub b: Option<Vec<f32>>,
    pub d_in: usize,
    pub d_out: usize,
    /// `W` and `Wᵀ` for the panel kernel, packed by the first product of at least
    /// [`PANEL_MIN_ROWS`] rows that needs each (`None` inside: not this CPU or shape).
    panels: OnceLock<Option<Panels>>,
    panels_t: OnceLock<Option<Panels>>,
}

/// Products with fewer rows stay on the `gemm` crate: packing `W` once pays off over the calls
/// of a sampling chain or an RTB update, not for the small batches of a training step (whose
/// networks are taken out of burn again at every step).
const PANEL_MIN_ROWS: usize = 1024;

impl HostLinear {
    pub fn from_linear(linear: &Linear) -> Self {
        let [d_in, d_out] = linear.weight.val().dims();
        Self {
            w: super::to_vec(linear.weight.val()),
            b: linear.bias.as_ref().map(|b| super::to_vec(b.val())),
            d_in,
            d_out,
            panels: OnceLock::new(),
            panels_t: OnceLock::new(),
        }
    }

    /// `x · B` for `n` rows, `B` being `W` (as `Mat`) or its transpose, through the panel kernel
    /// when the product is large enough and the CPU has it.
    fn times(&self, x: &[f32], n: usize, transposed: bool) -> Vec<f32> {
        let w = Mat::new(&self.w, self.d_in, self.d_out);
        let (b, cache) = if transposed {
            (w.t(), &self.panels_t)
        } else {
            (w, &self.panels)
        };
        if n >= PANEL_MIN_ROWS {
            if let Some(panels) = cache.get_or_init(|| Panels::pack(b)) {
                return panel_product(x, n, panels);
            }
        }
        product(Mat::new(x, n, b.shape().0), b)
    }

    /// `x · W (+ b)` for `n` rows.
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut out = self.product(x, n);
        if let Some(b) = &self.b {
            par_rows(&mut out, self.d_out, |_, block| simd!(add_rows(block, b)));
        }
        out
    }

    /// `x · W` for `n` rows, without the bias: [`block_forward`] adds it while it has each row in
    /// cache anyway.
    pub fn product(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.times(x, n, false)
    }

    /// Parameter gradients from the layer's input `x` and the gradient `dz` at its output.
    fn grads(&self, x: &[f32], dz: &[f32], n: usize) -> LinearGrads {
        let w = product(Mat::new(x, n, self.d_in).t(), Mat::new(dz, n, self.d_out));
        let b = self.b.as_ref().map(|_| {
            let mut b = vec![0.0f32; self.d_out];
            add_column_sums(&mut b, dz, self.d_out);
            b
        });
        LinearGrads { w, b }
    }

    /// The gradient at the layer's input, `dz · Wᵀ`.
    fn input_grad(&self, dz: &[f32], n: usize) -> Vec<f32> {
        self.times(dz, n, true)
    }
}

/// LayerNorm parameters.
#[derive(Debug, Clone)]
pub struct HostNorm {
    pub gamma: Vec<f32>,
    pub beta: Option<Vec<f32>>,
}

impl HostNorm {
    pub fn from_layer_norm(norm: &LayerNorm) -> Self {
        Self {
            gamma: super::to_vec(norm.gamma.val()),
            beta: norm.beta.as_ref().map(|b| super::to_vec(b.val())),
        }
    }

    /// `row ← row ⊙ γ (+ β)` on a normalised row.
    #[inline]
    fn apply(&self, row: &mut [f32]) {
        match &self.beta {
            Some(beta) => simd!(row
                .iter_mut()
                .zip(&self.gamma)
                .zip(beta)
                .for_each(|((v, g), b)| *v = *v * g + b)),
            None => simd!(row.iter_mut().zip(&self.gamma).for_each(|(v, g)| *v *= g)),
        }
    }
}

/// What a hidden block's backward pass needs besides its output: with LayerNorm the normalised
/// pre-activation `x̂` and `1/σ` per row (the activation's input `x̂·γ + β` is recomputed); without,
/// the activation's input, except for ReLU, whose backward reads the output.
#[derive(Debug, Default)]
pub struct BlockTape {
    xhat: Vec<f32>,
    rstd: Vec<f32>,
    pre: Vec<f32>,
}

/// Without LayerNorm the block keeps its activation's input for the backward pass; ReLU's
/// backward reads the block's output instead, which is kept anyway (the next layer's input).
fn keeps_input(act: Activation) -> bool {
    !matches!(act, Activation::Relu)
}

/// A hidden block after its linear layer's product, in place on `z` (`[n, width]`): the bias
/// and LayerNorm (each when given), then the activation. Fills `tape` when given. Each row is
/// biased, normalised, recorded and activated while it is in cache: one pass over memory.
pub fn block_forward(
    z: &mut [f32],
    width: usize,
    bias: Option<&[f32]>,
    norm: Option<&HostNorm>,
    act: Activation,
    tape: Option<&mut BlockTape>,
) {
    let rows = z.len() / width;
    let add_bias = |row: &mut [f32]| {
        if let Some(b) = bias {
            add_to(row, b);
        }
    };
    match (norm, tape) {
        (Some(norm), None) => par_rows(z, width, |_, block| {
            for row in block.chunks_exact_mut(width) {
                simd!(add_bias(row));
                simd!(normalize_row(row));
                norm.apply(row);
            }
            activate(act, block);
        }),
        (Some(norm), Some(tape)) => {
            // x̂ is written row by row below: no zero-fill first.
            let mut xhat = Vec::with_capacity(z.len());
            let mut rstd = vec![0.0f32; rows];
            par_rows_with(
                z,
                width,
                &mut xhat.spare_capacity_mut()[..rows * width],
                width,
                &mut rstd,
                |block, xhat, rstd| {
                    let rows = block
                        .chunks_exact_mut(width)
                        .zip(xhat.chunks_exact_mut(width));
                    for ((row, xhat), inv) in rows.zip(rstd) {
                        simd!(add_bias(row));
                        *inv = simd!(normalize_row(row)).0;
                        simd!(xhat.iter_mut().zip(&*row).for_each(|(d, v)| {
                            d.write(*v);
                        }));
                        norm.apply(row);
                    }
                    activate(act, block);
                },
            );
            // SAFETY: the blocks cover all rows × width elements, each written above.
            unsafe { xhat.set_len(rows * width) };
            tape.xhat = xhat;
            tape.rstd = rstd;
        }
        (None, Some(tape)) if keeps_input(act) => {
            if let Some(b) = bias {
                par_rows(z, width, |_, block| simd!(add_rows(block, b)));
            }
            tape.pre = z.to_vec();
            par_rows(z, width, |_, block| activate(act, block));
        }
        (None, _) => par_rows(z, width, |_, block| {
            if let Some(b) = bias {
                simd!(add_rows(block, b));
            }
            activate(act, block);
        }),
    }
}

/// `row ← (row − mean) / √(var + ε)` (biased variance, as burn); returns `(1/σ, mean)`.
#[inline(always)]
fn normalize_row(row: &mut [f32]) -> (f32, f32) {
    let w = row.len() as f32;
    let mean = lane_sum(row, |v| v) / w;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / w;
    let inv = 1.0 / (var + LAYER_NORM_EPS).sqrt();
    row.iter_mut().for_each(|v| *v = (*v - mean) * inv);
    (inv, mean)
}

/// Backward through [`block_forward`], in place: `d` holds the gradient at the block's output
/// `out` and becomes the gradient at its input `z`. LayerNorm parameter gradients are added to
/// `norm_grads` when given. One pass over memory with LayerNorm, as the forward.
pub fn block_backward(
    d: &mut [f32],
    width: usize,
    norm: Option<&HostNorm>,
    act: Activation,
    tape: &BlockTape,
    out: &[f32],
    norm_grads: Option<&mut NormGrads>,
) {
    let Some(norm) = norm else {
        let input = if keeps_input(act) { &tape.pre[..] } else { out };
        return par_rows(d, width, |first, block| {
            activation_backward(act, &input[first * width..][..block.len()], block);
        });
    };
    let want = norm_grads.is_some();
    // Per block: [Σ dy ⊙ x̂ (γ's gradient), Σ dy (β's)], dy the gradient at the LayerNorm output.
    let len = if want { 2 * width } else { 0 };
    let sums = par_rows_sum(d, width, len, |first, block| {
        let mut sums = vec![0.0f32; len];
        let mut pre = vec![0.0f32; width];
        for (i, dy) in block.chunks_exact_mut(width).enumerate() {
            let r = first + i;
            let xhat = &tape.xhat[r * width..(r + 1) * width];
            pre.copy_from_slice(xhat);
            norm.apply(&mut pre);
            activation_backward(act, &pre, dy);
            if want {
                let (g, b) = sums.split_at_mut(width);
                simd!(accumulate_norm_grads(g, b, dy, xhat));
            }
            simd!(layer_norm_row_backward(dy, xhat, &norm.gamma, tape.rstd[r]));
        }
        sums
    });
    if let Some(g) = norm_grads {
        let (gamma, beta) = sums.split_at(width);
        add_to(&mut g.gamma, gamma);
        if let Some(b) = g.beta.as_mut() {
            add_to(b, beta);
        }
    }
}

/// `g += dy ⊙ x̂`, `b += dy`.
#[inline(always)]
fn accumulate_norm_grads(g: &mut [f32], b: &mut [f32], dy: &[f32], xhat: &[f32]) {
    for (((g, b), d), x) in g.iter_mut().zip(b.iter_mut()).zip(dy).zip(xhat) {
        *g += d * x;
        *b += d;
    }
}

/// `dy → dz` for one row: `dz = (1/σ)(d̂ − mean(d̂) − x̂ · mean(d̂ ⊙ x̂))`, `d̂ = dy ⊙ γ`.
#[inline(always)]
fn layer_norm_row_backward(dy: &mut [f32], xhat: &[f32], gamma: &[f32], inv: f32) {
    let w = dy.len() as f32;
    dy.iter_mut().zip(gamma).for_each(|(d, g)| *d *= g);
    let mean_d = lane_sum(dy, |v| v) / w;
    let mean_dx = lane_dot(dy, xhat) / w;
    dy.iter_mut()
        .zip(xhat)
        .for_each(|(d, x)| *d = inv * (*d - mean_d - x * mean_dx));
}

// ---------------------------------------------------------------------------------------------
// Gradients and their registration for burn's optimizers
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct LinearGrads {
    pub w: Vec<f32>,
    pub b: Option<Vec<f32>>,
}

#[derive(Debug, Clone)]
pub struct NormGrads {
    pub gamma: Vec<f32>,
    pub beta: Option<Vec<f32>>,
}

impl NormGrads {
    pub fn zeros(norm: &HostNorm) -> Self {
        Self {
            gamma: vec![0.0; norm.gamma.len()],
            beta: norm.beta.as_ref().map(|b| vec![0.0; b.len()]),
        }
    }
}

fn add_optional(total: &mut Option<Vec<f32>>, part: Option<Vec<f32>>) {
    if let (Some(total), Some(part)) = (total.as_mut(), part) {
        add_to(total, &part);
    }
}

impl AddAssign for LinearGrads {
    fn add_assign(&mut self, part: Self) {
        add_to(&mut self.w, &part.w);
        add_optional(&mut self.b, part.b);
    }
}

impl AddAssign for NormGrads {
    fn add_assign(&mut self, part: Self) {
        add_to(&mut self.gamma, &part.gamma);
        add_optional(&mut self.beta, part.beta);
    }
}

fn register2(into: &mut GradientsParams, param: &Param<Tensor<2>>, grad: Vec<f32>) {
    let value = param.val();
    let [rows, cols] = value.dims();
    let device = value.device().without_autodiff();
    into.register(param.id, super::tensor2(&grad, rows, cols, &device));
}

fn register1(into: &mut GradientsParams, param: &Param<Tensor<1>>, grad: Vec<f32>) {
    let value = param.val();
    let device = value.device().without_autodiff();
    let n = grad.len();
    into.register(param.id, super::tensor2(&grad, 1, n, &device).reshape([n]));
}

impl LinearGrads {
    /// Register for `linear`'s parameters (replacing anything registered for them).
    pub fn register(self, linear: &Linear, into: &mut GradientsParams) {
        register2(into, &linear.weight, self.w);
        if let (Some(param), Some(b)) = (&linear.bias, self.b) {
            register1(into, param, b);
        }
    }
}

impl NormGrads {
    pub fn register(self, norm: &LayerNorm, into: &mut GradientsParams) {
        register1(into, &norm.gamma, self.gamma);
        if let (Some(param), Some(b)) = (&norm.beta, self.beta) {
            register1(into, param, b);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The MLP
// ---------------------------------------------------------------------------------------------

/// A host copy of an [`Mlp`]'s parameters.
#[derive(Debug, Clone)]
pub struct HostMlp {
    pub hidden: Vec<(HostLinear, Option<HostNorm>)>,
    pub output: HostLinear,
    pub activation: Activation,
}

/// What [`HostMlp::backward`] needs from the forward pass: each linear layer's input and each
/// hidden block's tape.
#[derive(Debug)]
pub struct MlpTape {
    n: usize,
    inputs: Vec<Vec<f32>>,
    blocks: Vec<BlockTape>,
}

impl MlpTape {
    /// The network's input.
    pub fn input(&self) -> &[f32] {
        &self.inputs[0]
    }

    /// The tape of the rows `rows` only, in that order: a backward pass over a subset of rows.
    pub fn select(&self, rows: &[usize]) -> MlpTape {
        let gather = |x: &[f32]| gather_rows(x, self.n, rows);
        MlpTape {
            n: rows.len(),
            inputs: self.inputs.iter().map(|x| gather(x)).collect(),
            blocks: self
                .blocks
                .iter()
                .map(|b| BlockTape {
                    xhat: gather(&b.xhat),
                    rstd: gather(&b.rstd),
                    pre: gather(&b.pre),
                })
                .collect(),
        }
    }
}

/// The rows `rows` of a row-major buffer of `n` rows (empty stays empty).
fn gather_rows(x: &[f32], n: usize, rows: &[usize]) -> Vec<f32> {
    let width = x.len() / n.max(1);
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&x[r * width..(r + 1) * width]);
    }
    out
}

#[derive(Debug, Clone)]
pub struct MlpGrads {
    pub hidden: Vec<(LinearGrads, Option<NormGrads>)>,
    pub output: LinearGrads,
}

impl MlpGrads {
    /// Register for `mlp`'s parameters (the module these gradients were computed for).
    pub fn register(self, mlp: &Mlp, into: &mut GradientsParams) {
        for (i, (linear, norm)) in self.hidden.into_iter().enumerate() {
            linear.register(&mlp.layers[i], into);
            if let (Some(g), Some(module)) = (norm, mlp.norms.get(i)) {
                g.register(module, into);
            }
        }
        self.output.register(&mlp.output, into);
    }
}

impl AddAssign for MlpGrads {
    fn add_assign(&mut self, part: Self) {
        for ((linear, norm), (part_linear, part_norm)) in self.hidden.iter_mut().zip(part.hidden) {
            *linear += part_linear;
            if let (Some(norm), Some(part_norm)) = (norm.as_mut(), part_norm) {
                *norm += part_norm;
            }
        }
        self.output += part.output;
    }
}

impl HostMlp {
    pub fn from_mlp(mlp: &Mlp) -> Self {
        Self {
            hidden: mlp
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    (
                        HostLinear::from_linear(l),
                        mlp.norms.get(i).map(HostNorm::from_layer_norm),
                    )
                })
                .collect(),
            output: HostLinear::from_linear(&mlp.output),
            activation: mlp.activation,
        }
    }

    pub fn d_in(&self) -> usize {
        self.hidden
            .first()
            .map_or(self.output.d_in, |(l, _)| l.d_in)
    }

    pub fn d_out(&self) -> usize {
        self.output.d_out
    }

    /// Output `[n, d_out]` for input `x` `[n, d_in]`.
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut h: Option<Vec<f32>> = None;
        for (linear, norm) in &self.hidden {
            let mut z = linear.product(h.as_deref().unwrap_or(x), n);
            let bias = linear.b.as_deref();
            block_forward(
                &mut z,
                linear.d_out,
                bias,
                norm.as_ref(),
                self.activation,
                None,
            );
            h = Some(z);
        }
        self.output.forward(h.as_deref().unwrap_or(x), n)
    }

    /// [`HostMlp::forward`] keeping what the backward pass needs.
    pub fn forward_tape(&self, x: Vec<f32>, n: usize) -> (Vec<f32>, MlpTape) {
        let mut inputs = vec![x];
        let mut blocks = Vec::with_capacity(self.hidden.len());
        for (linear, norm) in &self.hidden {
            let mut z = linear.product(inputs.last().expect("input"), n);
            let mut tape = BlockTape::default();
            block_forward(
                &mut z,
                linear.d_out,
                linear.b.as_deref(),
                norm.as_ref(),
                self.activation,
                Some(&mut tape),
            );
            blocks.push(tape);
            inputs.push(z);
        }
        let out = self.output.forward(inputs.last().expect("input"), n);
        (out, MlpTape { n, inputs, blocks })
    }

    /// Backward from `d_out` (the gradient at the output, `[n, d_out]`): the gradient at the
    /// input (`[n, d_in]`, when `input_grad`) and the parameter gradients (when `param_grads`).
    pub fn backward(
        &self,
        tape: &MlpTape,
        d_out: &[f32],
        input_grad: bool,
        param_grads: bool,
    ) -> (Option<Vec<f32>>, Option<MlpGrads>) {
        let n = tape.n;
        let layers = self.hidden.len();
        let output = param_grads.then(|| self.output.grads(&tape.inputs[layers], d_out, n));
        if layers == 0 {
            return (input_grad.then(|| self.output.input_grad(d_out, n)), {
                output.map(|output| MlpGrads {
                    hidden: Vec::new(),
                    output,
                })
            });
        }
        let mut d = self.output.input_grad(d_out, n);
        let mut hidden = Vec::with_capacity(layers);
        for i in (0..layers).rev() {
            let (linear, norm) = &self.hidden[i];
            let mut norm_grads = norm.as_ref().filter(|_| param_grads).map(NormGrads::zeros);
            block_backward(
                &mut d,
                linear.d_out,
                norm.as_ref(),
                self.activation,
                &tape.blocks[i],
                &tape.inputs[i + 1],
                norm_grads.as_mut(),
            );
            if param_grads {
                hidden.push((linear.grads(&tape.inputs[i], &d, n), norm_grads));
            }
            if i > 0 || input_grad {
                d = linear.input_grad(&d, n);
            }
        }
        hidden.reverse();
        (
            input_grad.then_some(d),
            output.map(|output| MlpGrads { hidden, output }),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Host results inside an autodiff graph
// ---------------------------------------------------------------------------------------------

/// `[rows, cols]` host data as a leaf of `device`'s autodiff graph that requires a gradient:
/// write the loss on it with tensors, and read the gradient after backward with [`leaf_grad`].
pub fn leaf(data: &[f32], rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    super::tensor2(data, rows, cols, device).require_grad()
}

/// The gradient of a [`leaf`] after `loss.backward()`, as host data (zeros when the loss does
/// not depend on it).
pub fn leaf_grad(leaf: &Tensor<2>, grads: &Gradients) -> Vec<f32> {
    match leaf.grad(grads) {
        Some(g) => super::to_vec(g),
        None => vec![0.0; leaf.dims().iter().product()],
    }
}

/// A forward pass run in [`Shards`] and entered into the autodiff graph as one [`leaf`], each
/// shard's tape kept for its backward pass.
pub struct ShardedLeaf<T> {
    leaf: Tensor<2>,
    cols: usize,
    shards: Shards,
    tapes: Vec<T>,
}

impl<T: Send + Sync> ShardedLeaf<T> {
    /// `forward(rows)` — the output (`[rows, cols]`) and the tape — for each shard of `n` rows;
    /// the outputs, in order, become a leaf on `device`.
    pub fn record(
        n: usize,
        cols: usize,
        device: &Device,
        forward: impl Fn(Range<usize>) -> (Vec<f32>, T) + Sync,
    ) -> Self {
        let shards = Shards::of(n);
        let (outs, tapes): (Vec<_>, Vec<_>) =
            shards.map(|_, rows| forward(rows)).into_iter().unzip();
        Self {
            leaf: leaf(&outs.concat(), n, cols, device),
            cols,
            shards,
            tapes,
        }
    }

    /// The recorded output (a leaf: write the loss on it).
    pub fn leaf(&self) -> Tensor<2> {
        self.leaf.clone()
    }

    /// After `loss.backward()`: `backward(tape, rows, d)` for each shard, `d` its rows of the
    /// leaf's gradient; the shards' parameter gradients summed in shard order (the same sum on
    /// every run).
    pub fn backward<G: AddAssign + Send>(
        &self,
        grads: &Gradients,
        backward: impl Fn(&T, Range<usize>, &[f32]) -> G + Sync,
    ) -> G {
        let d = leaf_grad(&self.leaf, grads);
        let cols = self.cols;
        self.shards
            .map(|i, rows| {
                let d = &d[rows.start * cols..rows.end * cols];
                backward(&self.tapes[i], rows, d)
            })
            .into_iter()
            .reduce(|mut total, part| {
                total += part;
                total
            })
            .expect("at least one shard")
    }
}

/// An [`Mlp`] inside one training step. On the CPU backend ([`crate::backend::host_kernels`])
/// its passes run on the host, [`Shards`] of the batch on their own threads, and a recorded
/// forward pass enters the autodiff graph as a [`leaf`]; elsewhere it is burn's module. The loss
/// is written once, with tensors, for both.
pub struct TrainingMlp<'a> {
    mlp: &'a Mlp,
    host: Option<HostMlp>,
    recorded: RefCell<Option<ShardedLeaf<MlpTape>>>,
}

impl<'a> TrainingMlp<'a> {
    /// `mlp` as the step on `device` runs it.
    pub fn new(mlp: &'a Mlp, device: &Device) -> Self {
        Self {
            mlp,
            host: crate::backend::host_kernels(device).then(|| HostMlp::from_mlp(mlp)),
            recorded: RefCell::new(None),
        }
    }

    /// The output for `x` (`[n, d_in]`), differentiable w.r.t. the parameters. On the host one
    /// such pass is recorded at a time: the last before [`TrainingMlp::register_grads`] counts.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let Some(host) = &self.host else {
            return self.mlp.forward(x);
        };
        let (device, [n, d_in]) = (x.device(), x.dims());
        let x = super::to_vec(x);
        let pass = ShardedLeaf::record(n, host.d_out(), &device, |rows| {
            host.forward_tape(x[rows.start * d_in..rows.end * d_in].to_vec(), rows.len())
        });
        let leaf = pass.leaf();
        *self.recorded.borrow_mut() = Some(pass);
        leaf
    }

    /// The output for `x` without a gradient (a target).
    pub fn eval(&self, x: Tensor<2>) -> Tensor<2> {
        let Some(host) = &self.host else {
            return self.mlp.forward(x).detach();
        };
        let (device, [n, d_in]) = (x.device(), x.dims());
        let x = super::to_vec(x);
        let out = Shards::of(n)
            .map_concat(|_, rows| host.forward(&x[rows.start * d_in..rows.end * d_in], rows.len()));
        super::tensor2(&out, n, host.d_out(), &device)
    }

    /// After `loss.backward()`: the gradients of the network's parameters, registered into
    /// `into` (taken out of `grads` for burn's module).
    pub fn register_grads(&self, grads: &mut Gradients, into: &mut GradientsParams) {
        if self.host.is_none() {
            return self.mlp.visit(&mut TakeGradients { grads, into });
        }
        let (Some(host), Some(pass)) = (&self.host, self.recorded.borrow_mut().take()) else {
            return;
        };
        pass.backward(grads, |tape, _, d| {
            let (_, g) = host.backward(tape, d, false, true);
            g.expect("parameter gradients")
        })
        .register(self.mlp, into);
    }
}

/// Moves a module's parameter gradients from `grads` into `into` (burn's own conversion makes a
/// new [`GradientsParams`]; a step registers several networks' gradients into one).
struct TakeGradients<'g> {
    grads: &'g mut Gradients,
    into: &'g mut GradientsParams,
}

impl ModuleVisitor for TakeGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.is_require_grad() {
            return;
        }
        if let Some(grad) = param.val().grad_remove(self.grads) {
            self.into.register(param.id, grad);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{tensor2, to_vec, MlpConfig};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b)
            .map(|(u, v)| (u - v).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= tol * scale,
            "{what}: max diff {worst} (scale {scale})"
        );
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

    /// A step's networks on the host (sharded passes recorded as leaves) give burn's outputs and
    /// parameter gradients.
    #[test]
    fn training_mlp_on_the_host_equals_the_module() {
        let device = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (act, ln) in [(Activation::Relu, false), (Activation::Gelu, true)] {
            let mlp = MlpConfig::new(6, 2)
                .with_width(32)
                .with_activation(act)
                .with_layer_norm(ln)
                .init(&device);
            let n = 157;
            let (x, target, upstream) = (
                random(&mut rng, n * 6),
                random(&mut rng, n * 6),
                random(&mut rng, n * 2),
            );
            let run = |net: &TrainingMlp| {
                let x = tensor2(&x, n, 6, &device);
                let out = net.forward(x.clone());
                let fixed = net.eval(tensor2(&target, n, 6, &device));
                let loss = (out.clone() * tensor2(&upstream, n, 2, &device)).sum()
                    + (out.clone() * fixed.clone()).sum();
                let mut grads = GradientsParams::new();
                net.register_grads(&mut loss.backward(), &mut grads);
                let weights: Vec<Vec<f32>> = mlp
                    .layers
                    .iter()
                    .chain([&mlp.output])
                    .map(|l| to_vec(grads.get::<2>(l.weight.id).expect("weight gradient")))
                    .collect();
                (to_vec(out), to_vec(fixed), weights)
            };
            let host = TrainingMlp::new(&mlp, &device);
            assert!(host.host.is_some(), "the CPU backend runs it on the host");
            let module = TrainingMlp {
                host: None,
                ..TrainingMlp::new(&mlp, &device)
            };
            let (got, want) = (run(&host), run(&module));
            assert_close(&got.0, &want.0, 1e-5, "forward");
            assert_close(&got.1, &want.1, 1e-5, "eval");
            for (i, (a, b)) in got.2.iter().zip(&want.2).enumerate() {
                assert_close(a, b, 1e-4, &format!("{act:?} layer {i} weight gradient"));
            }
        }
    }

    /// Host forward, input gradient and parameter gradients equal burn's forward and autodiff,
    /// for every activation, with and without LayerNorm, above and below the threaded GEMM size.
    #[test]
    fn mlp_forward_and_backward_equal_burn_autodiff() {
        let device = Device::flex().autodiff();
        for (act, ln, n) in [
            (Activation::Gelu, true, 300),
            (Activation::Relu, false, 40),
            (Activation::Mish, true, 7),
            (Activation::Tanh, false, 7),
            (Activation::Gelu, true, 2100),
        ] {
            crate::backend::seed(&device, 5);
            let width = if n > 1000 { 64 } else { 16 };
            let mlp = MlpConfig::new(5, 3)
                .with_width(width)
                .with_hidden(2)
                .with_activation(act)
                .with_layer_norm(ln)
                .init(&device);
            let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
            let x = random(&mut rng, n * 5);
            let upstream = random(&mut rng, n * 3);
            // burn: loss = Σ out ⊙ upstream, so d loss / d out = upstream.
            let xt = tensor2(&x, n, 5, &device).require_grad();
            let out = mlp.forward(xt.clone());
            let loss = (out.clone() * tensor2(&upstream, n, 3, &device)).sum();
            let mut grads = loss.backward();
            let dx_burn = to_vec(xt.grad(&grads).unwrap());
            let burn_params = GradientsParams::from_module(&mut grads, &mlp);

            let host = HostMlp::from_mlp(&mlp);
            assert_close(&host.forward(&x, n), &to_vec(out), 1e-5, "forward");
            let (_, tape) = host.forward_tape(x.clone(), n);
            let (dx, g) = host.backward(&tape, &upstream, true, true);
            assert_close(&dx.unwrap(), &dx_burn, 1e-5, "input gradient");
            let mut host_params = GradientsParams::new();
            g.unwrap().register(&mlp, &mut host_params);
            let mut ids = Vec::new();
            mlp.visit(&mut CollectIds(&mut ids));
            assert_eq!(host_params.len(), burn_params.len());
            for (id, dims) in ids {
                let (a, b) = match dims {
                    2 => (
                        to_vec(host_params.get::<2>(id).unwrap()),
                        to_vec(burn_params.get::<2>(id).unwrap()),
                    ),
                    _ => (
                        to_vec(host_params.get::<1>(id).unwrap()),
                        to_vec(burn_params.get::<1>(id).unwrap()),
                    ),
                };
                assert_close(&a, &b, 1e-5, &format!("{act:?} ln={ln} n={n} parameter"));
            }
            // Only the input gradient: the same, without parameter gradients.
            let (dx2, none) = host.backward(&tape, &upstream, true, false);
            assert!(none.is_none());
            assert_close(&dx2.unwrap(), &dx_burn, 1e-5, "input gradient only");
        }
    }

    struct CollectIds<'a>(&'a mut Vec<(burn::module::ParamId, usize)>);

    impl burn::module::ModuleVisitor for CollectIds<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push((param.id, D));
        }
    }

    #[test]
    fn leaf_gradients_flow_back() {
        let device = Device::flex().autodiff();
        let x = leaf(&[1.0, -2.0, 3.0, 0.5], 2, 2, &device);
        let loss = x.clone().square().sum();
        let g = leaf_grad(&x, &loss.backward());
        assert_eq!(g, vec![2.0, -4.0, 6.0, 1.0]);
    }
}
