#!/usr/bin/env bash
# A private one-node Slurm cluster for tests, started by hand from Debian's slurm-wlm and munge:
# munged with its own key and socket, slurmctld and slurmd on free local ports, every file under one
# folder (never /etc/slurm, /etc/munge or /run/munge), proctrack/linuxproc and task/none (no cgroups).
# Source this file, then:
#   cluster_start DIR     writes DIR/slurm.conf, starts the daemons, exports SLURM_CONF; returns 77
#                         (after stopping whatever it started) when Slurm cannot run here
#   cluster_stop          stops every daemon it started, by the PIDs it recorded (also from a trap)
#   job_state ID          the job's state (PENDING, RUNNING, COMPLETED, FAILED, ...)
#   job_wait ID STATE... SECONDS   waits until the job is in one of the states; fails on timeout
# Needs root (slurmd runs jobs as their user; the daemons run as root here).

cluster_dir="" cluster_pids=()

cluster_log() { echo "[slurm-test $(date +%H:%M:%S)] $*" >&2; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts one daemon and records its PID from its pid file (the daemons fork into the background).
start_daemon() {  # name pidfile command...
  local name="$1" pidfile="$2"; shift 2
  if ! "$@" >>"$cluster_dir/log/$name.start" 2>&1; then
    cluster_log "$name did not start: $(tail -n 3 "$cluster_dir/log/$name.start" | tr '\n' ' ')"
    return 1
  fi
  local i
  for i in $(seq 50); do
    [[ -s "$pidfile" ]] && break
    sleep 0.1
  done
  [[ -s "$pidfile" ]] || { cluster_log "$name wrote no pid file $pidfile"; return 1; }
  cluster_pids+=("$(cat "$pidfile")")
  cluster_log "$name started, pid ${cluster_pids[-1]}"
}

cluster_start() {
  cluster_dir="$1"
  mkdir -p "$cluster_dir"/{munge,state,spool,log}
  chmod 700 "$cluster_dir/munge"
  local host
  host="$(hostname -s)"
  dd if=/dev/urandom of="$cluster_dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$cluster_dir/munge/munge.key"
  start_daemon munged "$cluster_dir/munge/munged.pid" \
    munged --force --socket="$cluster_dir/munge/socket" --key-file="$cluster_dir/munge/munge.key" \
    --pid-file="$cluster_dir/munge/munged.pid" --log-file="$cluster_dir/log/munged.log" \
    --seed-file="$cluster_dir/munge/seed" || { cluster_stop; return 77; }
  cat >"$cluster_dir/slurm.conf" <<EOF
# Written by tests/slurm/slurm_cluster.sh: a private one-node cluster.
ClusterName=moetrace-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$cluster_dir/munge/socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$cluster_dir/state
SlurmdSpoolDir=$cluster_dir/spool
SlurmctldPidFile=$cluster_dir/slurmctld.pid
SlurmdPidFile=$cluster_dir/slurmd.pid
SlurmctldLogFile=$cluster_dir/log/slurmctld.log
SlurmdLogFile=$cluster_dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SwitchType=switch/none
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
JobRequeue=1
KillWait=30
InactiveLimit=0
MinJobAge=3600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 )) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$cluster_dir/slurm.conf"
  start_daemon slurmctld "$cluster_dir/slurmctld.pid" slurmctld -f "$SLURM_CONF" || { cluster_stop; return 77; }
  start_daemon slurmd "$cluster_dir/slurmd.pid" slurmd -f "$SLURM_CONF" || { cluster_stop; return 77; }
  local i
  for i in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then cluster_log "node idle: $(sinfo -h -o '%P %D %T %c CPUs')"; return 0; fi
    sleep 0.5
  done
  cluster_log "the node never became idle: $(sinfo 2>&1 | tr '\n' ' ')"
  tail -n 5 "$cluster_dir"/log/slurm*.log >&2 || true
  cluster_stop
  return 77
}

cluster_stop() {
  local pid
  for pid in "${cluster_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${cluster_pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  ((${#cluster_pids[@]})) && cluster_log "stopped daemons ${cluster_pids[*]}"
  cluster_pids=()
}

job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1; }
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }

job_wait() {  # id states... seconds
  local id="$1" limit="${*: -1}" states=("${@:2:$#-2}") t0=$SECONDS state
  while :; do
    state="$(job_state "$id")"
    local s
    for s in "${states[@]}"; do [[ "$state" == "$s" ]] && return 0; done
    if (( SECONDS - t0 > limit )); then
      cluster_log "job $id is $state after ${limit}s, expected ${states[*]}"
      return 1
    fi
    sleep 1
  done
}
