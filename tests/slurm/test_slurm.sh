#!/usr/bin/env bash
# Integration test on a live Slurm (ctest label `slurm`): starts a private one-node cluster
# (slurm_cluster.sh: munged, slurmctld, slurmd on free local ports, config in a temporary folder) and
# submits the project's own scripts in slurm/, unchanged, through their documented variables:
#   1. sweep.sbatch on a reduced demo workload completes, and `moetrace report` reads its results;
#   2. sweep.sbatch signalled with `scancel --signal=USR1 --batch`: moetrace saves and exits 75, the job
#      requeues itself, resumes, and its results are bit-identical to job 1's (the log, kept by
#      --open-mode=append, shows both runs);
#   3. qwen3-30b-a3b.sbatch as a 2-rank MPI job (mpirun inside the allocation, --gpus-per-node=0),
#      stopped gracefully with `scancel --signal=TERM --batch` (every rank saves, exit 75, no requeue),
#      then submitted again: it resumes, completes, and is bit-identical to job 1;
#   6. localize.sbatch on the multilingual demo, 2 MPI ranks: completes, writes its report, and equals a
#      one-process run of the same config;
#   4. a chain: sweep.sbatch, then a report job with --dependency=afterok on it: both complete, the
#      report job starts only after the sweep, and the results are bit-identical to job 1's;
#   5. a staged study (slurm/chain.sh, SHARDS=2): job arrays of shards for the three per-case stages,
#      a merge after each, the final run and the report, each --dependency=afterok on the previous;
#      one shard of the first array is stopped with USR1 (exit 75, requeued, resumed): every job and
#      array task completes, each step starts after the one it depends on has ended, the shards stop
#      where documented, and the final merged results are bit-identical to job 1's.
# Jobs 2, 3 and the shard of 5 are stopped while moetrace is held at a pause point (MOETRACE_TEST_PAUSE
# with a mark file, util/stop_signal.h: the requeued or resubmitted run passes it), never after
# waiting for a log line, so the stop always lands inside the run however loaded the machine is.
# Every daemon it started is stopped by PID on exit, whatever happens. Exits 77 (skipped) only where
# Slurm cannot run at all (no packages and no apt-get, not root, daemons that do not start).
#
#   tests/slurm/test_slurm.sh MOETRACE_BINARY [WORK_DIR]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
moetrace="${1:-${MOETRACE_BINARY:-}}"
[[ -x "$moetrace" ]] || { echo "usage: $0 MOETRACE_BINARY [WORK_DIR] (no binary at '$moetrace')" >&2; exit 2; }
moetrace="$(realpath "$moetrace")"
# shellcheck source=tests/slurm/slurm_cluster.sh
source "$here/slurm_cluster.sh"

skip() { echo "SKIPPED: $*" >&2; exit 77; }
[[ "$(id -u)" == 0 ]] || skip "the private cluster's daemons need root"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || skip "slurm-wlm and munge are not installed and there is no apt-get"
  cluster_log "installing slurm-wlm and munge"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge; } \
    >/dev/null 2>&1 || skip "apt-get could not install slurm-wlm and munge"
fi

keep_work=1
if [[ -z "${2:-}" ]]; then work="$(mktemp -d "${TMPDIR:-/tmp}/moetrace-slurm-test.XXXXXX")"; keep_work=0; else work="$2"; fi
mkdir -p "$work"
work="$(realpath "$work")"
trap 'cluster_stop' EXIT
trap 'exit 1' INT TERM
cluster_start "$work/cluster"
rc=$?
[[ $rc == 0 ]] || skip "Slurm could not start here (daemon logs in $work/cluster/log)"

failures=0 checks=0
check() {  # description, then a command: counts a failure instead of stopping (every daemon is stopped anyway)
  local what="$1"; shift
  checks=$((checks + 1))
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what" >&2; failures=$((failures + 1)); fi
}

