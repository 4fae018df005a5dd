//! Importing the real D4RL and Minari fixtures: every value of every column equals what
//! h5py / Minari read, and episode boundaries and returns match the documented ones.

mod common;

use std::path::Path;

use common::*;
use offrl::dataset::{io, Dataset};

/// Writes each column as read by h5py (d4rl) or Minari (minari; h5py if minari is missing)
/// to OUT/<column>.bin (little-endian f32, bools as bytes) and OUT/ref.json with the
/// episode lengths and returns (float64 sums).
const REFERENCE: &str = r#"
import json, sys
import numpy as np
mode, src, out = sys.argv[1:4]
cols = {}
if mode == "d4rl":
    import h5py
    reader = "h5py"
    with h5py.File(src, "r") as f:
        for k in ["observations", "actions", "rewards", "next_observations", "terminals", "timeouts"]:
            cols[k] = f[k][()]
    ends = np.flatnonzero(cols["terminals"] | cols["timeouts"]).tolist()
    if not ends or ends[-1] != len(cols["rewards"]) - 1:
        ends.append(len(cols["rewards"]) - 1)
    starts = [0] + [e + 1 for e in ends[:-1]]
    lengths = [e + 1 - s for s, e in zip(starts, ends)]
    returns = [float(cols["rewards"][s:e + 1].astype(np.float64).sum()) for s, e in zip(starts, ends)]
else:
    try:
        from minari import MinariDataset
        reader = "minari"
        eps = list(MinariDataset(src + "/data").iterate_episodes())
        get = lambda e, k: getattr(e, k)
    except ImportError:
        import h5py
        reader = "h5py (minari not installed)"
        f = h5py.File(src + "/data/main_data.hdf5", "r")
        eps = [f[k] for k in sorted(f.keys(), key=lambda k: int(k.split("_")[1]))]
        get = lambda e, k: e[k][()]
    obs = [np.asarray(get(e, "observations")) for e in eps]
    cols["observations"] = np.concatenate([o[:-1] for o in obs])
    cols["next_observations"] = np.concatenate([o[1:] for o in obs])
    cols["actions"] = np.concatenate([get(e, "actions") for e in eps])
    rewards = [np.asarray(get(e, "rewards")) for e in eps]
    cols["rewards"] = np.concatenate(rewards)
    cols["terminals"] = np.concatenate([get(e, "terminations") for e in eps])
    # An episode cut without a flag (collection stopped) ends in a time-out, as offrl documents.
    truncs = [np.array(get(e, "truncations"), bool) for e in eps]
    for e, t in zip(eps, truncs):
        if len(t) and not get(e, "terminations")[-1]:
            t[-1] = True
    cols["timeouts"] = np.concatenate(truncs)
    lengths = [len(r) for r in rewards]
    # Returns of the rewards as offrl stores them (float32, as D4RL's qlearning_dataset casts).
    returns = [float(r.astype(np.float32).astype(np.float64).sum()) for r in rewards]
for k, v in cols.items():
    dtype = "u1" if k in ("terminals", "timeouts") else "<f4"
    open(f"{out}/{k}.bin", "wb").write(np.ascontiguousarray(v).astype(dtype).tobytes())
json.dump({"reader": reader, "lengths": lengths, "returns": returns}, open(f"{out}/ref.json", "w"))
"#;

struct Reference {
    reader: String,
    lengths: Vec<usize>,
    returns: Vec<f64>,
}

/// Compare every column bit for bit with the reference files, and the episodes.
fn check_against_reference(py: &Path, mode: &str, src: &Path, data: &Dataset) -> Reference {
    let dir = tempfile::tempdir().unwrap();
    run_python(
        py,
        REFERENCE,
        &[mode, src.to_str().unwrap(), dir.path().to_str().unwrap()],
    );
    let f = |name: &str| read_f32(&dir.path().join(format!("{name}.bin")));
    let b = |name: &str| read_bool(&dir.path().join(format!("{name}.bin")));
    assert_bits_eq("observations", &data.observations, &f("observations"));
    assert_bits_eq("actions", &data.actions, &f("actions"));
    assert_bits_eq("rewards", &data.rewards, &f("rewards"));
    assert_bits_eq(
        "next_observations",
        &data.next_observations,
        &f("next_observations"),
    );
    assert_eq!(data.terminals, b("terminals"), "terminals");
    assert_eq!(data.timeouts, b("timeouts"), "timeouts");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ref.json")).unwrap())
            .unwrap();
    let reference = Reference {
        reader: json["reader"].as_str().unwrap().to_string(),
        lengths: serde_json::from_value(json["lengths"].clone()).unwrap(),
        returns: serde_json::from_value(json["returns"].clone()).unwrap(),
    };
    let lengths: Vec<usize> = data.episodes().iter().map(|r| r.len()).collect();
    assert_eq!(lengths, reference.lengths, "episode lengths");
    for (got, want) in data.episode_returns().iter().zip(&reference.returns) {
        assert!((got - want).abs() < 1e-6, "episode return {got} vs {want}");
    }
    reference
}

