//! The ε-predictor abstraction and the prior's network.

use burn::module::Module;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::schedule::NoiseSchedule;
use crate::nn::{Activation, FourierTimeEmbedding, Mlp, MlpConfig};

/// Anything that predicts the noise ε̂(s, x_t, t) of a DDPM chain over actions. The sampler and
/// the log-likelihoods in [`super::chain`] only see this trait, so RTB's posterior (a different
/// network on the same schedule) reuses them unchanged.
///
/// `obs` is the (normalised) observation batch `[n, obs_dim]`, `x_t` the chain state
/// `[n, act_dim]` in model space, `t ∈ 1..=T`.
pub trait EpsModel {
    /// The chain this model denoises.
    fn schedule(&self) -> &NoiseSchedule;

    /// Action dimension (columns of `x_t`).
    fn act_dim(&self) -> usize;

    /// ε̂ for rows that may each be at a different step (`t[i]` for row `i`).
    fn eps_rows(&self, obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2>;

    /// ε̂ for rows all at step `t` (the sampler's case; override when it can be done cheaper).
    fn eps(&self, obs: Tensor<2>, x_t: Tensor<2>, t: usize) -> Tensor<2> {
        let n = x_t.dims()[0];
        self.eps_rows(obs, x_t, &vec![t; n])
    }
}

/// The ε-network's shape (the `[net]` table of a prior config). Defaults: the RTB paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpsNetConfig {
    /// Hidden width.
    pub width: usize,
    /// Hidden layers, each `Linear → [LayerNorm] → activation`.
    #[serde(alias = "layers")]
    pub hidden: usize,
    /// Fourier harmonics of the time embedding (2× as many features).
    pub time_harmonics: usize,
    pub activation: Activation,
    pub layer_norm: bool,
}

impl Default for EpsNetConfig {
    fn default() -> Self {
        Self {
            width: 256,
            hidden: 3,
            time_harmonics: 64,
            activation: Activation::Gelu,
            layer_norm: true,
        }
    }
}

/// ε̂(s, x_t, t) = MLP([s, x_t, fourier(τ_t)]).
///
/// The first layer is kept split as `W_sx · [s, x_t] + W_τ · fourier(τ_t) + b`: the time part
/// depends on `t` only, so it is computed once per step for the whole batch (or once per step of
/// the schedule when rows have different steps) instead of once per row. It is the same function
/// as one linear layer on the concatenated input, and both parts are initialised as that layer
/// would be (U(±1/√fan_in) with fan_in = obs + act + time features).
#[derive(Module, Debug)]
pub struct EpsNet {
    pub input: Linear,
    pub time: Linear,
    pub norm: Option<LayerNorm>,
    /// The remaining hidden layers and the output layer.
    pub trunk: Mlp,
    #[module(skip)]
    pub activation: Activation,
    /// Time features per step, row `t − 1` for step `t`: `[T, 2H]` row-major.
    #[module(skip)]
    pub time_features: Vec<f32>,
    #[module(skip)]
    pub time_dim: usize,
}

impl EpsNet {
    /// Action dimension (columns of ε̂).
    pub fn act_dim(&self) -> usize {
        self.trunk.output.weight.dims()[1]
    }

    /// The device of the parameters.
    pub fn device(&self) -> burn::tensor::Device {
        self.input.weight.val().device()
    }

    pub fn new(
        config: &EpsNetConfig,
        obs_dim: usize,
        act_dim: usize,
        schedule: &NoiseSchedule,
        device: &burn::tensor::Device,
    ) -> Self {
        assert!(
            config.hidden >= 1,
            "the ε-network needs at least one hidden layer"
        );
        let embedding = FourierTimeEmbedding::new(config.time_harmonics);
        let fan_in = (obs_dim + act_dim + embedding.dim()) as f64;
        let bound = 1.0 / fan_in.sqrt();
        let init = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        let time_features = (1..=schedule.steps())
            .flat_map(|t| embedding.features(schedule.time_input(t)))
            .collect();
        Self {
            input: LinearConfig::new(obs_dim + act_dim, config.width)
                .with_initializer(init.clone())
                .init(device),
            time: LinearConfig::new(embedding.dim(), config.width)
                .with_bias(false)
                .with_initializer(init)
                .init(device),
            norm: config
                .layer_norm
                .then(|| LayerNormConfig::new(config.width).init(device)),
            trunk: MlpConfig::new(config.width, act_dim)
                .with_width(config.width)
                .with_hidden(config.hidden - 1)
                .with_activation(config.activation)
                .with_layer_norm(config.layer_norm)
                .init(device),
            activation: config.activation,
            time_features,
            time_dim: embedding.dim(),
        }
    }

    /// `[n, width]` first-layer pre-activation without the time part.
    fn input_part(&self, obs: Tensor<2>, x_t: Tensor<2>) -> Tensor<2> {
        self.input.forward(Tensor::cat(vec![obs, x_t], 1))
    }

