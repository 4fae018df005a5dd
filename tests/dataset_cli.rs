//! `offrl dataset ...` through the binary: bad input gives a clear error naming the problem,
//! a non-zero exit code and no output file; good input round-trips.

mod common;

use std::path::Path;

use common::*;

/// Makes the bad HDF5 files, each a D4RL-style Hopper file (obs 11, act 3, 100 rows) with one
/// defect, plus a good one.
const MAKE_FILES: &str = r#"
import sys, os, json
import numpy as np, h5py
d = sys.argv[1]
rng = np.random.default_rng(0)
n = 100
def base(obs_dim=11, rows=n):
    return {
        "observations": rng.standard_normal((rows, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (rows, 3)).astype(np.float32),
        "rewards": rng.standard_normal(rows).astype(np.float32),
        "next_observations": rng.standard_normal((rows, obs_dim)).astype(np.float32),
        "terminals": np.zeros(rows, bool),
        "timeouts": (np.arange(rows) % 50 == 49),
    }
def write(name, cols):
    with h5py.File(os.path.join(d, name), "w") as f:
        for k, v in cols.items():
            f.create_dataset(k, data=v, compression="gzip")
write("good.hdf5", base())
c = base(); del c["actions"]; write("missing-key.hdf5", c)
c = base(); c["action"] = c.pop("actions"); write("misnamed-key.hdf5", c)
c = base(); c["rewards"] = c["rewards"][:99]; write("length-mismatch.hdf5", c)
write("wrong-dims.hdf5", base(obs_dim=17))
c = base(); c["observations"][7, 2] = np.nan; c["actions"][60, 1] = np.inf; write("non-finite.hdf5", c)
write("empty.hdf5", base(rows=0))
open(os.path.join(d, "text.hdf5"), "w").write("this is not HDF5\n")
"#;

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run `args`, expect failure with every `needles` in stderr and `output` not created.
fn expect_failure(args: &[&str], needles: &[&str], output: &Path) {
    assert_fails(args, needles);
    assert!(!output.exists(), "{args:?} left {}", output.display());
    if let Some(dir) = output.parent() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".tmp"),
                "{args:?} left temporary file {name}"
            );
        }
    }
}

fn import_d4rl(file: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["dataset", "import", "--format", "d4rl", path_str(file)]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--env", "Hopper-v4", "-o", path_str(out)].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn bad_hdf5_inputs_fail_cleanly() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    run_python(&py, MAKE_FILES, &[path_str(dir.path())]);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("x.parquet");
    let cases: &[(&str, &[&str])] = &[
        (
            "does-not-exist.hdf5",
            &["does-not-exist.hdf5", "no such file"],
        ),
        ("text.hdf5", &["text.hdf5", "not a readable HDF5 file"]),
        (
            "missing-key.hdf5",
            &["missing dataset `actions`", "observations, rewards"],
        ),
        (
            "misnamed-key.hdf5",
            &["missing dataset `actions`", "action, next_observations"],
        ),
        (
            "length-mismatch.hdf5",
            &["`rewards` has 99 rows but `observations` has 100"],
        ),
        (
            "wrong-dims.hdf5",
            &["17 values per row", "Hopper-v4 observations have 11"],
        ),
        (
            "non-finite.hdf5",
            &["`observations` at row 7, dim 2", "NaN", "--drop-non-finite"],
        ),
        ("empty.hdf5", &["empty"]),
    ];
    for (file, needles) in cases {
        let args = import_d4rl(&dir.path().join(file), &out, &[]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut needles = needles.to_vec();
        needles.push(file);
        expect_failure(&args, &needles, &out);
    }
    // D4RL without --env.
    expect_failure(
        &[
            "dataset",
            "import",
            "--format",
            "d4rl",
            path_str(&dir.path().join("good.hdf5")),
            "-o",
            path_str(&out),
        ],
        &["--env"],
        &out,
    );
    // A failed import leaves an existing output file untouched.
    std::fs::write(&out, b"previous").unwrap();
    let args = import_d4rl(&dir.path().join("empty.hdf5"), &out, &[]);
    let run = offrl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!run.status.success());
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    std::fs::remove_file(&out).unwrap();

    // --drop-non-finite drops the two bad rows and keeps the rest.
    let args = import_d4rl(
        &dir.path().join("non-finite.hdf5"),
        &out,
        &["--drop-non-finite"],
    );
    let run = offrl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(run.status.success(), "{}", stderr(&run));
    let data = offrl::dataset::io::load(&out).unwrap();
    assert_eq!(data.len(), 98);
    assert_eq!(data.meta.source["dropped_non_finite"], serde_json::json!(2));
    assert_eq!(data.episodes().len(), 2);
    std::fs::remove_file(&out).unwrap();

    // Minari: missing folder, folder without data.
    let empty_dir = dir.path().join("not-minari");
    std::fs::create_dir(&empty_dir).unwrap();
    for (input, needle) in [
        (dir.path().join("nope"), "no such file"),
        (empty_dir, "not a Minari dataset"),
    ] {
        expect_failure(
            &[
                "dataset",
                "import",
                "--format",
                "minari",
                path_str(&input),
                "-o",
                path_str(&out),
            ],
            &[needle],
            &out,
        );
    }
}

