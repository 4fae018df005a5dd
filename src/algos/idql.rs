//! IDQL-style resampling (Hansen-Estruch et al., 2023): the behaviour prior proposes `samples`
//! actions per state and the critic chooses among them — greedily (argmax Q) or by sampling
//! softmax(Q / temperature). Nothing is trained here: it is a policy built from a trained
//! diffusion prior and a trained IQL critic.

use std::path::Path;

use burn::tensor::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::dxmi;
use super::iql::IqlCritic;
use crate::diffusion::prior::DiffusionPolicy;
use crate::error::{Error, Result};
pub use crate::policy::ActionScorer;
use crate::policy::Policy;
use crate::train::OfflineAlgorithm;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdqlConfig {
    /// Proposals drawn from the prior per state (IDQL uses 32 to 128).
    pub samples: usize,
    pub selection: Selection,
    /// Multiplies the prior's noise draws when it proposes (1: samples of μ, as IDQL does; below
    /// 1: proposals at a lower temperature, as diffusion-BC acts).
    #[serde(default = "unit")]
    pub act_noise_scale: f64,
    /// A trained energy (a `dxmi` or `gcd` run) that penalises proposals unlike the data:
    /// they are chosen by `Q − energy_weight · E` (issue 22's in-distribution score). Empty: Q.
    #[serde(default)]
    pub energy: String,
    /// λ of the penalty, in Q's units per unit of energy.
    #[serde(default)]
    pub energy_weight: f64,
}

fn unit() -> f64 {
    1.0
}

impl Default for IdqlConfig {
    fn default() -> Self {
        Self {
            samples: 32,
            selection: Selection::Greedy,
            act_noise_scale: 1.0,
            energy: String::new(),
            energy_weight: 0.0,
        }
    }
}

/// How the critic picks among the proposals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Selection {
    /// The proposal with the highest Q.
    Greedy,
    /// A proposal drawn with probability ∝ exp(Q / temperature).
    Softmax { temperature: f64 },
}

/// Proposals from `proposals`, chosen by `scorer`.
pub struct IdqlPolicy<P: Policy, S: ActionScorer> {
    pub proposals: P,
    pub scorer: S,
    pub config: IdqlConfig,
    obs_dim: usize,
    rng: ChaCha8Rng,
}

