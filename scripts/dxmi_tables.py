#!/usr/bin/env python3
"""Issue 22's README tables (DxMI / GCD), rendered from the committed results alone.

    python3 scripts/dxmi_tables.py                      # print every table
    python3 scripts/dxmi_tables.py --write README.md    # replace README's blocks
    python3 scripts/dxmi_tables.py --check README.md    # CI: fail when a block differs

A block is the text between `<!-- dxmi: KEY -->` and `<!-- /dxmi -->`; KEY names a table below.
Standard library only: CI runs it before any environment exists. Means ± population std over
seeds, as `offrl bench report` gives them.
"""
import argparse
import json
import math
import os
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results")


def load(path):
    with open(path) as f:
        return json.load(f)


def mean_std(xs):
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def pm(xs, digits=1):
    m, s = mean_std(xs)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


# --- 8 Gaussians (results/dxmi-eight-gaussians) ---------------------------------------------

G8 = os.path.join(RESULTS, "dxmi-eight-gaussians")


def g8_cell(d):
    """sliced Wasserstein / share near a mode / the smallest and largest mode's share of those."""
    s = [x / sum(d["share"]) for x in d["share"]]
    return f"{d['sw']:.3f} / {100 * d['near']:.0f} % / {100 * min(s):.1f}–{100 * max(s):.1f} %"


def g8_file(name, k, seed=0):
    tag = "" if seed == 0 else f"__seed-{seed}"
    path = os.path.join(G8, f"{name}__K{k}{tag}.json")
    return load(path) if os.path.exists(path) else None


G8_ABLATIONS = [  # (file name, header, bold)
    ("defaults", "DxMI, the defaults", True),
    ("velocity-in-values", "the velocity term alone in the values¹", False),
    ("codes-values", "the code's values²", False),
    ("fixed-last", "the last σ fixed at 0.001³", False),
    ("fixed-last-velocity", "the last σ fixed³, the velocity term alone¹", False),
    ("code", "the code's values² and last σ³ (stop 37's defaults)", False),
    ("gcd", "GCD, the defaults", False),
    ("gcd-fixed-last", "GCD, the last σ fixed³", False),
]


def eight_gaussians():
    head = ["K", "DDPM"] + [h for _, h, _ in G8_ABLATIONS]
    rows = []
    for k in (4, 10):
        ddpm = g8_file("defaults", k)["ddpm"]
        cells = []
        for name, _, bold in G8_ABLATIONS:
            r = g8_file(name, k)
            cells.append("–" if r is None else (f"**{g8_cell(r['sampler'])}**" if bold else g8_cell(r["sampler"])))
        rows.append([str(k), g8_cell(ddpm)] + cells)
    return md(head, rows)


def eight_gaussians_seeds():
    head = ["K", "seeds", "DDPM", "DxMI, the defaults", "GCD, the defaults", "DxMI below its DDPM (SW)", "GCD below its DDPM (SW)"]
    rows = []
    for k in (4, 10):
        runs = {n: [r for r in (g8_file(n, k, s) for s in (0, 1, 2)) if r] for n in ("defaults", "gcd")}
        seeds = sorted({r["seed"] for r in runs["defaults"]})
        ddpm = {r["seed"]: r["ddpm"] for rs in runs.values() for r in rs}

        def col(ds):
            if not ds:
                return "–"
            sw, near = [d["sw"] for d in ds], [100 * d["near"] for d in ds]
            return f"{pm(sw, 3)} / {pm(near, 0)} %"

        def wins(rs):
            return f"{sum(r['sampler']['sw'] < r['ddpm']['sw'] for r in rs)} of {len(rs)}" if rs else "–"

        rows.append([str(k), ", ".join(map(str, seeds)), col([ddpm[s] for s in sorted(ddpm)]),
                     col([r["sampler"] for r in runs["defaults"]]), col([r["sampler"] for r in runs["gcd"]]),
                     wins(runs["defaults"]), wins(runs["gcd"])])
    return md(head, rows)


# --- Use 1: reward-free imitation (results/dxmi-imitation) ----------------------------------

IM = os.path.join(RESULTS, "dxmi-imitation")
IM_ROWS = [
    ("locomotion-v5 hopper-expert", "hopper-expert"),
    ("locomotion-v5 halfcheetah-expert", "halfcheetah-expert"),
    ("locomotion-v5 walker2d-expert", "walker2d-expert"),
    ("CS285 hopper expert (2 episodes)", "hopper-cs285"),
    ("CS285 halfcheetah expert", "halfcheetah-cs285"),
    ("CS285 walker2d expert", "walker2d-cs285"),
    ("Minari Pendulum expert (raw return; 5000 / 2000 updates)", "pendulum-expert-imitation"),
]
IM_COLS = [  # (file stem, header); stems with noise come at ×0.5 / ×1
    ("bc", "BC"),
    ("t75", "T = 75 prior ×0.5 / ×1"),
    ("k4", "DDPM K = 4 ×0.5 / ×1"),
    ("k4post", "the same acting with σ_t² = β̃_t"),
    ("dxmi4lr", "DxMI K = 4 before stop 37 (σ_t² = β_t, every σ learnt; 1e-5)"),
    ("dxmi4d", "DxMI K = 4, the defaults (stop 38)"),
]


