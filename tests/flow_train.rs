//! The flow family end to end on a tiny problem, through the shared loop: flow-BC and FQL train,
//! checkpoint, resume exactly and reload; the outsourced (noise-space) sampler trains on a flow-BC
//! run and a critic run, resumes exactly, reloads, acts in the box, and refuses inputs of the
//! wrong kind before any training.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{assert_resumes_exactly, train};
use offrl::algos::{self, AlgoKind};
use offrl::dataset::Dataset;

fn dataset() -> Dataset {
    common::toy_dataset()
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

/// A small outsourced sampler on the behaviour run `behavior` and the critic run `critic`.
fn sampler_sets(behavior: &Path, critic: &Path, extra: &[&str]) -> Vec<String> {
    let mut sets = vec![
        format!("behavior={:?}", behavior.display().to_string()),
        format!("critic={:?}", critic.display().to_string()),
    ];
    sets.extend(
        [
            "trajectories=4",
            "chunk=6",
            "schedule.steps=6",
            "correction.net.width=16",
            "correction.net.hidden=2",
            "correction.net.time_harmonics=4",
            "correction.langevin_width=8",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string()),
    );
    sets
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
    let owned = sampler_sets(&flow, &critic, &[]);
    let sets: Vec<&str> = owned.iter().map(String::as_str).collect();
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

/// The sampler in the noise space of a diffusion prior's DDIM map, its off-policy trajectories
/// from the dataset's actions inverted through that map, and its replay buffer: it trains,
/// resumes exactly (the buffer is in the checkpoint: the replayed updates' losses match) and
/// inverts the data to a small residual.
#[test]
fn outsourced_sampler_on_a_ddim_map_inverts_the_data_and_resumes() {
    let root = tempfile::tempdir().unwrap();
    let data = dataset();
    let prior = root.path().join("diffusion-bc");
    let prior_sets = [
        "schedule.steps=8",
        "schedule.kind=\"cosine\"",
        "net.width=16",
        "net.hidden=2",
        "net.time_harmonics=4",
        "pre_tanh=false",
        "train.steps=20",
        "train.batch_size=16",
        "train.log_every=10",
    ];
    train(AlgoKind::DiffusionBc, &prior_sets, &data, &prior);
    let critic = critic_run(root.path(), &data);
    let extra = [
        "behavior_kind=\"diffusion-bc\"",
        "ddim_steps=4",
        "off_policy_from=\"data\"",
    ];
    let owned = sampler_sets(&prior, &critic, &extra);
    let sets: Vec<&str> = owned.iter().map(String::as_str).collect();
    assert_resumes_exactly(
        AlgoKind::Outsourced,
        &sets,
        &data,
        root.path(),
        "loss_replay",
    );
    let m = offrl::train::read_metrics(&root.path().join("outsourced-full/metrics.jsonl")).unwrap();
    let residual = &m.iter().find(|(n, _)| n == "inversion_residual").unwrap().1;
    assert!(residual.iter().all(|(_, r)| *r < 1e-3), "{residual:?}");
}