    /// Finish from the first-layer pre-activation.
    fn finish(&self, h: Tensor<2>) -> Tensor<2> {
        let h = match &self.norm {
            Some(norm) => norm.forward(h),
            None => h,
        };
        self.trunk.forward(self.activation.apply(h))
    }

    /// `[rows.len(), 2H]` time features of the given steps' rows (0-based `t − 1`).
    fn time_rows(&self, rows: std::ops::Range<usize>, device: &burn::tensor::Device) -> Tensor<2> {
        let d = self.time_dim;
        let n = rows.len();
        crate::nn::tensor2(
            &self.time_features[rows.start * d..rows.end * d],
            n,
            d,
            device,
        )
    }

    /// ε̂ at one step for the whole batch.
    pub fn forward_step(&self, obs: Tensor<2>, x_t: Tensor<2>, t: usize) -> Tensor<2> {
        let device = x_t.device();
        let time = self.time.forward(self.time_rows(t - 1..t, &device)); // [1, width]
        self.finish(self.input_part(obs, x_t) + time)
    }

    /// ε̂ with a step per row.
    pub fn forward_rows(&self, obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2> {
        let device = x_t.device();
        let steps = self.time_features.len() / self.time_dim;
        // One projection per step of the schedule, then a gather per row.
        let table = self.time.forward(self.time_rows(0..steps, &device)); // [T, width]
        let index: Vec<i64> = t.iter().map(|&t| t as i64 - 1).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [t.len()]), &device);
        self.finish(self.input_part(obs, x_t) + table.select(0, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::schedule::ScheduleConfig;
    use burn::tensor::Device;

    #[test]
    fn checkpoints_written_with_the_old_key_layers_still_load() {
        let old = serde_json::json!({"width": 8, "layers": 2, "time_harmonics": 3,
            "activation": "gelu", "layer_norm": true});
        let cfg: EpsNetConfig = serde_json::from_value(old).unwrap();
        assert_eq!(cfg.hidden, 2);
        let now = serde_json::to_value(&cfg).unwrap();
        assert_eq!(now["hidden"], 2);
        assert!(now.get("layers").is_none());
    }

    #[test]
    fn split_first_layer_equals_concatenated_layer() {
        let device = Device::flex();
        crate::backend::seed(&device, 3);
        let schedule = NoiseSchedule::new(&ScheduleConfig {
            steps: 5,
            ..Default::default()
        })
        .unwrap();
        let cfg = EpsNetConfig {
            width: 8,
            hidden: 2,
            time_harmonics: 2,
            ..Default::default()
        };
        let net = EpsNet::new(&cfg, 3, 2, &schedule, &device);
        let obs = crate::nn::tensor2(&[0.1, -0.2, 0.3, 1.0, 0.5, -1.5], 2, 3, &device);
        let x = crate::nn::tensor2(&[0.7, -0.4, 0.2, 0.9], 2, 2, &device);
        // One step for both rows, per-row steps and a row-by-row reference agree.
        let a = crate::nn::to_vec(net.forward_step(obs.clone(), x.clone(), 4));
        let b = crate::nn::to_vec(net.forward_rows(obs.clone(), x.clone(), &[4, 4]));
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() < 1e-6);
        }
        let c = crate::nn::to_vec(net.forward_rows(obs.clone(), x.clone(), &[4, 2]));
        assert_eq!(&c[..2], &b[..2]);
        let d = crate::nn::to_vec(net.forward_step(obs.slice(1..2), x.slice(1..2), 2));
        for (u, v) in c[2..].iter().zip(&d) {
            assert!((u - v).abs() < 1e-6);
        }
        // Reference: the paper's single linear layer on [s, x, fourier(τ)].
        let w_in = crate::nn::to_vec(net.input.weight.val()); // [5, 8]
        let b_in = crate::nn::to_vec(net.input.bias.as_ref().unwrap().val());
        let w_t = crate::nn::to_vec(net.time.weight.val()); // [4, 8]
        let feats = FourierTimeEmbedding::new(2).features(schedule.time_input(4));
        let row = [0.1f32, -0.2, 0.3, 0.7, -0.4];
        let pre: Vec<f32> = (0..8)
            .map(|j| {
                b_in[j]
                    + (0..5).map(|i| row[i] * w_in[i * 8 + j]).sum::<f32>()
                    + (0..4).map(|i| feats[i] * w_t[i * 8 + j]).sum::<f32>()
            })
            .collect();
        let expect = crate::nn::to_vec(net.finish(crate::nn::tensor2(&pre, 1, 8, &device)));
        for (u, v) in a[..2].iter().zip(&expect) {
            assert!((u - v).abs() < 1e-5, "{u} vs {v}");
        }
    }
}
