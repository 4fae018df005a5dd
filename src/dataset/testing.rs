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
        observations: vec![],
        actions: vec![],
        rewards: vec![],
        next_observations: vec![],
        terminals: vec![],
        timeouts: vec![],
    }
}

/// Append one transition.
pub fn push(d: &mut Dataset, obs: &[f32], act: &[f32], r: f32, next: &[f32], terminal: bool) {
    d.observations.extend_from_slice(obs);
    d.actions.extend_from_slice(act);
    d.rewards.push(r);
    d.next_observations.extend_from_slice(next);
    d.terminals.push(terminal);
    d.timeouts.push(false);
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
        observations: data.observations.clone(),
        actions: data.actions.clone(),
        rewards: data.rewards.clone(),
        next_observations: data.next_observations.clone(),
        terminals: data
            .terminals
            .iter()
            .map(|&t| f32::from(u8::from(t)))
            .collect(),
    }
}
