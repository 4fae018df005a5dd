"""Side-by-side table of offrl (criterion medians under target/criterion) and the PyTorch
references (`@ref KEY SECONDS` lines), written into benches/RESULTS.md between the
`perf-table` markers and printed. Run by scripts/perf-compare.sh; standard library only.

    python benches/reference/compare.py REFS_FILE [--criterion target/criterion] [--results benches/RESULTS.md]
        [--tch-criterion DIR]   # criterion output of the same benches on LibTorch (a column more)
"""

import argparse
import glob
import json
import os
import platform
import re
import subprocess
import time

# (label, criterion id, reference key, kind, work per iteration for GFLOP/s or None)
# kind: "latency" (target >= 1.5x PyTorch, goal 2x), "throughput" (target >= 1.0x and >= 90 % of
# the GEMM peak), "info" (no target in issue 8).
RTB_PAPER_GFLOP = 2 * 64 * 64 * 75 * (135424 + 2 * 138752 + 3 * 135424) / 1e9
RTB_CPU_GFLOP = 2 * 32 * 16 * 20 * (135424 + 2 * 138752 + 3 * 135424) / 1e9
# One ε-network forward per chain and step (benches/support `eps_macs`: 135 424 multiply-adds).
SAMPLE_4096_GFLOP = 2 * 4096 * 75 * 135424 / 1e9
ROWS = [
    ("IQL critic step, batch 256", "iql_critic/step_batch256_hopper", "iql_step", "latency", None),
    ("Prior training step, batch 512", "prior_train/step_batch512_hopper", "prior_step", "latency", None),
    ("Sampling: one action for 10 states (T = 75)", "prior_sample_T75/states_10", "sample_10", "latency", None),
    ("Evaluation, Pendulum-v1 x 10 envs (per env step)", "eval_10envs/Pendulum-v1", "eval_Pendulum-v1", "latency", None),
    ("Evaluation, Hopper-v5 x 10 envs (per env step)", "eval_10envs/Hopper-v5", "eval_Hopper-v5", "latency", None),
    ("Sampling: 4096 chains (T = 75)", "prior_sample_T75/states_4096", "sample_4096", "throughput", SAMPLE_4096_GFLOP),
    ("RTB on-policy update, 64 x 64 x T=75", "rtb_paper_64x64xT75/on_policy", "rtb_64x64xT75_on_policy", "throughput", RTB_PAPER_GFLOP),
    ("RTB off-policy update, 64 x 64 x T=75", "rtb_paper_64x64xT75/off_policy", "rtb_64x64xT75_off_policy", "throughput", RTB_PAPER_GFLOP),
    ("RTB on-policy update, 32 x 16 x T=20 (CPU profile)", "rtb_cpu_32x16xT20/on_policy", "rtb_32x16xT20_on_policy", "throughput", RTB_CPU_GFLOP),
    ("RTB off-policy update, 32 x 16 x T=20 (CPU profile)", "rtb_cpu_32x16xT20/off_policy", "rtb_32x16xT20_off_policy", "throughput", RTB_CPU_GFLOP),
    ("Dataset load, 1M Hopper-sized transitions (Parquet vs HDF5)", "parquet/load 1M hopper-sized transitions", "dataset_load", "info", None),
    ("Minibatch of 256 from 1M", "sampler/minibatch 256 of 1M", "minibatch_256", "info", None),
]
GEMM = [("GEMM 4096 x 256 x 256", "gemm_peak/4096x256x256", "gemm_4096", 4096),
        ("GEMM 38400 x 256 x 256", "gemm_peak/38400x256x256", "gemm_38400", 38400),
        # The same products with the weights packed once (offrl's panel kernel; no PyTorch twin).
        ("GEMM 4096 x 256 x 256, packed weights", "gemm_peak/4096x256x256_packed", None, 4096),
        ("GEMM 38400 x 256 x 256, packed weights", "gemm_peak/38400x256x256_packed", None, 38400)]


def criterion_medians(root):
    """full_id -> (median seconds per iteration, elements per iteration or None)."""
    out = {}
    for bench in glob.glob(os.path.join(root, "**", "new", "benchmark.json"), recursive=True):
        with open(bench) as f:
            meta = json.load(f)
        with open(os.path.join(os.path.dirname(bench), "estimates.json")) as f:
            est = json.load(f)
        elements = (meta.get("throughput") or {}).get("Elements")
        out[meta["full_id"]] = (est["median"]["point_estimate"] * 1e-9, elements)
    return out


