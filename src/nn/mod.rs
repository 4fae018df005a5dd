//! Network building blocks shared by every model: one MLP, one time embedding.

mod mlp;
mod normalizer;
mod time_embedding;

pub use mlp::{Activation, Mlp, MlpConfig};
pub use normalizer::Normalizer;
pub use time_embedding::FourierTimeEmbedding;

use burn::tensor::{Device, Tensor, TensorData};

/// A `[rows, cols]` tensor from a row-major slice.
pub fn tensor2(data: &[f32], rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    debug_assert_eq!(data.len(), rows * cols);
    Tensor::from_data(TensorData::new(data.to_vec(), [rows, cols]), device)
}

/// A tensor's values as a flat row-major `Vec<f32>`.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 tensor data")
}
