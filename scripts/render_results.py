#!/usr/bin/env python3
"""Render Markdown tables from committed benchmark results (results/<study>/**/*.json).

Each JSON file is one cell or one evaluation: `algo`, `dataset`, `seed`, `variant` (what differs
from the study's base settings; "" for the base), `normalized_score`, `returns` (per episode),
`commit`, `config` or `settings`, `wall_seconds` and, for trained cells, `curve` and
`diagnostics`. The table is algorithms (with variants) × datasets, mean ± std over seeds, with
the number of seeds and episodes and the mean wall time of a run (a cell: its training and its
evaluations), so a grid can be filled over several sittings and re-rendered
by anyone:

    python3 scripts/render_results.py results/fidelity            # Markdown to stdout
    python3 scripts/render_results.py results/fidelity --curves    # + learning-curve points
    python3 scripts/render_results.py results/cpu-grid --times     # wall time per (dataset, seed)
    python3 scripts/render_results.py results/cpu-profile --into README.md   # update README
    python3 scripts/render_results.py results/cpu-profile --check README.md  # CI: in sync?

`--into` replaces what stands between `<!-- render: FOLDER -->` and `<!-- /render -->` in the
file, so the README's tables are the command's output, never typed by hand; `--check` fails when
they are not.

Standard library only (runs on a fresh machine without the project's venv).
"""

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def load(folder: Path):
    cells = []
    for path in sorted(folder.rglob("*.json")):
        try:
            cell = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            sys.exit(f"{path}: not JSON ({e})")
        for key in ("algo", "dataset", "seed", "normalized_score", "returns"):
            if key not in cell:
                sys.exit(f"{path}: no `{key}` field")
        cell["_path"] = path
        cells.append(cell)
    if not cells:
        sys.exit(f"{folder}: no result files")
    return cells


def fmt(values):
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {statistics.pstdev(values):.1f}"


def table(cells):
    datasets = sorted({c["dataset"] for c in cells})
    rows = defaultdict(lambda: defaultdict(list))
    episodes = defaultdict(set)
    for c in cells:
        name = c["algo"] + (f" [{c['variant']}]" if c.get("variant") else "")
        rows[name][c["dataset"]].append(c)
        # Results from before per-episode returns were kept carry only their count.
        episodes[name].add(len(c["returns"]) or c.get("episodes", 0))
    short = [d.split("/")[-1] for d in datasets]
    out = ["| algorithm [variant] | " + " | ".join(short) + " | seeds × episodes | wall s per run |"]
    out.append("|" + "---|" * (len(datasets) + 3))
    for name in sorted(rows):
        seeds = max(len(rows[name][d]) for d in datasets)
        # A dataset with fewer seeds than the row's most says how many it has.
        scores = [
            fmt([c["normalized_score"] for c in rows[name][d]])
            + (f" ({len(rows[name][d])} seeds)" if 0 < len(rows[name][d]) < seeds else "")
            for d in datasets
        ]
        eps = "/".join(str(e) for e in sorted(episodes[name]))
        # Evaluations of existing checkpoints train nothing: no wall time of their own.
        walls = [c["wall_seconds"] for d in datasets for c in rows[name][d] if "wall_seconds" in c]
        wall = f"{statistics.fmean(walls):.0f}" if walls else "–"
        out.append(f"| {name} | " + " | ".join(scores) + f" | {seeds} × {eps} | {wall} |")
    return "\n".join(out)


def curves(cells):
    out = []
    for c in cells:
        if c.get("curve"):
            pts = ", ".join(f"{int(s)}: {v:.1f}" for s, v in c["curve"])
            out.append(f"- {c['dataset']} {c['algo']} seed {c['seed']}: {pts}")
    return "\n".join(out)


# The whole method (prior, critic, RTB) and the comparisons a profile runs beside it.
METHOD = ("diffusion-bc", "iql", "rtb")


def times(cells):
    """Wall minutes of each base cell per (dataset, seed): each algorithm, the method, all."""
    base = [c for c in cells if not c.get("variant") and "wall_seconds" in c]
    algos = sorted({c["algo"] for c in base}, key=lambda a: (a not in METHOD, a))
    runs = defaultdict(dict)
    for c in base:
        runs[(c["dataset"].split("/")[-1], c["seed"])][c["algo"]] = c["wall_seconds"] / 60
    head = "| dataset | seed | " + " | ".join(algos) + " | method (" + " + ".join(METHOD) + ") | all |"
    out = [head, "|" + "---|" * (len(algos) + 4)]
    totals = defaultdict(list)
    for (dataset, seed), walls in sorted(runs.items()):
        method = sum(walls.get(a, float("nan")) for a in METHOD)
        every = sum(walls.values()) if all(a in walls for a in algos) else float("nan")
        cols = [f"{walls[a]:.1f}" if a in walls else "–" for a in algos]
        out.append(f"| {dataset} | {seed} | " + " | ".join(cols) + f" | {method:.1f} | {every:.1f} |")
        for a, w in walls.items():
            totals[a].append(w)
        totals["method"].append(method)
        totals["all"].append(every)
    mean = lambda v: f"{statistics.fmean(v):.1f}" if v else "–"
    out.append("| mean | | " + " | ".join(mean(totals[a]) for a in algos)
               + f" | {mean(totals['method'])} | {mean(totals['all'])} |")
    return "\n".join(out)


def render(folder: Path, with_curves: bool) -> str:
    cells = load(folder)
    commits = sorted({c.get("commit", "?") for c in cells})
    out = [table(cells), f"\n{len(cells)} results; commits: {', '.join(commits)}"]
    if with_curves:
        out.append("\nLearning curves (training step: normalised score, curve episodes per point):")
        out.append(curves(cells))
    return "\n".join(out)


def splice(text: str, folder: Path, rendered: str, doc: Path) -> str:
    """`text` with the block between the markers of `folder` replaced by `rendered`."""
    begin, end = f"<!-- render: {folder.as_posix()} -->", "<!-- /render -->"
    if begin not in text:
        sys.exit(f"{doc}: no `{begin}` marker")
    head, rest = text.split(begin, 1)
    if end not in rest:
        sys.exit(f"{doc}: no `{end}` after `{begin}`")
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{rendered}\n{end}{tail}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--curves", action="store_true", help="also list learning-curve points")
    ap.add_argument("--times", action="store_true",
                    help="print wall minutes per (dataset, seed) of the base cells instead")
    ap.add_argument("--into", type=Path, help="replace the folder's marked block in this file")
    ap.add_argument("--check", type=Path, help="fail if the folder's marked block is stale")
    args = ap.parse_args()
    if args.times:
        print(times(load(args.folder)))
        return
    rendered = render(args.folder, args.curves)
    doc = args.into or args.check
    if doc is None:
        print(rendered)
        return
    text = doc.read_text()
    new = splice(text, args.folder, rendered, doc)
    if args.check:
        if new != text:
            sys.exit(
                f"{doc}: the table of {args.folder} is not what the results render; run "
                f"python3 scripts/render_results.py {args.folder} --into {doc}"
            )
        print(f"{doc}: {args.folder} in sync")
    else:
        doc.write_text(new)


if __name__ == "__main__":
    main()
