//! Host (CPU) kernels on plain row-major `f32` buffers, for the fused executors that bypass the
//! tensor library where its per-op overhead dominates (small batches, inference chains).

/// `out[n, d_out] = a[n, d_in] · w[d_in, d_out]` (row-major), overwriting `out`.
pub fn matmul(
    a: &[f32],
    d_in: usize,
    w: &[f32],
    d_out: usize,
    n: usize,
    out: &mut [f32],
    parallel: bool,
) {
    assert_eq!(a.len(), n * d_in);
    assert_eq!(w.len(), d_in * d_out);
    assert_eq!(out.len(), n * d_out);
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the slices hold exactly n×d_in, d_in×d_out and n×d_out elements (asserted above),
    // strides describe row-major layouts, and `out` does not alias the inputs.
    unsafe {
        gemm::gemm(
            n,
            d_out,
            d_in,
            out.as_mut_ptr(),
            1,
            d_out as isize,
            false,
            a.as_ptr(),
            1,
            d_in as isize,
            w.as_ptr(),
            1,
            d_out as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}
