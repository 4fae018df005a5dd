//! Pendulum-v1, a line-by-line port of gymnasium 1.4's `PendulumEnv` (classic control):
//! same dynamics, same float32/float64 mix, same reset distribution and seeding (numpy's PCG64
//! through [`NpRandom`]), so the same seed and actions give the same episode as gymnasium.

use super::np_random::NpRandom;
use super::{BoxSpace, Env, Step};
use crate::error::{Error, Result};

const MAX_SPEED: f64 = 8.0;
const MAX_TORQUE: f32 = 2.0;
const DT: f64 = 0.05;
const G: f64 = 10.0;
const M: f64 = 1.0;
const L: f64 = 1.0;
/// gymnasium registers Pendulum-v1 with `max_episode_steps=200`.
pub const MAX_EPISODE_STEPS: usize = 200;

pub struct Pendulum {
    obs_space: BoxSpace,
    act_space: BoxSpace,
    rng: Option<NpRandom>,
    /// (θ, θ̇) in float64, as gymnasium keeps `self.state`.
    state: Option<[f64; 2]>,
    elapsed: usize,
}

impl Default for Pendulum {
    fn default() -> Self {
        Self::new()
    }
}

impl Pendulum {
    pub const ID: &'static str = "Pendulum-v1";

    pub fn new() -> Self {
        Self {
            obs_space: BoxSpace::new(
                vec![-1.0, -1.0, -MAX_SPEED as f32],
                vec![1.0, 1.0, MAX_SPEED as f32],
            ),
            act_space: BoxSpace::uniform(1, -MAX_TORQUE, MAX_TORQUE),
            rng: None,
            state: None,
            elapsed: 0,
        }
    }

    /// The physical state (θ, θ̇); `None` before the first reset.
    pub fn state(&self) -> Option<[f64; 2]> {
        self.state
    }

    fn obs(&self) -> Vec<f32> {
        let [th, thdot] = self.state.expect("reset before obs");
        vec![th.cos() as f32, th.sin() as f32, thdot as f32]
    }
}

/// `((x + π) mod 2π) − π` with Python's floored modulo.
pub fn angle_normalize(x: f64) -> f64 {
    (x + std::f64::consts::PI).rem_euclid(2.0 * std::f64::consts::PI) - std::f64::consts::PI
}

impl Env for Pendulum {
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
        let th = rng.uniform(-std::f64::consts::PI, std::f64::consts::PI);
        let thdot = rng.uniform(-1.0, 1.0);
        self.state = Some([th, thdot]);
        self.elapsed = 0;
        Ok(self.obs())
    }

    fn step(&mut self, action: &[f32]) -> Result<Step> {
        let Some([th, thdot]) = self.state else {
            return Err(Error::env(Self::ID, "step called before reset"));
        };
        if action.len() != 1 {
            return Err(Error::env(
                Self::ID,
                format!(
                    "action has {} elements, expected 1 (shape (1,))",
                    action.len()
                ),
            ));
        }
        // gymnasium: u = np.clip(u, -2, 2)[0] stays float32; `0.001 * u**2` and `3.0 * u` are
        // float32 products (NEP 50), the rest is float64.
        let u = action[0].clamp(-MAX_TORQUE, MAX_TORQUE);
        let costs = angle_normalize(th).powi(2) + 0.1 * thdot * thdot + (0.001f32 * (u * u)) as f64;
        let torque = (3.0f32 / (M * L * L) as f32 * u) as f64;
        let newthdot =
            (thdot + (3.0 * G / (2.0 * L) * th.sin() + torque) * DT).clamp(-MAX_SPEED, MAX_SPEED);
        let newth = th + newthdot * DT;
        self.state = Some([newth, newthdot]);
        self.elapsed += 1;
        Ok(Step {
            obs: self.obs(),
            reward: -costs,
            terminated: false,
            truncated: self.elapsed >= MAX_EPISODE_STEPS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_matches_gymnasium_seed_0() {
        // gymnasium 1.4: gym.make("Pendulum-v1").reset(seed=0) -> [0.6520163, 0.758205, -0.46042657]
        let mut env = Pendulum::new();
        let obs = env.reset(Some(0)).unwrap();
        let want = [0.6520163f32, 0.758205, -0.46042657];
        for (a, b) in obs.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{obs:?}");
        }
    }

    #[test]
    fn hanging_down_costs_pi_squared_and_upright_at_rest_stays_free() {
        let mut env = Pendulum::new();
        env.reset(Some(1)).unwrap();
        env.state = Some([std::f64::consts::PI, 0.0]);
        let s = env.step(&[0.0]).unwrap();
        assert!((s.reward + std::f64::consts::PI.powi(2)).abs() < 1e-9);
        env.state = Some([0.0, 0.0]);
        let s = env.step(&[0.0]).unwrap();
        assert_eq!(s.reward, 0.0);
        assert_eq!(env.state, Some([0.0, 0.0]));
    }

    #[test]
    fn truncates_after_200_steps_and_rejects_bad_actions() {
        let mut env = Pendulum::new();
        assert!(env.step(&[0.0]).is_err());
        env.reset(Some(3)).unwrap();
        assert!(env
            .step(&[0.0, 1.0])
            .unwrap_err()
            .to_string()
            .contains("expected 1"));
        for t in 1..=200 {
            let s = env.step(&[1.0]).unwrap();
            assert!(!s.terminated);
            assert_eq!(s.truncated, t == 200);
        }
    }
}
