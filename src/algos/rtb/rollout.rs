//! Rollouts: on- and off-policy trajectories with every term that carries no gradient (the
//! prior's log-likelihood, the reward), computed once, without gradient.

use std::ops::Range;

use burn::tensor::{Int, Tensor, TensorData};
use rand::Rng;

use super::posterior::{Correction, Posterior};
use super::reward::LogReward;
use crate::algos::common::repeat_rows;
use crate::backend::Engine;
use crate::diffusion::TrainingEps;
use crate::diffusion::{
    forward_noise_trajectory, normal_noise, reverse_log_prob_rows, reverse_step, sample_start,
    EpsModel, NoiseSchedule,
};

/// A batch of trajectories, `n = states · k` rows (state-major: rows `i·k .. (i+1)·k` share state
/// `i`), with the frozen per-step terms. `xs`, `eps_prior` and `langevin` are indexed like the
/// prior's `Trajectory::xs`: entry `j` belongs to step `t = T − j` (`xs` has T + 1 entries).
pub struct Rollout {
    pub obs: Tensor<2>,
    pub k: usize,
    pub xs: Vec<Tensor<2>>,
    pub eps_prior: Vec<Tensor<2>>,
    pub langevin: Option<Vec<Tensor<2>>>,
    /// `Σ_t log π(x_{t-1}|x_t)` at the rollout's parameters (no gradient), when the rollout
    /// computed it anyway (on-policy sampling does; off-policy leaves it to the gradient pass).
    pub log_pi: Option<Vec<f32>>,
    pub log_mu: Vec<f32>,
    pub log_r: Vec<f32>,
}

impl Rollout {
    pub fn len(&self) -> usize {
        self.log_r.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log_r.is_empty()
    }

    /// Mean over rows of `log r + log μ − log π` (the average VarGrad log Z), computing `log π`
    /// with `correction` if the rollout has none.
    pub fn mean_log_z(&self, schedule: &NoiseSchedule, correction: &Correction) -> f64 {
        let log_pi = match &self.log_pi {
            Some(v) => v.clone(),
            None => {
                let eps = TrainingEps::new(&correction.net, schedule, Engine::Burn);
                let (log_pi, _) = log_likelihoods(schedule, correction, &eps, self, 0..self.len());
                crate::nn::to_vec(log_pi)
            }
        };
        let total: f64 = (0..self.len())
            .map(|i| f64::from(self.log_r[i]) + f64::from(self.log_mu[i]) - f64::from(log_pi[i]))
            .sum();
        total / self.len() as f64
    }
}

/// At most this many rows per network call in the off-policy rollout's no-gradient passes
/// (several steps per call for small batches, one step per call at the paper shape). Smaller
/// buffers are faster (each thread's shard of a hidden layer stays in its caches between the
/// GEMM and the row passes) and smaller peaks: `benches/RESULTS.md`, "Measurements behind the
/// design constants".
const MAX_ROWS_PER_CALL: usize = 4096;

/// Sample `k` trajectories per state from π without gradient (noise order as the prior's sampler:
/// `x_T`, then one block per step), recording the frozen terms and both log-likelihoods.
pub fn rollout_on_policy<P, R>(
    pi: &Posterior<'_, P, R>,
    obs: Tensor<2>,
    k: usize,
    rng: &mut impl Rng,
) -> Rollout
where
    P: EpsModel + ?Sized,
    R: LogReward + ?Sized,
{
    let (prior, correction, reward) = (pi.prior, pi.correction, pi.reward);
    let schedule = prior.schedule();
    let obs = repeat_rows(obs.without_autodiff(), k);
    let (n, device) = (obs.dims()[0], obs.device());
    let ad = prior.act_dim();
    let mut x = sample_start(schedule, n, ad, rng, &device);
    let mut xs = vec![x.clone()];
    let mut eps_prior = Vec::with_capacity(schedule.steps());
    let mut langevin = correction.correction.langevin.as_ref().map(|_| Vec::new());
    let mut log_pi: Option<Tensor<1>> = None;
    let mut log_mu: Option<Tensor<1>> = None;
    for t in (1..=schedule.steps()).rev() {
        let e_mu = prior.eps(obs.clone(), x.clone(), t);
        let g = pi.langevin_grad(obs.clone(), x.clone());
        let e_pi = e_mu.clone() + correction.rows(obs.clone(), x.clone(), &[t], g.clone());
        let step_pi = reverse_step(schedule, x.clone(), e_pi, t);
        let step_mu = reverse_step(schedule, x.clone(), e_mu.clone(), t);
        let next = step_pi.clone().sample(normal_noise(rng, n, ad, &device));
        log_pi = Some(add(log_pi, step_pi.log_prob(next.clone())));
        log_mu = Some(add(log_mu, step_mu.log_prob(next.clone())));
        eps_prior.push(e_mu);
        if let (Some(list), Some(g)) = (langevin.as_mut(), g) {
            list.push(g);
        }
        xs.push(next.clone());
        x = next;
    }
    let log_r = crate::nn::to_vec(reward.log_reward(obs.clone(), x));
    Rollout {
        obs,
        k,
        xs,
        eps_prior,
        langevin,
        log_pi: Some(crate::nn::to_vec(log_pi.expect("T >= 1"))),
        log_mu: crate::nn::to_vec(log_mu.expect("T >= 1")),
        log_r,
    }
}

