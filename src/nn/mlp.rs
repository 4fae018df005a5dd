use burn::config::Config;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{activation, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Hidden-layer activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Relu,
    Gelu,
    Mish,
    Tanh,
}

impl Activation {
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => activation::relu(x),
            Activation::Gelu => activation::gelu(x),
            Activation::Mish => activation::mish(x),
            Activation::Tanh => activation::tanh(x),
        }
    }
}

/// An MLP: `hidden` layers of `width`, each `Linear → [LayerNorm] → activation`, then a linear
/// output layer (no activation).
#[derive(Config, Debug)]
pub struct MlpConfig {
    pub d_input: usize,
    pub d_output: usize,
    #[config(default = 256)]
    pub width: usize,
    #[config(default = 2)]
    pub hidden: usize,
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    #[config(default = false)]
    pub layer_norm: bool,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub norms: Vec<LayerNorm>,
    pub output: Linear,
    #[module(skip)]
    pub activation: Activation,
}

impl MlpConfig {
    pub fn init(&self, device: &Device) -> Mlp {
        let mut layers = Vec::with_capacity(self.hidden);
        let mut d_in = self.d_input;
        for _ in 0..self.hidden {
            layers.push(LinearConfig::new(d_in, self.width).init(device));
            d_in = self.width;
        }
        let norms = if self.layer_norm {
            (0..self.hidden)
                .map(|_| LayerNormConfig::new(self.width).init(device))
                .collect()
        } else {
            Vec::new()
        };
        Mlp {
            layers,
            norms,
            output: LinearConfig::new(d_in, self.d_output).init(device),
            activation: self.activation,
        }
    }
}

impl Mlp {
    /// `[batch, d_input] → [batch, d_output]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.output.forward(self.hidden_features(x))
    }

    /// The last hidden layer's activations (input of the output layer).
    pub fn hidden_features(&self, mut x: Tensor<2>) -> Tensor<2> {
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if let Some(norm) = self.norms.get(i) {
                x = norm.forward(x);
            }
            x = self.activation.apply(x);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn shapes_and_layer_norm() {
        let device = Device::flex();
        let mlp = MlpConfig::new(5, 3)
            .with_width(16)
            .with_hidden(3)
            .with_activation(Activation::Gelu)
            .with_layer_norm(true)
            .init(&device);
        assert_eq!(mlp.layers.len(), 3);
        assert_eq!(mlp.norms.len(), 3);
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; 20], [4, 5]), &device);
        let h = mlp.hidden_features(x.clone());
        // LayerNorm (identity affine at init) then GELU: each row of the pre-activation has zero mean
        // and unit variance, so the hidden features cannot all be equal.
        let h = crate::nn::to_vec(h);
        assert_eq!(h.len(), 4 * 16);
        assert!(h.iter().any(|v| (v - h[0]).abs() > 1e-3));
        assert_eq!(mlp.forward(x).dims(), [4, 3]);
    }
}