/// `offrl dataset import --format minari SRC -o FILE`, then the file loaded.
fn import_minari(src: &Path, file: &Path) -> Dataset {
    let run = offrl(&[
        "dataset",
        "import",
        "--format",
        "minari",
        src.to_str().unwrap(),
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}: {}", src.display(), stderr(&run));
    io::load(file).unwrap()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn d4rl_fixtures_import_exactly() {
    let (Some(shared), Some(py)) = (shared_dir(), python()) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    // (fixture, env, documented mean episode return): hopper through `import`, the others
    // through their registry cards (`make`).
    for (name, env, documented) in [
        ("hopper", "Hopper-v4", 3717.0),
        ("halfcheetah", "HalfCheetah-v4", 4035.0),
        ("walker2d", "Walker2d-v4", 5383.0),
    ] {
        let src = shared.join(format!("fixtures/d4rl/{name}-expert-cs285-v4.hdf5"));
        let file = out.path().join(format!("{name}.parquet"));
        let run = if name == "hopper" {
            offrl(&[
                "dataset",
                "import",
                "--format",
                "d4rl",
                src.to_str().unwrap(),
                "--env",
                env,
                "-o",
                file.to_str().unwrap(),
            ])
        } else {
            let card = format!("d4rl-fixtures/{name}-expert-cs285");
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_offrl"));
            cmd.args(["dataset", "make", &card, "-o", file.to_str().unwrap()])
                .env("OFFRL_SHARED", &shared);
            cmd.output().unwrap()
        };
        assert!(run.status.success(), "{name}: {}", stderr(&run));
        let data = io::load(&file).unwrap();
        assert_eq!(data.meta.env_id, env);
        assert_eq!(data.len(), 2000);
        assert_eq!(data.episodes(), vec![0..1000, 1000..2000], "{name}");
        let reference = check_against_reference(&py, "d4rl", &src, &data);
        assert_eq!(reference.reader, "h5py");
        let returns = data.episode_returns();
        assert!(
            (mean(&returns) - documented).abs() < 1.0,
            "{name}: mean return {} vs documented ≈ {documented}",
            mean(&returns)
        );
        let r = data.meta.reference_scores.expect("D4RL reference returns");
        assert_eq!(r, offrl::dataset::reference_scores_for(env).unwrap());
        assert!(stdout(&run).contains("normalised:"), "{}", stdout(&run));
    }
}

#[test]
fn minari_fixture_imports_exactly() {
    let (Some(shared), Some(py)) = (shared_dir(), python()) else {
        return;
    };
    let src = shared.join("fixtures/minari/pendulum/expert-imitation-v0");
    let out = tempfile::tempdir().unwrap();
    let data = import_minari(&src, &out.path().join("pendulum.parquet"));
    assert_eq!(data.meta.env_id, "Pendulum-v1");
    assert_eq!((data.obs_dim(), data.act_dim()), (3, 1));
    assert_eq!(
        (data.meta.action_low.clone(), data.meta.action_high.clone()),
        (vec![-2.0], vec![2.0])
    );
    assert_eq!(data.len(), 11_200);
    assert_eq!(data.episodes().len(), 56);
    assert!(data.episodes().iter().all(|r| r.len() == 200));
    // Each episode ends in a truncation (200-step time limit), never a termination.
    assert_eq!(data.timeouts.iter().filter(|&&t| t).count(), 56);
    assert!(data.terminals.iter().all(|&t| !t));
    let reference = check_against_reference(&py, "minari", &src, &data);
    // minari is pinned in envs/python/requirements.txt, so the comparison is against Minari itself.
    assert_eq!(reference.reader, "minari");
    let returns = data.episode_returns();
    assert!(
        returns.iter().all(|&r| (-600.0..0.0).contains(&r)),
        "{returns:?}"
    );
}

/// A D4RL file without `next_observations`: the next observation comes from the following row
/// and each episode's time-out row is dropped (D4RL `qlearning_dataset`), its predecessor
/// becoming the episode's last row.
#[test]
fn d4rl_without_next_observations_follows_qlearning_dataset() {
    let (Some(shared), Some(py)) = (shared_dir(), python()) else {
        return;
    };
    let src = shared.join("fixtures/d4rl/hopper-expert-cs285-v4.hdf5");
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("no-next.hdf5");
    run_python(
        &py,
        r#"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f, h5py.File(sys.argv[2], "w") as g:
    for k in ["observations", "actions", "rewards", "terminals", "timeouts"]:
        g.create_dataset(k, data=f[k][()], compression="gzip")
"#,
        &[src.to_str().unwrap(), stripped.to_str().unwrap()],
    );
    let hopper_v4 = offrl::dataset::columns::ImportOptions {
        env: Some("Hopper-v4".into()),
        ..Default::default()
    };
    let full = offrl::dataset::importer::import(
        offrl::dataset::registry::ImportFormat::D4rl,
        &src,
        &hopper_v4,
    )
    .unwrap();
    let data = offrl::dataset::importer::import(
        offrl::dataset::registry::ImportFormat::D4rl,
        &stripped,
        &hopper_v4,
    )
    .unwrap();
    assert_eq!(data.len(), 1998);
    assert_eq!(data.episodes(), vec![0..999, 999..1998]);
    assert!(data.timeouts[998] && data.timeouts[1997]);
    // Kept rows are the file's rows 0..999 and 1000..1999; in this fixture the stored next
    // observations equal the following row's, so both imports agree on every kept row.
    let kept: Vec<usize> = (0..999).chain(1000..1999).collect();
    for (k, &i) in kept.iter().enumerate() {
        assert_eq!(data.observation(k), full.observation(i));
        assert_eq!(
            data.next_observation(k),
            full.next_observation(i),
            "row {i}"
        );
        assert_eq!(data.action(k), full.action(i));
        assert_eq!(data.rewards[k], full.rewards[i]);
    }
    assert_eq!(
        data.meta.source["dropped_rows_without_next_observation"],
        serde_json::json!(2)
    );
}

/// Writes one small Pendulum dataset with Minari itself in each of its storages (hdf5, arrow,
/// parquet) under OUT/<format>: three episodes of 25, 30 and 17 steps, the second ending in a
/// termination (set by hand: Pendulum never terminates), the last cut without a flag.
const MINARI_STORAGES: &str = r#"
import os, sys, warnings
import numpy as np
import gymnasium as gym
out = sys.argv[1]
os.environ["MINARI_DATASETS_PATH"] = out
warnings.simplefilter("ignore")
import minari
from minari.data_collector import EpisodeBuffer
env = gym.make("Pendulum-v1")
env.action_space.seed(0)
buffers = []
for ep, steps in enumerate([25, 30, 17]):
    o, _ = env.reset(seed=ep)
    obs, acts, rews = [o], [], []
    for t in range(steps):
        a = env.action_space.sample()
        o, r, _, _, _ = env.step(a)
        obs.append(o); acts.append(a); rews.append(r)
    term = np.zeros(steps, bool); trunc = np.zeros(steps, bool)
    if ep == 0: trunc[-1] = True
    if ep == 1: term[-1] = True
    buffers.append(EpisodeBuffer(id=ep, observations=np.array(obs), actions=np.array(acts),
                                 rewards=np.array(rews), terminations=term, truncations=trunc))
for fmt in ("hdf5", "arrow", "parquet"):
    minari.create_dataset_from_buffers(f"offrl/{fmt}-v0", buffers, env=env,
                                       algorithm_name="random", data_format=fmt)
"#;

/// Minari's arrow and parquet storages import natively (no Python in the reading), every value
/// as Minari itself reads it, and equal to the same episodes in its HDF5 storage.
#[test]
fn minari_storages_import_exactly() {
    let Some(py) = python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    run_python(&py, MINARI_STORAGES, &[dir.path().to_str().unwrap()]);
    let mut imported = Vec::new();
    for fmt in ["hdf5", "arrow", "parquet"] {
        let src = dir.path().join(format!("offrl/{fmt}-v0"));
        let data = import_minari(&src, &dir.path().join(format!("{fmt}.parquet")));
        let reference = check_against_reference(&py, "minari", &src, &data);
        assert_eq!(reference.reader, "minari");
        assert_eq!(data.len(), 25 + 30 + 17, "{fmt}");
        assert_eq!(data.meta.source["storage"], fmt);
        // Episode ends: a truncation, a termination, and a cut marked a time-out.
        assert!(
            data.timeouts[24] && data.terminals[54] && data.timeouts[71],
            "{fmt}"
        );
        imported.push(data);
    }
    for other in &imported[1..] {
        assert_eq!(other.fingerprint(), imported[0].fingerprint());
    }
}
