//! A fused CPU executor for the ε-network, for sampling (evaluation and RTB's on-policy chains).
//!
//! The weights are taken out of the burn module once; a forward pass is then a few GEMMs
//! (the `gemm` crate, which burn-flex itself uses) with bias, LayerNorm and activation applied in
//! one pass over each output row, and no per-op dispatch. Two pieces of work are also done less
//! often, with identical results:
//! - the time part of the first layer, `W_τ·fourier(τ_t) + b`, is one row per step `t`, computed
//!   once when the executor is built (`[T, width]`);
//! - the state part, `W_s·s`, is the same at every step of a chain, so it is computed once per
//!   chain (cached on the observation batch) and only the action part `W_x·x_t` (act_dim columns)
//!   is recomputed per step.
//!
//! [`FusedEpsNet`] implements [`EpsModel`], so the one sampler in [`super::chain`] drives it and
//! the Gaussian step is not written twice. It is inference only (no gradients).

use std::cell::RefCell;

use burn::tensor::Tensor;

use super::model::{EpsModel, EpsNet};
use super::schedule::NoiseSchedule;
use crate::nn::host::matmul;
use crate::nn::{self, Activation, Mlp};

/// burn's `LayerNormConfig` default, which the ε-network uses.
const LAYER_NORM_EPS: f32 = 1e-5;

/// Rows at which a GEMM is worth splitting over threads.
const PARALLEL_ROWS: usize = 256;

struct Dense {
    /// `[d_in, d_out]` row-major (burn's `Linear` layout).
    w: Vec<f32>,
    b: Vec<f32>,
    d_in: usize,
    d_out: usize,
    norm: Option<(Vec<f32>, Vec<f32>)>,
}

impl Dense {
    fn from_linear(linear: &burn::nn::Linear, norm: Option<&burn::nn::LayerNorm>) -> Dense {
        let [d_in, d_out] = linear.weight.val().dims();
        Dense {
            w: nn::to_vec(linear.weight.val()),
            b: linear
                .bias
                .as_ref()
                .map(|b| nn::to_vec(b.val()))
                .unwrap_or_else(|| vec![0.0; d_out]),
            d_in,
            d_out,
            norm: norm.map(layer_norm_params),
        }
    }
}

fn layer_norm_params(norm: &burn::nn::LayerNorm) -> (Vec<f32>, Vec<f32>) {
    let gamma = nn::to_vec(norm.gamma.val());
    let beta = norm
        .beta
        .as_ref()
        .map(|b| nn::to_vec(b.val()))
        .unwrap_or_else(|| vec![0.0; gamma.len()]);
    (gamma, beta)
}

/// The ε-network as plain buffers; see the module docs.
pub struct FusedEpsNet {
    schedule: NoiseSchedule,
    obs_dim: usize,
    act_dim: usize,
    width: usize,
    /// First layer, observation rows `[obs_dim, width]` and action rows `[act_dim, width]`.
    w_obs: Vec<f32>,
    w_act: Vec<f32>,
    /// `W_τ·fourier(τ_t) + b` for t = 1..T: `[T, width]`.
    time_bias: Vec<f32>,
    first_norm: Option<(Vec<f32>, Vec<f32>)>,
    hidden: Vec<Dense>,
    output: Dense,
    activation: Activation,
    /// The last observation batch and its first-layer state part.
    state_cache: RefCell<(Vec<f32>, Vec<f32>)>,
}

impl FusedEpsNet {
    pub fn new(net: &EpsNet, schedule: &NoiseSchedule) -> FusedEpsNet {
        let [d_in, width] = net.input.weight.val().dims();
        let act_dim = net.trunk.output.weight.val().dims()[1];
        let obs_dim = d_in - act_dim;
        let w_in = nn::to_vec(net.input.weight.val());
        let b_in = net
            .input
            .bias
            .as_ref()
            .map(|b| nn::to_vec(b.val()))
            .unwrap_or_else(|| vec![0.0; width]);
        let w_time = nn::to_vec(net.time.weight.val());
        let steps = schedule.steps();
        let mut time_bias = vec![0.0f32; steps * width];
        // Same arithmetic as the module: the projection of the features, then the bias.
        matmul(
            &net.time_features,
            net.time_dim,
            &w_time,
            width,
            steps,
            &mut time_bias,
            false,
        );
        for row in time_bias.chunks_mut(width) {
            for (v, b) in row.iter_mut().zip(&b_in) {
                *v += b;
            }
        }
        FusedEpsNet {
            schedule: schedule.clone(),
            obs_dim,
            act_dim,
            width,
            w_obs: w_in[..obs_dim * width].to_vec(),
            w_act: w_in[obs_dim * width..].to_vec(),
            time_bias,
            first_norm: net.norm.as_ref().map(layer_norm_params),
            hidden: trunk_layers(&net.trunk),
            output: Dense::from_linear(&net.trunk.output, None),
            activation: net.activation,
            state_cache: RefCell::new((Vec::new(), Vec::new())),
        }
    }

