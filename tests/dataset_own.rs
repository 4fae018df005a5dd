//! A user's own transition file in: D4RL column names in Parquet, Arrow IPC or `.npz`, in the
//! layouts other writers use, imported exactly; bad files refused with the file and column named
//! and nothing written.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, Float64Builder, ListBuilder};
use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int8Array, RecordBatch, StringArray,
};
use common::*;
use offrl::dataset::columns::ImportOptions;
use offrl::dataset::registry::ImportFormat;

const N: usize = 10;
const OD: usize = 3;
const AD: usize = 2;

/// Two episodes: rows 0..5 end in a terminal, rows 5..10 in a time-out. Values that f64 → f32
/// rounds (0.1 steps) so that the conversion is exercised.
struct Known {
    obs: Vec<f64>,
    next: Vec<f64>,
    act: Vec<f32>,
    rew: Vec<f64>,
    term: Vec<bool>,
    tout: Vec<bool>,
}

fn known() -> Known {
    let obs: Vec<f64> = (0..N * OD).map(|i| 0.1 * i as f64 - 1.3).collect();
    let next: Vec<f64> = (0..N * OD).map(|i| 0.1 * (i + OD) as f64 - 1.3).collect();
    Known {
        obs,
        next,
        act: (0..N * AD).map(|i| (i as f32 / 10.0) - 0.95).collect(),
        rew: (0..N).map(|i| 1.0 / (1.0 + i as f64)).collect(),
        term: (0..N).map(|i| i == 4).collect(),
        tout: (0..N).map(|i| i == 9).collect(),
    }
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn fixed_f64(values: &[f64], width: usize) -> ArrayRef {
    let mut b = FixedSizeListBuilder::new(Float64Builder::new(), width as i32);
    for row in values.chunks(width) {
        b.values().append_slice(row);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn list_f32(values: &[f32], width: usize) -> ArrayRef {
    let mut b = ListBuilder::new(Float32Builder::new());
    for row in values.chunks(width) {
        b.values().append_slice(row);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns.into_iter().map(|(n, a)| (n.to_string(), a))).unwrap()
}

fn write_parquet(path: &Path, b: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, b.schema(), None).unwrap();
    w.write(b).unwrap();
    w.close().unwrap();
}

fn write_arrow(path: &Path, b: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = arrow_ipc::writer::FileWriter::try_new(file, &b.schema()).unwrap();
    w.write(b).unwrap();
    w.finish().unwrap();
}

/// Every D4RL column, in the layouts of other writers: f64 fixed-size lists, a variable-size
/// list, f64 scalars, booleans and 0/1 integers.
fn d4rl_batch(k: &Known) -> RecordBatch {
    batch(vec![
        ("observations", fixed_f64(&k.obs, OD)),
        ("next_observations", fixed_f64(&k.next, OD)),
        ("actions", list_f32(&k.act, AD)),
        ("rewards", Arc::new(Float64Array::from(k.rew.clone()))),
        ("terminals", Arc::new(BooleanArray::from(k.term.clone()))),
        (
            "timeouts",
            Arc::new(Int8Array::from_iter_values(k.tout.iter().map(|&t| t as i8))),
        ),
        ("info", Arc::new(StringArray::from(vec!["x"; N]))),
    ])
}

fn no_env() -> ImportOptions {
    ImportOptions {
        obs_dim: Some(OD),
        act_dim: Some(AD),
        ..Default::default()
    }
}

#[test]
fn parquet_with_d4rl_columns_imports_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let k = known();
    let file = dir.path().join("mine.parquet");
    write_parquet(&file, &d4rl_batch(&k));
    let data = offrl::dataset::importer::import(ImportFormat::Parquet, &file, &no_env()).unwrap();
    assert_eq!((data.len(), data.obs_dim(), data.act_dim()), (N, OD, AD));
    assert_eq!(data.observations, f32s(&k.obs));
    assert_eq!(data.next_observations, f32s(&k.next));
    assert_eq!(data.actions, k.act);
    assert_eq!(data.rewards, f32s(&k.rew));
    assert_eq!(
        (data.terminals.clone(), data.timeouts.clone()),
        (k.term.clone(), k.tout.clone())
    );
    assert_eq!(data.episodes(), vec![0..5, 5..10]);
    // No environment: recorded as such, actions in [-1, 1] give the unit box.
    assert_eq!(data.meta.env_id, "none");
    assert_eq!(data.meta.action_low, vec![-1.0; AD]);
    let converted = data.meta.source["converted"].to_string();
    for c in ["observations: float64", "rewards: float64"] {
        assert!(converted.contains(c), "{converted}");
    }
    assert!(!converted.contains("actions"), "{converted}");

    // The same file with an environment: its spaces, its reference returns.
    let mut hopper = d4rl_batch(&k);
    let obs11: Vec<f64> = (0..N * 11).map(|i| i as f64).collect();
    let act3: Vec<f32> = (0..N * 3).map(|i| (i % 7) as f32 / 7.0).collect();
    hopper = batch(vec![
        ("observations", fixed_f64(&obs11, 11)),
        ("next_observations", fixed_f64(&obs11, 11)),
        ("actions", list_f32(&act3, 3)),
        ("rewards", hopper.column(3).clone()),
        ("terminals", hopper.column(4).clone()),
        ("timeouts", hopper.column(5).clone()),
    ]);
    let file = dir.path().join("hopper.parquet");
    write_parquet(&file, &hopper);
    let env = ImportOptions {
        env: Some("Hopper-v5".into()),
        ..Default::default()
    };
    let data = offrl::dataset::importer::import(ImportFormat::Parquet, &file, &env).unwrap();
    assert_eq!(data.meta.env_id, "Hopper-v5");
    assert!(data.meta.reference_scores.is_some());
}

#[test]
fn arrow_per_dimension_columns_without_next_observations_follow_d4rl() {
    let dir = tempfile::tempdir().unwrap();
    let k = known();
    let mut cols: Vec<(String, ArrayRef)> = Vec::new();
    for j in 0..OD {
        let v: Vec<f32> = (0..N).map(|i| k.obs[i * OD + j] as f32).collect();
        cols.push((format!("observations_{j}"), Arc::new(Float32Array::from(v))));
    }
    for j in (0..AD).rev() {
        let v: Vec<f32> = (0..N).map(|i| k.act[i * AD + j]).collect();
        cols.push((format!("actions_{j}"), Arc::new(Float32Array::from(v))));
    }
    cols.push(("rewards".into(), Arc::new(Float32Array::from(f32s(&k.rew)))));
    cols.push((
        "terminals".into(),
        Arc::new(BooleanArray::from(k.term.clone())),
    ));
    cols.push((
        "timeouts".into(),
        Arc::new(BooleanArray::from(k.tout.clone())),
    ));
    let b = RecordBatch::try_from_iter(cols).unwrap();
    let file = dir.path().join("mine.arrow");
    write_arrow(&file, &b);
    let data = offrl::dataset::importer::import(ImportFormat::Arrow, &file, &no_env()).unwrap();
    // Row 9 (the time-out) has no next observation: dropped, row 8 ends the episode. Every
    // other row's next observation is the following row's (the terminal's is never used).
    assert_eq!(data.len(), N - 1);
    assert_eq!(data.observations, f32s(&k.obs[..(N - 1) * OD]));
    assert_eq!(data.actions, k.act[..(N - 1) * AD].to_vec());
    for i in (0..N - 1).filter(|&i| i != 4) {
        assert_eq!(
            data.next_observation(i),
            &f32s(&k.obs[(i + 1) * OD..(i + 2) * OD])[..],
            "row {i}"
        );
    }
    assert_eq!(data.episodes(), vec![0..5, 5..9]);
    assert!(data.timeouts[8] && data.terminals[4]);
}

/// A Parquet file of `columns` in a fresh folder: `(folder, file)`.
fn parquet_of(columns: Vec<(&str, ArrayRef)>) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.parquet");
    write_parquet(&file, &batch(columns));
    (dir, file)
}

