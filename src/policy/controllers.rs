//! Built-in behaviour controllers for the native environments, so that datasets of known
//! quality can be made without Python or external files. Quality tiers come from wrapping them
//! in [`GaussianNoise`](super::random::GaussianNoise) (`noise` in a dataset card).

use super::{check_obs, Policy};
use crate::envs::nav2d::{GOAL, OBSTACLE_RADIUS};
use crate::envs::pendulum::angle_normalize;
use crate::error::Result;

/// Pendulum-v1 swing-up and balance. Far from upright it pumps energy towards the upright
/// energy, `u = k (E* − E) θ̇`, where `E = θ̇²/2 + 15 cos θ` (the dynamics are
/// `θ̈ = 15 sin θ + 3u`, so `dE/dt = 3uθ̇`); near upright (cos θ > 0.85) a PD law balances.
/// Mean return ≈ −146 per 200-step episode (uniform random: ≈ −1250).
#[derive(Debug, Clone, Copy, Default)]
pub struct PendulumSwingUp;

impl PendulumSwingUp {
    pub const NAME: &'static str = "pendulum-swingup";
    const ENERGY_GAIN: f64 = 0.5;
    const KP: f64 = 10.0;
    const KD: f64 = 2.0;
    const SWITCH_COS: f64 = 0.85;
    const UPRIGHT_ENERGY: f64 = 15.0;

    fn torque(cos: f64, sin: f64, thdot: f64) -> f64 {
        let th = sin.atan2(cos);
        let u = if cos > Self::SWITCH_COS {
            -(Self::KP * angle_normalize(th) + Self::KD * thdot)
        } else {
            let energy = 0.5 * thdot * thdot + Self::UPRIGHT_ENERGY * cos;
            Self::ENERGY_GAIN * (Self::UPRIGHT_ENERGY - energy) * thdot
        };
        u.clamp(-2.0, 2.0)
    }
}

impl Policy for PendulumSwingUp {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        check_obs(Self::NAME, obs, n, 3)?;
        Ok(obs
            .chunks_exact(3)
            .map(|o| Self::torque(o[0] as f64, o[1] as f64, o[2] as f64) as f32)
            .collect())
    }
}

/// Nav2d-v0: head for a waypoint above the obstacle when above the x-axis, below it otherwise,
/// then for the goal. Starts are symmetric about the axis, so rollouts split between the two
/// routes: a bimodal dataset.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nav2dRoutes;

impl Nav2dRoutes {
    pub const NAME: &'static str = "nav2d-routes";
    const MARGIN: f64 = 0.15;
}

impl Policy for Nav2dRoutes {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        check_obs(Self::NAME, obs, n, 2)?;
        Ok(obs
            .chunks_exact(2)
            .flat_map(|o| {
                let (x, y) = (o[0] as f64, o[1] as f64);
                let side = if y >= 0.0 { 1.0 } else { -1.0 };
                let target = if x < 0.0 {
                    [0.0, side * (OBSTACLE_RADIUS + Self::MARGIN)]
                } else {
                    GOAL
                };
                let (dx, dy) = (target[0] - x, target[1] - y);
                let norm = dx.hypot(dy).max(1e-9);
                [(dx / norm) as f32, (dy / norm) as f32]
            })
            .collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envs::{Env, Nav2d, Pendulum};
    use crate::policy::random::{GaussianNoise, RandomPolicy};

    fn mean_return(env: &mut dyn Env, policy: &mut dyn Policy, episodes: u64) -> f64 {
        let mut total = 0.0;
        for seed in 0..episodes {
            let mut obs = env.reset(Some(seed)).unwrap();
            loop {
                let a = policy.act(&obs, 1).unwrap();
                let s = env.step(&a).unwrap();
                total += s.reward;
                obs = s.obs;
                if s.terminated || s.truncated {
                    break;
                }
            }
        }
        total / episodes as f64
    }

    #[test]
    fn pendulum_tiers_are_ordered_random_medium_expert() {
        let mut env = Pendulum::new();
        let space = env.action_space().clone();
        let expert = mean_return(&mut env, &mut PendulumSwingUp, 30);
        let medium = mean_return(
            &mut env,
            &mut GaussianNoise::new(PendulumSwingUp, 3.0, space.clone(), 0),
            30,
        );
        let random = mean_return(&mut env, &mut RandomPolicy::new(space, 0).unwrap(), 30);
        // Expert: swung up and balanced from every start (a good SAC agent scores ≈ −150).
        assert!(expert > -200.0, "expert {expert}");
        assert!(random < -1000.0, "random {random}");
        let normalized = (medium - random) / (expert - random);
        assert!(
            (0.35..0.65).contains(&normalized),
            "medium {medium} ({normalized})"
        );
    }

    #[test]
    fn nav2d_controller_takes_both_routes_to_the_goal() {
        let mut env = Nav2d::new();
        let (mut above, mut below) = (0, 0);
        for seed in 0..20 {
            let mut obs = env.reset(Some(seed)).unwrap();
            let mut max_abs_y = 0f32;
            let mut min_y = 0f32;
            loop {
                let a = Nav2dRoutes.act(&obs, 1).unwrap();
                let s = env.step(&a).unwrap();
                obs = s.obs;
                max_abs_y = max_abs_y.max(obs[1].abs());
                min_y = min_y.min(obs[1]);
                assert!(!s.truncated, "seed {seed} did not reach the goal");
                if s.terminated {
                    break;
                }
            }
            assert!(max_abs_y > OBSTACLE_RADIUS as f32);
            if min_y < -0.3 {
                below += 1
            } else {
                above += 1
            }
        }
        assert!(above >= 5 && below >= 5, "above {above}, below {below}");
    }
}
