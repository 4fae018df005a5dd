#!/usr/bin/env bash
# A one-node Slurm on this machine (Debian's slurmctld + slurmd + munge, no systemd needed), for
# the Slurm executor's tests (tests/bench_cluster.rs) and for trying `offrl bench --executor slurm`.
#   bash scripts/slurm-local.sh start    # install if missing, configure, start; no-op when up
#   bash scripts/slurm-local.sh status   # sinfo; exit 1 when the controller does not answer
#   bash scripts/slurm-local.sh stop
# Needs root (apt, daemons). The node gets this machine's CPUs and memory (`slurmd -C`).
set -euo pipefail

fail() { echo "slurm-local: $*" >&2; exit 1; }

up() { sinfo -h >/dev/null 2>&1; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
     && command -v sbatch >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || fail "installing slurmctld, slurmd, slurm-client and munge needs root"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurmctld slurmd slurm-client munge >/tmp/slurm-local-apt.log 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q slurmctld slurmd slurm-client munge \
           >/tmp/slurm-local-apt.log 2>&1; } \
    || fail "apt-get install slurmctld slurmd slurm-client munge failed (log: /tmp/slurm-local-apt.log)"
}

configure() {
  local host node
  host=$(hostname -s)
  # `slurmd -C` prints this machine as a node line: CPUs, sockets, cores, memory.
  node=$(slurmd -C | head -1) || fail "slurmd -C failed"
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
  cat >/etc/slurm/slurm.conf <<EOF
# Written by offrl's scripts/slurm-local.sh: one node, this machine.
ClusterName=offrl-local
SlurmctldHost=${host}
SlurmUser=root
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
${node}
PartitionName=local Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
  # The node line names the host as slurmd sees it; the partition must use the same name.
  local nodename
  nodename=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' /etc/slurm/slurm.conf)
  sed -i "s/^PartitionName=local Nodes=[^ ]*/PartitionName=local Nodes=${nodename}/" /etc/slurm/slurm.conf
  sed -i "s/^SlurmctldHost=.*/SlurmctldHost=${nodename}/" /etc/slurm/slurm.conf
  grep -q "^[0-9.]* .*\b${nodename}\b" /etc/hosts || echo "127.0.0.1 ${nodename}" >>/etc/hosts
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 0700 /etc/munge
  chmod 0400 /etc/munge/munge.key
}

start() {
  if up; then echo "slurm-local: already up"; sinfo; return; fi
  install
  configure
  pgrep -x munged >/dev/null || su -s /bin/sh munge -c munged 2>/dev/null || munged --force \
    || fail "munged did not start"
  pgrep -x slurmctld >/dev/null || slurmctld || fail "slurmctld did not start (/var/log/slurm/slurmctld.log)"
  pgrep -x slurmd >/dev/null || slurmd || fail "slurmd did not start (/var/log/slurm/slurmd.log)"
  for _ in $(seq 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
    case "$state" in
      idle|mixed|allocated) echo "slurm-local: up"; sinfo; return ;;
      down*|drain*) scontrol update nodename="$(sinfo -h -o %N | head -1)" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  fail "the node did not become idle in 60 s (state: ${state:-none}; logs in /var/log/slurm)"
}

stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  echo "slurm-local: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if up; then sinfo; else echo "slurm-local: the controller does not answer" >&2; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
