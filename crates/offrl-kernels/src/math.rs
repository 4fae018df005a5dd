//! Element-wise and reduction kernels. The element functions are branch-free polynomials that
//! the compiler vectorises inside [`vectorized!`](crate::vectorized) (AVX-512 or AVX2 + FMA, picked at run time; the
//! build itself targets plain x86-64, whose SSE2 vectors are 4 wide).

/// Column sums of a row-major `[rows, cols]` buffer, added to `out` (`[cols]`).
pub fn add_column_sums(out: &mut [f32], x: &[f32], cols: usize) {
    for row in x.chunks_exact(cols) {
        add_to(out, row);
    }
}

/// `row += b` for every row of `block` (rows of `b.len()`).
#[inline]
pub fn add_rows(block: &mut [f32], b: &[f32]) {
    for row in block.chunks_exact_mut(b.len()) {
        add_to(row, b);
    }
}

/// `dst += src`, element-wise.
#[inline]
pub fn add_to(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

/// Lanes of the partial sums below: independent accumulators let the compiler use whole
/// vectors (one running sum would be a chain of dependent scalar adds).
const LANES: usize = 16;

/// `Σ_i f(x_i)`, summed in `LANES` interleaved partial sums.
#[inline(always)]
pub fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
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

/// `Σ_i x_i y_i`, summed in `LANES` interleaved partial sums.
#[inline(always)]
pub fn lane_dot(x: &[f32], y: &[f32]) -> f32 {
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
pub fn gelu_grad(x: f32) -> f32 {
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
    crate::vectorized!({
        for (o, &v) in out.iter_mut().zip(x) {
            *o = tanh(v);
        }
    });
    out
}

/// `e^x` for x ≤ 0 down to underflow (what GELU's derivative needs): range reduction to
/// `2^n · e^r`, |r| ≤ ln2/2, and a degree-6 Taylor polynomial (relative error < 2e-7). Rounding
/// by the 1.5·2²³ trick keeps it branch-free and vectorisable without SSE4.1; the polynomial in
/// fused multiply-adds, as [`erf`].
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
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

/// Run `$body` compiled for AVX-512F, or AVX2 + FMA, when the CPU has them, else as the build
/// targets: wrap a loop of the element functions above in it. A macro, not a generic function
/// taking a closure: each use defines its feature-enabled functions next to the loop, so the loop
/// is compiled inside them. (Through a generic function the closures were compiled on their own,
/// without the features, and `mul_add` became a call to libm's `fmaf`: RTB updates ran ≈ 15 %
/// slower, and a profile showed `fmaf` at 9 %.)
#[macro_export]
macro_rules! vectorized {
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
