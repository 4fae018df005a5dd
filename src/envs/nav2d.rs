//! Nav2d-v0: a point agent in the square [-1, 1]² must reach a goal on the far side of a round
//! obstacle. Going above or below the obstacle are two equally good routes, so datasets of good
//! behaviour are bimodal — the case where a diffusion policy beats a Gaussian one (a Gaussian fit
//! averages the two routes and drives into the obstacle).
//!
//! Observation `(x, y)`; action a velocity in [-1, 1]², moved `STEP_SIZE · a` per step; a move
//! that would enter the obstacle or leave the square is cancelled (the agent stays put).
//! Reward: progress towards the goal (decrease of the Euclidean distance) − 0.01 per step, + 1 on
//! reaching the goal, which terminates the episode. Time limit 100 steps.

use super::np_random::NpRandom;
use super::{BoxSpace, Env, Step};
use crate::error::{Error, Result};

pub const START: [f64; 2] = [-0.8, 0.0];
pub const GOAL: [f64; 2] = [0.8, 0.0];
pub const GOAL_RADIUS: f64 = 0.1;
/// The obstacle: a disc at the origin.
pub const OBSTACLE_RADIUS: f64 = 0.4;
pub const STEP_SIZE: f64 = 0.05;
const START_NOISE: f64 = 0.05;
const STEP_COST: f64 = 0.01;
const GOAL_BONUS: f64 = 1.0;
pub const MAX_EPISODE_STEPS: usize = 100;

pub struct Nav2d {
    obs_space: BoxSpace,
    act_space: BoxSpace,
    rng: Option<NpRandom>,
    pos: Option<[f64; 2]>,
    elapsed: usize,
}

impl Default for Nav2d {
    fn default() -> Self {
        Self::new()
    }
}

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

impl Nav2d {
    pub const ID: &'static str = "Nav2d-v0";

    pub fn new() -> Self {
        Self {
            obs_space: BoxSpace::uniform(2, -1.0, 1.0),
            act_space: BoxSpace::uniform(2, -1.0, 1.0),
            rng: None,
            pos: None,
            elapsed: 0,
        }
    }

    /// Whether a point is inside the square and outside the obstacle.
    pub fn free(p: [f64; 2]) -> bool {
        p[0].abs() <= 1.0 && p[1].abs() <= 1.0 && dist(p, [0.0, 0.0]) >= OBSTACLE_RADIUS
    }

    fn obs(&self) -> Vec<f32> {
        let p = self.pos.expect("reset before obs");
        vec![p[0] as f32, p[1] as f32]
    }
}

impl Env for Nav2d {
    fn id(&self) -> &str {
        Self::ID
    }
    fn observation_space(&self) -> &BoxSpace {
        &self.obs_space
    }
    fn action_space(&self) -> &BoxSpace {
        &self.act_space
    }
    fn max_episode_steps(&self) -> Option<usize> {
        Some(MAX_EPISODE_STEPS)
    }

    fn reset(&mut self, seed: Option<u64>) -> Result<Vec<f32>> {
        let rng = NpRandom::on_reset(&mut self.rng, seed);
        let x = START[0] + rng.uniform(-START_NOISE, START_NOISE);
        let y = START[1] + rng.uniform(-START_NOISE, START_NOISE);
        self.pos = Some([x, y]);
        self.elapsed = 0;
        Ok(self.obs())
    }

    fn step(&mut self, action: &[f32]) -> Result<Step> {
        let Some(pos) = self.pos else {
            return Err(Error::env(Self::ID, "step called before reset"));
        };
        if action.len() != 2 {
            return Err(Error::env(
                Self::ID,
                format!(
                    "action has {} elements, expected 2 (shape (2,))",
                    action.len()
                ),
            ));
        }
        if action.iter().any(|a| !a.is_finite()) {
            return Err(Error::env(
                Self::ID,
                format!("non-finite action {action:?}"),
            ));
        }
        let a = [
            action[0].clamp(-1.0, 1.0) as f64,
            action[1].clamp(-1.0, 1.0) as f64,
        ];
        let moved = [pos[0] + STEP_SIZE * a[0], pos[1] + STEP_SIZE * a[1]];
        let new = if Self::free(moved) { moved } else { pos };
        let reached = dist(new, GOAL) <= GOAL_RADIUS;
        let reward =
            dist(pos, GOAL) - dist(new, GOAL) - STEP_COST + if reached { GOAL_BONUS } else { 0.0 };
        self.pos = Some(new);
        self.elapsed += 1;
        Ok(Step {
            obs: self.obs(),
            reward,
            terminated: reached,
            truncated: !reached && self.elapsed >= MAX_EPISODE_STEPS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn straight_line_is_blocked_and_detours_reach_the_goal() {
        let mut env = Nav2d::new();
        env.reset(Some(0)).unwrap();
        // Driving straight right stops at the obstacle and never terminates.
        let mut last = None;
        for _ in 0..MAX_EPISODE_STEPS {
            let s = env.step(&[1.0, 0.0]).unwrap();
            assert!(!s.terminated);
            last = Some(s);
        }
        let last = last.unwrap();
        assert!(last.truncated);
        assert!(
            last.obs[0] < -0.3,
            "passed through the obstacle: {:?}",
            last.obs
        );

        // Both detours (above, below) reach the goal with the same return by symmetry.
        let mut returns = Vec::new();
        for side in [1.0f32, -1.0] {
            let mut env = Nav2d::new();
            env.reset(Some(0)).unwrap();
            env.pos = Some(START);
            let (mut ret, mut done, mut t) = (0.0, false, 0);
            while !done {
                let p = env.pos.unwrap();
                let target = if p[0] < 0.0 {
                    [0.0, side as f64 * 0.55]
                } else {
                    GOAL
                };
                let d = [target[0] - p[0], target[1] - p[1]];
                let n = d[0].hypot(d[1]).max(1e-9);
                let s = env.step(&[(d[0] / n) as f32, (d[1] / n) as f32]).unwrap();
                ret += s.reward;
                done = s.terminated || s.truncated;
                t += 1;
                assert!(!s.truncated, "side {side} did not arrive");
            }
            assert!(t < 60);
            returns.push(ret);
        }
        assert!((returns[0] - returns[1]).abs() < 1e-9, "{returns:?}");
        assert!(returns[0] > 1.0);
    }
}
