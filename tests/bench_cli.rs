//! The benchmark runner and the pipeline through the binary, on the native Pendulum suite with the
//! `quick` profile shrunk by `--set` (tiny step counts): every cell finishes, the table and its
//! files are written, a second run resumes without recomputing, and `offrl pipeline` runs prior,
//! critic and RTB on a dataset file.

use std::path::Path;
use std::process::Command;

const TINY: &[&str] = &[
    "--set",
    "bc.train.steps=40",
    "--set",
    "iql.train.steps=40",
    "--set",
    "diffusion-bc.train.steps=40",
    "--set",
    "rtb.train.steps=4",
    "--set",
    "rtb.trajectories=4",
    "--set",
    "rtb.train.batch_size=4",
    "--set",
    "idql.samples=4",
];

fn offrl(args: &[&str], out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_offrl"))
        .args(args)
        .args(TINY)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run offrl")
}

fn results(out: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["cells"].as_array().expect("cells array").clone()
}

#[test]
fn bench_grid_writes_the_table_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid");
    let args = [
        "bench",
        "--suite",
        "pendulum",
        "--datasets",
        "medium",
        "--algos",
        "bc,idql,rtb",
        "--seeds",
        "1",
        "--profile",
        "quick",
    ];
    let first = offrl(&args, &out);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // IDQL and RTB pull in their dependencies (diffusion-BC, IQL) as cells of their own.
    let cells = results(&out);
    let mut algos: Vec<&str> = cells.iter().map(|c| c["algo"].as_str().unwrap()).collect();
    algos.sort();
    assert_eq!(algos, ["bc", "diffusion-bc", "idql", "iql", "rtb"]);
    for c in &cells {
        let score = c["normalized_score"].as_f64().expect("normalised score");
        assert!(score.is_finite(), "{c}");
        assert_eq!(c["dataset"], "pendulum/medium");
    }
    assert!(stdout.contains("| pendulum/medium |"), "{stdout}");
    for file in ["results.md", "results.csv"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let curves: Vec<_> = std::fs::read_dir(out.join("curves")).unwrap().collect();
    assert!(!curves.is_empty(), "learning curves written");

    // A second run finds every cell finished and recomputes nothing.
    let stamp = |algo: &str| {
        let p = out.join(format!("cells/pendulum__medium/{algo}/seed-0/result.json"));
        std::fs::metadata(p).unwrap().modified().unwrap()
    };
    let before = stamp("rtb");
    let second = offrl(&args, &out);
    assert!(second.status.success());
    assert_eq!(stamp("rtb"), before);
    assert_eq!(results(&out), cells);

    // The pipeline on the grid's dataset file: prior, critic (IQL) and RTB, one folder.
    let data = std::fs::read_dir(out.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("the grid's dataset");
    let pipe_out = dir.path().join("pipeline");
    let pipe = offrl(
        &[
            "pipeline",
            "--dataset",
            data.to_str().unwrap(),
            "--profile",
            "quick",
            "--seed",
            "3",
        ],
        &pipe_out,
    );
    assert!(
        pipe.status.success(),
        "{}",
        String::from_utf8_lossy(&pipe.stderr)
    );
    let mut stages: Vec<String> = results(&pipe_out)
        .iter()
        .map(|c| c["algo"].as_str().unwrap().to_string())
        .collect();
    stages.sort();
    assert_eq!(stages, ["diffusion-bc", "iql", "rtb"]);
    let stem = data.file_stem().unwrap().to_str().unwrap();
    assert!(pipe_out
        .join(format!("cells/{stem}/rtb/seed-3/run/metrics.jsonl"))
        .is_file());

    // A mistyped override is refused before anything runs.
    let bad = Command::new(env!("CARGO_BIN_EXE_offrl"))
        .args(["bench", "--suite", "pendulum", "--profile", "quick"])
        .args(["--set", "rbt.alpha=1", "--out"])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("rbt"));
}

/// The pids of `pid`'s children (Linux /proc).
#[cfg(target_os = "linux")]
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so read after its `)`.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after.split_whitespace().nth(1).unwrap().parse().unwrap();
        if ppid == pid {
            out.push(child);
        }
    }
    out
}

/// Killing the grid kills its running cell instead of leaving it to train unattended.
#[cfg(target_os = "linux")]
#[test]
fn a_cell_dies_with_its_grid() {
    let dir = tempfile::tempdir().unwrap();
    let mut grid = Command::new(env!("CARGO_BIN_EXE_offrl"))
        .args([
            "bench",
            "--suite",
            "pendulum",
            "--datasets",
            "medium",
            "--algos",
            "bc",
        ])
        .args([
            "--seed-list",
            "0",
            "--profile",
            "quick",
            "--set",
            "bc.train.steps=100000000",
        ])
        .arg("--out")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let cell = loop {
        if let Some(&c) = children(grid.id()).first() {
            break c;
        }
        assert!(start.elapsed().as_secs() < 60, "no cell started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    grid.kill().unwrap();
    grid.wait().unwrap();
    let alive = |pid: u32| {
        Path::new(&format!("/proc/{pid}")).exists() && {
            // A zombie (reaped by init soon) has finished too.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            !stat.contains(") Z ")
        }
    };
    let killed = std::time::Instant::now();
    while alive(cell) {
        assert!(
            killed.elapsed().as_secs() < 20,
            "cell {cell} outlived its grid"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