/// Noise the actions `a0` along the forward process, and evaluate the frozen terms and both
/// log-likelihoods without gradient. `a0` (model space) holds one row per state, repeated `k`
/// times (dataset actions), or already `k` rows per state, state-major (replayed samples).
pub fn rollout_off_policy<P, R>(
    pi: &Posterior<'_, P, R>,
    obs: Tensor<2>,
    a0: Tensor<2>,
    k: usize,
    rng: &mut impl Rng,
) -> Rollout
where
    P: EpsModel + ?Sized,
    R: LogReward + ?Sized,
{
    let (prior, correction, reward) = (pi.prior, pi.correction, pi.reward);
    let schedule = prior.schedule();
    let states = obs.dims()[0];
    let obs = repeat_rows(obs.without_autodiff(), k);
    let a0 = a0.without_autodiff();
    let a0 = if a0.dims()[0] == states {
        repeat_rows(a0, k)
    } else {
        assert_eq!(a0.dims()[0], states * k, "a0: one or k rows per state");
        a0
    };
    let n = obs.dims()[0];
    let traj = forward_noise_trajectory(schedule, a0, rng);
    let t_max = schedule.steps();
    // Frozen terms for all steps, several steps per call.
    let block = (MAX_ROWS_PER_CALL / n.max(1)).clamp(1, t_max);
    let mut eps_prior = Vec::with_capacity(t_max);
    let mut langevin = correction
        .correction
        .langevin
        .as_ref()
        .map(|_| Vec::with_capacity(t_max));
    let mut j = 0;
    while j < t_max {
        let len = block.min(t_max - j);
        let x_in = Tensor::cat(traj.xs[j..j + len].to_vec(), 0);
        let obs_in = obs.clone().repeat_dim(0, len);
        let steps: Vec<usize> = (j..j + len)
            .flat_map(|i| std::iter::repeat_n(t_max - i, n))
            .collect();
        let e = prior.eps_rows(obs_in.clone(), x_in.clone(), &steps);
        let g = pi.langevin_grad(obs_in, x_in);
        for b in 0..len {
            eps_prior.push(e.clone().slice(b * n..(b + 1) * n));
            if let (Some(list), Some(g)) = (langevin.as_mut(), g.as_ref()) {
                list.push(g.clone().slice(b * n..(b + 1) * n));
            }
        }
        j += len;
    }
    // All steps' densities at once (block j = step t_max − j), summed per row.
    let log_mu = reverse_log_prob_rows(
        schedule,
        Tensor::cat(traj.xs[..t_max].to_vec(), 0),
        Tensor::cat(eps_prior.clone(), 0),
        Tensor::cat(traj.xs[1..].to_vec(), 0),
        &block_steps(t_max, n),
    )
    .reshape([t_max, n])
    .sum_dim(0)
    .reshape([n]);
    let log_r = crate::nn::to_vec(reward.log_reward(obs.clone(), traj.x0().clone()));
    // log π is left to the gradient pass, which computes it anyway (saves one network pass).
    Rollout {
        obs,
        k,
        xs: traj.xs,
        eps_prior,
        langevin,
        log_pi: None,
        log_mu: crate::nn::to_vec(log_mu),
        log_r,
    }
}

/// `(Σ_t log π, Σ_t log μ)` of the rollout's rows `rows`, `[rows.len()]` each; `log π` is
/// differentiable through `correction`, whose network `eps` runs (all T steps of the rows in one
/// call, each state's observation shared by its k trajectories and T steps; their densities in
/// one [`reverse_log_prob_rows`] each).
pub fn log_likelihoods(
    schedule: &NoiseSchedule,
    correction: &Correction,
    eps: &TrainingEps<'_>,
    rollout: &Rollout,
    rows: Range<usize>,
) -> (Tensor<1>, Tensor<1>) {
    let (t_max, m, k) = (schedule.steps(), rows.len(), rollout.k);
    // The rows of every step stacked, block j = step t_max − j (the layout of `block_steps`).
    let stack = |list: &[Tensor<2>]| {
        Tensor::cat(
            list.iter().map(|v| v.clone().slice(rows.clone())).collect(),
            0,
        )
    };
    let steps = block_steps(t_max, m);
    let x_t = stack(&rollout.xs[..t_max]);
    let g = rollout.langevin.as_deref().map(stack);
    // Rows are state-major and chunks hold whole states: one observation per k rows.
    let first_rows: Vec<i64> = (rows.start..rows.end)
        .step_by(k)
        .map(|r| r as i64)
        .collect();
    let first_rows =
        Tensor::<1, Int>::from_data(TensorData::new(first_rows, [m / k]), &rollout.obs.device());
    let states = rollout.obs.clone().select(0, first_rows);
    let state: Vec<usize> = (0..t_max * m).map(|r| (r % m) / k).collect();
    let nn = eps.forward_shared(states, &state, x_t.clone(), &steps);
    let corr = correction.with_langevin(nn, &steps, g);
    let x_prev = stack(&rollout.xs[1..]);
    let e_mu = stack(&rollout.eps_prior);
    let per_row = |v: Tensor<1>| v.reshape([t_max, m]).sum_dim(0).reshape([m]);
    let log_pi = reverse_log_prob_rows(
        schedule,
        x_t.clone(),
        e_mu.clone() + corr,
        x_prev.clone(),
        &steps,
    );
    let log_mu = reverse_log_prob_rows(schedule, x_t, e_mu, x_prev, &steps);
    (per_row(log_pi), per_row(log_mu))
}

/// The steps of `t_max` blocks of `m` rows, block `j` at step `t_max − j` (the layout of the
/// stacked `xs[0..T]`).
fn block_steps(t_max: usize, m: usize) -> Vec<usize> {
    (0..t_max)
        .flat_map(|j| std::iter::repeat_n(t_max - j, m))
        .collect()
}

fn add(acc: Option<Tensor<1>>, x: Tensor<1>) -> Tensor<1> {
    match acc {
        Some(a) => a + x,
        None => x,
    }
}
