//! RTB end to end on a tiny problem: a (fresh, tiny) diffusion prior checkpoint and an IQL critic
//! trained for a few steps, then `rtb::train` through the shared loop — metrics, checkpoints,
//! exact resume, reload, the policy, the NaN guard, and the initialisations that copy the prior.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use offrl::algos::rtb::{self, CorrectionInit, Rtb, RtbConfig};
use offrl::algos::{self, AlgoKind};
use offrl::backend::Engine;
use offrl::dataset::spec::DataSpec;
use offrl::dataset::Dataset;
use offrl::diffusion::{
    sample_trajectory, trajectory_log_prob, DiffusionPrior, EpsModel, PriorConfig, PriorSpec,
};
use offrl::nn::to_vec;
use offrl::train::checkpoint::Checkpoint;
use offrl::train::OfflineAlgorithm;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Observation width of [`common::toy_dataset`].
const OBS: usize = 3;

fn dataset() -> Dataset {
    common::toy_dataset()
}

/// A tiny prior (6 diffusion steps, 16-wide net) in the paper's pre-tanh action space.
fn prior_config() -> serde_json::Value {
    let scale = 75.0 / 6.0;
    offrl::config::resolve(
        &AlgoKind::DiffusionBc.default_config(),
        None,
        &[
            "schedule.steps=6".into(),
            format!("schedule.beta_start={}", 1e-4 * scale),
            format!("schedule.beta_end={}", 0.02 * scale),
            "net.width=16".into(),
            "net.hidden=2".into(),
            "net.time_harmonics=3".into(),
            "train.steps=1".into(),
            "train.batch_size=16".into(),
            "train.log_every=1".into(),
            "train.checkpoint_every=0".into(),
        ],
    )
    .unwrap()
}

fn prior_spec(data: &Dataset) -> PriorSpec {
    let config: PriorConfig = serde_json::from_value(prior_config()).unwrap();
    let spaces = DataSpec::from_dataset(data, &config.data).unwrap();
    config.spec(spaces).unwrap()
}

/// A prior run directory trained for one update (RTB only needs *a* prior).
fn prior_checkpoint(root: &Path, data: &Dataset) -> PathBuf {
    let out = root.join("prior");
    let device = Device::flex().autodiff();
    algos::train(
        AlgoKind::DiffusionBc,
        &prior_config(),
        data,
        Some(&out),
        1,
        &device,
        None,
    )
    .unwrap();
    out
}

/// An IQL critic trained for 30 steps (a run directory).
fn critic_run(root: &Path, data: &Dataset) -> PathBuf {
    let out = root.join("critic");
    let config = offrl::config::resolve(
        &AlgoKind::Iql.default_config(),
        None,
        &[
            "train_actor=false".into(),
            "critic_net.width=16".into(),
            "train.steps=30".into(),
            "train.batch_size=16".into(),
            "train.log_every=10".into(),
            "train.checkpoint_every=0".into(),
        ],
    )
    .unwrap();
    let device = Device::flex().autodiff();
    algos::train(AlgoKind::Iql, &config, data, Some(&out), 0, &device, None).unwrap();
    out
}

fn config(prior: &Path, critic: &Path) -> RtbConfig {
    let mut c = RtbConfig {
        prior: prior.display().to_string(),
        critic: critic.display().to_string(),
        alpha: 0.5,
        trajectories: 4,
        chunk: 6,
        ..Default::default()
    };
    c.correction.net = prior_spec(&dataset()).net;
    c.correction.langevin_width = 8;
    c.log_z.width = 8;
    c.train.steps = 6;
    c.train.batch_size = 3;
    c.train.log_every = 1;
    c.train.checkpoint_every = 3;
    c.train.eval_every = 0;
    c
}

fn probe(algo: &dyn OfflineAlgorithm) -> Vec<f32> {
    let obs = [0.1, -0.5, 0.9, -0.3, 0.2, 0.0];
    algo.policy().unwrap().act(&obs, 2).unwrap()
}

