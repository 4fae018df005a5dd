//! Collected datasets: registry cards are valid, `dataset make` regenerates collect/concat
//! members deterministically (same seed → identical Parquet data), and `offrl collect` writes
//! D4RL-style files.

use std::process::Command;

use offrl::dataset::make::{make, MakeOptions};
use offrl::dataset::registry::{self, DataSource};
use offrl::dataset::{io, Dataset};

fn make_named(name: &str, scale: f64, seed: u64) -> Dataset {
    let card = registry::load_card(name).unwrap();
    let opts = MakeOptions {
        seed,
        scale,
        ..Default::default()
    };
    make(name, &card, &opts).unwrap()
}

/// Save, reload and compare the data columns bit for bit.
fn assert_same_parquet_data(a: &Dataset, b: &Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
    io::save(a, &pa).unwrap();
    io::save(b, &pb).unwrap();
    let (la, lb) = (io::load(&pa).unwrap(), io::load(&pb).unwrap());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&la.observations), bits(&lb.observations));
    assert_eq!(bits(&la.actions), bits(&lb.actions));
    assert_eq!(bits(&la.rewards), bits(&lb.rewards));
    assert_eq!(bits(&la.next_observations), bits(&lb.next_observations));
    assert_eq!(la.terminals, lb.terminals);
    assert_eq!(la.timeouts, lb.timeouts);
    assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
}

#[test]
fn every_card_parses_and_names_existing_policies() {
    let reg = registry::Registry::BuiltIn;
    let names = reg.names().unwrap();
    let cards_dir = offrl::config::shared_dir().join("behavior-policies");
    for suite in ["pendulum/", "locomotion-v5/", "nav2d/"] {
        assert!(
            names.iter().any(|n| n.starts_with(suite)),
            "no {suite} cards"
        );
    }
    for name in &names {
        let card = reg
            .load_card(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        match &card.source {
            DataSource::Collect { parts, .. } => {
                for p in parts {
                    let builtin =
                        ["random", "pendulum-swingup", "nav2d-routes"].contains(&p.policy.as_str());
                    if !builtin && cards_dir.is_dir() {
                        assert!(
                            cards_dir.join(format!("{}.json", p.policy)).is_file(),
                            "{name}: {}",
                            p.policy
                        );
                    }
                }
            }
            DataSource::Concat { members } => {
                for m in members {
                    assert!(
                        names.contains(m),
                        "{name}: member {m} is not in the registry"
                    );
                }
            }
            DataSource::Import { .. } => {}
        }
    }
}

#[test]
fn pendulum_suite_is_reproducible_and_ordered_by_quality() {
    let a = make_named("pendulum/medium-expert", 0.02, 0);
    let b = make_named("pendulum/medium-expert", 0.02, 0);
    assert_eq!(a.len(), 4000);
    assert_same_parquet_data(&a, &b);
    assert_eq!(a.meta.source["kind"], "concat");
    assert_eq!(a.meta.source["parts"][0]["dataset"], "pendulum/medium");
    // 10 whole time-limited episodes per part; the medium half scores lower than the expert half.
    let returns = a.episode_returns();
    assert_eq!(returns.len(), 20);
    let score = |r: &[f64]| {
        a.normalized_score(r.iter().sum::<f64>() / r.len() as f64)
            .unwrap()
    };
    let (medium, expert) = (score(&returns[..10]), score(&returns[10..]));
    assert!(
        (25.0..75.0).contains(&medium) && expert > 90.0,
        "medium {medium}, expert {expert}"
    );
    let c = make_named("pendulum/medium-expert", 0.02, 1);
    assert_ne!(a.observations, c.observations);
}

#[cfg(feature = "python")]
#[test]
fn locomotion_members_are_reproducible_at_small_scale() {
    if !offrl::config::shared_dir()
        .join("behavior-policies")
        .is_dir()
    {
        println!(
            "skipped: no behaviour-policy cards under {}",
            offrl::config::shared_dir().display()
        );
        return;
    }
    let a = make_named("locomotion-v5/hopper-medium", 0.001, 0);
    let b = make_named("locomotion-v5/hopper-medium", 0.001, 0);
    assert_eq!(a.len(), 1000);
    assert_same_parquet_data(&a, &b);
    let src = &a.meta.source;
    assert_eq!(src["dataset"], "locomotion-v5/hopper-medium");
    assert_eq!(src["parts"][0]["policy"]["card"], "hopper-sac");
    assert!(src["parts"][0]["policy"]["source"]["model_sha256"].is_string());
    assert_eq!(src["versions"]["python"]["gymnasium"], "1.4.0");
    assert_eq!(a.meta.env_id, "Hopper-v5");
    // Hopper terminates when it falls: terminals come from `terminated`, never with a timeout.
    assert!((0..a.len()).all(|i| !(a.terminals[i] && a.timeouts[i])));
    assert!(a.timeouts[a.len() - 1] || a.terminals[a.len() - 1]);
    let c = make_named("locomotion-v5/hopper-medium", 0.001, 5);
    assert_ne!(a.observations, c.observations);
}

#[test]
fn offrl_collect_writes_a_dataset_and_reports_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pendulum.parquet");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_offrl"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[
        "collect",
        "--env",
        "Pendulum-v1",
        "--policy",
        "pendulum-swingup",
        "--steps",
        "500",
        "--noise",
        "0.3",
        "--seed",
        "4",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("500 transitions") && stdout.contains("2 finished episodes"),
        "{stdout}"
    );
    let d = io::load(&out).unwrap();
    assert_eq!(d.len(), 500);
    assert_eq!(d.meta.source["seed"], 4);
    assert_eq!(
        d.meta.source["parts"][0]["policy"]["builtin"],
        "pendulum-swingup"
    );
    assert_eq!((0..500).filter(|&i| d.timeouts[i]).count(), 3);

    let bad = dir.path().join("bad.parquet");
    let o = run(&[
        "collect",
        "--env",
        "Pendulum-v1",
        "--policy",
        "no-such-card",
        "--steps",
        "5",
        "-o",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no policy card `no-such-card`"));
    assert!(!bad.exists(), "no partial output");
}
