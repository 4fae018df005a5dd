#!/usr/bin/env bash
# Every performance benchmark of offrl (benches/, criterion) next to its PyTorch reference
# (benches/reference/*.py, 2 threads), then one table of medians and speed-ups, also written
# into benches/RESULTS.md. CI never runs this (it needs torch).
#
#   scripts/perf-compare.sh            # everything (about 20 minutes on 2 cores)
#   scripts/perf-compare.sh iql prior  # only these benches (iql prior rtb eval dataset)
#   TCH=1 scripts/perf-compare.sh      # also the same benches on LibTorch (`--features tch`,
#                                      # built in target/tch; the RTB bench at CPU shapes only)
#
# Needs .venv (gymnasium, h5py, pyarrow: scripts/setup.sh) and .venv-torch with torch==2.9.0
# (created here with pip when missing). Take the numbers on a quiet machine: the benches use
# both cores, and PyTorch's OpenMP threads slow down sharply when a core is taken.
set -euo pipefail
cd "$(dirname "$0")/.."

benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(iql prior rtb eval dataset)

if [ ! -x .venv-torch/bin/python ]; then
  python3 -m venv .venv-torch
  .venv-torch/bin/python -m pip install --quiet --disable-pip-version-check torch==2.9.0 numpy
fi
# The references that step gymnasium or read HDF5 import them from .venv.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
torch_py() { PYTHONPATH="$site" .venv-torch/bin/python "$@"; }

refs=target/perf-refs.txt
mkdir -p target
: > "$refs"
cargo bench --no-run $(printf -- '--bench %s ' "${benches[@]}")
for b in "${benches[@]}"; do
  echo "== offrl: cargo bench --bench $b"
  cargo bench --bench "$b" 2>&1 | grep -E '^[a-zA-Z_0-9 -]+/|time:|thrpt:|GFLOP|steps/s|skipping' || true
  echo "== PyTorch: $b"
  case $b in
    iql) torch_py benches/reference/iql_torch.py | tee -a "$refs" ;;
    prior) torch_py benches/reference/prior_torch.py | tee -a "$refs" ;;
    rtb)
      torch_py benches/reference/rtb_torch.py --states 32 --k 16 --T 20 --repeats 5 | tee -a "$refs"
      torch_py benches/reference/rtb_torch.py | tee -a "$refs" ;;
    eval) torch_py benches/reference/eval_torch.py | tee -a "$refs" ;;
    dataset) torch_py benches/reference/dataset_torch.py | tee -a "$refs" ;;
  esac
done
tch_args=()
if [ "${TCH:-0}" = 1 ]; then
  torch_lib=$(.venv-torch/bin/python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  tch_cargo() {
    LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv-torch/bin:$PATH" LD_LIBRARY_PATH="$torch_lib" \
      CARGO_TARGET_DIR=target/tch OFFRL_BENCH_BACKEND=tch cargo bench --features tch "$@"
  }
  for b in "${benches[@]}"; do
    case $b in
      dataset) ;; # no tensors
      rtb) echo "== offrl on LibTorch: rtb (CPU shapes)"; tch_cargo --bench rtb -- rtb_cpu 2>&1 | grep -E 'time:' || true ;;
      *) echo "== offrl on LibTorch: $b"; tch_cargo --bench "$b" 2>&1 | grep -E 'time:|skipping' || true ;;
    esac
  done
  tch_args=(--tch-criterion target/tch/criterion)
fi
python3 benches/reference/compare.py "$refs" "${tch_args[@]}"