#[test]
fn trains_checkpoints_resumes_and_reloads_exactly() {
    let root = tempfile::tempdir().unwrap();
    let data = dataset();
    let prior = prior_checkpoint(root.path(), &data);
    let critic = critic_run(root.path(), &data);
    let device = Device::flex().autodiff();
    // The learned log Z also runs with α in units of the critic's spread, measured at the first
    // update and kept in the checkpoint: resuming must not measure it again.
    for (kind, scale) in [
        (rtb::LogZKind::Vargrad, rtb::AlphaScale::Absolute),
        (rtb::LogZKind::Learned, rtb::AlphaScale::QSpread),
    ] {
        let mut cfg = config(&prior, &critic);
        cfg.log_z.kind = kind;
        cfg.alpha_scale = scale;
        let full_dir = root.path().join(format!("full-{kind:?}"));
        let full = rtb::train(&cfg, &data, &full_dir, 3, &device, None).unwrap();

        // Metrics of every step, both losses, finite.
        let metrics = offrl::train::read_metrics(&full_dir.join("metrics.jsonl")).unwrap();
        for name in ["loss_on", "loss_off", "log_z", "log_r", "kl"] {
            let series = &metrics.iter().find(|(n, _)| n == name).unwrap().1;
            assert_eq!(series.len(), 6, "{name}");
            assert!(series.iter().all(|(_, v)| v.is_finite()));
        }
        assert!(full_dir.join("plots/loss_on.png").is_file());
        // σ_Q is measured once and is positive; α is the config's, times σ_Q under q_spread.
        let series = |name: &str| &metrics.iter().find(|(n, _)| n == name).unwrap().1;
        let spread = series("q_spread")[0].1;
        assert!(spread > 0.0 && spread.is_finite(), "{spread}");
        assert!(series("q_spread").iter().all(|(_, v)| *v == spread));
        let want = match scale {
            rtb::AlphaScale::Absolute => cfg.alpha,
            rtb::AlphaScale::QSpread => cfg.alpha * spread,
        };
        assert!(series("alpha")
            .iter()
            .all(|(_, v)| (v - want).abs() <= 1e-12 * want));
        // π starts at μ (log π − log μ exactly 0 at the first update) and moves.
        let kl = &metrics.iter().find(|(n, _)| n == "kl").unwrap().1;
        assert_eq!(kl[0].1, 0.0);
        assert!(kl[1..].iter().all(|(_, v)| v.abs() > 1e-6), "{kl:?}");

        // Killed after the step-3 checkpoint: delete the final one and train again.
        let part_dir = root.path().join(format!("part-{kind:?}"));
        rtb::train(&cfg, &data, &part_dir, 3, &device, None).unwrap();
        std::fs::remove_dir_all(Checkpoint::dir_for_step(&part_dir.join("checkpoints"), 6))
            .unwrap();
        let resumed = rtb::train(&cfg, &data, &part_dir, 3, &device, None).unwrap();
        let actions = probe(full.as_ref());
        assert_eq!(actions, probe(resumed.as_ref()));
        assert!(actions.iter().all(|a| a.abs() <= 1.0));
        let last = |dir: &Path| {
            let m = offrl::train::read_metrics(&dir.join("metrics.jsonl")).unwrap();
            m.iter().find(|(n, _)| n == "loss_on").unwrap().1.clone()
        };
        assert_eq!(last(&full_dir), last(&part_dir));

        // Reloaded from disk: the same policy.
        let ck = Checkpoint::resolve(&full_dir).unwrap();
        let reloaded = algos::load(&ck, &device).unwrap();
        assert_eq!(actions, probe(reloaded.as_ref()));
    }
    // A different seed gives a different run; a changed config refuses to resume.
    let cfg = config(&prior, &critic);
    let other = rtb::train(&cfg, &data, &root.path().join("seed4"), 4, &device, None).unwrap();
    let full = algos::load(
        &Checkpoint::resolve(&root.path().join("full-Vargrad")).unwrap(),
        &device,
    )
    .unwrap();
    assert_ne!(probe(full.as_ref()), probe(other.as_ref()));
    let mut changed = cfg.clone();
    changed.alpha = 0.25;
    let err = rtb::train(
        &changed,
        &data,
        &root.path().join("seed4"),
        4,
        &device,
        None,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("config.alpha"), "{err}");
}

