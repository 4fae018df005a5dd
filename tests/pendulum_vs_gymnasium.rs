//! The native Pendulum-v1 is gymnasium's: same seeds and actions through both (gymnasium via
//! the pyo3 bridge) give the same observations, rewards and truncations for whole episodes.
//! The native reset reproduces numpy's PCG64 seeding, so no state is copied across.
#![cfg(feature = "python")]

use offrl::envs::gym::GymEnv;
use offrl::envs::{Env, Pendulum};
use rand::{Rng, SeedableRng};

#[test]
fn native_pendulum_matches_gymnasium_for_whole_episodes() {
    let mut gym = match GymEnv::new("Pendulum-v1") {
        Ok(env) => env,
        Err(e) => panic!("gymnasium bridge unavailable (run scripts/setup.sh): {e}"),
    };
    let mut native = Pendulum::new();
    assert_eq!(native.observation_space(), gym.observation_space());
    assert_eq!(native.action_space(), gym.action_space());
    assert_eq!(native.max_episode_steps(), gym.max_episode_steps());

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    // Seeds include large ones (two 32-bit words of entropy); `None` continues the generator.
    let seeds = [
        Some(0),
        Some(1),
        None,
        Some(42),
        Some(123_456_789_012),
        None,
    ];
    let mut max_err = 0f64;
    for (episode, seed) in seeds.into_iter().enumerate() {
        let (o_n, o_g) = (native.reset(seed).unwrap(), gym.reset(seed).unwrap());
        assert_eq!(o_n.len(), 3);
        for (a, b) in o_n.iter().zip(&o_g) {
            assert!(
                (a - b).abs() <= 1e-5,
                "episode {episode} reset: {o_n:?} vs {o_g:?}"
            );
        }
        for t in 0..200 {
            // Actions beyond the ±2 bounds check the clipping too.
            let a = [rng.random_range(-2.5f32..2.5)];
            let (s_n, s_g) = (native.step(&a).unwrap(), gym.step(&a).unwrap());
            for (x, y) in s_n.obs.iter().zip(&s_g.obs) {
                max_err = max_err.max((x - y).abs() as f64);
                assert!(
                    (x - y).abs() <= 1e-5,
                    "episode {episode} step {t}: {:?} vs {:?}",
                    s_n.obs,
                    s_g.obs
                );
            }
            max_err = max_err.max((s_n.reward - s_g.reward).abs());
            assert!(
                (s_n.reward - s_g.reward).abs() <= 1e-5,
                "episode {episode} step {t}: reward {} vs {}",
                s_n.reward,
                s_g.reward
            );
            assert_eq!(
                (s_n.terminated, s_n.truncated),
                (s_g.terminated, s_g.truncated)
            );
        }
    }
    println!("max |native - gymnasium| over 6 episodes: {max_err:e}");
}