    /// ε̂ for `n` rows at step `t`: `obs` `[n, obs_dim]` (normalised), `x` `[n, act_dim]`.
    pub fn eps_slice(&self, obs: &[f32], x: &[f32], n: usize, t: usize) -> Vec<f32> {
        let w = self.width;
        let mut h = vec![0.0f32; n * w];
        {
            let mut cache = self.state_cache.borrow_mut();
            if cache.0 != obs {
                let mut state = vec![0.0f32; n * w];
                matmul(
                    obs,
                    self.obs_dim,
                    &self.w_obs,
                    w,
                    n,
                    &mut state,
                    n >= PARALLEL_ROWS,
                );
                *cache = (obs.to_vec(), state);
            }
            h.copy_from_slice(&cache.1);
        }
        // h += x·W_act (act_dim is tiny: plain loops) + time row.
        let time = &self.time_bias[(t - 1) * w..t * w];
        for (i, row) in h.chunks_mut(w).enumerate() {
            for (k, &xv) in x[i * self.act_dim..(i + 1) * self.act_dim]
                .iter()
                .enumerate()
            {
                let wr = &self.w_act[k * w..(k + 1) * w];
                for (v, &wv) in row.iter_mut().zip(wr) {
                    *v += xv * wv;
                }
            }
            for (v, &tv) in row.iter_mut().zip(time) {
                *v += tv;
            }
        }
        finish_rows(&mut h, w, self.first_norm.as_ref(), self.activation);
        for layer in &self.hidden {
            h = dense_forward(layer, &h, n, Some(self.activation));
        }
        dense_forward(&self.output, &h, n, None)
    }
}

fn trunk_layers(mlp: &Mlp) -> Vec<Dense> {
    mlp.layers
        .iter()
        .enumerate()
        .map(|(i, l)| Dense::from_linear(l, mlp.norms.get(i)))
        .collect()
}

/// `x·W + b`, then LayerNorm and the activation when given, row by row.
fn dense_forward(layer: &Dense, x: &[f32], n: usize, activation: Option<Activation>) -> Vec<f32> {
    let mut out = vec![0.0f32; n * layer.d_out];
    matmul(
        x,
        layer.d_in,
        &layer.w,
        layer.d_out,
        n,
        &mut out,
        n >= PARALLEL_ROWS,
    );
    for row in out.chunks_mut(layer.d_out) {
        for (v, b) in row.iter_mut().zip(&layer.b) {
            *v += b;
        }
    }
    if let Some(act) = activation {
        finish_rows(&mut out, layer.d_out, layer.norm.as_ref(), act);
    }
    out
}

/// LayerNorm (when given) and the activation, in place, one row at a time.
fn finish_rows(h: &mut [f32], width: usize, norm: Option<&(Vec<f32>, Vec<f32>)>, act: Activation) {
    for row in h.chunks_mut(width) {
        if let Some((gamma, beta)) = norm {
            let mean = row.iter().sum::<f32>() / width as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
            let inv = 1.0 / (var + LAYER_NORM_EPS).sqrt();
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
        match act {
            Activation::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Gelu => row.iter_mut().for_each(|v| *v = gelu(*v)),
            Activation::Tanh => row.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::Mish => row.iter_mut().for_each(|v| *v *= (v.exp().ln_1p()).tanh()),
        }
    }
}

/// Exact GELU, `x·Φ(x)`, with a rational erf that vectorises (no branches, no exp).
#[inline]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf(x) = x·P(x²)/Q(x²) on [−4, 4] (±1 beyond, to f32 precision): the minimax rational
/// approximation used by Eigen and XLA for single precision (max error ≈ 1e-7, tested below).
#[inline]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_6e-3;
    p = p * x2 + -1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329e-3;
    q = q * x2 + -1.426_474e-2;
    x * p / q
}

impl EpsModel for FusedEpsNet {
    fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    fn act_dim(&self) -> usize {
        self.act_dim
    }

    fn eps_rows(&self, obs: Tensor<2>, x_t: Tensor<2>, t: &[usize]) -> Tensor<2> {
        // Rows grouped by step: one fused pass per distinct step.
        let device = x_t.device();
        let n = t.len();
        let (obs, x) = (nn::to_vec(obs), nn::to_vec(x_t));
        let (od, ad) = (self.obs_dim, self.act_dim);
        let mut out = vec![0.0f32; n * ad];
        let mut steps: Vec<usize> = t.to_vec();
        steps.sort_unstable();
        steps.dedup();
        for step in steps {
            let rows: Vec<usize> = (0..n).filter(|&i| t[i] == step).collect();
            let o: Vec<f32> = rows
                .iter()
                .flat_map(|&i| obs[i * od..(i + 1) * od].iter().copied())
                .collect();
            let xs: Vec<f32> = rows
                .iter()
                .flat_map(|&i| x[i * ad..(i + 1) * ad].iter().copied())
                .collect();
            let e = self.eps_slice(&o, &xs, rows.len(), step);
            for (j, &i) in rows.iter().enumerate() {
                out[i * ad..(i + 1) * ad].copy_from_slice(&e[j * ad..(j + 1) * ad]);
            }
        }
        nn::tensor2(&out, n, ad, &device)
    }