# The reduced demo workload: every usable case, 8 noise samples (long enough to be stopped in the
# middle), no heat maps or robustness grids, a snapshot every second.
cat >"$work/workload.toml" <<EOF
[model]
path = "$root/demo/model"
[data]
counterfact = "$root/demo/counterfact_demo.json"
object_rule = "leading_space"
[cases]
n = 0
[noise]
samples = 8
[experts]
mode = "selected_layer"
candidate_threshold = 0.5
sampled_controls = 3
[statistics]
bootstrap = 1000
sign_flips = 1000
[heatmap]
cases = 0
[run]
checkpoint_every_s = 1
progress_every_s = 1
EOF

cd "$root"  # the scripts run from the submit directory
export MOETRACE="$moetrace"
submit() { sbatch --parsable "$@" | cut -d';' -f1; }
common=(--cpus-per-task=1 --time=30)
finished=(COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY BOOT_FAIL DEADLINE PREEMPTED)

# Half the chunks of a run of the workload (util/stop_signal.h, "count" mode): where jobs 2 and 3 are held.
MOETRACE_TEST_PAUSE=chunk:count "$moetrace" run "$work/workload.toml" --out "$work/count.h5" >"$work/count.log" 2>&1 ||
  echo "FAILED: the counting run of the workload (log: $work/count.log)" >&2
chunks="$(grep -c "test pause point chunk passed" "$work/count.log")"
half=$((chunks / 2 > 0 ? chunks / 2 : 1))
cluster_log "a run of the workload passes $chunks chunk pause points; jobs 2 and 3 are held at chunk $half"

# Waits until a moetrace process of the job has created the pause mark (it is held there), or the job
# ended, then sends the signal to the job's batch shell (the mark file names the job, for array tasks).
stop_at_pause() {  # mark signal -> the job id signalled
  local job=""
  for _ in $(seq 3000); do
    [[ -s "$1" ]] && { job="$(sed -n 's/.* job \([0-9]*\).*/\1/p' "$1")"; break; }
    sleep 0.2
  done
  [[ -n "$job" ]] || { echo "no moetrace process reached its pause point ($1)" >&2; echo none; return; }
  scancel --signal="$2" --batch "$job"
  cluster_log "job $job: $2 sent to the batch shell (held at $(cat "$1"))"
  echo "$job"
}
pause_env() {  # mark -> the --export additions that hold a run at chunk $half once
  echo "MOETRACE_TEST_PAUSE=chunk:$half,MOETRACE_TEST_PAUSE_MARK=$1"
}

# Releases a job that requeued itself from Slurm's requeue hold (BeginTime, 120 s by default), once it
# is pending again. Not at once: slurmd refuses to launch a job id whose previous run it is still
# finishing ("Job N already killed, do not launch batch job": the rerun fails with exit 1), which the
# default hold rules out on a real cluster; 5 s of it are kept here.
release_requeued() {
  for _ in $(seq 300); do
    [[ "$(job_field "$1" Restarts)" -ge 1 && "$(job_state "$1")" == PENDING ]] 2>/dev/null && break
    sleep 0.2
  done
  scontrol update JobId="$1" StartTime=now+5 >/dev/null 2>&1 || true
}

# 1. The demo sweep.
a=$(submit "${common[@]}" --job-name=sweep-a --output="$work/a.log" \
  --export=ALL,CONFIG="$work/workload.toml",OUT="$work/a.h5" slurm/sweep.sbatch)
cluster_log "job $a: sweep.sbatch"

# 2. The same, stopped with USR1 to the batch shell while held half way through its chunks.
b=$(submit "${common[@]}" --job-name=sweep-b --output="$work/b.log" \
  --export=ALL,CONFIG="$work/workload.toml",OUT="$work/b.h5,$(pause_env "$work/b.pause")" slurm/sweep.sbatch)
cluster_log "job $b: sweep.sbatch, to be stopped"
stop_at_pause "$work/b.pause" USR1 >/dev/null
# The job exits 75 and requeues itself; Slurm holds a requeued job (BeginTime, 120 s): release it early.
release_requeued "$b"
check "job $b requeued itself (Restarts=$(job_field "$b" Restarts))" test "$(job_field "$b" Restarts)" -ge 1

