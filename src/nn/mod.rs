//! Network building blocks shared by every model: one MLP, one time embedding.

mod adam;
pub mod host;
mod invert;
mod mlp;
mod time_embedding;

pub use adam::{adam, clip_global_norm, HostAdam};
pub use host::take_gradients;
pub use invert::newton_inverse;
pub use mlp::{Activation, Mlp, MlpConfig};
pub use time_embedding::FourierTimeEmbedding;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, Result};

/// A `[rows, cols]` tensor from a row-major slice.
pub fn tensor2(data: &[f32], rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    debug_assert_eq!(data.len(), rows * cols);
    Tensor::from_data(TensorData::new(data.to_vec(), [rows, cols]), device)
}

/// A `[n]` tensor from a slice.
pub fn tensor1(data: &[f32], device: &Device) -> Tensor<1> {
    tensor2(data, 1, data.len(), device).reshape([data.len()])
}

/// `Σ_i log(1 − tanh² u_i)` per row — the log-determinant of the Jacobian of `a = tanh(u)` —
/// in the stable form `2(log 2 − |u| − log(1 + e^{−2|u|}))` (exact for every `u`, no overflow).
pub fn tanh_log_det(u: Tensor<2>) -> Tensor<1> {
    let n = u.dims()[0];
    let a = u.abs();
    let per_dim = (a.clone().mul_scalar(-2.0).exp().log1p() + a)
        .neg()
        .add_scalar(std::f64::consts::LN_2)
        .mul_scalar(2.0);
    per_dim.sum_dim(1).reshape([n])
}

/// An inference copy of a module (`valid()`: no autodiff) and the plain device it lives on.
pub fn inference_copy<M: burn::module::Module>(module: &M) -> (M, Device) {
    let module = module.valid();
    let device = module
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(Device::flex)
        .inner();
    (module, device)
}

/// A tensor's values as a flat row-major `Vec<f32>`.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 tensor data")
}

/// Per-column mean and population standard deviation of row-major `[n, dim]` data (f64
/// accumulation). Errors on empty or non-finite data, naming `what`, the row and the column.
pub fn column_stats(data: &[f32], dim: usize, what: &str) -> Result<(Vec<f32>, Vec<f32>)> {
    if dim == 0 || data.is_empty() || !data.len().is_multiple_of(dim) {
        return Err(Error::InvalidData(format!(
            "{what}: cannot compute statistics of {} values in rows of {dim}",
            data.len()
        )));
    }
    let n = (data.len() / dim) as f64;
    let mut sum = vec![0f64; dim];
    for (i, &x) in data.iter().enumerate() {
        if !x.is_finite() {
            return Err(Error::InvalidData(format!(
                "{what}: row {} column {} is {x}",
                i / dim,
                i % dim
            )));
        }
        sum[i % dim] += f64::from(x);
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let mut var = vec![0f64; dim];
    for (i, &x) in data.iter().enumerate() {
        var[i % dim] += (f64::from(x) - mean[i % dim]).powi(2);
    }
    Ok((
        mean.iter().map(|&m| m as f32).collect(),
        var.iter().map(|&v| (v / n).sqrt() as f32).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against `ln(1 − tanh² u)` where that is accurate, and finite (≈ 2(ln 2 − |u|)) where the
    /// naive form gives −∞.
    #[test]
    fn tanh_log_det_is_the_jacobian_everywhere() {
        let device = burn::tensor::Device::flex();
        let u = [-2.0f32, -0.3, 0.0, 0.7, 3.0, 30.0];
        let got = to_vec(tanh_log_det(tensor2(&u, 3, 2, &device)));
        for (row, pair) in u.chunks(2).enumerate() {
            let want: f64 = pair
                .iter()
                .map(|&x| {
                    let x = f64::from(x);
                    if x.abs() < 10.0 {
                        (1.0 - x.tanh().powi(2)).ln()
                    } else {
                        2.0 * (std::f64::consts::LN_2 - x.abs())
                    }
                })
                .sum();
            assert!(
                (f64::from(got[row]) - want).abs() < 1e-5,
                "row {row}: {} vs {want}",
                got[row]
            );
        }
    }

    #[test]
    fn column_stats_known_values_and_errors() {
        // Column 0: 1, 3 (mean 2, std 1); column 1: 10, 10 (std 0).
        let (mean, std) = column_stats(&[1.0, 10.0, 3.0, 10.0], 2, "x").unwrap();
        assert_eq!((mean, std), (vec![2.0, 10.0], vec![1.0, 0.0]));
        let e = column_stats(&[1.0, f32::NAN], 1, "actions")
            .unwrap_err()
            .to_string();
        assert!(e.contains("actions: row 1 column 0 is NaN"), "{e}");
        assert!(column_stats(&[], 3, "x").is_err());
    }
}
