//! Aggregate statistics of a grid, as `rliable` computes them (Agarwal et al., "Deep RL at the
//! Edge of the Statistical Precipice", NeurIPS 2021): over the runs (seeds) and tasks (datasets)
//! of an algorithm, the interquartile mean (IQM), the mean and median of per-task means and the
//! optimality gap, each with a stratified bootstrap confidence interval (runs resampled within
//! each task); the probability that one algorithm improves on another (Mann–Whitney per task,
//! averaged); and score distributions (performance profiles). Three seeds give wide intervals:
//! [`FEW_RUNS`] marks numbers backed by fewer runs than rliable's authors advise.
//!
//! Tasks may hold different numbers of runs (a grid being filled); every statistic is then the
//! natural generalisation (a task's mean over its own runs; the bootstrap resamples each task's
//! runs among themselves). Checked against the `rliable` package on fixed inputs
//! (`bindings/python/tests/test_stats.py`).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Runs per task below which a statistic is flagged (rliable's authors: at least 5).
pub const FEW_RUNS: usize = 5;

/// One algorithm's scores: per task, the scores of its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    tasks: Vec<Vec<f64>>,
}

impl Scores {
    /// `tasks[m]` holds the runs of task `m`; tasks without runs are dropped.
    pub fn new(tasks: Vec<Vec<f64>>) -> Self {
        Self {
            tasks: tasks.into_iter().filter(|t| !t.is_empty()).collect(),
        }
    }

    pub fn tasks(&self) -> usize {
        self.tasks.len()
    }

    /// The fewest runs of any task (0 without tasks).
    pub fn min_runs(&self) -> usize {
        self.tasks.iter().map(Vec::len).min().unwrap_or(0)
    }

    fn all(&self) -> impl Iterator<Item = f64> + '_ {
        self.tasks.iter().flatten().copied()
    }

    fn task_means(&self) -> Vec<f64> {
        self.tasks
            .iter()
            .map(|t| t.iter().sum::<f64>() / t.len() as f64)
            .collect()
    }
}

/// The interquartile mean: the mean of all scores after cutting ⌊n/4⌋ from each end (scipy's
/// `trim_mean(·, 0.25)` over every run of every task).
pub fn iqm(s: &Scores) -> f64 {
    let mut v: Vec<f64> = s.all().collect();
    v.sort_by(f64::total_cmp);
    let cut = v.len() / 4;
    let kept = &v[cut..v.len() - cut];
    kept.iter().sum::<f64>() / kept.len() as f64
}

/// The mean over tasks of each task's mean score.
pub fn mean(s: &Scores) -> f64 {
    let m = s.task_means();
    m.iter().sum::<f64>() / m.len() as f64
}

/// The median over tasks of each task's mean score.
pub fn median(s: &Scores) -> f64 {
    percentile(&mut s.task_means(), 50.0)
}

/// `γ − mean(min(score, γ))` over every run of every task: how far below `γ` the algorithm
/// stays (scores above `γ` count as `γ`).
pub fn optimality_gap(s: &Scores, gamma: f64) -> f64 {
    let (sum, n) = s
        .all()
        .fold((0.0, 0usize), |(a, n), v| (a + v.min(gamma), n + 1));
    gamma - sum / n as f64
}

/// `P(X > Y)`: per task the probability that a run of `x` scores above a run of `y` (ties count
/// half: the Mann–Whitney U statistic over `n_x · n_y`), averaged over the tasks. The two must
/// hold the same tasks, in the same order.
pub fn probability_of_improvement(x: &Scores, y: &Scores) -> f64 {
    assert_eq!(
        x.tasks(),
        y.tasks(),
        "the two algorithms hold different tasks"
    );
    let per_task = x
        .tasks
        .iter()
        .zip(&y.tasks)
        .map(|(xs, ys)| crate::eval::probe::probability_greater(xs, ys));
    per_task.sum::<f64>() / x.tasks() as f64
}

/// The score distribution at each threshold: the fraction of all runs scoring above `tau`
/// (rliable's performance profile).
pub fn score_distribution(s: &Scores, taus: &[f64]) -> Vec<f64> {
    let n = s.all().count() as f64;
    taus.iter()
        .map(|&tau| s.all().filter(|&v| v > tau).count() as f64 / n)
        .collect()
}

/// A point estimate and its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub point: f64,
    pub low: f64,
    pub high: f64,
}