# 3. Two MPI ranks with mpirun inside the allocation, no GPUs, stopped with TERM to the batch shell
#    (the graceful stop of slurm/README.md: the script passes it to mpirun as USR1, every rank saves,
#    exits 75, and the job is not requeued), then submitted again: it resumes and completes.
mpi_job() {
  submit --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 --time=30 \
    --job-name=mpi-c --output="$work/c.log" \
    --export=ALL,CONFIG="$work/workload.toml",OUT="$work/c.h5",EP=1,WEIGHT_STORE="$work/store",OMPI_ALLOW_RUN_AS_ROOT=1,OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1,"$(pause_env "$work/c.pause")" \
    slurm/qwen3-30b-a3b.sbatch
}
c=$(mpi_job)
cluster_log "job $c: qwen3-30b-a3b.sbatch, 2 ranks, to be stopped"
stop_at_pause "$work/c.pause" TERM >/dev/null

# 4. A chain: a sweep, then a report job that depends on it.
d1=$(submit "${common[@]}" --job-name=chain-1 --output="$work/d1.log" \
  --export=ALL,CONFIG="$work/workload.toml",OUT="$work/d.h5",WEIGHT_STORE="$work/store" slurm/sweep.sbatch)
d2=$(submit --cpus-per-task=1 --time=10 --job-name=chain-2 --output="$work/d2.log" --dependency=afterok:"$d1" \
  --wrap="'$moetrace' report '$work/d.h5'")
cluster_log "jobs $d1 -> $d2: chain (afterok)"

# 5. A staged study: slurm/chain.sh with 2 shards per stage (the options go to every sbatch).
chain_dir="$work/chain"
# The first shard task that reaches its first chunk is held there (the mark names it) and stopped.
chain_jobs="$(CONFIG="$work/workload.toml" OUT_DIR="$chain_dir" SHARDS=2 MOETRACE_TEST_PAUSE=chunk:1 \
  MOETRACE_TEST_PAUSE_MARK="$work/chain.pause" bash slurm/chain.sh "${common[@]}")" ||
  echo "FAILED: slurm/chain.sh did not submit the chain" >&2
declare -A chain=()
while read -r step id; do [[ -n "$step" ]] && chain[$step]="$id"; done <<<"$chain_jobs"
cluster_log "staged chain: $(tr '\n' ' ' <<<"$chain_jobs")"
chain_steps=(stage1-shards stage1-merge stage2-shards stage2-merge stage3-shards stage3-merge final report)
# The held shard task of the first array is stopped with USR1: it saves, exits 75 and requeues
# itself; the merge waits for it.
shard0="$(stop_at_pause "$work/chain.pause" USR1)"
shard0_task="$(sed -n 's/.* task \([0-9]*\).*/\1/p' "$work/chain.pause" 2>/dev/null)"
shard0_log="$chain_dir/logs/stage1.shard${shard0_task:-0}.log"
cluster_log "job $shard0 (stage 1, shard ${shard0_task:-?}): USR1 sent to the batch shell"
release_requeued "$shard0"

job_wait "$c" "${finished[@]}" 900 || true
echo "job $c ($(job_field "$c" JobName)): $(job_state "$c"), exit code $(job_field "$c" ExitCode), restarts $(job_field "$c" Restarts)"
check "job $c's log shows every rank stopping with status 75" grep -q "mpirun exited with status 75" "$work/c.log"
check "job $c was not requeued (a TERM means stop)" test "$(job_field "$c" Restarts)" == 0
c2=$(mpi_job)
cluster_log "job $c2: the same MPI job submitted again (resumes $work/c.h5)"

# 6. Localisation: slurm/localize.sbatch on the multilingual demo as a 2-rank MPI job (report written
#    beside the results, plots skipped), against a one-process run of the same config.
e=$(submit --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 --time=30 \
  --job-name=localize-e --output="$work/e.log" \
  --export=ALL,CONFIG="$root/configs/demo_localize.toml",OUT="$work/e.h5",PLOTS=0,EP=1,WEIGHT_STORE="$work/store",OMPI_ALLOW_RUN_AS_ROOT=1,OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  slurm/localize.sbatch)
