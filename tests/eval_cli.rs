//! `offrl eval` through the binary: models trained for a few steps on a native Pendulum dataset
//! made here, evaluated from their run directories; reports, reproducibility, reference
//! returns, IDQL, and clear errors.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use offrl::train::checkpoint::Checkpoint;
use serde_json::Value;

/// Pendulum reference returns of the registry's cards (datasets/pendulum/*.toml).
const PENDULUM_REF: (f64, f64) = (-1222.1, -146.6);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = offrl(args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// A native Pendulum dataset (swing-up controller + noise, no reference returns in it).
fn pendulum_dataset(dir: &Path) -> PathBuf {
    let path = dir.join("pendulum.parquet");
    ok(&[
        "collect",
        "--env",
        "Pendulum-v1",
        "--policy",
        "pendulum-swingup",
        "--noise",
        "1.0",
        "--steps",
        "1000",
        "--seed",
        "1",
        "-o",
        s(&path),
    ]);
    path
}

/// `offrl train <model>` for a few updates of a small network; returns the run directory.
fn train(model: &str, data: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "train",
        model,
        "--dataset",
        s(data),
        "--out",
        s(out),
        "--seed",
        "2",
    ];
    for set in [
        "train.steps=5",
        "train.batch_size=32",
        "train.log_every=5",
        "train.checkpoint_every=0",
    ]
    .iter()
    .chain(extra)
    {
        args.extend(["--set", set]);
    }
    ok(&args);
    out.to_path_buf()
}

