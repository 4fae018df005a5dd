"""PyTorch-side reference for benches/dataset.rs: what CORL does with a D4RL file — read all
arrays of the 1M-transition Hopper-sized dataset with h5py (D4RL's flat HDF5 layout,
uncompressed) into torch tensors, then draw minibatches of 256 by `np.random.randint` indices
into the tensors (observations, actions, rewards, next observations, terminals).

Needs target/bench-data/hopper-1m.parquet (written by `cargo bench --bench dataset`) and h5py,
pyarrow next to torch (PYTHONPATH set to .venv's site-packages; scripts/perf-compare.sh does).

    python benches/reference/dataset_torch.py [PARQUET]

Prints `@ref dataset_load SECONDS` and `@ref minibatch_256 SECONDS` (medians).
"""

import os
import sys
import time

import h5py
import numpy as np
import torch

KEYS = ["observations", "actions", "rewards", "next_observations", "terminals", "timeouts"]


def hdf5_copy(src):
    """The parquet file's columns in D4RL's layout, written once next to it."""
    path = os.path.splitext(src)[0] + "-plain.hdf5"
    if os.path.exists(path):
        return path
    import pyarrow.parquet as pq

    table = pq.read_table(src)
    with h5py.File(path + ".tmp", "w") as f:
        for k in KEYS:
            col = table.column(k).combine_chunks()
            if hasattr(col, "flatten"):
                data = col.flatten().to_numpy().reshape(-1, col.type.list_size)
            else:
                data = col.to_numpy(zero_copy_only=False)
            f.create_dataset(k, data=data)
    os.replace(path + ".tmp", path)
    return path


def load(path):
    with h5py.File(path, "r") as f:
        return {k: torch.tensor(f[k][()]) for k in KEYS}  # CORL: torch.tensor(numpy) copies


def main():
    torch.set_num_threads(2)
    src = sys.argv[1] if len(sys.argv) > 1 else "target/bench-data/hopper-1m.parquet"
    path = hdf5_copy(src)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        data = load(path)
        times.append(time.perf_counter() - t)
    load_s = sorted(times)[2]
    n = data["rewards"].shape[0]
    cols = [data[k] for k in ["observations", "actions", "rewards", "next_observations", "terminals"]]
    times = []
    for _ in range(20):
        t = time.perf_counter()
        for _ in range(1000):
            idx = np.random.randint(0, n, size=256)
            batch = [c[idx] for c in cols]
        times.append((time.perf_counter() - t) / 1000)
    sample_s = sorted(times)[10]
    print(f"h5py + torch: load {n} transitions {load_s:.3f} s; minibatch 256 {1e6 * sample_s:.1f} us")
    print(f"@ref dataset_load {load_s:.6e}")
    print(f"@ref minibatch_256 {sample_s:.6e}")


if __name__ == "__main__":
    main()