#[test]
fn bad_parquet_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.parquet");
    let mut b = offrl::dataset::DatasetBuilder::new(2, 1);
    for i in 0..1000 {
        let x = i as f32;
        b.push(
            &[x, 1.0],
            &[0.5],
            1.0,
            &[x + 1.0, 1.0],
            false,
            i % 100 == 99,
        )
        .unwrap();
    }
    let meta = offrl::dataset::Metadata {
        format_version: offrl::dataset::FORMAT_VERSION,
        env_id: "Toy-v0".into(),
        obs_dim: 2,
        act_dim: 1,
        action_low: vec![-1.0],
        action_high: vec![1.0],
        source: serde_json::json!({}),
        reference_scores: None,
    };
    offrl::dataset::io::save(&b.finish(meta).unwrap(), &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.path().join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let cut_tail = dir.path().join("cut-tail.parquet");
    std::fs::write(&cut_tail, &bytes[..bytes.len() - 3]).unwrap();
    let text = dir.path().join("text.parquet");
    std::fs::write(&text, "observations,actions\n1,2\n").unwrap();
    // Footer length pointing past the start of the file.
    let corrupt = dir.path().join("corrupt-footer.parquet");
    let mut c = bytes.clone();
    let k = c.len() - 8;
    c[k..k + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&corrupt, &c).unwrap();

    let missing = dir.path().join("missing.parquet");
    for cmd in ["info", "validate"] {
        for (file, needle) in [
            (&missing, "No such file"),
            (&truncated, "not a readable Parquet file"),
            (&cut_tail, "not a readable Parquet file"),
            (&text, "not a readable Parquet file"),
            (&corrupt, "not a readable Parquet file"),
        ] {
            let out = offrl(&["dataset", cmd, path_str(file)]);
            let err = stderr(&out);
            assert!(!out.status.success(), "{cmd} {}", file.display());
            assert!(
                err.contains(needle) && err.contains(path_str(file)),
                "{cmd}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    let out = offrl(&["dataset", "validate", path_str(&good)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1000 transitions, 10 episodes"),
        "{}",
        stdout(&out)
    );
    let out = offrl(&["dataset", "info", path_str(&good)]);
    assert!(
        stdout(&out).contains("return:        min 100.00 / mean 100.00 / max 100.00"),
        "{}",
        stdout(&out)
    );
}

/// Parquet files written by other tools: missing metadata, null values, NaN, wrong widths.
#[test]
fn foreign_parquet_files_are_rejected_with_reasons() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    run_python(
        &py,
        r#"
import sys, os, json
import pyarrow as pa, pyarrow.parquet as pq
d = sys.argv[1]
def table(obs, meta, nulls=False):
    n = len(obs)
    t = pa.table({
        "observations": pa.array(obs, pa.list_(pa.float32(), 2)),
        "actions": pa.array([[0.0]] * n, pa.list_(pa.float32(), 1)),
        "rewards": pa.array([None] + [1.0] * (n - 1) if nulls else [1.0] * n, pa.float32()),
        "next_observations": pa.array(obs, pa.list_(pa.float32(), 2)),
        "terminals": pa.array([False] * n),
        "timeouts": pa.array([False] * n),
    })
    return t.replace_schema_metadata({"offrl": json.dumps(meta)} if meta else None)
meta = {"format_version": 1, "env_id": "Toy-v0", "obs_dim": 2, "act_dim": 1, "action_low": [-1.0],
        "action_high": [1.0], "source": {}, "reference_scores": None}
obs = [[float(i), 0.0] for i in range(10)]
pq.write_table(table(obs, None), os.path.join(d, "no-meta.parquet"))
pq.write_table(table(obs, meta, nulls=True), os.path.join(d, "nulls.parquet"))
item_null = [list(o) for o in obs]; item_null[5][0] = None
pq.write_table(table(item_null, meta), os.path.join(d, "item-null.parquet"))
nan = [list(o) for o in obs]; nan[4][1] = float("nan")
pq.write_table(table(nan, meta), os.path.join(d, "nan.parquet"))
pq.write_table(table(obs, dict(meta, obs_dim=3)), os.path.join(d, "wrong-dims.parquet"))
pq.write_table(table(obs, meta), os.path.join(d, "ok.parquet"))
"#,
        &[path_str(dir.path())],
    );
    for (file, needle) in [
        ("no-meta.parquet", "no `offrl` key"),
        ("nulls.parquet", "column `rewards` has null values"),
        ("item-null.parquet", "column `observations` has null values"),
        ("nan.parquet", "`observations` at row 4, dim 1"),
        (
            "wrong-dims.parquet",
            "column `observations` has type FixedSizeList",
        ),
    ] {
        let out = offrl(&["dataset", "validate", path_str(&dir.path().join(file))]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{file}");
        assert!(err.contains(needle) && err.contains(file), "{file}: {err}");
    }
    // A file pyarrow wrote in the same layout loads.
    let ok = offrl::dataset::io::load(&dir.path().join("ok.parquet")).unwrap();
    assert_eq!(ok.len(), 10);
    assert_eq!(ok.observation(3), &[3.0, 0.0]);
}

#[test]
fn list_shows_the_fixture_cards() {
    let out = offrl(&["dataset", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for name in [
        "d4rl-fixtures/hopper-expert-cs285",
        "d4rl-fixtures/halfcheetah-expert-cs285",
        "d4rl-fixtures/walker2d-expert-cs285",
        "minari-fixtures/pendulum-expert-imitation",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let out = offrl(&["dataset", "make", "no/such-dataset"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no dataset named `no/such-dataset`"));
}

/// Flags out of their range are refused by name before any work (`--steps 0` used to collect
/// nothing, `--noise nan` to pass NaN on, `--seeds 0` to run an empty grid).
#[test]
fn out_of_range_flags_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.parquet");
    let o = path_str(&out);
    let collect = [
        "collect",
        "--env",
        "Pendulum-v1",
        "--policy",
        "random",
        "-o",
        o,
    ];
    assert_fails(
        &[&collect[..], &["--steps", "0"]].concat(),
        &["--steps", "0"],
    );
    for noise in ["--noise=nan", "--noise=-1"] {
        assert_fails(
            &[&collect[..], &["--steps", "10", noise]].concat(),
            &["--noise", "not a finite number ≥ 0"],
        );
    }
    assert!(!out.exists());
    assert_fails(&["bench", "--seeds", "0"], &["--seeds", "0"]);
}