fn eval_json(args: &[&str], json: &Path) -> (String, Value) {
    let mut all = vec!["eval"];
    all.extend_from_slice(args);
    all.extend(["--json", s(json)]);
    let text = ok(&all);
    let report = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (text, report)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn bc_run_is_evaluated_with_reproducible_numbers_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let data = pendulum_dataset(dir.path());
    let run = train("bc", &data, &dir.path().join("bc"), &["actor_net.width=32"]);

    // The run records its dataset's environment with every checkpoint.
    let ck = Checkpoint::resolve(&run).unwrap();
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["extra"]["dataset"]["env_id"], "Pendulum-v1");

    let json = dir.path().join("a.json");
    let args = [
        "--checkpoint",
        s(&run),
        "--episodes",
        "3",
        "--envs",
        "2",
        "--seed",
        "5",
    ];
    let (text, a) = eval_json(&args, &json);
    assert_eq!(a["kind"], "bc");
    assert_eq!(a["env_id"], "Pendulum-v1");
    assert_eq!(a["step"], 5);
    let returns = floats(&a["returns"]);
    assert_eq!(returns.len(), 3);
    assert!(
        returns.iter().all(|r| r.is_finite() && *r < 0.0),
        "{returns:?}"
    );
    assert_eq!(a["lengths"], serde_json::json!([200, 200, 200]));
    let mean = returns.iter().sum::<f64>() / 3.0;
    let std = (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
    assert!((a["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    assert!((a["std"].as_f64().unwrap() - std).abs() < 1e-9);
    // No reference returns in the data or the run: the registry's Pendulum cards give them.
    let (random, expert) = PENDULUM_REF;
    let want = 100.0 * (mean - random) / (expert - random);
    assert!(
        (a["normalized"].as_f64().unwrap() - want).abs() < 1e-9,
        "{a}"
    );
    // The printed report: one line per episode (seeds 5, 6, 7) and the summary.
    for (k, r) in returns.iter().enumerate() {
        let line = format!("episode {k} (seed {}): return {r:.3}, 200 steps", 5 + k);
        assert!(text.contains(&line), "`{line}` not in:\n{text}");
    }
    assert!(
        text.contains(&format!(
            "return {mean:.1} ± {std:.1} over 3 episodes, normalised score"
        )),
        "{text}"
    );

    // Same seed → same numbers (also with another number of parallel environments); another
    // seed → other episodes.
    let (_, again) = eval_json(&args, &json);
    assert_eq!(again, a);
    let (_, three_envs) = eval_json(
        &[
            "--checkpoint",
            s(&run),
            "--episodes",
            "3",
            "--envs",
            "3",
            "--seed",
            "5",
        ],
        &json,
    );
    assert_eq!(three_envs["returns"], a["returns"]);
    let (_, other) = eval_json(
        &["--checkpoint", s(&run), "--episodes", "3", "--seed", "6"],
        &json,
    );
    assert_eq!(floats(&other["returns"])[..2], returns[1..]);

    // --dataset: its metadata's reference returns win.
    let mut custom = offrl::dataset::io::load(&data).unwrap();
    custom.meta.reference_scores = Some(offrl::dataset::ReferenceScores {
        random: -2000.0,
        expert: 0.0,
    });
    let custom_path = dir.path().join("custom.parquet");
    offrl::dataset::io::save(&custom, &custom_path).unwrap();
    let (_, d) = eval_json(
        &[
            "--checkpoint",
            s(&ck),
            "--dataset",
            s(&custom_path),
            "--episodes",
            "3",
            "--seed",
            "5",
        ],
        &json,
    );
    assert_eq!(d["returns"], a["returns"]);
    let want = 100.0 * (mean + 2000.0) / 2000.0;
    assert!(
        (d["normalized"].as_f64().unwrap() - want).abs() < 1e-9,
        "{d}"
    );
}

#[test]
fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = pendulum_dataset(dir.path());
    let run = train("bc", &data, &dir.path().join("bc"), &["actor_net.width=8"]);
    let json = dir.path().join("never.json");
    let j = s(&json);

    // Environment dims differ from the model's (Nav2d: obs 2, act 2; Pendulum: obs 3, act 1).
    assert_fails(
        &[
            "eval",
            "--checkpoint",
            s(&run),
            "--env",
            "Nav2d-v0",
            "--json",
            j,
        ],
        &["Nav2d-v0", "obs 2 / act 2", "obs 3 / act 1"],
    );
    // Missing checkpoint; a folder that is neither a checkpoint nor a run.
    let missing = dir.path().join("nope");
    assert_fails(
        &["eval", "--checkpoint", s(&missing), "--json", j],
        &["nope", "no such file or directory"],
    );
    assert_fails(
        &["eval", "--checkpoint", s(dir.path()), "--json", j],
        &["neither a checkpoint folder"],
    );
    // IDQL options on a model that is not a prior.
    assert_fails(
        &[
            "eval",
            "--checkpoint",
            s(&run),
            "--critic",
            s(&run),
            "--json",
            j,
        ],
        &["needs a diffusion prior checkpoint", "`bc`"],
    );
    assert_fails(
        &[
            "eval",
            "--checkpoint",
            s(&run),
            "--set",
            "samples=4",
            "--json",
            j,
        ],
        // Without --critic, --set patches the model's own config: IDQL's keys are unknown there.
        &["unknown config key `samples`", "bc/checkpoints"],
    );
    // Unknown kind.
    let ck = Checkpoint::resolve(&run).unwrap();
    let meta_path = ck.join("meta.json");
    let text = std::fs::read_to_string(&meta_path).unwrap();
    let mut meta: Value = serde_json::from_str(&text).unwrap();
    meta["kind"] = "sac".into();
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    assert_fails(
        &["eval", "--checkpoint", s(&ck), "--json", j],
        &["unknown algorithm `sac`", "bc"],
    );
    // A checkpoint that does not record its environment needs --env.
    meta["kind"] = "bc".into();
    meta["extra"].as_object_mut().unwrap().remove("dataset");
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    assert_fails(
        &["eval", "--checkpoint", s(&ck), "--json", j],
        &["does not record the environment", "--env"],
    );
    ok(&[
        "eval",
        "--checkpoint",
        s(&ck),
        "--env",
        "Pendulum-v1",
        "--episodes",
        "1",
    ]);
    assert!(!json.exists());
}

/// Every other kind `offrl train` makes evaluates too: CQL and the diffusion prior (diffusion
/// BC) directly, the prior with an IQL critic as IDQL (with `--set` overrides).
#[test]
fn cql_prior_and_idql_are_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let data = pendulum_dataset(dir.path());
    let json = dir.path().join("r.json");
    let small = ["actor_net.width=16", "critic_net.width=16"];
    let cql = train("cql", &data, &dir.path().join("cql"), &small);
    let critic = train(
        "critic",
        &data,
        &dir.path().join("critic"),
        &["critic_net.width=16"],
    );
    let prior = train(
        "prior",
        &data,
        &dir.path().join("prior"),
        &["schedule.steps=5", "net.width=16", "net.time_harmonics=4"],
    );
    let episodes = ["--episodes", "2", "--envs", "2"];
    for (run, kind) in [(&cql, "cql"), (&prior, "diffusion-bc")] {
        let mut args = vec!["--checkpoint", s(run)];
        args.extend(episodes);
        let (_, r) = eval_json(&args, &json);
        assert_eq!(r["kind"], kind);
        assert!(r["idql"].is_null());
        assert!(floats(&r["returns"]).iter().all(|x| x.is_finite()), "{r}");
    }
    let mut args = vec![
        "--checkpoint",
        s(&prior),
        "--critic",
        s(&critic),
        "--set",
        "samples=4",
    ];
    args.extend(episodes);
    let (_, a) = eval_json(&args, &json);
    assert_eq!(a["kind"], "diffusion-bc");
    assert_eq!(a["idql"]["samples"], 4);
    assert_eq!(floats(&a["returns"]).len(), 2);
    let (_, b) = eval_json(&args, &json);
    assert_eq!(a, b, "IDQL with the same seed gives the same numbers");
    // The critic alone has no policy; the error says how to use it.
    assert_fails(
        &["eval", "--checkpoint", s(&critic)],
        &["critic only", "--critic"],
    );
}

/// File and folder names that are not UTF-8 work (`eval --json` used to panic serialising
/// them); where a path must become config text (RTB's `--prior`), the error says why.
#[cfg(unix)]
#[test]
fn names_that_are_not_utf8() {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let odd = |stem: &[u8]| -> PathBuf {
        let mut name = stem.to_vec();
        name.push(0xe9); // Latin-1 'é': not UTF-8 on its own
        dir.path().join(OsStr::from_bytes(&name))
    };
    let data = odd(b"data");
    std::fs::copy(pendulum_dataset(dir.path()), &data).unwrap();
    let (run, json) = (odd(b"run"), odd(b"eval.json"));
    let run_offrl = |args: &[&OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_offrl"))
            .args(args)
            .output()
            .unwrap()
    };
    let os = |s: &str| OsString::from(s);
    let mut train_args = vec![os("train"), os("bc"), os("--dataset"), data.clone().into()];
    train_args.extend([os("--out"), run.clone().into()]);
    for set in ["train.steps=5", "train.batch_size=32", "actor_net.width=8"] {
        train_args.extend([os("--set"), os(set)]);
    }
    let refs: Vec<&OsStr> = train_args.iter().map(OsString::as_os_str).collect();
    let out = run_offrl(&refs);
    assert!(out.status.success(), "{}", stderr(&out));
    let eval_args = [
        os("eval"),
        os("--checkpoint"),
        run.clone().into(),
        os("--dataset"),
        data.clone().into(),
        os("--episodes"),
        os("1"),
        os("--json"),
        json.clone().into(),
    ];
    let refs: Vec<&OsStr> = eval_args.iter().map(OsString::as_os_str).collect();
    let out = run_offrl(&refs);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report["checkpoint"]
        .as_str()
        .unwrap()
        .contains("run\u{fffd}"));

    let rtb_args = [
        os("train"),
        os("rtb"),
        os("--dataset"),
        data.clone().into(),
        os("--prior"),
        run.clone().into(),
        os("--critic"),
        run.clone().into(),
        os("--out"),
        dir.path().join("rtb").into(),
    ];
    let refs: Vec<&OsStr> = rtb_args.iter().map(OsString::as_os_str).collect();
    let out = run_offrl(&refs);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("--prior") && err.contains("not valid UTF-8"),
        "{err}"
    );
}
