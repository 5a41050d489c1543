#!/usr/bin/env bash
# End-to-end test of the slurm/ templates on a real one-node Slurm (`make test-slurm`).
#
# Starts the private test cluster (tests/slurm/cluster.sh: slurm-wlm + munge, installed with apt
# if missing), then, on CPU with the quickstart sweep's darcy1d half (9 jobs):
#   1. slurm/single_node.sbatch with 2 ranks (mpirun inside the allocation),
#   2. slurm/multi_node.sbatch with 2 tasks on the one node (srun --mpi=pmix direct launch),
#   3. slurm/requeue.sbatch without preemption,
#   4. slurm/requeue.sbatch preempted: SIGUSR1 to the batch script once a job file exists; the job
#      must stop without partial files, requeue itself, and the rerun train only the missing jobs.
#   5. slurm/array.sbatch: an array of 3 single-process tasks (no MPI) on one results folder, 3
#      batches; one task cancelled (scancel) in the middle of its batch, which saves a checkpoint;
#      the array submitted again. Every job trained and written exactly once (the logs of all
#      tasks), files on contract, the cancelled batch resumed from its checkpoint (by a task of
#      either array: on this 2-CPU node the third task of the first array often starts after the
#      cancel and takes it over), no claims or checkpoints left.
# Each run is checked: Slurm state COMPLETED with ExitCode 0:0 (`scontrol show job`; the cluster
# keeps finished jobs for an hour since it has no accounting for sacct), every job file on the
# HDF5 contract (tests/check_contract.py), status "done 9 ... pending 0", logs/rank-0.log and
# rank-1.log, progress lines in slurm-<id>.out.
# Prints "N passed, M failed" last; exits 1 if anything failed. Not root (or Slurm cannot be
# installed): prints "SKIPPED: ..." and exits 0. Stops the cluster at the end unless it was
# already running before. About 1-3 minutes on 2 cores.
#
# Environment: NTKSWEEP_BIN (default target/release/ntksweep), KEEP=1 keeps the work folder,
# PREEMPT_STEPS (training steps per job in test 4, default 600: long enough to be interrupted),
# ARRAY_STEPS (steps per job in test 5, default 3000), ONLY=array (run test 5 alone).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${NTKSWEEP_BIN:-$REPO/target/release/ntksweep}
PY=$REPO/.venv/bin/python
# The quickstart's darcy1d half (9 jobs): the problem.kind axis is dropped in a copy (see below).
QUICKSTART=$REPO/sweeps/quickstart.yaml
CLUSTER=$REPO/tests/slurm/cluster.sh
NJOBS=9
JOB_TIMEOUT=${JOB_TIMEOUT:-240}
PREEMPT_STEPS=${PREEMPT_STEPS:-600}
ARRAY_STEPS=${ARRAY_STEPS:-3000}

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() { echo "$passed passed, $failed failed"; [ "$failed" = 0 ]; exit $?; }

if [ "$(id -u)" != 0 ]; then
  echo "SKIPPED: the Slurm test needs root (it installs slurm-wlm/munge and runs the daemons)"
  exit 0
fi
[ -x "$BIN" ] || { bad "no ntksweep binary at $BIN (run make setup, or set NTKSWEEP_BIN)"; finish; }
[ -x "$PY" ] || { bad "no $PY (run make setup)"; finish; }
command -v mpirun >/dev/null || { bad "no mpirun (apt-get install openmpi-bin)"; finish; }

# One test at a time on this machine: they share the cluster.
mkdir -p /run/lock
exec 9>/run/lock/ntksweep-slurm-test.lock
flock -w 900 9 || { bad "another tests/slurm/run.sh holds /run/lock/ntksweep-slurm-test.lock"; finish; }

