//! Adam, the optimizer of every model here, with its update fused into one pass over memory on
//! the CPU backend.
//!
//! burn's `Adam` writes the update as a dozen tensor operations per parameter, each a pass over
//! memory with its own allocation (the cost measured: `benches/RESULTS.md`, "Measurements behind
//! the design constants"). [`HostAdam`] takes the
//! parameter, its gradient and the two moments out of their tensors (no copy when each is held
//! once, as in a step), updates all three in one pass and hands the buffers back. Its state is
//! burn's [`AdamState`], so records and checkpoints are the same; on other devices it is burn's
//! `Adam` itself.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;

/// Adam (β = 0.9, 0.999) with ε = `eps`, and gradient-norm clipping at `clip_norm` when given.
pub fn adam(eps: f64, clip_norm: Option<f32>) -> ModuleOptimizer {
    let config = AdamConfig::new()
        .with_beta_1(BETA_1)
        .with_beta_2(BETA_2)
        .with_epsilon(eps as f32);
    let optim = ModuleOptimizer::from(HostAdam {
        epsilon: eps as f32,
        reference: config.build(),
    });
    match clip_norm {
        Some(norm) => optim.with_grad_clipping(GradientClippingConfig::Norm(norm).init()),
        None => optim,
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct HostAdam {
    epsilon: f32,
    /// burn's Adam with the same settings, for devices other than the CPU backend.
    reference: Adam,
}

/// Elements from which an update is split over threads.
const PARALLEL_ELEMS: usize = 1 << 20;

impl Optimizer for HostAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let f32_params = tensor.dtype() == DType::F32 && grad.dtype() == DType::F32;
        if device.clone().without_autodiff() != Device::flex() || !f32_params {
            return self.reference.step(lr, tensor, grad, state);
        }
        let shape = tensor.shape();
        let (mut moment_1, mut moment_2, time) = match state {
            Some(AdamState { momentum }) => (
                momentum.moment_1.into_data(),
                momentum.moment_2.into_data(),
                momentum.time + 1,
            ),
            // Zero moments: the first step's `β·0 + (1 − β)·g` is burn's `(1 − β)·g` exactly.
            None => (
                TensorData::zeros::<f32, _>(shape.clone()),
                TensorData::zeros::<f32, _>(shape.clone()),
                1,
            ),
        };
        let mut param = tensor.into_data();
        let grad = grad.into_data();
        let update = Update::at(time, self.epsilon, lr as f32);
        // f32 data from tensors (checked above) and the zeros made here: aligned f32 buffers.
        let as_f32 = "f32 buffers";
        let p = param.as_mut_slice::<f32>().expect(as_f32);
        let g = grad.as_slice::<f32>().expect(as_f32);
        let m1 = moment_1.as_mut_slice::<f32>().expect(as_f32);
        let m2 = moment_2.as_mut_slice::<f32>().expect(as_f32);
        if p.len() >= PARALLEL_ELEMS {
            let chunk = p.len().div_ceil(4 * rayon::current_num_threads());
            p.par_chunks_mut(chunk)
                .zip(g.par_chunks(chunk))
                .zip(m1.par_chunks_mut(chunk))
                .zip(m2.par_chunks_mut(chunk))
                .for_each(|(((p, g), m1), m2)| update.apply(p, g, m1, m2));
        } else {
            update.apply(p, g, m1, m2);
        }
        let momentum = AdaptiveMomentumState::new(
            time,
            Tensor::from_data(moment_1, &device),
            Tensor::from_data(moment_2, &device),
        );
        (
            Tensor::from_data(param, &device),
            Some(AdamState::new(momentum)),
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Adam::to_device(state, device)
    }
}

/// The scalars of one step at `time`.
#[derive(Clone, Copy)]
struct Update {
    step_factor: f32,
    denominator_eps: f32,
    lr: f32,
}

impl Update {
    fn at(time: usize, epsilon: f32, lr: f32) -> Self {
        let time = time as i32;
        let bias_correction2_sqrt = (1.0 - BETA_2.powi(time)).sqrt();
        Self {
            step_factor: bias_correction2_sqrt / (1.0 - BETA_1.powi(time)),
            denominator_eps: epsilon * bias_correction2_sqrt,
            lr,
        }
    }

    /// The same operations as burn's Adam, element by element, in its order.
    fn apply(self, p: &mut [f32], g: &[f32], m1: &mut [f32], m2: &mut [f32]) {
        let (f1, f2) = (1.0 - BETA_1, 1.0 - BETA_2);
        offrl_kernels::vectorized!({
            for (((p, &g), m1), m2) in p.iter_mut().zip(g).zip(m1).zip(m2) {
                *m1 = *m1 * BETA_1 + g * f1;
                *m2 = *m2 * BETA_2 + g * g * f2;
                let step = *m1 * self.step_factor / (m2.sqrt() + self.denominator_eps);
                *p -= step * self.lr;
            }
        })
    }
}

/// Scale `grads` of `module`'s parameters so that their global L2 norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`: one norm over all parameters, unlike burn's per-tensor
/// clipping); returns the scaled gradients and the norm before scaling.
pub fn clip_global_norm<M: burn::module::Module>(
    module: &M,
    mut grads: burn::optim::GradientsParams,
    max_norm: f64,
) -> (burn::optim::GradientsParams, f64) {
    use burn::module::{ModuleVisitor, Param};
    struct SquaredNorm<'a> {
        grads: &'a burn::optim::GradientsParams,
        total: f64,
    }
    impl ModuleVisitor for SquaredNorm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.total += f64::from(g.square().sum().into_scalar::<f32>());
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut burn::optim::GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut norm = SquaredNorm {
        grads: &grads,
        total: 0.0,
    };
    module.visit(&mut norm);
    let total = norm.total.sqrt();
    // PyTorch's factor, with its 1e-6 guard.
    let factor = max_norm / (total + 1e-6);
    if factor < 1.0 {
        module.visit(&mut Scale {
            grads: &mut grads,
            factor,
        });
    }
    (grads, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{tensor2, to_vec, MlpConfig};
    use burn::optim::GradientsParams;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Three steps of each optimizer on the same network and gradients: same parameters.
    #[test]
    fn host_adam_equals_burn_adam() {
        let device = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        // 300 × 300 weights: above PARALLEL_ELEMS, so the threaded path is covered too.
        let mlp = MlpConfig::new(4, 2)
            .with_width(300)
            .with_hidden(2)
            .init(&device);
        let params = |net: &crate::nn::Mlp| -> Vec<f32> {
            let linears = net.layers.iter().chain([&net.output]);
            linears
                .flat_map(|l| {
                    let mut p = to_vec(l.weight.val());
                    p.extend(l.bias.as_ref().map(|b| to_vec(b.val())).unwrap_or_default());
                    p
                })
                .collect()
        };
        let initial = params(&mlp);
        let (mut host_net, mut burn_net) = (mlp.clone(), mlp);
        let mut host = adam(1e-8, None);
        let mut reference = AdamConfig::new().with_epsilon(1e-8).init();
        for step in 0..3 {
            let x: Vec<f32> = (0..8 * 4).map(|_| rng.random_range(-1.0..1.0)).collect();
            let grads = |net: &crate::nn::Mlp| {
                let loss = net
                    .forward(tensor2(&x, 8, 4, &device))
                    .powi_scalar(2)
                    .mean();
                GradientsParams::from_grads(loss.backward(), net)
            };
            let lr = 1e-2 / (step + 1) as f64;
            host_net = host.step(lr, host_net.clone(), grads(&host_net));
            burn_net = reference.step(lr, burn_net.clone(), grads(&burn_net));
        }
        let (a, b) = (params(&host_net), params(&burn_net));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-6, "host Adam differs from burn's by {worst}");
        let moved = a.iter().zip(&initial).filter(|(x, y)| x != y).count();
        assert!(
            moved > a.len() / 2,
            "only {moved} of {} parameters moved",
            a.len()
        );
    }
}
