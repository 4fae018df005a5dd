//! The RTB loss and its gradient, accumulated over chunks of trajectories so that memory does not
//! grow with k · T (see the module docs of [`super`]).

use crate::backend::Engine;
use burn::optim::{GradientsAccumulator, GradientsParams};

use super::posterior::{Correction, RtbModel};
use super::rollout::{log_likelihoods, Rollout};
use crate::algos::common::scalar;
use crate::diffusion::NoiseSchedule;
use crate::diffusion::TrainingEps;
use crate::nn::{tensor1, Mlp};

/// Scalars of one update.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UpdateStats {
    /// `½ mean δ²` over the batch's trajectories.
    pub loss: f64,
    /// Mean `log Z` over rows.
    pub log_z: f64,
    pub log_r: f64,
    /// Mean `log π(τ) − log μ(τ)` (on-policy: a KL(π‖μ) estimate).
    pub log_ratio: f64,
    /// Mean over states of the variance over their k trajectories of
    /// `log π(τ) − log μ(τ) − log r` (0 when π is the target posterior).
    pub log_ratio_var: f64,
}

/// Gradients of the batch loss `½ mean_i δ_i²` (`½ mean_i max(δ_i² − cutoff, 0)` with a
/// cutoff), `δ = log Z + log π − log μ − log r`, accumulated
/// over chunks of about `chunk` rows (0: one chunk), rounded up to whole states so that each
/// chunk computes its states' VarGrad `log Z` from its own (detached) `log π`. `model` lives on
/// an autodiff device. Returns the correction's and (if learned) the log Z network's gradients.
pub fn rtb_gradients(
    schedule: &NoiseSchedule,
    model: &RtbModel,
    rollout: &Rollout,
    chunk: usize,
    cutoff: f64,
) -> (GradientsParams, Option<GradientsParams>, UpdateStats) {
    let net = &model.correction.net;
    let engine = Engine::for_device(&net.device());
    chunked_gradients(
        schedule,
        model,
        &TrainingEps::new(net, schedule, engine),
        rollout,
        chunk,
        cutoff,
    )
}

/// [`rtb_gradients`] with the correction's network run by `eps` (tests compare the engines).
pub fn chunked_gradients(
    schedule: &NoiseSchedule,
    model: &RtbModel,
    eps: &TrainingEps<'_>,
    rollout: &Rollout,
    chunk: usize,
    cutoff: f64,
) -> (GradientsParams, Option<GradientsParams>, UpdateStats) {
    let (n, k) = (rollout.len(), rollout.k);
    let chunk = if chunk == 0 { n } else { chunk.div_ceil(k) * k }.min(n);
    let mut acc_corr = GradientsAccumulator::<Correction>::new();
    let mut acc_z = GradientsAccumulator::<Mlp>::new();
    let mut stats = UpdateStats::default();
    let mut start = 0;
    while start < n {
        let rows = start..(start + chunk).min(n);
        let m = rows.len();
        let device = rollout.obs.device();
        let (log_pi, log_mu) =
            log_likelihoods(schedule, &model.correction, eps, rollout, rows.clone());
        let log_mu = log_mu.without_autodiff();
        let log_r = tensor1(&rollout.log_r[rows.clone()], &device);
        let log_z = match &model.log_z {
            Some(net) => {
                let obs = rollout.obs.clone().slice(rows.clone());
                net.forward(obs).reshape([m])
            }
            None => {
                // mean_k(log r + log μ − log π) per state, repeated over its k rows.
                let c = log_r.clone() + log_mu.clone() - log_pi.clone().without_autodiff();
                c.reshape([m / k, k])
                    .mean_dim(1)
                    .repeat_dim(1, k)
                    .reshape([m])
            }
        };
        let delta = log_z.clone() + log_pi.clone() - log_mu.clone() - log_r.clone();
        let squared = delta.square();
        stats.loss += scalar(&squared.clone().sum()) * 0.5 / n as f64;
        let loss = if cutoff > 0.0 {
            burn::tensor::activation::relu(squared.sub_scalar(cutoff))
        } else {
            squared
        }
        .sum()
        .mul_scalar(0.5 / n as f64);
        stats.log_z += scalar(&log_z.sum()) / n as f64;
        let ratio = log_pi.clone().without_autodiff() - log_mu.clone() - log_r.clone();
        stats.log_ratio_var +=
            scalar(&ratio.reshape([m / k, k]).var_bias(1).sum()) * k as f64 / n as f64;
        stats.log_r += scalar(&log_r.sum()) / n as f64;
        stats.log_ratio += scalar(&(log_pi - log_mu).sum()) / n as f64;
        let mut grads = loss.backward();
        // The network's gradients, then the rest of the correction's (its c(t)).
        let mut params = GradientsParams::new();
        eps.register_grads(&mut grads, &mut params);
        crate::nn::take_gradients(&model.correction, &mut grads, &mut params);
        acc_corr.accumulate(&model.correction, params);
        if let Some(net) = &model.log_z {
            acc_z.accumulate(net, GradientsParams::from_module(&mut grads, net));
        }
        start = rows.end;
    }
    let z = model.log_z.as_ref().map(|_| acc_z.grads());
    (acc_corr.grads(), z, stats)
}
