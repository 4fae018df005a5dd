#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, the Rust tests, the Python package's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test
bash scripts/python-package.sh test
