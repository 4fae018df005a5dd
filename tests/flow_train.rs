//! The flow family end to end on a tiny problem, through the shared loop: flow-BC and FQL train,
//! checkpoint, resume exactly and reload; the outsourced (noise-space) sampler trains on a flow-BC
//! run and a critic run, resumes exactly, reloads, acts in the box, and refuses inputs of the
//! wrong kind before any training.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use offrl::algos::{self, AlgoKind};
use offrl::dataset::Dataset;
use offrl::train::checkpoint::Checkpoint;
use offrl::train::OfflineAlgorithm;

fn dataset() -> Dataset {
    common::toy_dataset()
}

fn train(kind: AlgoKind, sets: &[&str], data: &Dataset, out: &Path) -> Box<dyn OfflineAlgorithm> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let config = offrl::config::resolve(&kind.default_config(), None, &sets).unwrap();
    algos::train(
        kind,
        &config,
        data,
        Some(out),
        3,
        &Device::flex().autodiff(),
        None,
    )
    .unwrap()
    .algo
}

fn probe(algo: &dyn OfflineAlgorithm) -> Vec<f32> {
    let obs = [0.1, -0.5, 0.9, -0.3, 0.2, 0.0];
    algo.policy().unwrap().act(&obs, 2).unwrap()
}

/// Trained for 6 steps in one go, and killed after the step-3 checkpoint and trained again: the
/// same actions and the same losses; reloaded from disk: the same actions.
fn assert_resumes_exactly(kind: AlgoKind, sets: &[&str], data: &Dataset, root: &Path, loss: &str) {
    let mut sets = sets.to_vec();
    sets.extend([
        "train.steps=6",
        "train.batch_size=8",
        "train.log_every=1",
        "train.checkpoint_every=3",
    ]);
    let full_dir = root.join(format!("{}-full", kind.name()));
    let full = train(kind, &sets, data, &full_dir);
    let part_dir = root.join(format!("{}-part", kind.name()));
    train(kind, &sets, data, &part_dir);
    std::fs::remove_dir_all(Checkpoint::dir_for_step(&part_dir.join("checkpoints"), 6)).unwrap();
    let resumed = train(kind, &sets, data, &part_dir);
    let actions = probe(full.as_ref());
    assert_eq!(actions, probe(resumed.as_ref()), "{}", kind.name());
    assert!(actions.iter().all(|a| a.abs() <= 1.0), "{actions:?}");
    let series = |dir: &Path| {
        let m = offrl::train::read_metrics(&dir.join("metrics.jsonl")).unwrap();
        m.iter().find(|(n, _)| n == loss).unwrap().1.clone()
    };
    let whole = series(&full_dir);
    assert_eq!(whole.len(), 6);
    assert!(whole.iter().all(|(_, v)| v.is_finite()));
    assert_eq!(whole, series(&part_dir));
    let reloaded = algos::load(
        &Checkpoint::resolve(&full_dir).unwrap(),
        &Device::flex().autodiff(),
    )
    .unwrap();
    assert_eq!(actions, probe(reloaded.as_ref()));
}

const SMALL_FLOW: [&str; 2] = ["net.width=16", "net.hidden=2"];

fn flow_run(root: &Path, data: &Dataset) -> PathBuf {
    let out = root.join("flow-bc");
    let mut sets = SMALL_FLOW.to_vec();
    sets.extend([
        "train.steps=20",
        "train.batch_size=16",
        "train.log_every=10",
    ]);
    train(AlgoKind::FlowBc, &sets, data, &out);
    out
}

fn critic_run(root: &Path, data: &Dataset) -> PathBuf {
    let out = root.join("critic");
    let sets = [
        "train_actor=false",
        "critic_net.width=16",
        "train.steps=20",
        "train.batch_size=16",
        "train.log_every=10",
    ];
    train(AlgoKind::Iql, &sets, data, &out);
    out
}

#[test]
fn flow_bc_and_fql_resume_exactly() {
    let root = tempfile::tempdir().unwrap();
    let data = dataset();
    assert_resumes_exactly(
        AlgoKind::FlowBc,
        &SMALL_FLOW,
        &data,
        root.path(),
        "flow_loss",
    );
    let fql = [
        "actor_net.width=16",
        "actor_net.hidden=2",
        "critic_net.width=16",
        "critic_net.hidden=2",
    ];
    assert_resumes_exactly(AlgoKind::Fql, &fql, &data, root.path(), "critic_loss");
}

#[test]
fn outsourced_sampler_trains_resumes_and_refuses_wrong_inputs() {
    let root = tempfile::tempdir().unwrap();
    let data = dataset();
    let flow = flow_run(root.path(), &data);
    let critic = critic_run(root.path(), &data);
    let behavior = format!("behavior={:?}", flow.display().to_string());
    let critic_set = format!("critic={:?}", critic.display().to_string());
    let sets = [
        behavior.as_str(),
        critic_set.as_str(),
        "trajectories=4",
        "chunk=6",
        "schedule.steps=6",
        "correction.net.width=16",
        "correction.net.hidden=2",
        "correction.net.time_harmonics=4",
        "correction.langevin_width=8",
    ];
    assert_resumes_exactly(AlgoKind::Outsourced, &sets, &data, root.path(), "loss_on");
    // The sampler starts at the reference chain (log π − log μ = 0 at the first update) and moves;
    // α is measured in units of the critic's spread over the map's actions.
    let m = offrl::train::read_metrics(&root.path().join("outsourced-full/metrics.jsonl")).unwrap();
    let series = |name: &str| m.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let kl = series("kl");
    assert_eq!(kl[0].1, 0.0);
    assert!(kl[1..].iter().all(|(_, v)| v.abs() > 1e-9), "{kl:?}");
    let spread = series("q_spread")[0].1;
    assert!(spread > 0.0 && spread.is_finite());
    assert!(series("alpha")
        .iter()
        .all(|(_, v)| (v - 0.5 * spread).abs() < 1e-9));

    // The critic given as the behaviour map, and a prior-variance reference: refused up front.
    let kind = AlgoKind::Outsourced;
    let swapped = format!("behavior={:?}", critic.display().to_string());
    for (set, want) in [
        (swapped.as_str(), "expected `flow-bc`"),
        ("schedule.variance=\"posterior\"", "schedule.variance"),
    ] {
        let mut all = sets.to_vec();
        all.push(set);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let config = offrl::config::resolve(&kind.default_config(), None, &all).unwrap();
        let out = root.path().join("refused");
        let err = match algos::train(
            kind,
            &config,
            &data,
            Some(&out),
            0,
            &Device::flex().autodiff(),
            None,
        ) {
            Ok(_) => panic!("{set} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "{set}: {err}");
        assert!(!out.join("checkpoints").exists());
    }
}
