# shellcheck shell=bash
# The graceful stop of moetrace's job scripts (sourced by sweep.sbatch, shard.sbatch,
# qwen3-30b-a3b.sbatch, mixtral-8x7b.sbatch and localize.sbatch; slurm/README.md, "Stopping,
# requeueing and resuming").
#
# A stop signal that reaches the batch shell (SIGUSR1 from `#SBATCH --signal=B:USR1@300`, or
# `scancel --signal=USR1|TERM --batch`) creates the run's stop file, OUT.stop, which moetrace watches
# (--stop-file): its writing rank sees it between two chunks, saves, and every rank exits 75. No
# signal is sent to mpirun or to moetrace. A signal to Open MPI's mpirun is forwarded to the ranks
# only while they run; one that arrives while mpirun shuts down (the ranks have finished) kills
# mpirun itself (status 138 for SIGUSR1) and would turn a finished run into a failed job. A stop file
# has no such window: before moetrace starts it stops the run at its first check, after the last
# save it is ignored (exit 0, the job goes on as completed).
#
#   stop_setup OUT            STOP_FILE=OUT.stop, a stale one removed, the traps installed
#   run_and_wait NAME CMD...  runs CMD, waits for its exit status (kept in $status) and reports it
#   requeue_on_stop OUT       after status 75: requeue (USR1) and exit 0, or exit 75 (TERM: stop, do
#                             not requeue); any other non-zero status: exit with it; 0: return

stop_setup() {  # $1: the results file
  STOP_FILE="$1.stop"
  stop_term=0 stop_signals=0
  mkdir -p "$(dirname "$1")"
  rm -f "$STOP_FILE"
  trap 'stop_asked USR1' USR1
  trap 'stop_asked TERM' TERM
}

stop_asked() {  # $1: the signal received
  stop_signals=$((stop_signals + 1))
  [[ "$1" == TERM ]] && stop_term=1
  : >"$STOP_FILE" || echo "cannot create the stop file $STOP_FILE" >&2
  echo "$(date -Is) $1 received: asked moetrace to stop ($STOP_FILE)"
}

run_and_wait() {  # $1: what runs (for the log), then the command
  local name="$1" child before
  shift
  "$@" &
  child=$!
  while :; do  # a trapped signal interrupts `wait` (status > 128): wait again for the command's own
    before=$stop_signals status=0
    wait "$child" || status=$?
    [[ "$status" -gt 128 && "$stop_signals" != "$before" ]] || break
  done
  rm -f "$STOP_FILE"
  echo "$name exited with status $status"
}

requeue_on_stop() {  # $1: the results file the rerun resumes
  if [[ "$status" == 75 && "$stop_term" == 0 ]]; then
    echo "stopped with its results saved: requeueing job $SLURM_JOB_ID (the rerun resumes $1)"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
  [[ "$status" == 0 ]] || exit "$status"
}
