//! Probes of a policy's actions against the dataset's at the same states — what tells a starved
//! behaviour prior (samples far from the data's actions, outside the data's action range) from an
//! over-optimistic critic (Q of the policy's actions far above Q of the data's) without reading
//! code. Training runs log them as `diag/*` metrics at every checkpoint; bench cells keep them in
//! their results.
//!
//! Actions are compared in the unit box (each dimension's environment bounds mapped to [−1, 1]),
//! so the numbers mean the same on every environment.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::policy::{ActionScorer, Policy};

/// `P(X > Y)` for `x` and `y` drawn from the two samples, ties counted half: the Mann–Whitney
/// `U` over `n_x · n_y` — the AUROC of a score that should be higher on `x`.
pub fn probability_greater(x: &[f64], y: &[f64]) -> f64 {
    let wins: f64 = x
        .iter()
        .flat_map(|a| {
            y.iter().map(move |b| match a.total_cmp(b) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            })
        })
        .sum();
    wins / (x.len() * y.len()) as f64
}

/// Rows a probe holds by default: enough for stable means, cheap for a 20-step diffusion chain.
pub const PROBE_ROWS: usize = 512;

/// A fixed set of dataset states with their dataset actions, and the data's action range.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Raw observations, row-major `[n, obs_dim]`.
    pub obs: Vec<f32>,
    /// The dataset's actions at those states, `[n, act_dim]`.
    pub actions: Vec<f32>,
    pub n: usize,
    pub obs_dim: usize,
    pub act_dim: usize,
    /// Per-dimension range of the (training) data's actions.
    low: Vec<f32>,
    high: Vec<f32>,
    /// Environment action bounds.
    bound_low: Vec<f32>,
    bound_high: Vec<f32>,
}

/// How a set of actions relates to the dataset's at the same states.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ActionStats {
    /// Mean squared distance to the dataset's action at the same state, per dimension, in the
    /// unit box. For a stochastic behaviour policy even a perfect model has a positive distance
    /// (twice the behaviour's per-state variance); compare policies, or a policy over training.
    pub mse_to_data: f64,
    /// Fraction of action entries outside the data's per-dimension [min, max].
    pub out_of_range: f64,
    /// Fraction of action entries within 1 % of the environment bounds (the data's own fraction
    /// is [`Probe::data_stats`]`.saturated`).
    pub saturated: f64,
}

impl ActionStats {
    /// As metrics named `diag/{prefix}mse_to_data`, … (`prefix` is part of a `'static` name, so
    /// callers pick among fixed names).
    pub fn metrics(&self, names: [&'static str; 3]) -> Vec<(&'static str, f64)> {
        vec![
            (names[0], self.mse_to_data),
            (names[1], self.out_of_range),
            (names[2], self.saturated),
        ]
    }
}

/// Metric names of a run's own policy.
pub const POLICY_NAMES: [&str; 3] = ["diag/mse_to_data", "diag/out_of_range", "diag/saturated"];

/// Metric names of the behaviour prior's actions, where a run has both (RTB).
pub const PRIOR_NAMES: [&str; 3] = [
    "diag/prior_mse_to_data",
    "diag/prior_out_of_range",
    "diag/prior_saturated",
];

impl Probe {
    /// Up to `n` rows of `rows` drawn without replacement with `seed` (all rows if it has fewer),
    /// with the action range of `range_of` (the training data).
    pub fn new(rows: &Dataset, range_of: &Dataset, n: usize, seed: u64) -> Result<Probe> {
        if rows.is_empty() || range_of.is_empty() {
            return Err(Error::InvalidData(
                "a probe needs a non-empty dataset".into(),
            ));
        }
        let (od, ad) = (rows.obs_dim(), rows.act_dim());
        let n = n.min(rows.len());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut idx = rand::seq::index::sample(&mut rng, rows.len(), n).into_vec();
        idx.sort_unstable();
        let mut obs = Vec::with_capacity(n * od);
        let mut actions = Vec::with_capacity(n * ad);
        for &i in &idx {
            obs.extend_from_slice(rows.observation(i));
            actions.extend_from_slice(rows.action(i));
        }
        let (low, high) = range_of.action_range();
        Ok(Probe {
            obs,
            actions,
            n,
            obs_dim: od,
            act_dim: ad,
            low,
            high,
            bound_low: range_of.meta.action_low.clone(),
            bound_high: range_of.meta.action_high.clone(),
        })
    }

    /// The actions `policy` takes at the probe's states (one batched call).
    pub fn act(&self, policy: &mut dyn Policy) -> Result<Vec<f32>> {
        let a = policy.act(&self.obs, self.n)?;
        if a.len() != self.n * self.act_dim {
            return Err(Error::InvalidData(format!(
                "probe: the policy returned {} action values for {} states of act_dim {}",
                a.len(),
                self.n,
                self.act_dim
            )));
        }
        Ok(a)
    }