#[test]
fn bad_files_are_refused_naming_file_and_column() {
    let k = known();
    let good = || -> Vec<(&'static str, ArrayRef)> {
        let b = d4rl_batch(&k);
        [
            "observations",
            "next_observations",
            "actions",
            "rewards",
            "terminals",
            "timeouts",
        ]
        .into_iter()
        .zip(b.columns().iter().cloned())
        .collect()
    };
    let with = |name: &'static str, col: Option<ArrayRef>| {
        let mut cols: Vec<_> = good().into_iter().filter(|(n, _)| *n != name).collect();
        if let Some(c) = col {
            cols.push((name, c));
        }
        cols
    };
    let mut ragged = ListBuilder::new(Float32Builder::new());
    for i in 0..N {
        ragged
            .values()
            .append_slice(&vec![0.5; if i == 6 { 1 } else { AD }]);
        ragged.append(true);
    }
    let mut nulls: Vec<Option<f32>> = f32s(&k.rew).into_iter().map(Some).collect();
    nulls[3] = None;
    let flags = Int8Array::from_iter_values((0..N).map(|i| if i == 7 { 2 } else { 0 }));
    type Case = (Vec<(&'static str, ArrayRef)>, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        (
            with("actions", None),
            vec!["missing column `actions`", "rewards, terminals"],
        ),
        (
            with("actions", Some(Arc::new(ragged.finish()))),
            vec!["column `actions`", "row 6 has 1 values"],
        ),
        (
            with("rewards", Some(Arc::new(Float32Array::from(nulls)))),
            vec!["column `rewards`", "null at row 3"],
        ),
        (
            with("terminals", Some(Arc::new(flags))),
            vec!["`terminals` holds 2 at row 7"],
        ),
        (
            with("rewards", Some(Arc::new(StringArray::from(vec!["a"; N])))),
            vec!["column `rewards`", "not a float"],
        ),
        (
            with("actions", Some(list_f32(&[3.0; N * AD], AD))),
            vec!["actions reach", "--action-bound"],
        ),
    ];
    for (columns, needles) in cases {
        let (dir, file) = parquet_of(columns);
        let out = dir.path().join("out.parquet");
        std::fs::write(&out, b"previous").unwrap();
        let args = [
            "dataset",
            "import",
            "--format",
            "parquet",
            file.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        let mut needles = needles.clone();
        needles.push("bad.parquet");
        assert_fails(&args, &needles);
        assert_eq!(std::fs::read(&out).unwrap(), b"previous", "{needles:?}");
    }
    // Dims that disagree with the flags or the environment; a file that is not Parquet.
    let (dir, file) = parquet_of(good());
    let f = file.to_str().unwrap();
    let out = dir.path().join("out.parquet");
    let o = out.to_str().unwrap();
    let base = ["dataset", "import", "--format", "parquet", f, "-o", o];
    assert_fails(
        &[&base[..], &["--obs-dim", "4"]].concat(),
        &["--obs-dim 4", "3 values"],
    );
    assert_fails(
        &[&base[..], &["--env", "Hopper-v5"]].concat(),
        &["3 values per row", "Hopper-v5 observations have 11"],
    );
    // An environment that does not exist: one line, no Python traceback.
    let unknown = offrl(&[&base[..], &["--env", "NoSuchEnv-v0"]].concat());
    assert!(!unknown.status.success());
    let err = stderr(&unknown);
    assert!(
        err.contains("NoSuchEnv-v0") && !err.contains("Traceback"),
        "{err}"
    );
    assert!(err.trim().lines().count() <= 2, "{err}");
    std::fs::write(dir.path().join("text.parquet"), "not parquet\n").unwrap();
    let text = dir.path().join("text.parquet");
    assert_fails(
        &[
            "dataset",
            "import",
            "--format",
            "parquet",
            text.to_str().unwrap(),
            "-o",
            o,
        ],
        &["text.parquet", "not a readable Parquet file"],
    );
    assert!(!out.exists());
    // Before import, the other commands point at the import.
    assert_fails(
        &["dataset", "info", f],
        &["not an offrl dataset", "dataset import --format parquet"],
    );
    // The good file imports, and the result is a dataset every command reads.
    let run = offrl(&base);
    assert!(run.status.success(), "{}", stderr(&run));
    let info = offrl(&["dataset", "info", o]);
    assert!(
        stdout(&info).contains("transitions:   10"),
        "{}",
        stdout(&info)
    );
}

