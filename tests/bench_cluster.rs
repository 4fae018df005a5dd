//! A grid as a manifest and its executors, on one 4-cell quick grid (Pendulum, seed 0: bc,
//! diffusion-bc and iql, then IDQL on the last two — two dependency waves): the cells run one by
//! one from the manifest, through a real Slurm (slurmctld + slurmd + munge on this machine) and
//! through a local Ray head must each give the local executor's per-episode returns, cell for
//! cell. The Slurm and Ray tests skip when those services are absent, unless
//! `OFFRL_REQUIRE_SLURM` / `OFFRL_REQUIRE_RAY` is set (CI starts both and sets them:
//! `scripts/slurm-local.sh`, `scripts/ray-local.sh`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

const GRID: &[&str] = &[
    "--suite",
    "pendulum",
    "--datasets",
    "medium",
    "--algos",
    "bc,idql",
    "--seed-list",
    "0",
    "--profile",
    "quick",
    "--set",
    "bc.train.steps=40",
    "--set",
    "iql.train.steps=40",
    "--set",
    "diffusion-bc.train.steps=40",
    "--set",
    "idql.samples=4",
];

fn offrl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_offrl"))
        .args(args)
        .output()
        .expect("run offrl")
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn grid(sub: &[&str], out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&str> = vec!["bench"];
    args.extend(sub);
    args.extend(GRID);
    args.extend(extra);
    args.extend(["--out", out.to_str().unwrap()]);
    offrl(&args)
}