    fn eps(&self, obs: Tensor<2>, x_t: Tensor<2>, t: usize) -> Tensor<2> {
        let device = x_t.device();
        let n = x_t.dims()[0];
        let e = self.eps_slice(&nn::to_vec(obs), &nn::to_vec(x_t), n, t);
        nn::tensor2(&e, n, self.act_dim, &device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::chain::sample_actions;
    use crate::diffusion::model::NetConfig;
    use crate::diffusion::schedule::ScheduleConfig;
    use burn::tensor::Device;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0.0f32;
        for i in -6000..=6000 {
            let x = i as f32 * 1e-3;
            worst = worst.max((erf(x) - libm::erff(x)).abs());
        }
        assert!(worst < 1e-6, "max |erf − libm::erff| = {worst}");
    }

    fn net(activation: Activation, layer_norm: bool) -> (EpsNet, NoiseSchedule, Device) {
        let device = Device::flex();
        crate::backend::seed(&device, 11);
        let schedule = NoiseSchedule::new(&ScheduleConfig {
            steps: 6,
            ..Default::default()
        })
        .unwrap();
        let cfg = NetConfig {
            width: 32,
            layers: 3,
            time_harmonics: 4,
            activation,
            layer_norm,
        };
        (
            EpsNet::new(&cfg, 5, 3, &schedule, &device),
            schedule,
            device,
        )
    }

    #[test]
    fn fused_forward_equals_the_burn_module() {
        for (act, ln) in [
            (Activation::Gelu, true),
            (Activation::Relu, false),
            (Activation::Mish, true),
            (Activation::Tanh, false),
        ] {
            let (net, schedule, device) = net(act, ln);
            let fused = FusedEpsNet::new(&net, &schedule);
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let n = 300; // above PARALLEL_ROWS: the threaded GEMM path too
            let obs_v = crate::diffusion::gaussian::normal_vec(&mut rng, n * 5);
            let x_v = crate::diffusion::gaussian::normal_vec(&mut rng, n * 3);
            let obs = nn::tensor2(&obs_v, n, 5, &device);
            let x = nn::tensor2(&x_v, n, 3, &device);
            for t in [1, 4, 6] {
                let a = nn::to_vec(net.forward_step(obs.clone(), x.clone(), t));
                let b = nn::to_vec(fused.eps(obs.clone(), x.clone(), t));
                let worst = a
                    .iter()
                    .zip(&b)
                    .map(|(u, v)| (u - v).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst < 1e-5, "{act:?} ln={ln} t={t}: max diff {worst}");
            }
            // Mixed steps per row.
            let t: Vec<usize> = (0..n).map(|i| 1 + i % 6).collect();
            let a = nn::to_vec(net.forward_rows(obs.clone(), x.clone(), &t));
            let b = nn::to_vec(fused.eps_rows(obs, x, &t));
            let worst = a
                .iter()
                .zip(&b)
                .map(|(u, v)| (u - v).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{act:?}: rows max diff {worst}");
        }
    }

    #[test]
    fn fused_sampler_gives_the_same_actions() {
        let (net, schedule, device) = net(Activation::Gelu, true);
        let fused = FusedEpsNet::new(&net, &schedule);
        struct Module<'a>(&'a EpsNet, &'a NoiseSchedule);
        impl EpsModel for Module<'_> {
            fn schedule(&self) -> &NoiseSchedule {
                self.1
            }
            fn act_dim(&self) -> usize {
                3
            }
            fn eps_rows(&self, obs: Tensor<2>, x: Tensor<2>, t: &[usize]) -> Tensor<2> {
                self.0.forward_rows(obs, x, t)
            }
            fn eps(&self, obs: Tensor<2>, x: Tensor<2>, t: usize) -> Tensor<2> {
                self.0.forward_step(obs, x, t)
            }
        }
        let obs = nn::tensor2(
            &crate::diffusion::gaussian::normal_vec(&mut ChaCha8Rng::seed_from_u64(5), 40),
            8,
            5,
            &device,
        );
        let a = nn::to_vec(sample_actions(
            &Module(&net, &schedule),
            obs.clone(),
            &mut ChaCha8Rng::seed_from_u64(9),
        ));
        let b = nn::to_vec(sample_actions(
            &fused,
            obs,
            &mut ChaCha8Rng::seed_from_u64(9),
        ));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(u, v)| (u - v).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "actions differ by {worst}");
    }
}
