"""The reference for benches/dataset.rs: the same 1M-transition Hopper-sized data read by h5py.

Usage (after `cargo bench --bench dataset` or `cargo run --release --example dataset_load`
wrote target/bench-data/hopper-1m.parquet):

    .venv/bin/python benches/reference/h5py_load.py [target/bench-data/hopper-1m.parquet]

Writes the columns to two HDF5 files in D4RL's flat layout (uncompressed, and gzip-4 chunked
as D4RL's own files are), then reports the best of 5 full reads of all six arrays with h5py
into numpy, and the peak RSS of one read in a fresh process.
"""

import os
import subprocess
import sys
import time

import h5py
import numpy as np

KEYS = ["observations", "actions", "rewards", "next_observations", "terminals", "timeouts"]


def vm_hwm_mib():
    # /proc, not getrusage: ru_maxrss survives fork+exec and would report the parent's peak.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def read_all(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in KEYS}


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--rss":
        before = vm_hwm_mib()
        read_all(sys.argv[2])
        print(before, vm_hwm_mib())
        return
    import pyarrow.parquet as pq  # not in the --rss child, whose peak memory is measured

    src = sys.argv[1] if len(sys.argv) > 1 else "target/bench-data/hopper-1m.parquet"
    table = pq.read_table(src)
    cols = {}
    for k in KEYS:
        col = table.column(k).combine_chunks()
        if hasattr(col, "flatten"):
            width = col.type.list_size
            cols[k] = col.flatten().to_numpy().reshape(-1, width)
        else:
            cols[k] = col.to_numpy(zero_copy_only=False)
    raw_mb = sum(v.nbytes for v in cols.values()) / 2**20
    del table
    out_dir = os.path.dirname(os.path.abspath(src))
    for name, kw in [("plain", {}), ("gzip", {"compression": "gzip", "compression_opts": 4, "chunks": True})]:
        path = os.path.join(out_dir, f"hopper-1m-{name}.hdf5")
        if not os.path.exists(path):
            with h5py.File(path + ".tmp", "w") as f:
                for k, v in cols.items():
                    f.create_dataset(k, data=v, **kw)
            os.replace(path + ".tmp", path)
        times, cpu = [], []
        for _ in range(5):
            t, c = time.perf_counter(), time.process_time()
            data = read_all(path)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            assert np.array_equal(data["observations"], cols["observations"])
        before, peak = map(float, subprocess.run(
            [sys.executable, __file__, "--rss", path], capture_output=True, text=True, check=True
        ).stdout.split())
        print(
            f"h5py {name:5}: best {min(times):.3f} s, median {sorted(times)[2]:.3f} s "
            f"(CPU best {min(cpu):.3f} s); "
            f"file {os.path.getsize(path) / 2**20:.1f} MiB; raw {raw_mb:.1f} MiB; "
            f"peak RSS {peak:.1f} MiB ({before:.1f} MiB before reading: interpreter + numpy + h5py; "
            f"{(peak - before) / raw_mb:.2f}x raw for the read alone)"
        )


if __name__ == "__main__":
    main()
