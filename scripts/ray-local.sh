#!/usr/bin/env bash
# A local Ray head for the Ray executor's tests (tests/bench_cluster.rs) and for trying
# `offrl bench --executor ray`: Ray from pip into the project's venv (${OFFRL_VENV:-.venv}; not in
# envs/python/requirements.txt: 240 MB that only this executor needs).
#   bash scripts/ray-local.sh start    # install if missing, `ray start --head`; no-op when up
#   bash scripts/ray-local.sh status   # exit 1 when no head answers
#   bash scripts/ray-local.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."

RAY_VERSION=2.60.0
VENV=${OFFRL_VENV:-.venv}
PY=$VENV/bin/python
fail() { echo "ray-local: $*" >&2; exit 1; }
[ -x "$PY" ] || fail "no python at $PY: run scripts/setup.sh first (or set OFFRL_VENV)"

up() { "$VENV/bin/ray" status --address=127.0.0.1:6379 >/dev/null 2>&1; }

case "${1:-}" in
  start)
    if ! "$PY" -c 'import ray' 2>/dev/null; then
      "$PY" -m pip install --quiet --disable-pip-version-check "ray==$RAY_VERSION" \
        || fail "pip install ray==$RAY_VERSION into $VENV failed"
    fi
    if up; then echo "ray-local: already up"; exit 0; fi
    "$VENV/bin/ray" start --head --port=6379 --num-cpus="$(nproc)" --include-dashboard=false \
      --disable-usage-stats >/tmp/ray-local-start.log 2>&1 \
      || fail "ray start --head failed (log: /tmp/ray-local-start.log)"
    for _ in $(seq 60); do
      if up; then echo "ray-local: up (ray $("$PY" -c 'import ray; print(ray.__version__)'))"; exit 0; fi
      sleep 1
    done
    fail "the head did not answer in 60 s (log: /tmp/ray-local-start.log)"
    ;;
  stop) "$VENV/bin/ray" stop --force >/dev/null 2>&1 || true; echo "ray-local: stopped" ;;
  status) if up; then "$VENV/bin/ray" status --address=127.0.0.1:6379; else echo "ray-local: no head answers" >&2; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
