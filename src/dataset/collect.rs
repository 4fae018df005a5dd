//! Collect D4RL-style datasets by rolling behaviour policies out in an environment.
//!
//! Flags follow D4RL: a transition whose step *terminated* the episode is `terminal` (no
//! bootstrap through it); one *truncated* by the time limit is a `timeout`; the last transition
//! of a part, where collection stopped mid-episode, is a `timeout` too.
//!
//! Reproducibility: part `p` resets its `k`-th episode with seed `seed + 1_000_000·p + k`
//! (gymnasium `reset(seed=...)`), and its policy's randomness is seeded by
//! `seed + 1_000_000·p`. So the same seed gives the same data, bit for bit.

use serde_json::{json, Value};

use super::registry::CollectPart;
use super::{Dataset, DatasetBuilder, Metadata, ReferenceScores};
use crate::envs::{self, Env};
use crate::error::{Error, Result};
use crate::policy::{self, Policy};

/// Seed offset between parts (more episodes than this in one part would reuse seeds).
const PART_SEED_STRIDE: u64 = 1_000_000;

/// What one rolled-out part looked like.
#[derive(Debug, Clone, PartialEq)]
pub struct PartSummary {
    /// Returns of the episodes that ended (terminated or truncated by the environment).
    pub episode_returns: Vec<f64>,
    /// (steps, return so far) of the episode cut by the end of collection, if any.
    pub unfinished: Option<(usize, f64)>,
}

/// Roll `policy` out in `env` for exactly `steps` transitions into `builder`; episode `k` is
/// reset with seed `first_seed + k`. `on_step` is called after each transition (progress bars).
pub fn rollout(
    env: &mut dyn Env,
    policy: &mut dyn Policy,
    steps: usize,
    first_seed: u64,
    builder: &mut DatasetBuilder,
    mut on_step: impl FnMut(),
) -> Result<PartSummary> {
    let mut summary = PartSummary {
        episode_returns: Vec::new(),
        unfinished: None,
    };
    if steps == 0 {
        return Ok(summary);
    }
    let act_dim = env.action_space().dim();
    let mut episode = 0u64;
    let mut obs = env.reset(Some(first_seed))?;
    let (mut ret, mut len) = (0.0, 0usize);
    for t in 0..steps {
        let action = policy.act(&obs, 1)?;
        if action.len() != act_dim || action.iter().any(|a| !a.is_finite()) {
            return Err(Error::InvalidData(format!(
                "collection step {t} (episode {episode}): the policy returned {action:?}, \
                 expected {act_dim} finite values"
            )));
        }
        let step = env.step(&action)?;
        ret += step.reward;
        len += 1;
        let timeout = step.truncated && !step.terminated;
        builder.push(
            &obs,
            &action,
            step.reward as f32,
            &step.obs,
            step.terminated,
            timeout,
        )?;
        on_step();
        if step.terminated || step.truncated {
            summary.episode_returns.push(ret);
            (ret, len) = (0.0, 0);
            if t + 1 < steps {
                episode += 1;
                obs = env.reset(Some(first_seed.wrapping_add(episode)))?;
            }
        } else {
            obs = step.obs;
        }
    }
    if len > 0 {
        builder.end_episode();
        summary.unfinished = Some((len, ret));
    }
    Ok(summary)
}

/// Library versions behind an environment, for provenance.
pub fn env_versions(env_id: &str) -> Result<Value> {
    #[cfg_attr(not(feature = "python"), allow(unused_mut))]
    let mut v = json!({ "offrl": env!("CARGO_PKG_VERSION") });
    if !envs::NATIVE_IDS.contains(&env_id) {
        #[cfg(feature = "python")]
        {
            v["python"] = envs::gym::versions()?;
        }
    }
    Ok(v)
}

/// Collect `parts` in order into one dataset of `env_id` (steps multiplied by `scale`).
/// The metadata records the recipe, the policies' provenance, library versions, the seed and
/// every episode's return. `reference` falls back to the built-in table for the env.
pub fn collect(
    env_id: &str,
    parts: &[CollectPart],
    seed: u64,
    scale: f64,
    reference: Option<ReferenceScores>,
    progress: bool,
) -> Result<Dataset> {
    if parts.is_empty() {
        return Err(Error::Config("collection needs at least one part".into()));
    }
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(Error::Config(format!(
            "scale must be positive, got {scale}"
        )));
    }
    let steps: Vec<usize> = parts
        .iter()
        .map(|p| ((p.steps as f64 * scale).round() as usize).max(1))
        .collect();
    let total: usize = steps.iter().sum();
    let mut env = envs::make(env_id)?;
    let (obs_space, act_space) = (env.observation_space().clone(), env.action_space().clone());
    let mut builder = DatasetBuilder::with_capacity(obs_space.dim(), act_space.dim(), total);
    let bar = crate::progress::progress_bar(total as u64, "collect");
    if !progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut part_records = Vec::new();
    let mut all_returns = Vec::new();
    for (p, (part, &n)) in parts.iter().zip(&steps).enumerate() {
        let part_seed = seed.wrapping_add(PART_SEED_STRIDE.wrapping_mul(p as u64));
        bar.set_message(part.policy.clone());
        let mut pol = policy::by_name(
            &part.policy,
            env.as_ref(),
            part.stochastic,
            part.noise,
            part_seed,
        )?;
        let summary = rollout(env.as_mut(), &mut pol, n, part_seed, &mut builder, || {
            bar.inc(1)
        })?;
        all_returns.extend_from_slice(&summary.episode_returns);
        part_records.push(json!({
            "policy": policy_provenance(&part.policy)?,
            "steps": n,
            "stochastic": part.stochastic,
            "noise": part.noise,
            "first_episode_seed": part_seed,
            "episode_returns": summary.episode_returns,
            "unfinished_episode": summary.unfinished.map(|(len, ret)| json!({ "steps": len, "return": ret })),
        }));
    }
    bar.finish_and_clear();
    let mut meta = Metadata::new(
        env_id,
        obs_space.dim(),
        act_space.dim(),
        act_space.low.clone(),
        act_space.high.clone(),
        json!({
            "kind": "collect",
            "env_id": env_id,
            "seed": seed,
            "scale": scale,
            "versions": env_versions(env_id)?,
            "parts": part_records,
            "episode_returns": all_returns,
        }),
    );
    if reference.is_some() {
        meta.reference_scores = reference;
    }
    builder.finish(meta)
}