WORK=$(mktemp -d /tmp/ntksweep-slurm-test.XXXXXX)
was_running=""
bash "$CLUSTER" status >/dev/null 2>&1 && was_running=1
cleanup() {
  if [ -z "$was_running" ]; then bash "$CLUSTER" stop >/dev/null 2>&1 || true; fi
  if [ -n "${KEEP:-}" ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# The quickstart without its problem.kind axis: its 9 darcy1d jobs keep every Slurm check the
# same size and cost as before the quickstart gained poisson1d (the axis is one line).
SWEEP=$WORK/quickstart.yaml
grep -v '^  problem.kind:' "$QUICKSTART" >"$SWEEP"
[ "$(grep -c '^  problem.kind:' "$QUICKSTART")" = 1 ] || { bad "sweeps/quickstart.yaml: expected one problem.kind axis line"; finish; }

SECONDS=0
start_out=$(bash "$CLUSTER" start 2>&1); rc=$?
if [ "$rc" = 77 ]; then
  echo "$start_out" | tail -3
  echo "SKIPPED: cannot install or run Slurm here (tests/slurm/cluster.sh start exited 77)"
  exit 0
fi
if [ "$rc" != 0 ]; then echo "$start_out"; bad "cluster start (exit $rc)"; finish; fi
eval "$(bash "$CLUSTER" env)"
echo "$start_out" | grep -E "^(debug|srun --mpi)" || true
check "srun --mpi=list offers pmix" bash -c 'srun --mpi=list </dev/null 2>&1 | grep -q pmix'
echo "cluster up after ${SECONDS}s"

# What every submission inherits (sbatch exports the environment).
export NTKSWEEP=$BIN NTKSWEEP_PROGRESS_SECONDS=2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # mpirun as root
unset NTKSWEEP_ARGS LAUNCH MPIRUN_ARGS SRUN_ARGS
# The templates ask for 4 GPUs and 8 CPUs per rank; this node has 2 CPUs and no GPU.
RES=(--nodes=1 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1 --time=10:00)

field() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# wait_done ID: poll until the job reaches a final state (sbatch --wait polls slowly); print it.
wait_done() {
  local s t0=$SECONDS
  while :; do
    s=$(field "$1" JobState)
    case "$s" in
      COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE) echo "$s"; return 0 ;;
    esac
    if [ $((SECONDS - t0)) -gt "$JOB_TIMEOUT" ]; then scancel "$1"; echo "TIMEOUT-IN-TEST($s)"; return 1; fi
    sleep 1
  done
}
submit() { (cd "$WORK" && sbatch --parsable "$@") | cut -d';' -f1; }

contract() { (cd "$REPO" && "$PY" tests/check_contract.py "$1" --expect-status done); }
all_done() {
  local s; s=$("$BIN" status "$1" 2>&1 | head -1); echo "    $s"
  [[ "$s" == "done $NJOBS  failed 0  diverged 0  pending 0  (of $NJOBS planned)" ]]
}
no_temporaries() { ! ls -A "$1/jobs" | grep -q '\.tmp'; }
has() { grep -qE "$2" "$1"; }

# check_run NAME ID DIR RESTARTS: the checks every successful submission must pass.
check_run() {
  local name=$1 id=$2 dir=$WORK/$3 restarts=$4 out=$WORK/slurm-$2.out state f0=$failed
  state=$(wait_done "$id")
  echo "  $name: job $id $state after ${SECONDS}s (test clock)"
  check "$name: JobState COMPLETED (got $state)" test "$state" = COMPLETED
  check "$name: ExitCode 0:0 (got $(field "$id" ExitCode))" test "$(field "$id" ExitCode)" = 0:0
  check "$name: Restarts=$restarts (got $(field "$id" Restarts))" test "$(field "$id" Restarts)" = "$restarts"
  check "$name: every job file on contract" contract "$dir"
  check "$name: ntksweep status: all $NJOBS done" all_done "$dir"
  check "$name: per-rank logs rank-0.log and rank-1.log" test -s "$dir/logs/rank-0.log" -a -s "$dir/logs/rank-1.log"
  check "$name: no temporary files left" no_temporaries "$dir"
  check "$name: slurm-$id.out has progress lines and 2 ranks" \
    eval "grep -q '^progress: ' '$out' && grep -q 'on 2 rank(s)' '$out'"
  if [ "$failed" != "$f0" ] && [ -f "$out" ]; then echo "  --- tail of slurm-$id.out"; tail -15 "$out" | sed 's/^/  | /'; fi
}

if [ "${ONLY:-}" != array ]; then
# 1. one node, 2 ranks, mpirun inside the allocation; extra options as script arguments.
id=$(submit "${RES[@]}" "$REPO/slurm/single_node.sbatch" "$SWEEP" results/single --device cpu)
check_run single_node "$id" results/single 0

# 2. srun --mpi=pmix direct launch, 2 tasks; extra options through NTKSWEEP_ARGS.
id=$(NTKSWEEP_ARGS="--device cpu" submit "${RES[@]}" "$REPO/slurm/multi_node.sbatch" "$SWEEP" results/multi)
check_run multi_node "$id" results/multi 0

# 3. the requeue template when nothing preempts it.
id=$(submit "${RES[@]}" "$REPO/slurm/requeue.sbatch" "$SWEEP" results/requeue --device cpu)
check_run requeue "$id" results/requeue 0

# 4. preemption: one job per batch so files appear one by one, and longer jobs.
dir=$WORK/results/preempt
id=$(submit "${RES[@]}" "$REPO/slurm/requeue.sbatch" "$SWEEP" results/preempt \
  --device cpu --max-batch 1 --set "training.steps=$PREEMPT_STEPS")
out=$WORK/slurm-$id.out
t0=$SECONDS
until compgen -G "$dir/jobs/*.h5" >/dev/null || [ $((SECONDS - t0)) -gt "$JOB_TIMEOUT" ]; do sleep 0.2; done
scancel --signal=USR1 --batch "$id"
echo "  preempt: job $id sent SIGUSR1 at ${SECONDS}s with $(compgen -G "$dir/jobs/*.h5" | wc -l) job file(s)"
# The first run stops, requeues itself, and Slurm holds it (PENDING, reason BeginTime).
t0=$SECONDS
until [ "$(field "$id" Restarts)" = 1 ] && [ "$(field "$id" JobState)" = PENDING ] ||
      [ $((SECONDS - t0)) -gt 60 ]; do sleep 0.5; done
check "preempt: Slurm requeued the job (Restarts=1, PENDING)" \
  test "$(field "$id" Restarts)/$(field "$id" JobState)" = 1/PENDING
n_first=$(compgen -G "$dir/jobs/*.h5" | wc -l)
check "preempt: first run stopped with exit code 3 and requeued itself" \
  eval "grep -q 'exit code 3' '$out' && grep -q 'requeueing job $id' '$out'"
check "preempt: first run left no partial files" no_temporaries "$dir"
partial_ok() { [ "$n_first" -gt 0 ] && [ "$n_first" -lt "$NJOBS" ] && contract "$dir"; }
check "preempt: first run left $n_first complete file(s) on contract, the rest pending" partial_ok
# Slurm makes a requeued batch job wait about 2 minutes; let it start now - but not within the
# second of the requeue: slurmd revokes the job's old credential at the requeue and rejects a
# new one created in the same second ("Killing non-startable batch JobId=N: Job credential
# revoked", seen once when the start came 0.5 s after the requeue). Wait for the node to
# finish the first run, then 2 s more.
t0=$SECONDS
until ! sinfo -h -N -o '%t' | grep -q comp || [ $((SECONDS - t0)) -gt 30 ]; do sleep 0.5; done
sleep 2
scontrol update JobId="$id" StartTime=now
check_run preempt "$id" results/preempt 1
line=$(grep -E "^sweep \`quickstart\`: $NJOBS jobs, [0-9]+ already finished" "$out" | sed -n 2p)
echo "    second run: $line"
resumed() { [[ "$line" == *" $n_first already finished, $((NJOBS - n_first)) to run "* ]]; }
check "preempt: second run resumed: $n_first already finished, $((NJOBS - n_first)) to run" resumed
check "preempt: slurm-$id.out holds both runs (--open-mode=append)" \
  eval "grep -q 'run 1 on' '$out' && grep -q 'run 2 on' '$out'"
fi

# 5. a job array of 3 single-process tasks on one folder; one task cancelled mid-batch; the
#    array submitted again.
dir=$WORK/results/array
ARES=(--ntasks=1 --cpus-per-task=1 --gpus-per-task=0 --time=10:00)
AOPTS=(--device cpu --max-batch 3 --set "training.steps=$ARRAY_STEPS")
id=$(submit --array=0-2 "${ARES[@]}" "$REPO/slurm/array.sbatch" "$SWEEP" results/array "${AOPTS[@]}")
log=$dir/logs/rank-0.log
starts() { grep -c 'batch of 3 start' "$log" 2>/dev/null || echo 0; }
t0=$SECONDS
until [ "$(starts)" -ge 3 ] || [ $((SECONDS - t0)) -gt "$JOB_TIMEOUT" ]; do sleep 0.2; done
sleep 3
# Cancel the task whose batch started last (it has done the least).
victim_pid=$(grep 'batch of 3 start' "$log" | tail -1 | sed -n 's/.* pid \([0-9]*\) rank.*/\1/p')
victim=1
for t in 0 1 2; do
  grep -q " pid $victim_pid rank " "$WORK/slurm-${id}_$t.out" 2>/dev/null && victim=$t
done
scancel "${id}_$victim"
echo "  array: job $id, 3 batches started after $((SECONDS - t0))s; cancelled task $victim (pid $victim_pid)"
for t in 0 1 2; do state=$(wait_done "${id}_$t"); eval "astate_$t=$state"; done
vstate=$(eval echo "\$astate_$victim")
check "array: cancelled task $victim ended CANCELLED (got $vstate)" test "$vstate" = CANCELLED
saved() { grep -q "batch interrupted after .*state saved in" "$log"; }
check "array: the cancelled task saved its batch's state" saved
others_ok=1
for t in 0 1 2; do
  [ "$t" = "$victim" ] && continue
  s=$(eval echo "\$astate_$t"); [ "$s" = COMPLETED ] || others_ok=""
done
check "array: the other tasks COMPLETED" test -n "$others_ok"
# Submit the array again: it resumes whatever is left.
id2=$(submit --array=0-2 "${ARES[@]}" "$REPO/slurm/array.sbatch" "$SWEEP" results/array "${AOPTS[@]}")
all2=1
for t in 0 1 2; do
  s=$(wait_done "${id2}_$t"); e=$(field "${id2}_$t" ExitCode)
  echo "    resubmitted task $t: $s exit $e"
  [ "$s" = COMPLETED ] && [ "$e" = 0:0 ] || all2=""
done
check "array: every task of the resubmitted array COMPLETED with ExitCode 0:0" test -n "$all2"
check "array: every job file on contract" contract "$dir"
check "array: ntksweep status: all $NJOBS done" all_done "$dir"
once() {
  local ids n
  ids=$(grep -E ': job [0-9a-f]{16} ' "$log" | sed -E 's/.*: job ([0-9a-f]{16}) .*/\1/' | sort)
  n=$(echo "$ids" | uniq | wc -l)
  echo "    $(echo "$ids" | wc -l) job lines, $n distinct"
  [ "$n" = "$NJOBS" ] && [ -z "$(echo "$ids" | uniq -d)" ]
}
check "array: every job trained and written exactly once (logs of all tasks)" once
resumed() { grep -q 'resuming from checkpoint' "$log"; }
check "array: the cancelled batch resumed from its checkpoint" resumed
empty() { [ -z "$(ls -A "$dir/claims" 2>/dev/null)" ] && [ -z "$(ls -A "$dir/checkpoints" 2>/dev/null)" ]; }
check "array: no claims or checkpoints left" empty
check "array: no temporary files left" no_temporaries "$dir"

echo "slurm test took ${SECONDS}s"
finish