    /// [`ActionStats`] of `actions` (`[n, act_dim]`, environment units) at the probe's states.
    pub fn stats(&self, actions: &[f32]) -> ActionStats {
        let ad = self.act_dim;
        let (mut sq, mut out, mut sat) = (0.0f64, 0usize, 0usize);
        for (a, d) in actions.chunks(ad).zip(self.actions.chunks(ad)) {
            for j in 0..ad {
                let half = 0.5 * (self.bound_high[j] - self.bound_low[j]);
                let mid = 0.5 * (self.bound_high[j] + self.bound_low[j]);
                let (u, v) = ((a[j] - mid) / half, (d[j] - mid) / half);
                sq += f64::from(u - v).powi(2);
                out += usize::from(a[j] < self.low[j] || a[j] > self.high[j]);
                sat += usize::from(u.abs() > 0.99);
            }
        }
        let entries = (self.n * ad) as f64;
        ActionStats {
            mse_to_data: sq / entries,
            out_of_range: out as f64 / entries,
            saturated: sat as f64 / entries,
        }
    }

    /// The dataset actions' own stats (distance 0, nothing out of range; their saturation).
    pub fn data_stats(&self) -> ActionStats {
        self.stats(&self.actions)
    }

    /// Mean score (e.g. Q) of `actions` at the probe's states.
    pub fn mean_score(&self, scorer: &dyn ActionScorer, actions: &[f32]) -> Result<f64> {
        let q = scorer.score(&self.obs, actions, self.n)?;
        Ok(q.iter().map(|&v| f64::from(v)).sum::<f64>() / self.n as f64)
    }

    /// What a fine-tuned policy (RTB, the outsourced sampler) is measured by: the probes of its
    /// actions and of its behaviour model's, and the critic's mean Q of the data's, the
    /// policy's and the behaviour's actions at the same states — a policy whose Q rises far
    /// above the data's while its actions leave the data's range is exploiting the critic.
    pub fn fine_tuning(
        &self,
        policy: &mut dyn Policy,
        behavior: &mut dyn Policy,
        critic: &dyn ActionScorer,
    ) -> Result<Vec<(&'static str, f64)>> {
        let a_pi = self.act(policy)?;
        let a_mu = self.act(behavior)?;
        let mut metrics = self.stats(&a_pi).metrics(POLICY_NAMES);
        metrics.extend(self.stats(&a_mu).metrics(PRIOR_NAMES));
        metrics.extend([
            ("diag/q_data", self.mean_score(critic, &self.actions)?),
            ("diag/q_policy", self.mean_score(critic, &a_pi)?),
            ("diag/q_prior", self.mean_score(critic, &a_mu)?),
        ]);
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::testing;

    /// Actions the same as the data's give distance 0; actions at the bound are out of the data's
    /// range and saturated.
    #[test]
    fn stats_measure_distance_range_and_saturation() {
        let mut d = testing::empty(1, 2, -2.0, 2.0);
        for i in 0..10 {
            let x = i as f32 / 10.0;
            testing::push(&mut d, &[x], &[x, -x], 0.0, &[x], i == 9);
        }
        let probe = Probe::new(&d, &d, 4, 0).unwrap();
        assert_eq!(probe.n, 4);
        let s = probe.data_stats();
        assert_eq!(
            (s.mse_to_data, s.out_of_range, s.saturated),
            (0.0, 0.0, 0.0)
        );
        // Every action at the upper bound: both dims saturated, dim 0 above the data's 0.9
        // and dim 1 above its 0.0 → all out of range.
        let at_bound = vec![2.0f32; 8];
        let s = probe.stats(&at_bound);
        assert_eq!((s.out_of_range, s.saturated), (1.0, 1.0));
        // Distance in unit-box units: half-width 2, so a shift of 0.2 is 0.1 → 0.01.
        let shifted: Vec<f32> = probe
            .actions
            .chunks(2)
            .flat_map(|a| [a[0] + 0.2, a[1]])
            .collect();
        let s = probe.stats(&shifted);
        assert!(
            (s.mse_to_data - 0.01 / 2.0).abs() < 1e-6,
            "{}",
            s.mse_to_data
        );
    }

    #[test]
    fn held_out_episodes_are_whole_and_disjoint() {
        let mut d = testing::empty(1, 1, -1.0, 1.0);
        for ep in 0..10 {
            for t in 0..5 {
                let x = (ep * 5 + t) as f32;
                testing::push(&mut d, &[x], &[0.0], 0.0, &[x], t == 4);
            }
        }
        let (train, held) = d.split_episodes(0.2, 7).unwrap();
        assert_eq!((train.len(), held.len()), (40, 10));
        assert_eq!((train.episodes().len(), held.episodes().len()), (8, 2));
        for r in held.episodes() {
            assert_eq!(
                held.observations[r.start] % 5.0,
                0.0,
                "episodes start at t = 0"
            );
        }
        let mut all: Vec<f32> = train.observations.to_vec();
        all.extend_from_slice(&held.observations);
        all.sort_by(f32::total_cmp);
        assert_eq!(all, *d.observations, "a partition of the rows");
        assert_eq!(
            d.split_episodes(0.2, 7).unwrap().1.observations,
            held.observations
        );
        assert!(d.split_episodes(1.0, 0).is_err());
    }
}