/// What users of NumPy and pyarrow write: `np.savez` with 2-D arrays, and a pyarrow table of
/// lists (pyarrow's own `list<item: double>` type), with the issue's exact column names.
const WRITE_NUMPY_AND_PYARROW: &str = r#"
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq
d = sys.argv[1]
rng = np.random.default_rng(0)
n = 200
cols = {
    "observations": rng.standard_normal((n, 11)),
    "actions": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
    "rewards": rng.standard_normal(n).astype(np.float32),
    "next_observations": rng.standard_normal((n, 11)).astype(np.float32),
    "terminals": np.arange(n) == 99,
    "timeouts": np.arange(n) == 199,
}
np.savez(d + "/mine.npz", **cols)
np.savez_compressed(d + "/mine-compressed.npz", **cols)
pq.write_table(pa.table({k: list(v) if v.ndim == 2 else v for k, v in cols.items()}), d + "/mine.parquet")
for k, v in cols.items():
    np.save(d + "/" + k + ".npy", v.astype(np.float32) if v.dtype == np.float64 else v)
"#;

#[test]
fn numpy_and_pyarrow_files_import_with_the_same_values() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    run_python(
        &py,
        WRITE_NUMPY_AND_PYARROW,
        &[dir.path().to_str().unwrap()],
    );
    let env = ImportOptions {
        env: Some("Hopper-v5".into()),
        ..Default::default()
    };
    let npz =
        offrl::dataset::importer::import(ImportFormat::Npz, &dir.path().join("mine.npz"), &env)
            .unwrap();
    let packed = dir.path().join("mine-compressed.npz");
    let compressed = offrl::dataset::importer::import(ImportFormat::Npz, &packed, &env).unwrap();
    let table = dir.path().join("mine.parquet");
    let parquet = offrl::dataset::importer::import(ImportFormat::Parquet, &table, &env).unwrap();
    assert_eq!(npz.len(), 200);
    assert_eq!(npz.episodes(), vec![0..100, 100..200]);
    for other in [&compressed, &parquet] {
        assert_eq!(npz.observations, other.observations);
        assert_eq!(npz.actions, other.actions);
        assert_eq!(npz.rewards, other.rewards);
        assert_eq!(npz.next_observations, other.next_observations);
        assert_eq!(npz.terminals, other.terminals);
    }
    // The float64 observations were converted (and it says so); the values are numpy's own
    // float32 rounding of them.
    assert!(npz.meta.source["converted"]
        .to_string()
        .contains("observations: float64"));
    let raw = std::fs::read(dir.path().join("observations.npy")).unwrap();
    let want: Vec<f32> = npyz::NpyFile::new(&raw[..]).unwrap().into_vec().unwrap();
    assert_eq!(npz.observations, want);
}
