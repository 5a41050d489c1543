#!/usr/bin/env bash
# A private one-node Slurm cluster (Debian slurm-wlm 22.05 + munge) for testing slurm/*.sbatch.
#
#   bash tests/slurm/cluster.sh start    # install (apt) if needed, write config, start daemons
#   bash tests/slurm/cluster.sh status   # daemons, sinfo, MPI plugins; exit 0 when all are up
#   bash tests/slurm/cluster.sh stop     # cancel this cluster's jobs, stop the daemons it started
#   eval "$(bash tests/slurm/cluster.sh env)"   # export SLURM_CONF for sbatch/squeue/scontrol
#
# Everything lives in a state folder ($NTKSWEEP_SLURM_STATE, default /run/ntksweep-slurm): its own
# slurm.conf, munge key and socket, spool folders, logs and the PID files of the daemons this script
# started. It uses its own ports ($NTKSWEEP_SLURM_PORT and the next one, default 6917/6918) and its
# own munge socket, so it neither needs nor touches /etc/slurm, a system munged or another Slurm on
# the machine; `stop` kills exactly the PIDs recorded here (after checking the process name).
# Client commands find this cluster through SLURM_CONF=<state>/slurm.conf (see `env`).
#
# Needs root (daemons run as root; munged as user munge). Exit codes: 0 ok, 1 failure,
# 77 cannot run here (not root, or slurm-wlm/munge cannot be installed).
set -euo pipefail

STATE=${NTKSWEEP_SLURM_STATE:-/run/ntksweep-slurm}
PORT=${NTKSWEEP_SLURM_PORT:-6917}
CONF=$STATE/slurm.conf
MUNGE_SOCKET=$STATE/munge/munge.socket
export SLURM_CONF=$CONF

log() { echo "cluster.sh: $*" >&2; }

# pid_of NAME: the recorded PID of daemon NAME if that process is alive and still is NAME.
pid_of() {
  local f=$STATE/$1.pid p
  [ -f "$f" ] || return 1
  p=$(tr -dc 0-9 <"$f")
  [ -n "$p" ] && [ -r "/proc/$p/comm" ] && [ "$(cat "/proc/$p/comm")" = "$1" ] && echo "$p"
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null &&
     command -v munged >/dev/null; then
    return 0
  fi
  command -v apt-get >/dev/null || { log "slurm-wlm/munge missing and no apt-get"; return 77; }
  log "installing slurm-wlm and munge with apt-get"
  # Keep package scripts from starting system daemons: we start our own.
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"
  fi
  local rc=0
  # Without SLURM_CONF: package scripts that call Slurm commands must not wait for our config.
  { env -u SLURM_CONF apt-get update -qq &&
    env -u SLURM_CONF DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; } || rc=$?
  [ -n "$policy" ] && rm -f "$policy"
  if [ "$rc" != 0 ] || ! command -v slurmctld >/dev/null; then
    log "apt-get could not install slurm-wlm/munge (exit $rc)"; return 77
  fi
}

write_config() {
  local host cpus mem
  host=$(hostname -s); cpus=$(nproc --all); mem=$(( $(free -m | awk '/Mem:/{print $2}') - 1024 ))
  [ "$mem" -gt 512 ] || mem=512
  # At least 2 CPUs so a 2-rank job fits on a 1-core machine (config_overrides lets slurmd accept it).
  [ "$cpus" -ge 2 ] || cpus=2
  mkdir -p "$STATE"/{munge,spool/slurmctld,spool/slurmd,log}
  chmod 755 "$STATE"
  cat >"$CONF.new" <<EOF
# Written by tests/slurm/cluster.sh: a private one-node test cluster. Do not edit; rerun start.
ClusterName=ntksweep-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
ReturnToService=2
SlurmdParameters=config_overrides
# Direct launch of Open MPI programs needs srun --mpi=pmix; plain srun has no PMI.
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# No accounting (sacct): keep finished jobs in scontrol show job for an hour instead.
MinJobAge=3600
# Time between SIGTERM and SIGKILL when a job is cancelled or reaches its time limit.
KillWait=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then
    rm -f "$CONF.new"
  else
    mv "$CONF.new" "$CONF"
    if pid_of slurmctld >/dev/null; then log "config changed while running: run stop, then start"; fi
  fi
}

start_munge() {
  pid_of munged >/dev/null && return 0
  id munge >/dev/null 2>&1 || { log "no user munge (is the munge package installed?)"; return 1; }
  local m=$STATE/munge
  [ -s "$m/munge.key" ] || { dd if=/dev/urandom bs=1 count=1024 of="$m/munge.key" 2>/dev/null; }
  chown -R munge:munge "$m"; chmod 700 "$m"; chmod 400 "$m/munge.key"
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  runuser -u munge -- /usr/sbin/munged --force --socket="$MUNGE_SOCKET" --key-file="$m/munge.key" \
    --pid-file="$m/munged.pid" --log-file="$m/munged.log" --seed-file="$m/munged.seed"
  for _ in $(seq 50); do [ -S "$MUNGE_SOCKET" ] && [ -s "$m/munged.pid" ] && break; sleep 0.1; done
  cp "$m/munged.pid" "$STATE/munged.pid"
  pid_of munged >/dev/null || { log "munged did not start (see $m/munged.log)"; return 1; }
  # Slurm reaches munge through the socket; the folder must be traversable by root only.
}

start() {
  [ "$(id -u)" = 0 ] || { log "needs root"; return 77; }
  install_packages || return $?
  write_config
  start_munge
  if ! pid_of slurmctld >/dev/null; then
    if ss -ltn 2>/dev/null | grep -q ":$PORT "; then
      log "port $PORT is taken (set NTKSWEEP_SLURM_PORT)"; return 1
    fi
    slurmctld -f "$CONF"
  fi
  pid_of slurmd >/dev/null || slurmd -f "$CONF"
  local up=""
  for _ in $(seq 60); do
    if pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null &&
       sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then up=1; break; fi
    sleep 0.5
  done
  [ -n "$up" ] || { log "cluster did not come up; logs in $STATE/log"; tail -n 5 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true; return 1; }
  status
}

status() {
  local ok=0 d p
  for d in munged slurmctld slurmd; do
    if p=$(pid_of $d); then echo "$d running (pid $p, started by cluster.sh)"; else echo "$d not running"; ok=1; fi
  done
  echo "export SLURM_CONF=$CONF"
  if [ "$ok" = 0 ]; then
    sinfo 2>&1 || ok=1
    echo "srun --mpi=list: $(srun --mpi=list </dev/null 2>&1 | tr -s ' \n' ' ')"
  fi
  return $ok
}

stop() {
  local d p
  if pid_of slurmctld >/dev/null; then
    scancel --full --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
  fi
  for d in slurmd slurmctld munged; do
    if p=$(pid_of $d); then
      kill "$p" 2>/dev/null || true
      for _ in $(seq 100); do [ -d "/proc/$p" ] || break; sleep 0.1; done
      [ -d "/proc/$p" ] && { log "$d (pid $p) ignored SIGTERM; killing"; kill -KILL "$p" 2>/dev/null || true; }
      echo "stopped $d (pid $p)"
    fi
    rm -f "$STATE/$d.pid"
  done
  rm -f "$STATE/munge/munged.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