/// `statistic` of `s` and its percentile interval of coverage `size` (0.95: the 2.5th and 97.5th
/// percentiles) over `reps` stratified bootstrap resamples: each task's runs drawn with
/// replacement from that task's runs.
pub fn bootstrap(
    s: &Scores,
    statistic: impl Fn(&Scores) -> f64,
    reps: usize,
    size: f64,
    rng: &mut ChaCha8Rng,
) -> Interval {
    let resampled = (0..reps).map(|_| statistic(&resample(s, rng))).collect();
    interval(statistic(s), resampled, size)
}

/// [`bootstrap`] of [`probability_of_improvement`], `x` and `y` resampled independently.
pub fn bootstrap_improvement(
    x: &Scores,
    y: &Scores,
    reps: usize,
    size: f64,
    rng: &mut ChaCha8Rng,
) -> Interval {
    let resampled = (0..reps)
        .map(|_| probability_of_improvement(&resample(x, rng), &resample(y, rng)))
        .collect();
    interval(probability_of_improvement(x, y), resampled, size)
}

/// `point` with the central `size` percentile interval of its bootstrap values.
fn interval(point: f64, mut values: Vec<f64>, size: f64) -> Interval {
    let tail = 100.0 * (1.0 - size) / 2.0;
    Interval {
        point,
        low: percentile(&mut values, tail),
        high: percentile(&mut values, 100.0 - tail),
    }
}

fn resample(s: &Scores, rng: &mut ChaCha8Rng) -> Scores {
    Scores {
        tasks: s
            .tasks
            .iter()
            .map(|t| {
                (0..t.len())
                    .map(|_| t[rng.random_range(0..t.len())])
                    .collect()
            })
            .collect(),
    }
}

/// The `q`-th percentile (0–100) with linear interpolation between order statistics (NumPy's
/// default), sorting `v` in place.
fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos.fract());
    match v.get(lo + 1) {
        Some(&next) => v[lo] + (next - v[lo]) * frac,
        None => v[lo],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn scores() -> Scores {
        // 3 tasks × 4 runs.
        Scores::new(vec![
            vec![10.0, 20.0, 30.0, 40.0],
            vec![50.0, 60.0, 70.0, 80.0],
            vec![90.0, 100.0, 110.0, 120.0],
        ])
    }

    /// Hand-computed values: 12 scores 10..120; IQM drops three at each end (40..90 → 65); task
    /// means 25, 65, 105; optimality gap at 100 counts 110 and 120 as 100 (sum 750).
    #[test]
    fn point_estimates_by_hand() {
        let s = scores();
        assert_eq!(iqm(&s), 65.0);
        assert_eq!(mean(&s), 65.0);
        assert_eq!(median(&s), 65.0);
        assert!((optimality_gap(&s, 100.0) - (100.0 - 750.0 / 12.0)).abs() < 1e-12);
        let shifted = Scores::new(
            s.tasks
                .iter()
                .map(|t| t.iter().map(|v| v + 15.0).collect())
                .collect(),
        );
        // Per task, x + 15 against x: 25 beats two of 10, 20, 30, 40; 35 three; 45 and 55 all
        // four: 13 of 16 pairs, in every task.
        assert!((probability_of_improvement(&shifted, &s) - 13.0 / 16.0).abs() < 1e-12);
        assert_eq!(probability_of_improvement(&s, &s), 0.5);
        assert_eq!(
            score_distribution(&s, &[0.0, 65.0, 120.0]),
            vec![1.0, 0.5, 0.0]
        );
    }

    /// The interval contains the point, narrows with more runs, and is the same for the same
    /// seed; a constant task contributes no width.
    #[test]
    fn bootstrap_intervals_behave() {
        let s = scores();
        let run = |seed| bootstrap(&s, iqm, 2000, 0.95, &mut ChaCha8Rng::seed_from_u64(seed));
        let a = run(1);
        assert_eq!(a, run(1));
        assert!(
            a.low <= a.point && a.point <= a.high && a.low < a.high,
            "{a:?}"
        );
        let constant = Scores::new(vec![vec![5.0; 4], vec![7.0; 4]]);
        let c = bootstrap(
            &constant,
            mean,
            500,
            0.95,
            &mut ChaCha8Rng::seed_from_u64(2),
        );
        assert_eq!((c.low, c.point, c.high), (6.0, 6.0, 6.0));
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&mut v, 50.0), 2.5);
        assert!((percentile(&mut v, 2.5) - 1.075).abs() < 1e-12);
        assert_eq!(percentile(&mut v, 100.0), 4.0);
    }
}
