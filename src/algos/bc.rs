//! Behaviour cloning with a Gaussian MLP policy: maximise `log π(a|s)` of the dataset's
//! actions (`N(μ(s), σ²)`, tanh-squashed mean, state-independent log-std — the same policy
//! class as IQL's actor, so BC is IQL's actor with all advantage weights equal to 1).
//! The policy acts with its mean. Defaults follow CORL's BC (2 × 256, Adam 3e-4, batch 256,
//! observation normalisation).

use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::common::{
    adam, check_log_std, scalar, GaussianActor, NetConfig, NetPolicy, SampledNetPolicy,
};
use crate::dataset::spec::{DataConfig, DataSpec, RewardNorm};
use crate::dataset::Batch;
use crate::error::Result;
use crate::policy::Policy;
use crate::train::{LoopConfig, Metrics, OfflineAlgorithm, Parts};

/// The algorithm's name in the registry and its checkpoints' kind.
pub const NAME: &str = "bc";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BcConfig {
    pub lr: f64,
    pub adam_eps: f64,
    pub actor_net: NetConfig,
    pub tanh_mean: bool,
    pub log_std_min: f32,
    pub log_std_max: f32,
    pub data: DataConfig,
    pub train: LoopConfig,
}

impl Default for BcConfig {
    fn default() -> Self {
        Self {
            lr: 3e-4,
            adam_eps: 1e-8,
            actor_net: NetConfig::default(),
            tanh_mean: true,
            log_std_min: -5.0,
            log_std_max: 2.0,
            data: DataConfig {
                normalize_obs: true,
                reward_norm: RewardNorm::None,
            },
            train: LoopConfig::default(),
        }
    }
}

impl BcConfig {
    /// Every setting in its allowed range, named as in the config, before any work.
    pub fn validate(&self) -> Result<()> {
        use crate::config::check;
        check::positive("lr", self.lr)?;
        check::positive("adam_eps", self.adam_eps)?;
        self.actor_net.validate("actor_net")?;
        check_log_std(self.log_std_min, self.log_std_max)?;
        self.train.validate()
    }
}

pub struct Bc {
    cfg: BcConfig,
    spec: DataSpec,
    device: Device,
    actor: GaussianActor,
    optim: ModuleOptimizer,
}

impl Bc {
    pub fn new(cfg: BcConfig, spec: DataSpec, device: &Device, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let rng = &mut ChaCha8Rng::seed_from_u64(seed);
        let actor = GaussianActor::new(
            &cfg.actor_net,
            spec.obs_dim,
            spec.act_dim,
            cfg.tanh_mean,
            (cfg.log_std_min, cfg.log_std_max),
            rng,
            device,
        );
        Ok(Self {
            optim: adam(cfg.adam_eps),
            cfg,
            spec,
            device: device.clone(),
            actor,
        })
    }
}

impl OfflineAlgorithm for Bc {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self) -> &DataSpec {
        &self.spec
    }

    fn update(&mut self, batch: &Batch, _step: usize) -> Result<Metrics> {
        let b = self.spec.batch_tensors(batch, &self.device);
        let loss = self.actor.log_prob(b.obs, b.act).mean() * -1.0;
        let grads = GradientsParams::from_grads(loss.backward(), &self.actor);
        self.actor = self.optim.step(self.cfg.lr, self.actor.clone(), grads);
        Ok(vec![
            ("nll", scalar(&loss)),
            ("std_mean", scalar(&self.actor.log_std().exp().mean())),
        ])
    }

    fn policy(&self) -> Result<Box<dyn Policy>> {
        Ok(Box::new(NetPolicy::new(
            &self.actor,
            GaussianActor::mean,
            &self.spec,
        )))
    }

    fn sampling_policy(&self, seed: u64) -> Result<Box<dyn Policy>> {
        Ok(Box::new(SampledNetPolicy::new(
            &self.actor,
            GaussianActor::sample_with,
            &self.spec,
            seed,
        )))
    }

    fn parts(&mut self, parts: &mut Parts<'_>) -> Result<()> {
        parts.module("actor", &mut self.actor, Some(&mut self.optim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::testing;
    use crate::nn;
    use rand::Rng;
    use rand_distr::StandardNormal;

    /// Known answer: data from a linear-Gaussian behaviour policy a = 0.5 s + 0.1 + N(0, 0.2²)
    /// (4000 states evenly spread over [−1, 1]); BC recovers the mean line within 0.02 and the
    /// std within 0.015.
    #[test]
    fn recovers_a_linear_gaussian_behaviour_policy() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut data = testing::empty(1, 1, -1.0, 1.0);
        for i in 0..4000 {
            // Evenly spread states: less sampling noise in the local means than uniform draws.
            let s = -1.0 + (i as f32 + 0.5) / 2000.0;
            let a = 0.5 * s + 0.1 + 0.2 * rng.sample::<f32, _>(StandardNormal);
            testing::push(&mut data, &[s], &[a], 0.0, &[s], true);
        }
        let cfg = BcConfig {
            lr: 1e-2,
            actor_net: NetConfig::new(1, 16, false),
            ..BcConfig::default()
        };
        let spec = DataSpec::from_dataset(&data, &cfg.data).unwrap();
        let mut bc = Bc::new(cfg, spec, &Device::flex().autodiff(), 0).unwrap();
        let batch = testing::full_batch(&data);
        for step in 0..1200 {
            bc.update(&batch, step).unwrap();
        }
        let grid = [-0.9f32, -0.5, 0.0, 0.5, 0.9];
        let act = bc.policy().unwrap().act(&grid, grid.len()).unwrap();
        for (s, a) in grid.iter().zip(&act) {
            let want = 0.5 * s + 0.1;
            assert!((a - want).abs() < 0.02, "mean at s = {s}: {a} vs {want}");
        }
        let std = nn::to_vec(bc.actor.log_std().exp())[0];
        // The sample std of 4000 draws is itself within ~0.005 of 0.2.
        assert!((std - 0.2).abs() < 0.015, "std {std}");
    }
}
