#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, and the shipped job files of scripts/slurm/ run
# through it on CPU: proves that they work under sbatch/srun, not just that they parse.
#
#   a. preemption: train_one_node.sbatch (1 task, --deterministic) gets SIGUSR1 through
#      `scancel --signal=USR1 JOBID` while training (to the srun step, as --signal=USR1@90 does;
#      --batch would signal only the batch shell); net2net-train writes last.pt and exits 4, the job
#      requeues itself, resumes (--resume) at the step it stopped at and finishes; the final
#      parameters are bit-identical to an uninterrupted run of the same config without SLURM.
#   b. extraction: extract_array.sbatch as a 3-task array (task 1 preempted with SIGUSR1, requeued,
#      resumed from its journal), then extract_merge.sbatch with --dependency=afterok; every dataset
#      of the merged cache equals (bytes) one unsharded extraction of the same data and experts.
#   c. data parallel: train_multi_node.sbatch with 2 tasks on Gloo through srun (rank and world
#      from SLURM_PROCID/SLURM_NTASKS, rendezvous on the node of SLURM_JOB_NODELIST); the final
#      parameters are bit-identical to 2 ranks started by hand with RANK/WORLD_SIZE/MASTER_ADDR.
#
# Usage (as root; installs slurmctld, slurmd, slurm-client, munge and python3-h5py/-torch with
# apt-get when missing; needs the tools built):
#   scripts/slurm/test_slurm.sh [--build-dir DIR] [--keep]
# Environment: BUILD_DIR (default build), KEEP=1 (keep the temporary folder with the cluster's
# logs, job outputs and run directories), PYTHON (default /usr/bin/python3, with torch and h5py),
# STEPS_A (default 6000), ROWS_B (default 180000), STEPS_C (default 300).
#
# The cluster: munged, slurmctld and slurmd started in the foreground (-F / -D) in the
# background, with their own munge socket and key, slurm.conf, state, spool and logs in a
# mktemp -d folder, on free ports (from 16817), no cgroups (proctrack/linuxproc, task/none), no
# accounting. Everything is torn down on exit (jobs cancelled, daemons and their processes
# stopped); a run killed before its cleanup is cleaned up by the next one (its folder is named in
# /tmp/net2net-test-slurm.state). Exits 0 only when every scenario passed; a part that cannot run
# says what failed and exits non-zero.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-build}
KEEP=${KEEP:-0}
PY=${PYTHON:-/usr/bin/python3}
STEPS_A=${STEPS_A:-6000}
ROWS_B=${ROWS_B:-180000}
STEPS_C=${STEPS_C:-300}
STATE=/tmp/net2net-test-slurm.state
LOCK=/tmp/net2net-test-slurm.lock
while [[ $# -gt 0 ]]; do
  case $1 in
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test_slurm: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $BUILD_DIR == /* ]] || BUILD_DIR=$REPO/$BUILD_DIR
BIN=$BUILD_DIR/tools
TRAIN=$BIN/net2net-train/net2net-train
EXTRACT=$BIN/net2net-extract/net2net-extract

say() { echo "test_slurm: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
now() { date +%s.%N; }

# Nothing from a surrounding allocation or launcher may leak into the jobs or the hand-made runs.
for v in $(compgen -e); do
  case $v in SLURM_*|SBATCH_*|SRUN_*|SALLOC_*|NET2NET_*|RANK|WORLD_SIZE|LOCAL_RANK|MASTER_ADDR|MASTER_PORT) unset "$v" ;; esac
done

[[ -x $TRAIN && -x $EXTRACT ]] || die "net2net-train / net2net-extract not found under $BIN (build first, or --build-dir)"

# ---- 1. software ------------------------------------------------------------------------------
pkgs=()
for c in slurmctld slurmd; do command -v "$c" >/dev/null || pkgs+=("$c"); done
for c in sbatch srun scontrol scancel sinfo squeue; do command -v "$c" >/dev/null || { pkgs+=(slurm-client); break; }; done
for c in munged munge unmunge; do command -v "$c" >/dev/null || { pkgs+=(munge); break; }; done
"$PY" -c 'import h5py, numpy' 2>/dev/null || pkgs+=(python3-h5py python3-numpy)
"$PY" -c 'import torch' 2>/dev/null || pkgs+=(python3-torch)
if [[ ${#pkgs[@]} -gt 0 ]]; then
  [[ $EUID -eq 0 ]] || die "missing ${pkgs[*]}; run as root (apt-get install) or install them"
  say "installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${pkgs[@]}" >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${pkgs[@]}" >/dev/null; } ||
    die "apt-get install ${pkgs[*]} failed"
fi
[[ $EUID -eq 0 ]] || die "must run as root (SlurmUser=root, slurmd starts jobs as the submitting user)"

# ---- 2. one run at a time; the leftovers of a killed run ------------------------------------
exec 9>"$LOCK"
flock -n 9 || die "another test_slurm.sh holds $LOCK"

# kill_conf_processes CONF: stop every process whose environment has SLURM_CONF=CONF (the daemons started
# below with it, their slurmstepd, jobs and the runs started by hand), TERM then KILL.
kill_conf_processes() {
  local conf=$1 pids=() p pid i
  for i in 1 2 3; do
    pids=()
    for p in /proc/[0-9]*; do
      pid=${p#/proc/}
      [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
      grep -qzx "SLURM_CONF=$conf" "$p/environ" 2>/dev/null && pids+=("$pid")
    done
    [[ ${#pids[@]} -eq 0 ]] && return 0
    if [[ $i -lt 3 ]]; then kill -TERM "${pids[@]}" 2>/dev/null || true; else kill -KILL "${pids[@]}" 2>/dev/null || true; fi
    for _ in $(seq 1 50); do
      local alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [[ $alive -eq 0 ]] && break
      sleep 0.2
    done
  done
}

# stop_cluster DIR: cancel the jobs of the cluster in DIR, then stop all of its processes.
stop_cluster() {
  local dir=$1
  [[ -f $dir/slurm.conf ]] || return 0
  if [[ -f $dir/slurmctld.pid ]] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
    SLURM_CONF=$dir/slurm.conf timeout 10 scancel --user=root >/dev/null 2>&1 || true
    for _ in $(seq 1 40); do
      [[ -z $(SLURM_CONF=$dir/slurm.conf timeout 5 squeue -h -o %i 2>/dev/null | head -1) ]] && break
      sleep 0.5
    done
  fi
  kill_conf_processes "$dir/slurm.conf"
}

if [[ -f $STATE ]]; then
  old=$(cat "$STATE")
  if [[ -n $old && -d $old ]]; then
    say "cleaning up after an earlier run ($old)"
    stop_cluster "$old"
    [[ -f $old/.remove ]] && rm -rf "$old"
  fi
  rm -f "$STATE"
fi

T=$(mktemp -d /tmp/net2net-slurm.XXXXXX)
chmod 711 "$T"   # munged wants every directory above its socket searchable by all
[[ $KEEP == 1 ]] || touch "$T/.remove"
echo "$T" > "$STATE"
CONF=$T/slurm.conf
export SLURM_CONF=$CONF

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  stop_cluster "$T"
  rm -f "$STATE"
  if [[ $KEEP == 1 ]]; then say "kept $T"; else rm -rf "$T"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 3. the cluster ---------------------------------------------------------------------------
NODE=$(hostname -s)
CPUS=$(nproc)
(( CPUS >= 2 )) || CPUS=2   # scenario c needs 2 tasks; config_overrides lets slurmd accept it
port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CTLD_PORT=16817
while ! port_free $CTLD_PORT || ! port_free $((CTLD_PORT + 1)); do
  CTLD_PORT=$((CTLD_PORT + 2))
  (( CTLD_PORT < 16917 )) || die "no two free ports in 16817-16917"
done
mkdir -p "$T/munge" "$T/state" "$T/spool" "$T/log"
chmod 755 "$T/munge"

if [[ ! -s /etc/munge/munge.key ]]; then
  say "creating /etc/munge/munge.key"
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
  else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
fi
# munged running as root wants a root-owned key: a private copy, with a private socket.
install -m 400 -o root -g root /etc/munge/munge.key "$T/munge/munge.key"
MUNGE_SOCKET=$T/munge/munge.sock

cat > "$CONF" <<EOF
ClusterName=n2ntest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$((CTLD_PORT + 1))
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job's restart (default 120 s)
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

daemon_log() { local f; for f in "$T"/log/*; do echo "--- $f"; tail -n 15 "$f"; done >&2; }
alive() { kill -0 "$1" 2>/dev/null; }

munged -F --socket="$MUNGE_SOCKET" --key-file="$T/munge/munge.key" --pid-file="$T/munge/munged.pid" \
  --seed-file="$T/munge/munged.seed" --log-file="$T/log/munged.log" > "$T/log/munged.out" 2>&1 9>&- &
MUNGED=$!
ok=0
for _ in $(seq 1 50); do
  munge -S "$MUNGE_SOCKET" -n </dev/null 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 && { ok=1; break; }
  alive $MUNGED || break
  sleep 0.2
done
[[ $ok == 1 ]] || { daemon_log; die "munged did not come up (a credential did not round-trip through $MUNGE_SOCKET)"; }

slurmctld -D -f "$CONF" > "$T/log/slurmctld.out" 2>&1 9>&- &
CTLD=$!
slurmd -D -f "$CONF" > "$T/log/slurmd.out" 2>&1 9>&- &
SLURMD=$!
state=
for _ in $(seq 1 120); do
  alive $CTLD || { daemon_log; die "slurmctld exited"; }
  alive $SLURMD || { daemon_log; die "slurmd exited"; }
  state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null || true)
  [[ $state == idle ]] && break
  sleep 0.5
done
[[ $state == idle ]] || { daemon_log; sinfo -R >&2 || true; die "node $NODE is '${state:-unknown}', not idle, after 60 s"; }
say "cluster up: node $NODE ($CPUS CPUs), slurmctld port $CTLD_PORT, in $T"

# ---- helpers for the scenarios ----------------------------------------------------------------
fail() { say "FAIL: $*"; exit 1; }

# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  fail "timed out after ${secs}s waiting for $what"
}

# job_field JOBID FIELD: FIELD=value of `scontrol show job` (every task of an array, one a line).
job_field() { scontrol show job -o "$1" 2>/dev/null | grep -o "\b$2=[^ ]*" | cut -d= -f2-; }

# wait_job JOBID SECONDS OUTPUT...: wait until every task of the job has COMPLETED with exit 0;
# fails (showing the outputs) on any other final state or on the timeout.
wait_job() {
  local jid=$1 secs=$2 i states
  shift 2
  for ((i = 0; i < secs * 2; i++)); do
    states=$(job_field "$jid" JobState | sort -u | tr '\n' ' ')
    if [[ $states == "COMPLETED " ]]; then
      [[ -z $(job_field "$jid" ExitCode | grep -v '^0:0$') ]] && return 0
      break
    fi
    [[ $states =~ FAIL|CANCEL|TIMEOUT|OUT_OF_MEMORY|DEADLINE|PREEMPTED|SPECIAL_EXIT ]] && break
    alive $CTLD && alive $SLURMD || { daemon_log; fail "a SLURM daemon died"; }
    sleep 0.5
  done
  scontrol show job "$jid" >&2 || true
  local f
  for f in "$@"; do [[ -f $f ]] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done
  fail "job $jid: state ${states:-unknown} (wanted COMPLETED with exit code 0:0 within ${secs}s)"
}

# write_config FILE STEPS: a small cINN on the Gaussian pairs in $T/data.
write_config() {
  cat > "$1" <<EOF
{"name": "slurm-test",
 "data": {"train": "$T/data/train.h5", "val": "$T/data/val.h5", "condition": "c", "target": "x"},
 "model": {"n_flows": 4, "hidden_dim": 64, "hidden_depth": 1, "embedding_dim": 8,
           "embedder": {"hidden_dim": 32, "depth": 1, "norm": "none"}},
 "train": {"batch_size": 64, "steps": $2, "lr": 0.002, "log_every": 50, "val_every": 500, "checkpoint_every": 1000}}
EOF
}

compare_checkpoints() { "$PY" "$REPO/tests/python/compare_checkpoints.py" "$@"; }

# Training pairs: x = A c + L e (the Gaussian of tests/test_train.cpp), c ~ N(0, I_2).
mkdir -p "$T/data"
"$PY" - "$T/data" <<'EOF'
import sys, h5py, numpy as np
r = np.random.default_rng(23)
A = np.array([[1.0, -0.5], [0.3, 0.8], [0.0, 1.2]])
L = np.array([[0.5, 0, 0], [0.2, 0.3, 0], [-0.1, 0.1, 0.4]])
for name, n in (("train", 4000), ("val", 500)):
    c = r.standard_normal((n, 2)); x = c @ A.T + r.standard_normal((n, 3)) @ L.T
    with h5py.File(f"{sys.argv[1]}/{name}.h5", "w") as f:
        f["c"] = c.astype(np.float32); f["x"] = x.astype(np.float32)
EOF

SBATCH_COMMON=(--parsable --chdir="$REPO" --time=15 --open-mode=append)

# ---- a. preemption, requeue, resume: bit-identical to an uninterrupted run --------------------
scenario_a() {
  local d=$T/a
  mkdir -p "$d"
  write_config "$d/cfg.json" "$STEPS_A"
  # The uninterrupted reference, without SLURM, meanwhile.
  "$TRAIN" --config "$d/cfg.json" --run-dir "$d/ref" --threads 1 --deterministic --log-level warn > "$d/ref.log" 2>&1 9>&- &
  local ref=$!
  local jid out
  jid=$(CONFIG=$d/cfg.json RUN_DIR=$d/run DEVICE=cpu MASTER_PORT=$(free_port) TRAIN_ARGS=--deterministic NET2NET_BIN=$BIN \
    sbatch "${SBATCH_COMMON[@]}" --job-name=n2n-test-a --nodes=1 --ntasks-per-node=1 --gpus-per-node=0 --cpus-per-task=1 \
    --output="$d/job-%j.out" "$REPO/scripts/slurm/train_one_node.sbatch")
  out=$d/job-$jid.out
  say "a: job $jid submitted"
  running_and_logging() {
    [[ -s $d/run/metrics.jsonl ]] && return 0
    [[ $(job_field "$jid" JobState) =~ PENDING|RUNNING|CONFIGURING ]] || { wait_job "$jid" 1 "$out"; fail "job $jid ended before training"; }
    return 1
  }
  wait_for "job $jid to log training steps" 120 running_and_logging
  [[ $(job_field "$jid" JobState) == RUNNING ]] || fail "job $jid is $(job_field "$jid" JobState), not RUNNING, at the preemption"
  scancel --signal=USR1 "$jid"
  say "a: sent SIGUSR1 to the steps of job $jid"
  stopped() {
    grep -q "training stopped by a signal at step" "$out" 2>/dev/null && return 0
    grep -q "step $STEPS_A/$STEPS_A" "$out" 2>/dev/null && fail "the run finished before SIGUSR1 reached it (raise STEPS_A)"
    return 1
  }
  wait_for "net2net-train to write its checkpoint after SIGUSR1" 60 stopped
  wait_job "$jid" 300 "$out"
  local stop_step resume_step restarts
  stop_step=$(sed -n 's/.*training stopped by a signal at step \([0-9]*\);.*/\1/p' "$out" | head -1)
  resume_step=$(sed -n "s/.*resuming '.*' at step \([0-9]*\)\$/\1/p" "$out" | head -1)
  restarts=$(job_field "$jid" Restarts)
  grep -q "task 0: Exited with exit code 4" "$out" || fail "srun did not report exit code 4 of the interrupted step"
  grep -q "requeueing $jid" "$out" || fail "the job script did not requeue itself"
  [[ $restarts == 1 ]] || fail "Restarts=$restarts, expected 1"
  [[ -n $stop_step && $stop_step -gt 0 && $stop_step -lt $STEPS_A ]] || fail "no interruption within the run (stopped at '${stop_step}')"
  [[ $resume_step == "$stop_step" ]] || fail "resumed at step '${resume_step}', stopped at $stop_step"
  grep -q "step $STEPS_A/$STEPS_A" "$out" || fail "the resumed run did not reach step $STEPS_A"
  wait $ref || { cat "$d/ref.log" >&2; fail "the reference run failed"; }
  say "a: stopped at step $stop_step, requeued (Restarts=$restarts), resumed at step $resume_step, finished $STEPS_A steps"
  compare_checkpoints "$d/run/checkpoints/last.pt" "$d/ref/checkpoints/last.pt" --exact ||
    fail "the preempted + resumed run is not bit-identical to the uninterrupted one"
}

# ---- b. extraction array (one task preempted) + merge = one unsharded extraction ---------------
scenario_b() {
  local d=$T/b
  mkdir -p "$d"
  "$PY" - "$d/items.tsv" "$ROWS_B" <<'EOF'
import random, sys
r = random.Random(5)
words = "red green blue small large dark light shoe shirt bag coat".split()
with open(sys.argv[1], "w") as f:
    f.write("text\tlabel\ta\tb\n")
    for _ in range(int(sys.argv[2])):
        f.write("%s\t%d\t%.4f\t%.4f\n" % (" ".join(r.choice(words) for _ in range(r.randint(1, 6))),
                                          r.randint(0, 4), r.gauss(0, 1), r.gauss(0, 1)))
EOF
  local data="tsv:$d/items.tsv" experts="t=text-hash:16 lab=label num=identity"
  # The unsharded reference, meanwhile.
  local eargs=() e
  for e in $experts; do eargs+=(--expert "$e"); done
  "$EXTRACT" --data "$data" "${eargs[@]}" --out "$d/full.h5" --threads 1 --log-level warn > "$d/full.log" 2>&1 9>&- &
  local ref=$!
  # Batches of one item make each shard take seconds, long enough to preempt task 1.
  local jid mjid
  jid=$(DATA=$data EXPERTS=$experts OUT_DIR=$d/shards DEVICE=cpu EXTRACT_ARGS="--batch-size 1" NET2NET_BIN=$BIN \
    sbatch "${SBATCH_COMMON[@]}" --job-name=n2n-test-b --array=0-2 --ntasks=1 --gpus=0 --cpus-per-task=1 \
    --output="$d/job-%A_%a.out" "$REPO/scripts/slurm/extract_array.sbatch")
  mjid=$(OUT_DIR=$d/shards OUT=$d/merged.h5 NET2NET_BIN=$BIN \
    sbatch "${SBATCH_COMMON[@]}" --job-name=n2n-test-b-merge --dependency="afterok:$jid" --ntasks=1 --cpus-per-task=1 \
    --output="$d/merge-%j.out" "$REPO/scripts/slurm/extract_merge.sbatch")
  say "b: array job $jid (3 tasks), merge job $mjid submitted"
  local out1=$d/job-${jid}_1.out
  journal_has_rows() {
    [[ -s $d/shards/part001.h5.partial/index.i64 ]] && return 0
    [[ -f $d/shards/part001.h5 ]] && fail "shard 1 finished before it could be preempted (raise ROWS_B)"
    return 1
  }
  wait_for "task 1 to write rows" 120 journal_has_rows
  scancel --signal=USR1 "${jid}_1"
  say "b: sent SIGUSR1 to task ${jid}_1"
  wait_job "$jid" 300 "$d"/job-"${jid}"_*.out
  wait_job "$mjid" 120 "$d/merge-$mjid.out"
  grep -q "extraction stopped by signal 10 after" "$out1" || fail "task 1 was not stopped by SIGUSR1 (see $out1)"
  grep -q "resuming '.*part001.h5' at row [1-9]" "$out1" || fail "task 1 did not resume from its journal"
  [[ $(job_field "${jid}_1" Restarts) == 1 ]] || fail "task 1: Restarts=$(job_field "${jid}_1" Restarts), expected 1"
  wait $ref || { cat "$d/full.log" >&2; fail "the unsharded extraction failed"; }
  say "b: task 1 $(grep -o 'stopped by signal 10 after [0-9]* of [0-9]* rows' "$out1"), requeued and resumed; merged"
  "$PY" - "$d/merged.h5" "$d/full.h5" <<'EOF' || fail "the merged cache differs from the unsharded one"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
bad = []
if set(a) != set(b):
    bad.append(f"datasets {sorted(a)} vs {sorted(b)}")
for name in sorted(set(a) & set(b)):
    x, y = a[name], b[name]
    if x.dtype != y.dtype or x.shape != y.shape:
        bad.append(f"{name}: {x.dtype} {x.shape} vs {y.dtype} {y.shape}")
    elif np.ascontiguousarray(x[()]).tobytes() != np.ascontiguousarray(y[()]).tobytes():
        bad.append(f"{name}: values differ")
    elif "shape" in y.attrs and list(x.attrs.get("shape", [])) != list(y.attrs["shape"]):
        bad.append(f"{name}: attribute shape differs")
for key in ("source", "experts", "expert_fingerprints", "rows", "items_in_source", "complete"):
    if a.attrs.get(key) != b.attrs.get(key):
        bad.append(f"attribute {key}: {a.attrs.get(key)!r} vs {b.attrs.get(key)!r}")
for line in bad:
    print(line)
print(("DIFFER: " if bad else "SAME: ") + ", ".join(f"{n} {a[n].shape}" for n in sorted(a)) + " (bytes)")
sys.exit(1 if bad else 0)
EOF
}

# ---- c. two ranks on Gloo through srun = two ranks started by hand ----------------------------
scenario_c() {
  local d=$T/c
  mkdir -p "$d"
  write_config "$d/cfg.json" "$STEPS_C"
  local port jid out
  port=$(free_port)
  local addr_env=()
  getent hosts "$NODE" >/dev/null || { say "c: '$NODE' does not resolve; MASTER_ADDR=127.0.0.1"; addr_env=(MASTER_ADDR=127.0.0.1); }
  # As on a cluster: the tools installed into a prefix and put on PATH by `module load net2net`
  # (Lmod, where installed; else NET2NET_BIN names the build's tools).
  local tool_env=(NET2NET_BIN="$BIN") want_tool=$BIN/net2net-train/net2net-train
  if [[ -f /usr/share/lmod/lmod/init/bash ]]; then
    cmake --install "$BUILD_DIR" --prefix "$T/prefix" > "$d/install.log" || fail "cmake --install failed (see $d/install.log)"
    tool_env=($(bash -c "source /usr/share/lmod/lmod/init/bash > /dev/null 2>&1; module use '$T/prefix/share/net2net/modulefiles' \
      && module load net2net && echo PATH=\$PATH NET2NET_DATA_DIR=\$NET2NET_DATA_DIR")) || fail "module load net2net failed"
    want_tool=$T/prefix/bin/net2net-train
  fi
  jid=$(env "${addr_env[@]}" "${tool_env[@]}" CONFIG="$d/cfg.json" RUN_DIR="$d/run" DEVICE=cpu MASTER_PORT="$port" \
    TRAIN_ARGS=--deterministic sbatch "${SBATCH_COMMON[@]}" --job-name=n2n-test-c --nodes=1 --ntasks-per-node=2 \
    --gpus-per-node=0 --cpus-per-task=1 --output="$d/job-%j.out" "$REPO/scripts/slurm/train_multi_node.sbatch")
  out=$d/job-$jid.out
  say "c: job $jid submitted (2 tasks; net2net-train: $want_tool)"
  wait_job "$jid" 300 "$out"
  grep -q "^tool: $want_tool$" "$out" || fail "the job did not run $want_tool: $(grep '^tool:' "$out")"
  grep -q "rank 0/2: gloo process group via " "$out" || fail "rank 0 did not join a Gloo group of 2 (see $out)"
  grep -q "rank 1/2: gloo process group via " "$out" || fail "rank 1 did not join a Gloo group of 2 (see $out)"
  grep -q "2 rank(s), gloo, cpu" "$out" || fail "training did not run on 2 Gloo ranks"
  [[ -f $d/run/checkpoints/last.pt ]] || fail "no checkpoint in $d/run"
  grep -q "step $STEPS_C/$STEPS_C" "$out" || fail "the run did not reach step $STEPS_C"
  # The same two ranks by hand, torchrun-style.
  port=$(free_port)
  local pids=() r
  for r in 0 1; do
    RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "$TRAIN" --config "$d/cfg.json" --run-dir "$d/ref" --threads 1 --deterministic > "$d/ref$r.log" 2>&1 9>&- &
    pids+=($!)
  done
  for r in 0 1; do wait "${pids[$r]}" || { cat "$d/ref$r.log" >&2; fail "hand-started rank $r failed"; }; done
  say "c: $(grep -o 'rank 0/2: gloo process group via [^ ]*' "$out") under srun; by hand via 127.0.0.1:$port"
  compare_checkpoints "$d/run/checkpoints/last.pt" "$d/ref/checkpoints/last.pt" --exact ||
    fail "2 ranks through srun are not bit-identical to 2 ranks by hand"
}

# ---- run them ---------------------------------------------------------------------------------
names=(a b c)
titles=("preemption + requeue + resume (train_one_node.sbatch)"
        "extraction array + merge (extract_array/extract_merge.sbatch)"
        "2 Gloo ranks through srun (train_multi_node.sbatch)")
results=()
failed=0
for i in "${!names[@]}"; do
  t0=$(now)
  set +e
  ( set -e; "scenario_${names[$i]}" ) 9>&-   # the lock stays with this shell alone
  rc=$?
  scancel --user=root 2>/dev/null   # what a failed scenario left behind must not slow the next
  set -e
  secs=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
  if [[ $rc -eq 0 ]]; then results+=("PASS  ${names[$i]}. ${titles[$i]}  (${secs} s)")
  else results+=("FAIL  ${names[$i]}. ${titles[$i]}  (${secs} s)"); failed=1; fi
done
echo
echo "SLURM scenarios (one-node cluster on $NODE, slurm $(sinfo -V | awk '{print $2}')):"
printf '  %s\n' "${results[@]}"
[[ $failed -eq 0 ]] || { say "some scenarios failed (KEEP=1 keeps $T for a look)"; exit 1; }
echo "all passed"
