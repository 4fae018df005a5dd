//! Vectorised policy evaluation: `n_envs` environments stepped together, with ONE batched
//! [`Policy::act`] call per step for all of them (a diffusion policy's cost is per call).
//!
//! Episode accounting: the requested episodes are split into per-environment quotas up front
//! (environment i runs episodes i, i + n, i + 2n, ...), and every episode runs to its end. So
//! the result averages exactly the requested episodes — no bias towards short episodes, which
//! "stop when `episodes` have finished" would have. Episode k is reset with seed `seed + k`,
//! whatever `n_envs` is: with a deterministic policy the returns do not depend on `n_envs`,
//! and `seed = 0` reproduces the "seeds 0..N" convention of the behaviour-policy cards.

pub mod probe;

use serde::{Deserialize, Serialize};

use crate::dataset::ReferenceScores;
use crate::envs::Env;
use crate::error::{Error, Result};
use crate::policy::Policy;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Undiscounted return of episode k (seed `seed + k`), in episode order.
    pub returns: Vec<f64>,
    pub lengths: Vec<usize>,
    pub mean: f64,
    /// Population standard deviation of the returns.
    pub std: f64,
    /// D4RL-normalised mean score, 100 · (R − random) / (expert − random), when references are known.
    pub normalized: Option<f64>,
    pub normalized_std: Option<f64>,
}

impl EvalReport {
    pub fn from_returns(
        returns: Vec<f64>,
        lengths: Vec<usize>,
        reference: Option<ReferenceScores>,
    ) -> Self {
        let (mean, std) = mean_std(&returns);
        let normalized = reference.map(|r| r.normalize(mean));
        let normalized_std = reference.map(|r| 100.0 * std / (r.expert - r.random).abs());
        Self {
            returns,
            lengths,
            mean,
            std,
            normalized,
            normalized_std,
        }
    }
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "return {:.1} ± {:.1} over {} episodes",
            self.mean,
            self.std,
            self.returns.len()
        )?;
        if let (Some(n), Some(s)) = (self.normalized, self.normalized_std) {
            write!(f, ", normalised score {n:.1} ± {s:.1}")?;
        }
        Ok(())
    }
}

/// Mean and population standard deviation (0, 0 for an empty slice).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Run `episodes` whole episodes of `policy` over `n_envs` environments made by `make_env`.
pub fn evaluate(
    policy: &mut dyn Policy,
    make_env: impl Fn() -> Result<Box<dyn Env>>,
    n_envs: usize,
    episodes: usize,
    seed: u64,
    reference: Option<ReferenceScores>,
) -> Result<EvalReport> {
    if n_envs == 0 || episodes == 0 {
        return Err(Error::Config(format!(
            "evaluation needs at least one environment and one episode (got n_envs = {n_envs}, episodes = {episodes})"
        )));
    }
    let n_envs = n_envs.min(episodes);
    let mut envs = (0..n_envs)
        .map(|_| make_env())
        .collect::<Result<Vec<_>>>()?;
    let (obs_dim, act_dim) = (
        envs[0].observation_space().dim(),
        envs[0].action_space().dim(),
    );

    /// An environment's current episode: its global index, return so far, length so far.
    struct Running {
        episode: usize,
        ret: f64,
        len: usize,
    }
    let mut running: Vec<Option<Running>> = Vec::with_capacity(n_envs);
    let mut obs = vec![0f32; n_envs * obs_dim];
    for (i, env) in envs.iter_mut().enumerate() {
        obs[i * obs_dim..(i + 1) * obs_dim].copy_from_slice(&reset(
            env.as_mut(),
            seed,
            i,
            obs_dim,
        )?);
        running.push(Some(Running {
            episode: i,
            ret: 0.0,
            len: 0,
        }));
    }
    let mut returns = vec![f64::NAN; episodes];
    let mut lengths = vec![0; episodes];
    let mut batch = Vec::with_capacity(n_envs * obs_dim);
    let mut active = Vec::with_capacity(n_envs);

    loop {
        active.clear();
        batch.clear();
        for (i, r) in running.iter().enumerate() {
            if r.is_some() {
                active.push(i);
                batch.extend_from_slice(&obs[i * obs_dim..(i + 1) * obs_dim]);
            }
        }
        if active.is_empty() {
            break;
        }
        let actions = policy.act(&batch, active.len())?;
        if actions.len() != active.len() * act_dim {
            return Err(Error::InvalidData(format!(
                "policy returned {} action values for {} observations of an environment with {act_dim} action dimensions",
                actions.len(),
                active.len()
            )));
        }
        for (row, &i) in active.iter().enumerate() {
            let a = &actions[row * act_dim..(row + 1) * act_dim];
            let run = running[i].as_mut().expect("active");
            if let Some(bad) = a.iter().find(|v| !v.is_finite()) {
                return Err(Error::InvalidData(format!(
                    "policy produced a non-finite action ({bad}) at step {} of evaluation episode {}",
                    run.len, run.episode
                )));
            }
            let step = envs[i].step(a)?;
            run.ret += step.reward;
            run.len += 1;
            if step.terminated || step.truncated {
                returns[run.episode] = run.ret;
                lengths[run.episode] = run.len;
                let next = run.episode + n_envs;
                if next < episodes {
                    obs[i * obs_dim..(i + 1) * obs_dim].copy_from_slice(&reset(
                        envs[i].as_mut(),
                        seed,
                        next,
                        obs_dim,
                    )?);
                    running[i] = Some(Running {
                        episode: next,
                        ret: 0.0,
                        len: 0,
                    });
                } else {
                    running[i] = None;
                }
            } else {
                obs[i * obs_dim..(i + 1) * obs_dim].copy_from_slice(&step.obs);
            }
        }
    }
    Ok(EvalReport::from_returns(returns, lengths, reference))
}