cluster_log "job $e: localize.sbatch, 2 ranks"
"$moetrace" --log-level warn localize "$root/configs/demo_localize.toml" --out "$work/e_ref.h5" >"$work/e_ref.log" 2>&1 ||
  echo "FAILED: the reference localize run" >&2

for j in "$a" "$b" "$c2" "$d1" "$d2" "$e"; do
  job_wait "$j" "${finished[@]}" 900 || true
  echo "job $j ($(job_field "$j" JobName)): $(job_state "$j"), exit code $(job_field "$j" ExitCode), restarts $(job_field "$j" Restarts)"
done

check "job $a (sweep) completed" test "$(job_state "$a")" == COMPLETED
# WEIGHT_STORE (slurm/weights.sh): jobs c, d and e map the packed weight store (docs/weights.md); their
# results are compared with job a's (no store) below.
for log in c d1 e; do
  check "$log.log: the job mapped the weight store" grep -q "weights: mapped from the weight store $work/store/" "$work/$log.log"
done
check "moetrace report reads job $a's results" "$moetrace" report "$work/a.h5" >"$work/a.report.txt"
check "the report names the selected layer" grep -q "layer" "$work/a.report.txt"
check "job $b (stopped, requeued, resumed) completed" test "$(job_state "$b")" == COMPLETED
check "job $b's log shows moetrace exiting 75" grep -q "moetrace exited with status 75" "$work/b.log"
check "job $b's log shows the requeue" grep -q "requeueing job $b" "$work/b.log"
check "job $b's log shows the resumed run finishing (log appended, not truncated)" \
  grep -q "moetrace exited with status 0" "$work/b.log"
check "job $c2 (2 MPI ranks, resumed) completed" test "$(job_state "$c2")" == COMPLETED
check "job $c2 resumed the stopped job's results" grep -q "resuming $work/c.h5" "$work/c.log"
check "job $d1 (chain, first) completed" test "$(job_state "$d1")" == COMPLETED
check "job $d2 (chain, afterok) completed" test "$(job_state "$d2")" == COMPLETED
check "job $d2 started after job $d1 ended" python3 - "$(job_field "$d1" EndTime)" "$(job_field "$d2" StartTime)" <<'PY'
import sys, datetime
end, start = (datetime.datetime.fromisoformat(t) for t in sys.argv[1:3])
sys.exit(0 if start >= end else 1)
PY
check "results of jobs $b (resumed), $c2 (2 ranks, resumed) and $d1 (chain) are bit-identical to job $a's" \
  /usr/bin/python3 "$root/tools/compare_results.py" "$work/a.h5" "$work/b.h5" "$work/c.h5" "$work/d.h5"

check "job $e (localize.sbatch, 2 ranks) completed" test "$(job_state "$e")" == COMPLETED
check "job $e wrote the localisation report" grep -q "Deactivation effect" "$work/e.report.txt"
check "job $e's results (2 ranks under Slurm) are bit-identical to a one-process run" \
  /usr/bin/python3 "$root/tools/compare_results.py" "$work/e_ref.h5" "$work/e.h5"

# 5. The staged chain: wait for the report job (or any failure), then check every job and array task.
chain_failed() {  # true when a job or array task of the chain failed (the rest would never start)
  local id
  for id in "${chain[@]}"; do
    scontrol -o show job "$id" 2>/dev/null | grep -qE 'JobState=(FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)' && return 0
  done
  return 1
}
t0=$SECONDS
while [[ -n "${chain[report]:-}" ]] && (( SECONDS - t0 < 900 )); do
  [[ " ${finished[*]} " == *" $(job_state "${chain[report]}") "* ]] && break
  chain_failed && break
  sleep 1