/// Every finished cell's per-episode returns, by (algo, seed).
fn returns(out: &Path) -> BTreeMap<String, Vec<f64>> {
    let mut map = BTreeMap::new();
    for algo in ["bc", "diffusion-bc", "iql", "idql"] {
        let path = out.join(format!("cells/pendulum__medium/{algo}/seed-0/result.json"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let r: Vec<f64> = serde_json::from_value(v["returns"].clone()).unwrap();
        map.insert(algo.to_string(), r);
    }
    map
}

fn local_reference(root: &Path) -> BTreeMap<String, Vec<f64>> {
    let out = root.join("local");
    ok(grid(&[], &out, &[]), "the local grid");
    let r = returns(&out);
    assert_eq!(r.len(), 4, "{r:?}");
    r
}

/// Whether a service is reachable; a required one that is not fails the test.
fn available(var: &str, probe: &mut Command, what: &str) -> bool {
    let up = probe.output().map(|o| o.status.success()).unwrap_or(false);
    if !up {
        assert!(
            std::env::var_os(var).is_none(),
            "{var} is set but {what} does not answer"
        );
        eprintln!("skipping: no {what} ({var} unset)");
    }
    up
}

#[test]
fn planned_cells_run_by_index_give_the_local_grid() {
    let root = tempfile::tempdir().unwrap();
    let reference = local_reference(root.path());
    let out = root.path().join("planned");
    let said = ok(grid(&["plan"], &out, &[]), "bench plan");
    assert!(said.contains("4 cells in 2 waves"), "{said}");
    let manifest = out.join("manifest.jsonl");
    let m = manifest.to_str().unwrap();
    assert!(returns(&out).is_empty(), "plan runs nothing");
    for i in 0..4 {
        ok(
            offrl(&["bench", "cell", "--manifest", m, "--index", &i.to_string()]),
            "bench cell",
        );
    }
    assert_eq!(returns(&out), reference);
    // A finished cell is not recomputed.
    let again = offrl(&["bench", "cell", "--manifest", m, "--index", "0"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already finished"));
    ok(
        offrl(&["bench", "report", out.to_str().unwrap()]),
        "bench report",
    );
    assert!(out.join("results.md").is_file());

    // Bad manifests and indices: one clear line each, no panic.
    let foreign = root.path().join("foreign.jsonl");
    std::fs::write(&foreign, "{\"algo\": \"bc\"}\n").unwrap();
    let truncated = root.path().join("truncated.jsonl");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &truncated,
        text.lines().take(3).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let missing = root.path().join("missing.jsonl");
    for (path, index, want) in [
        (manifest.as_path(), "4", "out of range"),
        (foreign.as_path(), "0", "not an offrl manifest"),
        (truncated.as_path(), "0", "truncated"),
        (missing.as_path(), "0", "missing.jsonl"),
    ] {
        let out = offrl(&[
            "bench",
            "cell",
            "--manifest",
            path.to_str().unwrap(),
            "--index",
            index,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{want}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn slurm_scripts_show_one_array_per_wave_in_a_dry_run() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("dry");
    let extra = [
        "--executor",
        "slurm",
        "--dry-run",
        "--cpus-per-cell",
        "2",
        "--max-parallel",
        "3",
    ];
    let said = ok(grid(&[], &out, &extra), "a Slurm dry run");
    assert!(
        said.contains("--array=0-2%3") && said.contains("--array=3-3%3"),
        "{said}"
    );
    assert!(
        said.contains("--cpus-per-task=2") && said.contains("bench report"),
        "{said}"
    );
    assert!(returns(&out).is_empty(), "a dry run runs nothing");
}

#[test]
fn the_slurm_executor_gives_the_local_grid() {
    if !available(
        "OFFRL_REQUIRE_SLURM",
        Command::new("sinfo").arg("-h"),
        "Slurm controller",
    ) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let reference = local_reference(root.path());
    let out = root.path().join("slurm");
    let said = ok(
        grid(&[], &out, &["--executor", "slurm", "--wait"]),
        "the Slurm executor",
    );
    assert!(said.contains("submitted 3 jobs"), "{said}");
    assert_eq!(returns(&out), reference);
    assert!(out.join("results.md").is_file(), "the report job ran");

    // A cell lost on a node: resubmitting recomputes it alone.
    let cell = |algo: &str| out.join(format!("cells/pendulum__medium/{algo}/seed-0/result.json"));
    let kept = std::fs::metadata(cell("bc")).unwrap().modified().unwrap();
    std::fs::remove_file(cell("idql")).unwrap();
    ok(
        grid(&[], &out, &["--executor", "slurm", "--wait"]),
        "the resubmission",
    );
    assert_eq!(
        std::fs::metadata(cell("bc")).unwrap().modified().unwrap(),
        kept
    );
    assert_eq!(returns(&out), reference);

    // An unreachable controller: one line saying what was tried and what sbatch said.
    let conf = std::env::var("SLURM_CONF").unwrap_or_else(|_| "/etc/slurm/slurm.conf".into());
    let text = std::fs::read_to_string(&conf).expect("the Slurm config");
    let bad_conf = root.path().join("unreachable.conf");
    let moved: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("SlurmctldPort"))
        .collect();
    std::fs::write(&bad_conf, moved.join("\n") + "\nSlurmctldPort=1\n").unwrap();
    let mut args: Vec<&str> = vec!["bench"];
    args.extend(GRID);
    let bad_out = root.path().join("unreachable");
    args.extend(["--executor", "slurm", "--out", bad_out.to_str().unwrap()]);
    let bad = Command::new(env!("CARGO_BIN_EXE_offrl"))
        .args(&args)
        .env("SLURM_CONF", &bad_conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{err}");
    assert!(
        err.contains("sbatch failed") && err.contains("Unable to contact slurm controller"),
        "{err}"
    );
}

/// The Ray head `scripts/ray-local.sh` starts.
const HEAD: &str = "127.0.0.1:6379";

#[test]
fn the_ray_executor_gives_the_local_grid() {
    let venv = std::env::var_os("OFFRL_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let python = venv.join("bin/python");
    // The head of scripts/ray-local.sh; a TCP probe (ray.init retries a dead address for minutes).
    let probe =
        "import ray, socket; socket.create_connection(('127.0.0.1', 6379), timeout=5).close()";
    if !available(
        "OFFRL_REQUIRE_RAY",
        Command::new(&python).args(["-c", probe]),
        "Ray head",
    ) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let reference = local_reference(root.path());
    let out = root.path().join("ray");
    let py = python.to_str().unwrap();
    ok(
        grid(
            &[],
            &out,
            &["--executor", "ray", "--python", py, "--ray-address", HEAD],
        ),
        "the Ray executor",
    );
    assert_eq!(returns(&out), reference);

    // An unreachable head: one line naming the address.
    let bad = grid(
        &[],
        &root.path().join("ray-bad"),
        &[
            "--executor",
            "ray",
            "--python",
            py,
            "--ray-address",
            "127.0.0.1:1",
        ],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("127.0.0.1:1"),
        "{err}"
    );
}
