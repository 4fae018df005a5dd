//! Per-feature standardisation of network inputs, `(x − mean) / (std + eps)`, with statistics
//! fitted on a dataset and stored with the model (checkpoints carry it as JSON).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Standardises rows of `mean.len()` features ([`Normalizer::identity`] leaves them unchanged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    pub mean: Vec<f32>,
    /// Population standard deviation plus `eps` (the divisor actually used).
    pub scale: Vec<f32>,
}

impl Normalizer {
    /// The std floor added before dividing, as d3rlpy/CORL do.
    pub const EPS: f32 = 1e-3;

    /// A normaliser that leaves `dim` features unchanged.
    pub fn identity(dim: usize) -> Self {
        Self {
            mean: vec![0.0; dim],
            scale: vec![1.0; dim],
        }
    }

    /// Mean and population std (f64 accumulation) of row-major `[n, dim]` data; `what` names the
    /// data in errors.
    pub fn fit(data: &[f32], dim: usize, what: &str) -> Result<Self> {
        let (mean, std) = column_stats(data, dim, what)?;
        Ok(Self {
            mean,
            scale: std.iter().map(|s| s + Self::EPS).collect(),
        })
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Standardise row-major `[n, dim]` data.
    pub fn apply(&self, data: &[f32]) -> Vec<f32> {
        let d = self.dim();
        debug_assert_eq!(data.len() % d.max(1), 0);
        data.iter()
            .enumerate()
            .map(|(i, &x)| (x - self.mean[i % d]) / self.scale[i % d])
            .collect()
    }
}

/// Per-column mean and population standard deviation of row-major `[n, dim]` data (f64
/// accumulation). Errors on empty or non-finite data, naming `what`, the row and the column.
pub fn column_stats(data: &[f32], dim: usize, what: &str) -> Result<(Vec<f32>, Vec<f32>)> {
    if dim == 0 || data.is_empty() || data.len() % dim != 0 {
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

    #[test]
    fn fit_and_apply() {
        // Column 0: 1, 3 (mean 2, std 1); column 1: 10, 10 (std 0 → scale eps).
        let data = [1.0, 10.0, 3.0, 10.0];
        let n = Normalizer::fit(&data, 2, "obs").unwrap();
        assert_eq!(n.mean, vec![2.0, 10.0]);
        assert_eq!(n.scale, vec![1.0 + Normalizer::EPS, Normalizer::EPS]);
        let z = n.apply(&data);
        assert!((z[0] + 1.0 / 1.001).abs() < 1e-6 && (z[2] - 1.0 / 1.001).abs() < 1e-6);
        assert_eq!(z[1], 0.0);
        assert_eq!(Normalizer::identity(2).apply(&data), data.to_vec());
    }

    #[test]
    fn bad_data_is_named() {
        let e = Normalizer::fit(&[1.0, f32::NAN], 1, "observations")
            .unwrap_err()
            .to_string();
        assert!(e.contains("observations: row 1 column 0 is NaN"), "{e}");
        assert!(Normalizer::fit(&[], 3, "observations").is_err());
    }
}