done
records() { scontrol -o show job "$1" 2>/dev/null; }  # one line per job, or per task of an array
field() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }
for step in "${chain_steps[@]}"; do
  while read -r line; do
    [[ -n "$line" ]] || continue
    task="$(field ArrayTaskId <<<"$line")"
    echo "chain $step: job $(field JobId <<<"$line")${task:+ (array $(field ArrayJobId <<<"$line") task $task)}:" \
      "$(field JobState <<<"$line"), exit code $(field ExitCode <<<"$line"), restarts $(field Restarts <<<"$line")"
  done < <(records "${chain[$step]:-none}")
done
check "slurm/chain.sh submitted ${#chain_steps[@]} jobs (3 arrays of 2 shards, 3 merges, final, report)" \
  test "${#chain[@]}" == "${#chain_steps[@]}"
all_completed() {  # every record of the job (every array task) COMPLETED, and as many as expected
  local n
  n="$(records "$1" | grep -c 'JobState=COMPLETED')"
  [[ "$n" == "$2" && "$(records "$1" | grep -vc 'JobState=COMPLETED')" == 0 ]]
}
for step in "${chain_steps[@]}"; do
  expected=1
  [[ "$step" == *-shards ]] && expected=2
  check "chain $step (job ${chain[$step]:-none}): $expected of $expected completed" all_completed "${chain[$step]:-none}" "$expected"
done
starts_after() {  # job, then the job it depends on: no start (of any array task) before the other's last end
  local starts ends
  mapfile -t starts < <(records "$1" | tr ' ' '\n' | sed -n 's/^StartTime=//p')
  mapfile -t ends < <(records "$2" | tr ' ' '\n' | sed -n 's/^EndTime=//p')
  /usr/bin/python3 - "${#starts[@]}" "${starts[@]}" "${ends[@]}" <<'PY'
import sys, datetime
n = int(sys.argv[1])
times = [datetime.datetime.fromisoformat(t) for t in sys.argv[2:]]
starts, ends = times[:n], times[n:]
sys.exit(0 if starts and ends and min(starts) >= max(ends) else 1)
PY
}
for k in $(seq 1 $((${#chain_steps[@]} - 1))); do
  step="${chain_steps[$k]}" prev="${chain_steps[$((k - 1))]}"
  check "chain $step started after $prev ended (afterok)" starts_after "${chain[$step]:-none}" "${chain[$prev]:-none}"
done
check "chain stage 1 shard ${shard0_task:-?} (job $shard0) requeued itself after USR1 (Restarts=$(job_field "$shard0" Restarts))" \
  test "$(job_field "$shard0" Restarts)" -ge 1
check "job $shard0's log shows moetrace exiting 75" \
  grep -q "moetrace exited with status 75" "$shard0_log"
check "job $shard0's log shows the requeue" grep -q "requeueing job" "$shard0_log"
check "job $shard0's log shows the shard resuming its file" grep -q "resuming $chain_dir/stage1.shard${shard0_task:-0}.h5" "$shard0_log"
stops=("the layer selection" "the expert selection" "the statistics")
for stage in 1 2 3; do
  for i in 0 1; do
    check "chain stage $stage shard $i/2 stopped before ${stops[$((stage - 1))]}" \
      grep -q "shard $i/2: its cases are done; stopped before ${stops[$((stage - 1))]}" "$chain_dir/logs/stage$stage.shard$i.log"
  done
done
check "chain: the final job resumed the merged file" grep -q "resuming $chain_dir/results.h5" "$chain_dir/logs/final.log"
check "chain: the report names the selected layer" grep -q "layer" "$chain_dir/report.txt"
check "the staged chain's merged and finished results are bit-identical to job $a's" \
  /usr/bin/python3 "$root/tools/compare_results.py" "$work/a.h5" "$chain_dir/results.h5"

if ((failures)); then
  echo "--- logs ---" >&2
  for f in "$work"/*.log "$work"/chain/logs/*.log; do [[ -e "$f" ]] && { echo "== $f" >&2; tail -n 15 "$f" >&2; }; done
  tail -n 20 "$work"/cluster/log/slurmctld.log >&2
fi
echo "$((checks - failures)) passed, $failures failed"
cluster_stop
((failures || keep_work)) || rm -rf "$work"
exit $((failures > 0))
