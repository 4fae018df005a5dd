//! Toy datasets for the tests of the algorithms and of the data layer.

use super::{Batch, Dataset, Metadata, FORMAT_VERSION};

/// An empty dataset with the given dims and action bounds.
pub fn empty(obs_dim: usize, act_dim: usize, low: f32, high: f32) -> Dataset {
    Dataset {
        meta: Metadata {
            format_version: FORMAT_VERSION,
            env_id: "Toy-v0".into(),
            obs_dim,
            act_dim,
            action_low: vec![low; act_dim],
            action_high: vec![high; act_dim],
            source: serde_json::Value::Null,
            reference_scores: None,
        },
        observations: Default::default(),
        actions: Default::default(),
        rewards: Default::default(),
        next_observations: Default::default(),
        terminals: vec![],
        timeouts: vec![],
    }
}

/// Append one transition (not a time-out).
pub fn push(d: &mut Dataset, obs: &[f32], act: &[f32], r: f32, next: &[f32], terminal: bool) {
    d.push(obs, act, r, next, terminal, false);
}

/// A one-step bandit with two one-hot states A = (1, 0) and B = (0, 1); actions ±0.5 appear
/// equally often in both; reward 1 for +0.5 in A and for −0.5 in B, else 0; terminal.
pub fn two_state_bandit() -> Dataset {
    let mut d = empty(2, 1, -1.0, 1.0);
    for (obs, best) in [([1.0, 0.0], 0.5f32), ([0.0, 1.0], -0.5)] {
        for a in [-0.5f32, 0.5] {
            push(
                &mut d,
                &obs,
                &[a],
                if a == best { 1.0 } else { 0.0 },
                &obs,
                true,
            );
        }
    }
    d
}

/// The policy acts on the better side of [`two_state_bandit`]'s states: above `margin` in
/// A, below −`margin` in B.
/// Two states: at `[1, 0]` a mixture of 25 % near −0.5 and 75 % near +0.5, at `[0, 1]` one
/// mode near 0.2 (each action jittered uniformly by ±0.05; 2000 of each; seeded).
pub fn two_mode_mixture() -> Dataset {
    use rand::{Rng, SeedableRng};
    let mut data = empty(2, 1, -1.0, 1.0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for i in 0..2000 {
        let jitter = rng.random_range(-0.05f32..0.05);
        let a = if i % 4 == 0 { -0.5 } else { 0.5 } + jitter;
        push(&mut data, &[1.0, 0.0], &[a], 0.0, &[1.0, 0.0], true);
        push(
            &mut data,
            &[0.0, 1.0],
            &[0.2 + jitter],
            0.0,
            &[0.0, 1.0],
            true,
        );
    }
    data
}

/// Mode weights and means of 1-D actions `a` drawn at the mixture's first state, checked against
/// [`two_mode_mixture`]'s (weight ±0.03, modes ±0.05); returns the weight of the upper mode.
pub fn assert_two_modes(a: &[f32]) -> f64 {
    let upper: Vec<f32> = a.iter().copied().filter(|&x| x > 0.0).collect();
    let lower: Vec<f32> = a.iter().copied().filter(|&x| x <= 0.0).collect();
    let weight = upper.len() as f64 / a.len() as f64;
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    assert!((weight - 0.75).abs() < 0.03, "weight of +0.5: {weight}");
    assert!(
        (mean(&upper) - 0.5).abs() < 0.05,
        "upper mode {}",
        mean(&upper)
    );
    assert!(
        (mean(&lower) + 0.5).abs() < 0.05,
        "lower mode {}",
        mean(&lower)
    );
    weight
}

pub fn assert_prefers_best(policy: &mut dyn crate::policy::Policy, margin: f32) {
    let act = policy.act(&[1.0, 0.0, 0.0, 1.0], 2).unwrap();
    assert!(act[0] > margin, "state A (best +0.5): action {}", act[0]);
    assert!(act[1] < -margin, "state B (best −0.5): action {}", act[1]);
}

/// The whole dataset as one batch: full-batch updates remove minibatch noise, so learned
/// values converge to the fixed point an analytic answer describes.
pub fn full_batch(data: &Dataset) -> Batch {
    Batch {
        size: data.len(),
        obs_dim: data.obs_dim(),
        act_dim: data.act_dim(),
        observations: data.observations.to_vec(),
        actions: data.actions.to_vec(),
        rewards: data.rewards.to_vec(),
        next_observations: data.next_observations.to_vec(),
        terminals: data
            .terminals
            .iter()
            .map(|&t| f32::from(u8::from(t)))
            .collect(),
    }
}
