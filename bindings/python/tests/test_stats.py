"""`offrl bench report`'s statistics against the `rliable` package on fixed inputs: the point
estimates exactly, the bootstrap intervals within Monte Carlo error (both resample 20 000
times, from different generators), the probability of improvement exactly."""

import json
import subprocess

import numpy as np
import pytest

rliable_metrics = pytest.importorskip("rliable.metrics")
rliable_library = pytest.importorskip("rliable.library")

ALGOS = {"a": 55.0, "b": 60.0, "c": 40.0}
DATASETS = ["toy/one", "toy/two", "toy/three", "toy/four"]
RUNS = 5
REPS = 20_000


def fixed_scores():
    rng = np.random.default_rng(7)
    out = {}
    for i, (algo, level) in enumerate(ALGOS.items()):
        task_level = level + 10.0 * np.arange(len(DATASETS))
        out[algo] = task_level + rng.normal(0.0, 12.0, size=(RUNS, len(DATASETS)))
    # A tie between two runs of one task, and scores above 100 (the optimality gap clips them).
    out["a"][1, 0] = out["a"][0, 0]
    out["b"][:, 3] += 40.0
    return out


def write_grid(root, scores):
    for algo, matrix in scores.items():
        for run in range(RUNS):
            for task, dataset in enumerate(DATASETS):
                cell = root / "cells" / dataset.replace("/", "__") / algo / f"seed-{run}"
                cell.mkdir(parents=True)
                score = float(matrix[run, task])
                (cell / "result.json").write_text(json.dumps({
                    "algo": algo, "dataset": dataset, "seed": run, "normalized_score": score,
                    "mean_return": score, "std_return": 0.0, "episodes": 1,
                    "wall_seconds": 1.0, "returns": [score],
                }))


def test_report_matches_rliable(tmp_path, offrl_bin):
    scores = fixed_scores()
    write_grid(tmp_path, scores)
    out = subprocess.run([offrl_bin, "bench", "report", str(tmp_path), "--reps", str(REPS)],
                         check=True, capture_output=True, text=True).stdout
    assert "IQM" in out and "Probability of improvement" in out
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert (tmp_path / "profiles.png").stat().st_size > 0
    functions = {
        "iqm": rliable_metrics.aggregate_iqm,
        "mean": rliable_metrics.aggregate_mean,
        "median": rliable_metrics.aggregate_median,
        "optimality_gap": lambda x: rliable_metrics.aggregate_optimality_gap(x, gamma=100.0),
    }
    np.random.seed(0)
    for name, f in functions.items():
        points, intervals = rliable_library.get_interval_estimates(
            scores, lambda x, f=f: np.array([f(x)]), reps=REPS)
        for algo in ALGOS:
            ours = stats["algorithms"][algo][name]
            assert ours["point"] == pytest.approx(points[algo][0], rel=1e-9, abs=1e-9), (name, algo)
            low, high = intervals[algo][:, 0]
            width = high - low
            assert abs(ours["low"] - low) < 0.05 * width, (name, algo, ours, low, high)
            assert abs(ours["high"] - high) < 0.05 * width, (name, algo, ours, low, high)
    for pair in stats["improvement"]:
        want = rliable_metrics.probability_of_improvement(scores[pair["x"]], scores[pair["y"]])
        assert pair["probability"]["point"] == pytest.approx(want, abs=1e-12), pair
    assert all(stats["algorithms"][a]["min_runs"] == RUNS for a in ALGOS)
    assert not any(stats["algorithms"][a]["few_runs"] for a in ALGOS)


def test_report_names_what_is_missing(tmp_path, offrl_bin):
    missing = subprocess.run([offrl_bin, "bench", "report", str(tmp_path / "nowhere")],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "nowhere" in missing.stderr
    (tmp_path / "cells").mkdir()
    none = subprocess.run([offrl_bin, "bench", "report", str(tmp_path)],
                          capture_output=True, text=True)
    assert none.returncode != 0 and "no finished cell" in none.stderr


def test_committed_results_report_like_their_grid(tmp_path, offrl_bin):
    """The same cells as a grid folder and as committed files (variants left out) give the same
    statistics."""
    scores = fixed_scores()
    grid = tmp_path / "grid"
    write_grid(grid, scores)
    committed = tmp_path / "committed"
    for cell in grid.glob("cells/*/*/seed-*/result.json"):
        dataset, algo, seed = cell.parts[-4:-1]
        (committed / dataset / algo).mkdir(parents=True, exist_ok=True)
        (committed / dataset / algo / f"{seed}.json").write_text(cell.read_text())
        variant = json.loads(cell.read_text())
        variant["normalized_score"] += 1000.0
        (committed / dataset / algo / f"{seed}__variant.json").write_text(json.dumps(variant))
    for d, out in [(grid, grid), (committed, tmp_path / "out")]:
        subprocess.run([offrl_bin, "bench", "report", str(d), "--reps", "200", "--out", str(out)],
                       check=True, capture_output=True)
    a = json.loads((grid / "stats.json").read_text())
    b = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert a == b
    assert not (committed / "stats.json").exists()