#[test]
fn missing_or_wrong_inputs_are_named() {
    let root = tempfile::tempdir().unwrap();
    let data = dataset();
    let prior = prior_checkpoint(root.path(), &data);
    let device = Device::flex().autodiff();
    let mut cfg = config(&prior, Path::new(""));
    let err = rtb::train(&cfg, &data, &root.path().join("a"), 0, &device, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no critic given"), "{err}");
    cfg.critic = root.path().join("nowhere").display().to_string();
    let err = rtb::train(&cfg, &data, &root.path().join("b"), 0, &device, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nowhere"), "{err}");
    // The prior's folder given as the critic: wrong checkpoint kind.
    cfg.critic = prior.display().to_string();
    let err = rtb::train(&cfg, &data, &root.path().join("c"), 0, &device, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("expected `iql`"), "{err}");
    cfg.critic = String::new();
    cfg.alpha = 0.0;
    let err = rtb::train(&cfg, &data, &root.path().join("d"), 0, &device, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("alpha"), "{err}");
}

#[test]
fn nan_stops_training_naming_step_and_loss() {
    let root = tempfile::tempdir().unwrap();
    let data = dataset();
    let prior = prior_checkpoint(root.path(), &data);
    let critic = critic_run(root.path(), &data);
    // Non-finite observations reach the networks (the struct is built without validation).
    let mut bad = data.clone();
    bad.observations.iter_mut().for_each(|v| *v = f32::NAN);
    let device = Device::flex().autodiff();
    let cfg = config(&prior, &critic);
    let err = rtb::train(&cfg, &bad, &root.path().join("nan"), 0, &device, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("step 0") && err.contains("loss_on"), "{err}");
    assert!(Checkpoint::latest(&root.path().join("nan/checkpoints"))
        .unwrap()
        .is_none());
}

#[test]
fn initialisations_that_copy_the_prior() {
    let root = tempfile::tempdir().unwrap();
    let data = dataset();
    let device = Device::flex();
    offrl::backend::seed(&device, 2);
    let prior = DiffusionPrior::new(prior_spec(&data), &device).unwrap();
    let reward = |_o: burn::tensor::Tensor<2>, a: burn::tensor::Tensor<2>| {
        let n = a.dims()[0];
        a.sum_dim(1).reshape([n])
    };
    let reward = rtb::QReward {
        q: reward,
        alpha: 1.0,
        spaces: prior.spec.clone(),
        tanh_jacobian: true,
    };
    let obs = offrl::nn::tensor2(&[0.2; 8 * OBS], 8, OBS, &device);
    for init in [
        CorrectionInit::Zero,
        CorrectionInit::PriorFeatures,
        CorrectionInit::CopyPrior,
    ] {
        let mut cfg = config(root.path(), root.path());
        cfg.correction.init = init;
        cfg.correction.langevin = false;
        let template = prior.net.clone();
        let rtb = Rtb::new(cfg, prior.clone(), &reward, OBS, Some(&template), &device).unwrap();
        let correction = rtb.acting_correction();
        let pi = rtb.posterior(&correction);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let traj = sample_trajectory(&pi, obs.clone(), &mut rng);
        let lp = to_vec(trajectory_log_prob(&pi, obs.clone(), &traj));
        let lm = to_vec(trajectory_log_prob(&prior, obs.clone(), &traj));
        // The correction's own output at one step vs the prior's ε.
        let x = traj.x(3).clone();
        // (run by burn, as the prior here is, so that copies compare exactly)
        let burn = rtb.model.correction.acting(prior.schedule(), Engine::Burn);
        let corr = to_vec(burn.rows(obs.clone(), x.clone(), &[3], None));
        let eps = to_vec(prior.eps(obs.clone(), x, 3));
        match init {
            CorrectionInit::Zero | CorrectionInit::PriorFeatures => {
                // π = μ + 0: equal up to the fused prior's rounding (its GEMMs sum in another
                // order than burn's).
                for (a, b) in lp.iter().zip(&lm) {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "{init:?}: {a} vs {b}"
                    );
                }
                assert!(corr.iter().all(|&v| v == 0.0));
            }
            CorrectionInit::CopyPrior => {
                // The paper's initialisation: ε_π = 2 ε_μ, so π ≠ μ.
                assert_eq!(corr, eps);
                assert!(lp.iter().zip(&lm).any(|(a, b)| (a - b).abs() > 1e-3));
            }
        }
        if init == CorrectionInit::PriorFeatures {
            // Hidden layers are the prior's.
            let a = to_vec(correction.correction.net.input.weight.val());
            assert_eq!(a, to_vec(prior.net.input.weight.val()));
        }
    }
}

#[test]
fn command_line_trains_and_resumes() {
    let root = tempfile::tempdir().unwrap();
    let data = dataset();
    let prior = prior_checkpoint(root.path(), &data);
    let critic = critic_run(root.path(), &data);
    let parquet = root.path().join("toy.parquet");
    offrl::dataset::io::save(&data, &parquet).unwrap();
    let out = root.path().join("rtb");
    let run = |steps: usize| {
        std::process::Command::new(env!("CARGO_BIN_EXE_offrl"))
            .args(["train", "rtb", "--dataset"])
            .arg(&parquet)
            .arg("--prior")
            .arg(&prior)
            .arg("--critic")
            .arg(&critic)
            .args(["--alpha", "0.3", "--seed", "1", "--eval-episodes", "0", "--out"])
            .arg(&out)
            .args([
                "--set",
                "correction.net={width = 16, hidden = 2, time_harmonics = 3, activation = \"gelu\", layer_norm = true}",
                "--set",
                "trajectories=4",
                "--set",
                "train.batch_size=2",
                "--set",
                &format!("train.steps={steps}"),
                "--set",
                "train.checkpoint_every=2",
            ])
            .output()
            .unwrap()
    };
    let first = run(4);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["alpha"], 0.3);
    assert_eq!(config["seed"], 1);
    let last = Checkpoint::dir_for_step(&out.join("checkpoints"), 4);
    assert!(last.is_dir());
    // Killed before the last checkpoint: the same command resumes from step 2.
    std::fs::remove_dir_all(&last).unwrap();
    let resumed = run(4);
    assert!(resumed.status.success());
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("resuming"));
    assert!(last.is_dir());
    // A changed step count is a different config: refused, naming the key.
    let second = run(6);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("train.steps"), "{err}");
}
