#!/usr/bin/env bash
# One-time set-up on a fresh machine: the Python virtual environment used by the gymnasium
# bridge and the HDF5 importers (.venv in the repository), and a Rust toolchain check.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs), then re-run" >&2
  exit 1
fi
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
  echo "python3 >= 3.9 with its shared library is needed for the gymnasium bridge" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.offrl-requirements
if ! cmp -s envs/python/requirements.txt "$stamp" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r envs/python/requirements.txt
  cp envs/python/requirements.txt "$stamp"
fi
echo "setup: .venv ready ($(.venv/bin/python -c 'import gymnasium, mujoco; print("gymnasium", gymnasium.__version__, "mujoco", mujoco.__version__)'))"
