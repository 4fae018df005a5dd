//! Score-based behaviour prior μ(a|s): a DDPM over actions conditioned on the state.
//!
//! Defaults follow the RTB paper's offline-RL setup (Venkatraman et al. 2024, App. G, and its
//! code): T = 75 steps, linear β 1e-4 → 0.02, ε-prediction with Min-SNR-γ (γ = 5) weighting, an
//! MLP of 3 × 256 hidden units with LayerNorm + GELU on `[state, x_t, 128 Fourier time
//! features]`, pre-tanh action space, Adam 5e-4, batch 512. Every choice is a config key
//! ([`PriorConfig`], `configs/diffusion-bc.toml`). Where the chain starts is discussed in
//! [`schedule`]. Training (`offrl train prior`) is diffusion-BC, [`crate::algos::diffusion_bc`].
//!
//! # API for samplers and fine-tuning (RTB)
//! Model space: observations are normalised ([`DiffusionPrior::obs_tensor`]) and actions mapped
//! by the [`PriorSpec`] (`action_to_model` for dataset actions, `action_to_env` /
//! `action_to_env_tensor` for chain outputs; see [`transform`]). Steps are `t = 1..=T`, `x_0` is
//! the action.
//!
//! - [`NoiseSchedule`]: β_t, α_t, ᾱ_t, forward-posterior coefficients and variances, the reverse
//!   step's mean coefficients and σ_t, and the start distribution of `x_T`.
//! - [`EpsModel`]: `eps_rows(obs, x_t, &[t per row])`, `eps(obs, x_t, t)`, `schedule()`,
//!   `act_dim()`. [`DiffusionPrior`] implements it; a posterior `ε_π = ε_μ + ε_corr` implements
//!   it too and gets everything below for free.
//! - The one Gaussian step: [`reverse_step`]`(schedule, x_t, ε̂, t) -> Transition { mean, std }`
//!   and the one density [`gaussian_log_prob`]`(x, mean, std) -> [n]` (summed over action dims);
//!   [`reverse_log_prob_rows`] the step's density for rows at their own steps (stacked chains);
//!   [`forward_step`] for `q(x_t | x_{t-1})`.
//! - [`sample_trajectory`]`(model, obs, rng) -> Trajectory { xs: [x_T … x_0] }` (detached; repeat
//!   `obs` rows for k samples per state), [`sample_actions`] (only `x_0`),
//!   [`trajectory_log_prob`]`(model, obs, &traj) -> [n]` = `Σ_t log p(x_{t-1}|x_t, s)`,
//!   differentiable through the model (steps are batched into few network calls),
//!   [`forward_noise_trajectory`]`(schedule, a0, rng)` and [`forward_log_prob`]`(schedule, &traj)`
//!   = `Σ_t log q(x_t|x_{t-1})`, [`start_log_prob`] = `log p(x_T)` (kept out of the sums: it
//!   cancels in RTB's ratio).
//! - Noise comes from a seeded Rust RNG (`rand_chacha`) in a documented order, turned into
//!   tensors, so a seed gives the same samples on every backend.
//! - [`DiffusionPrior::load`] rebuilds a trained prior from a checkpoint or run directory;
//!   [`DiffusionPolicy`] is the batched [`crate::policy::Policy`] for evaluation.
//!
//! For speed, sample with an inference copy (`prior.valid()`); freeze μ in fine-tuning with
//! `prior.valid()` too (its ε then carries no graph).

pub mod chain;
pub mod config;
pub mod ddim;
pub mod executor;
pub mod fused;
pub mod gaussian;
pub mod model;
pub mod prior;
pub mod reference;
pub mod schedule;
pub mod transform;

pub use chain::{
    check_noise_scale, denoising_loss, forward_log_prob, forward_noise_trajectory, sample_actions,
    sample_actions_scaled, sample_start, sample_trajectory, start_log_prob, trajectory_log_prob,
    LossWeighting, Trajectory,
};
pub use config::{ActSampler, LrSchedule, PriorConfig, PriorSpec, PriorState, Weighting};
pub use ddim::{Ddim, DdimMap};
pub use executor::{ActingEps, TrainingEps};
pub use gaussian::{
    forward_step, gaussian_log_prob, normal_noise, normal_vec, reverse_log_prob_rows, reverse_step,
    Transition,
};
pub use model::{EpsModel, EpsNet, EpsNetConfig};
pub use prior::{gradient_step, DiffusionPolicy, DiffusionPrior};
pub use reference::StandardNormal;
pub use schedule::{
    NoiseSchedule, ScheduleConfig, ScheduleKind, Spacing, StartDistribution, StartKind, Variance,
};
