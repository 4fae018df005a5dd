//! The buffers the kernels read: [`Mat`], a row-major matrix read as itself or as its transpose,
//! and [`Panels`], a weight matrix packed once into column panels. The ground floor of the crate:
//! the products (`gemm`) and the instruction-set kernels (`x86_64/`) both read these types, and
//! nothing here calls a kernel.

/// Columns per panel of [`Panels`]: two 16-lane AVX-512 registers (the tile width of the
/// x86-64 panel kernel).
pub const PANEL_COLS: usize = 32;

/// A row-major `[rows, cols]` buffer, read as itself or as its transpose.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) transposed: bool,
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
    pub fn shape(&self) -> (usize, usize) {
        if self.transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// The element at logical `(i, j)`.
    #[inline]
    pub(crate) fn at(&self, i: usize, j: usize) -> f32 {
        if self.transposed {
            self.data[j * self.cols + i]
        } else {
            self.data[i * self.cols + j]
        }
    }

    /// Logical `(row stride, column stride)`.
    pub(crate) fn strides(&self) -> (isize, isize) {
        if self.transposed {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// A weight matrix `[k, n]` (or `Wᵀ`) repacked once for [`crate::panel_product`]: column panels of 32
/// columns, each `[k, 32]` contiguous. Only on AVX-512 CPUs and for `n` a multiple of the panel
/// width (the hidden layers); `None` otherwise, and the `gemm` crate runs the product.
#[derive(Debug, Clone)]
pub struct Panels {
    pub(crate) data: Vec<f32>,
    pub(crate) k: usize,
    pub(crate) n: usize,
}

impl Panels {
    pub fn pack(b: Mat<'_>) -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            let (k, n) = b.shape();
            let fits = k > 0 && n > 0 && n % PANEL_COLS == 0;
            if !fits || !std::arch::is_x86_feature_detected!("avx512f") {
                return None;
            }
            const C: usize = PANEL_COLS;
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
