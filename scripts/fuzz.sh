#!/usr/bin/env bash
# libFuzzer over the readers of files users hand in (issue 21; tests/fuzz/): configs with --set
# (fuzz_config), HDF5 caches and FID statistics (fuzz_cache), data sources: text, tsv, IDX/.gz,
# h5, images (fuzz_sources), and checkpoints (fuzz_checkpoint); under ASan + UBSan.
#   scripts/fuzz.sh                          build, then every target for 60 s
#   FUZZ_SECONDS=600 scripts/fuzz.sh fuzz_cache fuzz_sources     some targets, longer
#   FUZZ_STOP_AT_FIRST=1 scripts/fuzz.sh     stop each target at its first finding (default: fork
#                                            mode, which saves a finding and goes on)
# 1. Builds build-sanitize/ with scripts/sanitize.sh --build-only (clang; FUZZ_SKIP_BUILD=1
#    skips it; BUILD_DIR moves the folder).
# 2. Seeds BUILD_DIR/fuzz-corpus/<target>/ from tests/fuzz/corpus/<target>/ and, once (again with
#    FUZZ_RESEED=1), tests/fuzz/make_seed_corpus.sh (caches, statistics and checkpoints made by the
#    sanitized tools). The corpus grows from run to run: libFuzzer adds the inputs that reach new code.
# 3. Runs each target for FUZZ_SECONDS (-rss_limit_mb=4096, -timeout=10, the dictionary of
#    tests/fuzz/dict/<target>.dict), findings (crash-*, timeout-*, oom-*, leak-*) into
#    BUILD_DIR/fuzz-findings/<target>/, the log beside them.
# Prints per target the executions, the corpus size before and after, and the findings of this run;
# exits 1 when a target found one, listing each with the command that reproduces it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
BUILD_DIR=${BUILD_DIR:-build-sanitize}
seconds=${FUZZ_SECONDS:-60}
all_targets=(fuzz_config fuzz_cache fuzz_sources fuzz_checkpoint)
targets=("$@")
(( ${#targets[@]} )) || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (targets: ${all_targets[*]})" >&2; exit 2; }
done

if [[ ${FUZZ_SKIP_BUILD:-0} != 1 ]]; then
  BUILD_DIR=$BUILD_DIR scripts/sanitize.sh --build-only
fi
build=$(cd "$BUILD_DIR" && pwd)
corpus=$build/fuzz-corpus
findings=$build/fuzz-findings

# LibTorch's static registries are never freed: no leak checking. Any UBSan report is fatal.
# allocator_may_return_null: a huge allocation fails as it does without ASan (malloc returns NULL,
# libhdf5 reports an error, operator new throws) instead of ending the run as a "crash".
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# The targets' scratch files (fuzz_common.h): in memory where possible, removed at the end.
scratch=$(mktemp -d "$([[ -w /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/net2net-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# ---- seeds
if [[ ! -f $corpus/.seeded || ${FUZZ_RESEED:-0} == 1 ]]; then
  echo "[fuzz] seed corpus: $corpus" >&2
  tests/fuzz/make_seed_corpus.sh "$build" "$corpus"
  touch "$corpus/.seeded"
fi
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t" "$findings/$t"
  if [[ -d tests/fuzz/corpus/$t ]]; then cp -n tests/fuzz/corpus/"$t"/* "$corpus/$t/" 2> /dev/null || true; fi
done

count_files() { find "$1" -maxdepth 1 -type f ! -name '.*' | wc -l; }

# ---- fuzzing
status=0
report=()
repro=()
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/$t
  if [[ ! -x $bin ]]; then
    echo "fuzz.sh: '$bin' is missing (was $BUILD_DIR configured with -DNET2NET_FUZZ=ON, by clang?)" >&2
    exit 2
  fi
  dict=()
  [[ -f tests/fuzz/dict/$t.dict ]] && dict=(-dict="$root/tests/fuzz/dict/$t.dict")
  log=$findings/$t.log
  before=$(count_files "$corpus/$t")
  marker=$scratch/$t.start
  touch "$marker"
  echo "[fuzz] $t: ${seconds} s" >&2
  rc=0
  # Fork mode goes on after a finding (saved, counted) instead of stopping at the first: a crash
  # inside libhdf5 or LibTorch on one input must not end the search in our own code.
  keep_going=()
  [[ ${FUZZ_STOP_AT_FIRST:-0} == 1 ]] || keep_going=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  TMPDIR=$scratch "$bin" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 \
    "${keep_going[@]}" -artifact_prefix="$findings/$t/" "${dict[@]}" "$corpus/$t" > "$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  # Fork mode's parent reports progress lines "#EXECS: cov: ...".
  [[ -n $execs ]] || execs=$(grep -oE '^#[0-9]+: cov' "$log" | tail -1 | grep -oE '[0-9]+' || true)
  after=$(count_files "$corpus/$t")
  mapfile -t new < <(find "$findings/$t" -maxdepth 1 -type f -newer "$marker" \
                       \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)
  report+=("$(printf '%-16s %12s %8s -> %-8s %s' "$t" "${execs:-?}" "$before" "$after" "${#new[@]}")")
  if (( ${#new[@]} )); then
    status=1
    # What escaped or which sanitizer fired, from the log.
    what=$(grep -E '==net2net-fuzz== FINDING|SUMMARY: |ERROR: libFuzzer|runtime error:' "$log" | sort | uniq -c | sort -rn | head -5 || true)
    for f in "${new[@]}"; do repro+=("$t: $what" "  ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS $bin $f"); done
  elif (( rc != 0 )); then
    status=1
    repro+=("$t: libFuzzer exited with $rc and left no finding; see $log")
  fi
done

echo
printf '%-16s %12s %8s    %-8s %s\n' target executions corpus after findings
printf '%s\n' "${report[@]}"
if (( ${#repro[@]} )); then
  echo
  echo "Findings (logs in $findings/<target>.log); to reproduce:"
  printf '%s\n' "${repro[@]}"
fi
exit $status
