#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer over the test suites (docs/testing.md).
#   scripts/sanitize.sh                 build build-sanitize/ (clang, Debian's LibTorch), then run the
#                                       kernel and I/O suites once per CPU kernel ISA of this machine
#   scripts/sanitize.sh --all           every suite (the tool tests and the example's tiny run too)
#   scripts/sanitize.sh --build-only    build, run nothing
# The same build holds the libFuzzer targets (tests/fuzz, run by scripts/fuzz.sh): the library
# carries libFuzzer's coverage instrumentation too, so one build serves both.
# Our code (library, tools, tests) is instrumented; LibTorch, HDF5 and BLAS are not, so a bad write
# into their memory from our side is caught at our access, not theirs. Leak checking is off:
# LibTorch's static registries are never freed. Any report fails the run (halt_on_error). CI runs
# the default set (.ci/run); BUILD_DIR moves the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=suites
for a in "$@"; do
  case "$a" in
    --all) mode=all ;;
    --build-only) mode=none ;;
    *) echo "sanitize.sh: unknown argument '$a' (see the header of scripts/sanitize.sh)" >&2; exit 2 ;;
  esac
done
scripts/setup.sh --test >&2
missing=()
for p in clang libclang-rt-14-dev libomp-dev; do dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  SUDO=$([[ $(id -u) == 0 ]] && echo || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
BUILD_DIR=${BUILD_DIR:-build-sanitize}
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
# OpenMP: clang's own (libomp), which also serves LibTorch's GNU OpenMP calls (its GOMP_* entry
# points come first). clang's -fopenmp=libgomp would compile without OpenMP: our kernels would run
# on one thread, and their splitting between threads would go unchecked.
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNET2NET_CUDA=OFF \
  -DNET2NET_SANITIZE=address,undefined -DNET2NET_FUZZ=ON \
  -UOpenMP_CXX_FLAGS -UOpenMP_CXX_LIB_NAMES -UOpenMP_gomp_LIBRARY >&2
cmake --build "$BUILD_DIR" -j"$(nproc)" >&2
[[ $mode == none ]] && exit 0

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The kernels (test_inn: layers, fused flow, checkpoints; test_core: config, options, files) and
# the readers (test_data: caches, sources, extraction; test_train: training, metrics).
suites=(test_core test_inn test_data test_train)
[[ $mode == all ]] && suites=(test_core test_inn test_data test_train test_cuda test_tools demo_tiny)
regex="^($(IFS='|'; echo "${suites[*]}"))\$"
# Every CPU kernel ISA this machine runs (kernels/cpu/kernels.cpp): the baseline, and AVX2 where present.
isas=(default)
grep -qw avx2 /proc/cpuinfo && isas+=(avx2)
status=0
for isa in "${isas[@]}"; do
  echo "[sanitize] ASan+UBSan, CPU kernels: $isa, suites: ${suites[*]}" >&2
  start=$SECONDS
  if ! (cd "$BUILD_DIR" && NET2NET_CPU_CAPABILITY=$isa ctest --output-on-failure --timeout 3000 -j"$(nproc)" -R "$regex"); then
    status=1
  fi
  echo "[sanitize] $isa: $((SECONDS - start)) s" >&2
done
exit $status