def references(path):
    refs = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"@ref (\S+) (\S+)", line)
            if m:
                refs[m.group(1)] = float(m.group(2))
    return refs


def machine():
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def fmt_time(s):
    if s is None:
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def table(medians, refs, tch=None):
    tch = tch or {}
    lines = ["| benchmark | offrl (flex) | PyTorch 2.9 | speed-up | target | offrl GFLOP/s | PyTorch GFLOP/s | offrl (tch) |",
             "|---|---|---|---|---|---|---|---|"]
    # The vector units' multiply-add rate with everything in registers (benches/rtb.rs
    # `fma_ceiling`): no product can exceed it; the GEMM rows say how close they come.
    ceiling = None
    for cid, (seconds, elements) in medians.items():
        if cid.startswith("fma_ceiling/") and elements:
            ceiling = elements / seconds / 1e9
            threads = cid.split("/", 1)[1].replace("_", " ")
            lines.append(f"| Vector FMA ceiling (registers only, {threads}) | {fmt_time(seconds)} | — | — | "
                         f"hardware | {rate(ceiling)} | — | — |")
    peak = None
    for label, cid, key, n in GEMM:
        ours = medians.get(cid, (None, None))[0]
        if ours is None and key is None:
            continue  # offrl-only row that did not run (no panel kernel on this CPU)
        theirs = refs.get(key)
        flop = 2 * n * 256 * 256 / 1e9
        ours_rate = flop / ours if ours else None
        peak = max(filter(None, [peak, ours_rate, flop / theirs if theirs else None]), default=None)
        of_ceiling = f" ({100 * ours_rate / ceiling:.0f} % of ceiling)" if ours_rate and ceiling else ""
        lines.append(f"| {label} | {fmt_time(ours)} | {fmt_time(theirs)} | {ratio(theirs, ours)} | peak | "
                     f"{rate(ours_rate)}{of_ceiling} | {rate(flop / theirs if theirs else None)} | — |")
    for label, cid, key, kind, gflop in ROWS:
        ours, elements = medians.get(cid, (None, None))
        if ours is not None and elements and key.startswith("eval_"):
            ours /= elements  # seconds per environment step
        on_tch, tch_elements = tch.get(cid, (None, None))
        if on_tch is not None and tch_elements and key.startswith("eval_"):
            on_tch /= tch_elements
        theirs = refs.get(key)
        target = {"latency": "≥ 1.5× (goal 2×)", "throughput": "≥ 1.0×, ≥ 90 % of peak", "info": "—"}[kind]
        ours_rate = gflop / ours if gflop and ours else None
        theirs_rate = gflop / theirs if gflop and theirs else None
        pct = f" ({100 * ours_rate / peak:.0f} % of peak)" if ours_rate and peak else ""
        lines.append(f"| {label} | {fmt_time(ours)} | {fmt_time(theirs)} | {ratio(theirs, ours)} | {target} | "
                     f"{rate(ours_rate)}{pct} | {rate(theirs_rate)} | {fmt_time(on_tch)} |")
    return "\n".join(lines)


def ratio(theirs, ours):
    return f"{theirs / ours:.2f}×" if theirs and ours else "—"


def rate(r):
    return f"{r:.1f}" if r else "—"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("refs")
    p.add_argument("--criterion", default="target/criterion")
    p.add_argument("--results", default="benches/RESULTS.md")
    p.add_argument("--tch-criterion", default=None)
    args = p.parse_args()
    medians = criterion_medians(args.criterion)
    tch = criterion_medians(args.tch_criterion) if args.tch_criterion else {}
    refs = references(args.refs)
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    text = (f"Measured {time.strftime('%Y-%m-%d')} on {machine()} ({rustc}; PyTorch with "
            f"`torch.set_num_threads(2)`); medians. Speed-up = PyTorch time / offrl time.\n\n"
            + table(medians, refs, tch))
    print(text)
    if os.path.exists(args.results):
        with open(args.results) as f:
            doc = f.read()
        start, end = "<!-- perf-table:start -->", "<!-- perf-table:end -->"
        if start in doc and end in doc:
            doc = doc[: doc.index(start) + len(start)] + "\n" + text + "\n" + doc[doc.index(end):]
            with open(args.results + ".tmp", "w") as f:
                f.write(doc)
            os.replace(args.results + ".tmp", args.results)
            print(f"(written into {args.results})")


if __name__ == "__main__":
    main()
