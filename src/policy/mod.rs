//! Policies: anything that maps a batch of observations to a batch of actions.

pub mod card;
pub mod controllers;
pub mod random;

pub use card::PolicyCard;
pub use controllers::{Nav2dRoutes, PendulumSwingUp};
pub use random::{GaussianNoise, RandomPolicy};

use crate::envs::{Env, Nav2d, Pendulum};
use crate::error::{Error, Result};

/// A policy acting on a batch: `obs` is row-major `[n, obs_dim]`, the result `[n, act_dim]`.
/// One call per environment step for all vectorised environments: a diffusion policy costs
/// T network evaluations per call, so batching across environments is what makes evaluation cheap.
pub trait Policy {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>>;
}

/// Scores `n` (raw observation, environment action) pairs, row-major; higher is better (a
/// critic's Q, say). What IDQL chooses proposals by and what the action probes report.
pub trait ActionScorer {
    fn score(&self, obs: &[f32], act: &[f32], n: usize) -> Result<Vec<f32>>;
}

impl<S: ActionScorer + ?Sized> ActionScorer for Box<S> {
    fn score(&self, obs: &[f32], act: &[f32], n: usize) -> Result<Vec<f32>> {
        (**self).score(obs, act, n)
    }
}

impl<P: Policy + ?Sized> Policy for Box<P> {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        (**self).act(obs, n)
    }
}

/// `obs` holds `n` rows of `dim` values, or an error naming the policy (`name`) and the counts:
/// the check every [`Policy::act`] makes before touching its input.
pub fn check_obs(name: &str, obs: &[f32], n: usize, dim: usize) -> crate::error::Result<()> {
    if obs.len() != n * dim {
        return Err(crate::error::Error::InvalidData(format!(
            "{name}: got {} observation values for {n} rows of dimension {dim}",
            obs.len()
        )));
    }
    Ok(())
}

/// A behaviour policy by name, as dataset cards and `offrl collect --policy` name them:
/// `random`, a built-in controller (`pendulum-swingup`, `nav2d-routes`), or a policy card
/// (name in the shared folder or path to its `.json`), checked against `env`'s spaces.
/// `noise > 0` adds clipped Gaussian action noise; `stochastic` samples a card's Gaussian.
/// Everything random is seeded by `seed`.
pub fn by_name(
    name: &str,
    env: &dyn Env,
    stochastic: bool,
    noise: f32,
    seed: u64,
) -> Result<Box<dyn Policy>> {
    let action_space = env.action_space();
    let controller_for = |want: &str| -> Result<()> {
        if env.id() != want {
            return Err(Error::Config(format!(
                "policy `{name}` controls {want}, not {}",
                env.id()
            )));
        }
        if stochastic {
            return Err(Error::Config(format!(
                "policy `{name}` is deterministic; use a noise level instead of --stochastic"
            )));
        }
        Ok(())
    };
    let base: Box<dyn Policy> = match name {
        "random" => Box::new(RandomPolicy::new(action_space.clone(), seed)?),
        PendulumSwingUp::NAME => {
            controller_for(Pendulum::ID)?;
            Box::new(PendulumSwingUp)
        }
        Nav2dRoutes::NAME => {
            controller_for(Nav2d::ID)?;
            Box::new(Nav2dRoutes)
        }
        card => {
            let card = PolicyCard::load(card)?;
            let (obs_dim, act_dim) = (env.observation_space().dim(), action_space.dim());
            if (card.obs_dim, card.act_dim) != (obs_dim, act_dim) {
                return Err(Error::Config(format!(
                    "policy card {} maps {} observations to {} actions (measured in {}), but {} has \
                     {obs_dim} observations and {act_dim} actions",
                    card.name,
                    card.obs_dim,
                    card.act_dim,
                    card.env_id(),
                    env.id()
                )));
            }
            Box::new(if stochastic {
                card.stochastic(seed)?
            } else {
                card
            })
        }
    };
    Ok(if noise > 0.0 {
        // A different stream from the base policy's own sampling.
        Box::new(GaussianNoise::new(
            base,
            noise,
            action_space.clone(),
            seed ^ 0x006e_6f69_7365,
        ))
    } else {
        base
    })
}