def im_scores(folder, stem):
    out = []
    for s in (0, 1, 2):
        path = os.path.join(IM, folder, f"{stem}__seed-{s}.json")
        if os.path.exists(path):
            out.append(load(path)["normalized_score"])
    return out


def im_cell(folder, stem):
    if stem == "bc":
        v = im_scores(folder, stem)
        return pm(v) if len(v) == 3 else "–"
    parts = []
    for noise in ("0.5", "1.0"):
        v = im_scores(folder, f"{stem}__noise{noise}")
        parts.append(pm(v) if len(v) == 3 else "–")
    return "–" if parts == ["–", "–"] else " / ".join(parts)


def imitation():
    head = ["data (score, mean ± std over 3 seeds)"] + [h for _, h in IM_COLS]
    return md(head, [[label] + [im_cell(folder, stem) for stem, _ in IM_COLS] for label, folder in IM_ROWS])


# --- Use 3: the energy as IDQL's penalty (results/idql-energy) ------------------------------

IE = os.path.join(RESULTS, "idql-energy")
IE_DATASETS = ("hopper-medium", "halfcheetah-medium", "walker2d-medium")
IE_ENERGIES = [  # (what the row's label adds, sub-folder, file tag); a dataset without its files has no row
    ("", "", ""),
    (", energy of a fresh sampler (no prior)", "", "__energy-fresh"),
    (", energy of the T = 75 prior's DxMI run at the defaults", "", "__energy-t75"),
    (", energy before stop 37", "before-stop-37", ""),
    (", energy before stop 37 from the T = 75 prior's DxMI run", "before-stop-37", "__energy-t75"),
]
LAMBDAS = (0, 10, 100, 1000)


def ie_scores(dataset, sub, split, lam, tag):
    base = os.path.join(IE, dataset, sub, "validation" if split == "validation" else "")
    out = []
    for s in (0, 1, 2):
        path = os.path.join(base, f"seed-{s}__lambda-{lam}{tag}.json")
        if os.path.exists(path):
            out.append(load(path)["normalized_score"])
    return out


def idql_energy():
    head = ["IDQL on"] + [f"λ = {lam}" for lam in LAMBDAS] + ["λ chosen on validation episodes: test"]
    rows = []
    for (suffix, sub, tag), dataset in ((e, d) for e in IE_ENERGIES for d in IE_DATASETS):
        test = {lam: ie_scores(dataset, sub, "test", lam, tag) for lam in LAMBDAS}
        if not any(len(v) == 3 for v in test.values()):
            continue
        val = {lam: ie_scores(dataset, sub, "validation", lam, tag) for lam in LAMBDAS}
        if tag and len(test[0]) < 3:
            # λ = 0 reads no energy (the same proposals and choices): the untagged evaluations.
            test[0], val[0] = (ie_scores(dataset, sub, split, 0, "") for split in ("test", "validation"))
        full = [lam for lam in LAMBDAS if len(val[lam]) == 3 and len(test[lam]) == 3]
        chosen = max(full, key=lambda lam: sum(val[lam])) if len(full) == len(LAMBDAS) else None
        # Bold: the chosen λ beats no penalty on the test episodes.
        better = chosen is not None and mean_std(test[chosen])[0] > mean_std(test[0])[0]
        pick = "–" if chosen is None else f"λ = {chosen}: " + (f"**{pm(test[chosen])}**" if better else pm(test[chosen]))
        rows.append([dataset + suffix] + [pm(test[lam]) if len(test[lam]) == 3 else "–" for lam in LAMBDAS] + [pick])
    return md(head, rows)


# --- Rendering -------------------------------------------------------------------------------


def md(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


TABLES = {
    "eight-gaussians": eight_gaussians,
    "eight-gaussians-seeds": eight_gaussians_seeds,
    "imitation": imitation,
    "idql-energy": idql_energy,
}


def splice(text, key, body, doc):
    start, end = f"<!-- dxmi: {key} -->", "<!-- /dxmi -->"
    i = text.find(start)
    if i < 0:
        sys.exit(f"{doc}: no `{start}` marker")
    j = text.find(end, i)
    if j < 0:
        sys.exit(f"{doc}: `{start}` has no `{end}` after it")
    return text[: i + len(start)] + "\n" + body + "\n" + text[j:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="DOC", help="replace DOC's blocks with the tables")
    mode.add_argument("--check", metavar="DOC", help="fail when DOC's blocks are not the tables")
    args = ap.parse_args()
    bodies = {key: f() for key, f in TABLES.items()}
    doc = args.write or args.check
    if doc is None:
        for key, body in bodies.items():
            print(f"<!-- dxmi: {key} -->\n{body}\n")
        return
    with open(doc) as f:
        text = f.read()
    new = text
    for key, body in bodies.items():
        new = splice(new, key, body, doc)
    if args.check:
        if new != text:
            stale = [k for k, b in bodies.items() if splice(text, k, b, doc) != text]
            sys.exit(f"{doc}: the issue-22 tables {', '.join(stale)} differ from the committed results "
                     f"(python3 scripts/dxmi_tables.py --write {doc})")
        print(f"{doc}: the issue-22 tables are the committed results'")
        return
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, doc)


if __name__ == "__main__":
    main()