/// Provenance of a policy named as in [`policy::by_name`]: a card's name, format and weights
/// source (with the model hash); built-ins by name.
fn policy_provenance(name: &str) -> Result<Value> {
    Ok(match name {
        "random" | policy::PendulumSwingUp::NAME | policy::Nav2dRoutes::NAME => {
            json!({ "builtin": name })
        }
        card => policy::PolicyCard::load(card)?.provenance(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(policy: &str, steps: usize, noise: f32) -> CollectPart {
        CollectPart {
            policy: policy.into(),
            steps,
            stochastic: false,
            noise,
        }
    }

    #[test]
    fn flags_and_returns_follow_d4rl() {
        // 450 Pendulum steps: two 200-step episodes truncated by the time limit, then 50 steps
        // cut by the end of collection: three time-outs, no terminals.
        let d = collect(
            "Pendulum-v1",
            &[part("pendulum-swingup", 450, 0.0)],
            3,
            1.0,
            None,
            false,
        )
        .unwrap();
        assert_eq!(d.len(), 450);
        let timeouts: Vec<usize> = (0..d.len()).filter(|&i| d.timeouts[i]).collect();
        assert_eq!(timeouts, vec![199, 399, 449]);
        assert!(d.terminals.iter().all(|t| !t));
        // next_observations continue into observations inside episodes, not across resets.
        assert_eq!(d.next_observation(10), d.observation(11));
        assert_ne!(d.next_observation(199), d.observation(200));
        let recorded: Vec<f64> =
            serde_json::from_value(d.meta.source["episode_returns"].clone()).unwrap();
        let from_rows = d.episode_returns();
        assert_eq!(recorded.len(), 2);
        for (a, b) in recorded.iter().zip(&from_rows) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        let unfinished = &d.meta.source["parts"][0]["unfinished_episode"];
        assert_eq!(unfinished["steps"], 50);
        // Episode k starts from reset(seed + k): episode 1 starts where a fresh env seeded 4 does.
        let mut env = crate::envs::Pendulum::new();
        assert_eq!(d.observation(200), env.reset(Some(4)).unwrap().as_slice());
    }

    #[test]
    fn terminations_are_terminal_not_timeouts() {
        let d = collect(
            "Nav2d-v0",
            &[part("nav2d-routes", 120, 0.0)],
            0,
            1.0,
            None,
            false,
        )
        .unwrap();
        let first_end = d.episodes()[0].end - 1;
        assert!(d.terminals[first_end] && !d.timeouts[first_end]);
        assert!(first_end < 60);
        assert!(d.rewards[first_end] > 0.9, "goal bonus");
        assert!(d.timeouts[d.len() - 1] || d.terminals[d.len() - 1]);
    }

    #[test]
    fn parts_scale_and_seeds_are_recorded() {
        let parts = [
            part("random", 1000, 0.0),
            part("pendulum-swingup", 1000, 0.5),
        ];
        let d = collect("Pendulum-v1", &parts, 9, 0.25, None, false).unwrap();
        assert_eq!(d.len(), 500);
        assert!(d.timeouts[249], "the first part ends an episode");
        let src = &d.meta.source;
        assert_eq!(src["parts"][1]["first_episode_seed"], 1_000_009);
        assert_eq!(src["parts"][0]["policy"]["builtin"], "random");
        assert_eq!(src["versions"]["offrl"], env!("CARGO_PKG_VERSION"));
        assert_eq!(d.meta.action_low, vec![-2.0]);
        let same = collect("Pendulum-v1", &parts, 9, 0.25, None, false).unwrap();
        assert_eq!(d, same);
        let other = collect("Pendulum-v1", &parts, 10, 0.25, None, false).unwrap();
        assert_ne!(d.observations, other.observations);
        assert!(collect("Pendulum-v1", &parts, 9, 0.0, None, false).is_err());
        assert!(collect(
            "Pendulum-v1",
            &[part("hopper-trpo", 10, 0.0)],
            9,
            1.0,
            None,
            false
        )
        .is_err());
    }
}