impl<P: Policy, S: ActionScorer> IdqlPolicy<P, S> {
    pub fn new(
        proposals: P,
        scorer: S,
        obs_dim: usize,
        config: IdqlConfig,
        seed: u64,
    ) -> Result<Self> {
        if config.samples == 0 {
            return Err(Error::Config("idql: samples must be at least 1".into()));
        }
        crate::diffusion::check_noise_scale(config.act_noise_scale)?;
        if let Selection::Softmax { temperature } = config.selection {
            if !(temperature > 0.0 && temperature.is_finite()) {
                return Err(Error::Config(format!(
                    "idql: softmax temperature must be positive and finite, got {temperature}"
                )));
            }
        }
        Ok(Self {
            proposals,
            scorer,
            config,
            obs_dim,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// Index of the chosen proposal among `scores`.
    fn choose(&mut self, scores: &[f32]) -> usize {
        let argmax = || {
            scores
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .expect("at least one proposal")
        };
        match self.config.selection {
            Selection::Greedy => argmax(),
            Selection::Softmax { temperature } => {
                let best = f64::from(scores[argmax()]);
                let weights: Vec<f64> = scores
                    .iter()
                    .map(|&q| ((f64::from(q) - best) / temperature).exp())
                    .collect();
                let mut u = self.rng.random::<f64>() * weights.iter().sum::<f64>();
                for (i, w) in weights.iter().enumerate() {
                    if u < *w {
                        return i;
                    }
                    u -= w;
                }
                weights.len() - 1
            }
        }
    }
}

impl<P: Policy, S: ActionScorer> Policy for IdqlPolicy<P, S> {
    fn act(&mut self, obs: &[f32], n: usize) -> Result<Vec<f32>> {
        let (od, k) = (self.obs_dim, self.config.samples);
        crate::policy::check_obs("idql policy", obs, n, od)?;
        // Row i*k + j is proposal j for state i: one batched prior call, one batched critic call.
        let repeated: Vec<f32> = obs.chunks(od).flat_map(|row| row.repeat(k)).collect();
        let actions = self.proposals.act(&repeated, n * k)?;
        let scores = self.scorer.score(&repeated, &actions, n * k)?;
        let ad = actions.len() / (n * k);
        let mut out = Vec::with_capacity(n * ad);
        for i in 0..n {
            let j = self.choose(&scores[i * k..(i + 1) * k]);
            let row = i * k + j;
            out.extend_from_slice(&actions[row * ad..(row + 1) * ad]);
        }
        Ok(out)
    }
}

/// `Q − λ·E`: a critic's score with a trained energy's penalty (`−E` is the energy model's
/// [`crate::train::OfflineAlgorithm::value_function`]).
pub struct EnergyPenalised<S: ActionScorer> {
    pub q: S,
    pub negative_energy: Box<dyn ActionScorer>,
    pub weight: f64,
}

impl<S: ActionScorer> ActionScorer for EnergyPenalised<S> {
    fn score(&self, obs: &[f32], act: &[f32], n: usize) -> Result<Vec<f32>> {
        let q = self.q.score(obs, act, n)?;
        let e = self.negative_energy.score(obs, act, n)?;
        let w = self.weight as f32;
        Ok(q.iter().zip(e).map(|(q, e)| q + w * e).collect())
    }
}

/// The IDQL policy of a trained prior and IQL critic (`offrl train critic` / `iql`), each a run
/// directory or a checkpoint folder, on the plain `device`, with `config.energy`'s penalty when
/// it names a run; `seed` drives the prior's chains and softmax selection. The prior is a
/// diffusion-BC run or a `dxmi` / `gcd` run's few-step sampler ([`super::load_prior`]).
pub fn load_policy(
    prior: &Path,
    critic: &Path,
    config: IdqlConfig,
    device: &Device,
    seed: u64,
) -> Result<IdqlPolicy<DiffusionPolicy, Box<dyn ActionScorer>>> {
    let prior = super::load_prior(prior, device)?;
    let critic = IqlCritic::load(critic, device)?;
    let dims = (critic.spec().obs_dim, critic.spec().act_dim);
    let scorer: Box<dyn ActionScorer> = match (config.energy.as_str(), config.energy_weight) {
        ("", w) if w != 0.0 => {
            return Err(Error::Config(format!(
                "idql: energy_weight = {w} needs `energy`, a trained dxmi or gcd run"
            )))
        }
        ("", _) => Box::new(critic.clone()),
        (run, w) => {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(Error::Config(format!(
                    "idql: energy_weight must be non-negative and finite, got {w}"
                )));
            }
            let model = load_energy_run(Path::new(run), dims, device)?;
            let negative_energy = model.value_function().expect("energy models score actions");
            Box::new(EnergyPenalised {
                q: critic.clone(),
                negative_energy,
                weight: w,
            })
        }
    };
    let ps = &prior.spec;
    if (ps.obs_dim(), ps.act_dim()) != dims {
        return Err(Error::InvalidData(format!(
            "idql: the prior was trained for obs {} / act {}, the critic for obs {} / act {}",
            ps.obs_dim(),
            ps.act_dim(),
            dims.0,
            dims.1
        )));
    }
    let mut proposals = DiffusionPolicy::new(&prior, seed);
    proposals.noise_scale = config.act_noise_scale;
    IdqlPolicy::new(proposals, scorer, dims.0, config, seed)
}

/// The `energy` run: a trained `dxmi` or `gcd` run, checked against the critic's `dims`.
fn load_energy_run(
    run: &Path,
    dims: (usize, usize),
    device: &Device,
) -> Result<Box<dyn OfflineAlgorithm>> {
    let model = super::load(run, device)?;
    let kind = model.name();
    if !dxmi::KINDS.contains(&kind) {
        return Err(Error::Config(format!(
            "idql: energy = {} is a {kind} run; it must be a dxmi or gcd run",
            run.display()
        )));
    }
    let spec = model.spec();
    if (spec.obs_dim, spec.act_dim) != dims {
        return Err(Error::InvalidData(format!(
            "idql: the energy {} was trained for obs {} / act {}, the critic for obs {} / act {}",
            run.display(),
            spec.obs_dim,
            spec.act_dim,
            dims.0,
            dims.1
        )));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proposals uniform on [-1, 1] (1-D actions), whatever the state.
    struct Uniform(ChaCha8Rng);
    impl Policy for Uniform {
        fn act(&mut self, _obs: &[f32], n: usize) -> Result<Vec<f32>> {
            Ok((0..n).map(|_| self.0.random_range(-1.0f32..1.0)).collect())
        }
    }

    /// Score −(a − 0.3)²: the best action is 0.3.
    struct Parabola;
    impl ActionScorer for Parabola {
        fn score(&self, _obs: &[f32], act: &[f32], _n: usize) -> Result<Vec<f32>> {
            Ok(act.iter().map(|a| -(a - 0.3) * (a - 0.3)).collect())
        }
    }

    fn moments(xs: &[f32]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = xs
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var)
    }

    #[test]
    fn greedy_picks_the_best_proposal() {
        let cfg = IdqlConfig {
            samples: 256,
            selection: Selection::Greedy,
            ..IdqlConfig::default()
        };
        let mut p =
            IdqlPolicy::new(Uniform(ChaCha8Rng::seed_from_u64(1)), Parabola, 2, cfg, 0).unwrap();
        let obs = vec![0.0f32; 2 * 50];
        let a = p.act(&obs, 50).unwrap();
        assert_eq!(a.len(), 50);
        // The best of 256 uniform draws is within ~2/256 of 0.3 (allow 0.03).
        assert!(a.iter().all(|x| (x - 0.3).abs() < 0.03), "{a:?}");
    }

    #[test]
    fn softmax_selection_matches_the_reweighted_density() {
        // Uniform × exp(−(a−0.3)²/T) is N(0.3, T/2) truncated to [-1, 1]; with T = 0.02 the
        // truncation is negligible, so the chosen actions have mean 0.3 and variance 0.01
        // (up to the finite number of proposals: 512 per state).
        let cfg = IdqlConfig {
            samples: 512,
            selection: Selection::Softmax { temperature: 0.02 },
            ..IdqlConfig::default()
        };
        let mut p =
            IdqlPolicy::new(Uniform(ChaCha8Rng::seed_from_u64(2)), Parabola, 1, cfg, 3).unwrap();
        let a = p.act(&vec![0.0f32; 4000], 4000).unwrap();
        let (mean, var) = moments(&a);
        assert!((mean - 0.3).abs() < 0.01, "mean {mean}");
        assert!((var - 0.01).abs() < 0.0015, "variance {var}");
    }

    /// Q = −(a − 0.3)² with the penalty of an energy E = (a + 0.3)² (the data near −0.3):
    /// `Q − λE` peaks at `0.3·(1 − λ)/(1 + λ)`, 0.1 for λ = 0.5 — the choice moves towards the
    /// data by the known amount.
    #[test]
    fn an_energy_penalty_moves_the_choice_towards_the_data() {
        struct NegativeEnergy;
        impl ActionScorer for NegativeEnergy {
            fn score(&self, _obs: &[f32], act: &[f32], _n: usize) -> Result<Vec<f32>> {
                Ok(act.iter().map(|a| -(a + 0.3) * (a + 0.3)).collect())
            }
        }
        let cfg = IdqlConfig {
            samples: 256,
            selection: Selection::Greedy,
            ..IdqlConfig::default()
        };
        let scorer = EnergyPenalised {
            q: Parabola,
            negative_energy: Box::new(NegativeEnergy),
            weight: 0.5,
        };
        let mut p =
            IdqlPolicy::new(Uniform(ChaCha8Rng::seed_from_u64(4)), scorer, 1, cfg, 0).unwrap();
        let a = p.act(&[0.0f32; 50], 50).unwrap();
        assert!(a.iter().all(|x| (x - 0.1).abs() < 0.03), "{a:?}");
    }

    #[test]
    fn bad_settings_are_errors() {
        let bad = IdqlConfig {
            samples: 4,
            selection: Selection::Softmax { temperature: 0.0 },
            ..IdqlConfig::default()
        };
        assert!(
            IdqlPolicy::new(Uniform(ChaCha8Rng::seed_from_u64(0)), Parabola, 1, bad, 0).is_err()
        );
        let none = IdqlConfig {
            samples: 0,
            selection: Selection::Greedy,
            ..IdqlConfig::default()
        };
        assert!(
            IdqlPolicy::new(Uniform(ChaCha8Rng::seed_from_u64(0)), Parabola, 1, none, 0).is_err()
        );
        let mut p = IdqlPolicy::new(
            Uniform(ChaCha8Rng::seed_from_u64(0)),
            Parabola,
            3,
            IdqlConfig::default(),
            0,
        )
        .unwrap();
        assert!(p.act(&[0.0; 4], 2).is_err());
    }
}
