"""offrl's Ray executor: run a grid's manifest (`offrl bench plan`) as Ray tasks, one per cell,
wave by wave, each task running `offrl bench cell --manifest M --index I` on whichever node Ray
gives it (the grid's folder must be shared). Started by `offrl bench --executor ray` with
arguments MANIFEST EXE ADDRESS; prints one line per failed cell and exits non-zero if any failed.
"""
import json
import subprocess
import sys

manifest, exe, address = sys.argv[1:4]
with open(manifest) as f:
    lines = [json.loads(l) for l in f if l.strip()]
header, cells = lines[0], lines[1:]

try:
    import ray
except ImportError as e:
    sys.exit(f"ray executor: cannot import ray ({e}); `pip install ray` into the offrl venv")

# ray.init retries an unreachable GCS address for minutes: try the port first.
if address not in ("auto", "local"):
    import socket

    hostport = address.split("://")[-1]
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        sys.exit(f"ray executor: cannot reach a Ray head at address={address!r}: {e}")

try:
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
except Exception as e:  # ConnectionError, RuntimeError: whatever the head's absence raises
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    sys.exit(f"ray executor: cannot reach a Ray cluster at address={address!r}: {msg}")


@ray.remote
def run_cell(index):
    p = subprocess.run(
        [exe, "bench", "cell", "--manifest", manifest, "--index", str(index)],
        capture_output=True,
        text=True,
    )
    tail = "\n".join(p.stderr.strip().splitlines()[-3:])
    return index, p.returncode, tail


failed = []
for wave in range(header["waves"]):
    refs = []
    for c in cells:
        if c["wave"] != wave:
            continue
        r = c["resources"]
        refs.append(run_cell.options(num_cpus=r["cpus"], num_gpus=r["gpus"]).remote(c["index"]))
    for index, code, tail in ray.get(refs):
        if code != 0:
            c = cells[index]
            failed.append(index)
            print(
                f"cell {index} ({c['algo']} / {c['dataset']} / seed {c['seed']}) exited with "
                f"{code}: {tail}",
                file=sys.stderr,
            )
    print(f"wave {wave}: {len(refs)} cells done", file=sys.stderr)
sys.exit(1 if failed else 0)
