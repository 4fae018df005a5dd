#!/usr/bin/env bash
# A one-node Slurm on this machine (Debian's slurmctld + slurmd + munge, no systemd needed), for
# the Slurm executor's tests (tests/bench_cluster.rs) and for trying `offrl bench --executor slurm`.
#   bash scripts/slurm-local.sh start    # install if missing, configure, start; no-op when up
#   bash scripts/slurm-local.sh status   # sinfo; exit 1 when the controller does not answer
#   bash scripts/slurm-local.sh stop
# Needs root (apt, daemons). The node gets this machine's CPUs and memory (`slurmd -C`); jobs run
# as root in their submit directory (or --chdir). Accounting is off: no sacct; a finished job stays
# in squeue/scontrol for MinJobAge (30 s). Logs: /var/log/slurm/. OFFRL_SLURM_WAIT: seconds to
# wait for the node to become idle (60).
set -euo pipefail

WAIT=${OFFRL_SLURM_WAIT:-60}
CONF=/etc/slurm/slurm.conf
PKGS=(slurmctld slurmd slurm-client munge)

fail() { echo "slurm-local: $*" >&2; exit 1; }

running() { pgrep -x "$1" >/dev/null; }
# `scontrol ping` answers at once; sinfo/squeue/sbatch retry a dead controller for ~9 s.
ctld_up() { scontrol ping >/dev/null 2>&1; }
node_state() { sinfo -h -o %T 2>/dev/null | head -1 || true; }
# The controller keeps calling a node idle for minutes after its slurmd died: check the daemons too.
ready() {
  running munged && running slurmd && ctld_up || return 1
  case "$(node_state)" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

install() {
  local missing=()
  for b in slurmctld slurmd munged sbatch; do command -v "$b" >/dev/null || missing+=("$b"); done
  [ ${#missing[@]} = 0 ] && return
  [ "$(id -u)" = 0 ] || fail "installing ${PKGS[*]} (for ${missing[*]}) needs root"
  export DEBIAN_FRONTEND=noninteractive
  local log=/tmp/slurm-local-apt.log
  # A clean machine may have no package lists yet: update only when the first try fails.
  apt-get install -y -q --no-install-recommends "${PKGS[@]}" >"$log" 2>&1 \
    || { apt-get update -q >>"$log" 2>&1 \
         && apt-get install -y -q --no-install-recommends "${PKGS[@]}" >>"$log" 2>&1; } \
    || fail "apt-get install --no-install-recommends ${PKGS[*]} failed (log: $log)"
}

configure() {
  local node nodename
  # `slurmd -C` prints this machine as a node line: name, CPUs, sockets, cores, memory.
  node=$(slurmd -C 2>/dev/null | head -1) || fail "slurmd -C failed (cannot describe this node)"
  nodename=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$node")
  [ -n "$nodename" ] || fail "slurmd -C printed no NodeName line: '$node'"
  # The node and the controller are this host under the name slurmd uses; make it resolve.
  getent hosts "$nodename" >/dev/null || echo "127.0.0.1 ${nodename}" >>/etc/hosts
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  cat >"$CONF.tmp" <<EOF
# Written by offrl's scripts/slurm-local.sh: one node, this machine.
ClusterName=offrl-local
SlurmctldHost=${nodename}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
MinJobAge=30
# A job asking for more than the node has fails at submission instead of pending forever.
EnforcePartLimits=ALL
${node}
PartitionName=local Nodes=${nodename} Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  if id munge >/dev/null 2>&1; then
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  fi
  chmod 0700 /etc/munge
  chmod 0400 /etc/munge/munge.key
}

start_munged() {
  running munged && return
  # munged refuses a stale socket lock left by a killed daemon: --force takes it over.
  if id munge >/dev/null 2>&1; then
    su -s /bin/sh munge -c 'munged --force' >/dev/null 2>&1 || true
  fi
  running munged || munged --force >/dev/null 2>&1 || true
  running munged || fail "munged did not start (tried as user munge and as root; /var/log/munge/munged.log)"
}

start() {
  if ready; then echo "slurm-local: already up ($(node_state))"; return; fi
  install
  # Daemons left half-up (a controller without its node, or the reverse) are restarted with the
  # configuration written below.
  if ! ctld_up || ! running slurmd; then stop_daemons; fi
  configure
  start_munged
  running slurmctld || slurmctld >/dev/null 2>&1 \
    || fail "slurmctld did not start (/var/log/slurm/slurmctld.log: $(tail -1 /var/log/slurm/slurmctld.log 2>/dev/null))"
  running slurmd || slurmd >/dev/null 2>&1 \
    || fail "slurmd did not start (/var/log/slurm/slurmd.log: $(tail -1 /var/log/slurm/slurmd.log 2>/dev/null))"
  local state="" end=$((SECONDS + WAIT))
  while [ $SECONDS -lt $end ]; do
    if ctld_up; then
      state=$(node_state)
      case "$state" in
        idle | mixed | allocated | completing) echo "slurm-local: up ($state)"; return ;;
        down* | drain* | fail*) scontrol update nodename="$(sinfo -h -o %N | head -1)" state=resume \
                                  >/dev/null 2>&1 || true ;;
      esac
    else
      state="controller not answering"
    fi
    sleep 1
  done
  fail "started munged, slurmctld and slurmd but the node was not idle within ${WAIT} s" \
    "(state: ${state:-none}; logs: /var/log/slurm/)"
}

stop_daemons() {
  local d
  for d in slurmd slurmctld; do pkill -x "$d" 2>/dev/null || true; done
  for _ in $(seq 50); do running slurmd || running slurmctld || break; sleep 0.2; done
  for d in slurmd slurmctld; do pkill -9 -x "$d" 2>/dev/null || true; done
}

stop() {
  stop_daemons
  pkill -x munged 2>/dev/null || true
  for _ in $(seq 25); do running munged || break; sleep 0.2; done
  pkill -9 -x munged 2>/dev/null || true
  echo "slurm-local: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if ctld_up; then sinfo; else echo "slurm-local: the controller does not answer" >&2; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