fn reset(env: &mut dyn Env, seed: u64, episode: usize, obs_dim: usize) -> Result<Vec<f32>> {
    let obs = env.reset(Some(seed.wrapping_add(episode as u64)))?;
    if obs.len() != obs_dim {
        return Err(Error::env(
            env.id(),
            format!("reset returned {} values, expected {obs_dim}", obs.len()),
        ));
    }
    Ok(obs)
}

/// Evaluate `policy` in the environment a dataset was recorded in (its `env_id`), D4RL-normalised
/// with the dataset's reference scores.
pub fn evaluate_on(
    data: &crate::dataset::Dataset,
    policy: &mut dyn Policy,
    episodes: usize,
    n_envs: usize,
    seed: u64,
) -> Result<EvalReport> {
    let env_id = data.meta.env_id.clone();
    evaluate(
        policy,
        || crate::envs::make(&env_id),
        n_envs,
        episodes,
        seed,
        data.meta.reference_scores,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envs::{BoxSpace, Step};
    use crate::policy::PendulumSwingUp;

    /// Episode k (seed k) lasts `k % 5 + 1` steps with reward 1 per step; counts `act` calls.
    struct Countdown {
        space: BoxSpace,
        left: usize,
    }
    impl Env for Countdown {
        fn id(&self) -> &str {
            "Countdown"
        }
        fn observation_space(&self) -> &BoxSpace {
            &self.space
        }
        fn action_space(&self) -> &BoxSpace {
            &self.space
        }
        fn max_episode_steps(&self) -> Option<usize> {
            None
        }
        fn reset(&mut self, seed: Option<u64>) -> Result<Vec<f32>> {
            self.left = seed.unwrap() as usize % 5 + 1;
            Ok(vec![self.left as f32])
        }
        fn step(&mut self, _: &[f32]) -> Result<Step> {
            self.left -= 1;
            Ok(Step {
                obs: vec![self.left as f32],
                reward: 1.0,
                terminated: self.left == 0,
                truncated: false,
            })
        }
    }
    struct Counting {
        calls: usize,
        max_batch: usize,
    }
    impl Policy for Counting {
        fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
            self.calls += 1;
            self.max_batch = self.max_batch.max(n);
            Ok(vec![0.0; obs.len()])
        }
    }

    #[test]
    fn every_requested_episode_is_counted_once_in_order() {
        let make = || -> Result<Box<dyn Env>> {
            Ok(Box::new(Countdown {
                space: BoxSpace::uniform(1, -1.0, 1.0),
                left: 0,
            }))
        };
        for n_envs in [1, 3, 4, 16] {
            let mut policy = Counting {
                calls: 0,
                max_batch: 0,
            };
            let r = evaluate(
                &mut policy,
                make,
                n_envs,
                12,
                100,
                Some(ReferenceScores {
                    random: 0.0,
                    expert: 10.0,
                }),
            )
            .unwrap();
            // Seeds 100..112 give lengths (100 + k) % 5 + 1.
            let want: Vec<usize> = (0..12).map(|k| (100 + k) % 5 + 1).collect();
            assert_eq!(r.lengths, want, "n_envs {n_envs}");
            assert_eq!(
                r.returns,
                want.iter().map(|&l| l as f64).collect::<Vec<_>>()
            );
            let mean = want.iter().sum::<usize>() as f64 / 12.0;
            assert!((r.mean - mean).abs() < 1e-12);
            assert!((r.normalized.unwrap() - 10.0 * mean).abs() < 1e-9);
            // One batched call per step: with one env, one call per transition.
            assert_eq!(policy.max_batch, n_envs.min(12));
            if n_envs == 1 {
                assert_eq!(policy.calls, want.iter().sum::<usize>());
            } else {
                assert!(policy.calls < want.iter().sum::<usize>());
            }
        }
    }

    #[test]
    fn pendulum_returns_do_not_depend_on_the_number_of_envs() {
        let make = || -> Result<Box<dyn Env>> { crate::envs::make("Pendulum-v1") };
        let a = evaluate(&mut PendulumSwingUp, make, 1, 6, 0, None).unwrap();
        let b = evaluate(&mut PendulumSwingUp, make, 4, 6, 0, None).unwrap();
        assert_eq!(a, b);
        assert!(a.lengths.iter().all(|&l| l == 200));
        assert!(a.mean > -250.0, "{a}");
        assert!(evaluate(&mut PendulumSwingUp, make, 0, 6, 0, None).is_err());
    }

    #[test]
    fn non_finite_actions_are_reported() {
        struct Nan;
        impl Policy for Nan {
            fn act(&mut self, _: &[f32], n: usize) -> Result<Vec<f32>> {
                Ok(vec![f32::NAN; n])
            }
        }
        let err =
            evaluate(&mut Nan, || crate::envs::make("Pendulum-v1"), 2, 2, 0, None).unwrap_err();
        assert!(err.to_string().contains("non-finite action"), "{err}");
    }
}
