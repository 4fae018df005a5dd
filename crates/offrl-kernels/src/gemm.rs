//! Matrix products on row-major buffers: [`gemm()`] / [`product`] for any shape (the `gemm` crate,
//! or this crate's thin-output kernel for two to four columns on AVX-512), and
//! [`panel_product`] for a weight matrix packed once into [`Panels`].

use std::mem::MaybeUninit;

use crate::layout::{Mat, Panels};
use crate::parallel::on_one_thread;
#[cfg(target_arch = "x86_64")]
use crate::x86_64::{narrow, panel};

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

/// `a · W` in a new row-major `[m, n]` buffer, `W` as packed in `w` (`a` row-major `[m, k]`).
/// Rows are split over threads as [`gemm()`] does.
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
