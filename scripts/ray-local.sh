#!/usr/bin/env bash
# A local Ray head for the Ray executor's tests (tests/bench_cluster.rs) and for trying
# `offrl bench --executor ray`: Ray from pip into the project's venv (${OFFRL_VENV:-.venv}; not in
# envs/python/requirements.txt: a 79 MB wheel, ~260 MB installed, that only this executor needs).
#   bash scripts/ray-local.sh start    # install if missing, `ray start --head`; no-op when up
#   bash scripts/ray-local.sh status   # `ray status`; exit 1 when no head answers
#   bash scripts/ray-local.sh stop
# The head listens on port 6379 (GCS) on all interfaces; connect with ray.init(address="auto") or
# "127.0.0.1:6379". Its workers run in the repository root with the environment `start` had: a
# driver should give each task's subprocess its cwd and environment explicitly. OFFRL_RAY_WAIT:
# seconds to wait for the head (60).
set -euo pipefail
cd "$(dirname "$0")/.."

RAY_VERSION=2.60.0
PORT=6379
WAIT=${OFFRL_RAY_WAIT:-60}
VENV=${OFFRL_VENV:-.venv}
PY=$VENV/bin/python
LOG=/tmp/ray-local-start.log
fail() { echo "ray-local: $*" >&2; exit 1; }
[ -x "$PY" ] || fail "no python at $PY: run scripts/setup.sh first (or set OFFRL_VENV)"

# A TCP probe of the GCS port: `ray status` and ray.init() retry a dead address for 40 s or more.
listening() {
  "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), timeout=2).close()" \
    2>/dev/null
}
up() { listening && timeout 20 "$VENV/bin/ray" status --address="127.0.0.1:$PORT" >/dev/null 2>&1; }

start() {
  if ! "$PY" -c "import ray, sys; sys.exit(ray.__version__ != '$RAY_VERSION')" 2>/dev/null; then
    "$PY" -m pip install --quiet --disable-pip-version-check "ray==$RAY_VERSION" >"$LOG" 2>&1 \
      || fail "pip install ray==$RAY_VERSION into $VENV failed (log: $LOG)"
  fi
  if up; then echo "ray-local: already up (ray $RAY_VERSION, 127.0.0.1:$PORT)"; return; fi
  # Something half-up (a GCS without its raylet, a killed head's leftovers): clear it first.
  "$VENV/bin/ray" stop --force >/dev/null 2>&1 || true
  if listening; then fail "port $PORT is taken by something that is not a Ray head (ss -ltnp | grep :$PORT)"; fi
  RAY_USAGE_STATS_ENABLED=0 "$VENV/bin/ray" start --head --port="$PORT" --num-cpus="$(nproc)" \
    --include-dashboard=false --disable-usage-stats >"$LOG" 2>&1 \
    || fail "ray start --head --port=$PORT failed ($(grep -E '^[A-Za-z_.]*(Error|Exception):' "$LOG" | tail -1 | cut -c1-200 || true); log: $LOG)"
  local end=$((SECONDS + WAIT))
  while [ $SECONDS -lt $end ]; do
    if up; then echo "ray-local: up (ray $RAY_VERSION, 127.0.0.1:$PORT)"; return; fi
    sleep 1
  done
  fail "ran ray start --head --port=$PORT but no head answered within ${WAIT} s (log: $LOG)"
}

case "${1:-}" in
  start) start ;;
  stop) "$VENV/bin/ray" stop --force >/dev/null 2>&1 || true; echo "ray-local: stopped" ;;
  status)
    if listening && timeout 20 "$VENV/bin/ray" status --address="127.0.0.1:$PORT"; then :
    else echo "ray-local: no Ray head answers at 127.0.0.1:$PORT" >&2; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
