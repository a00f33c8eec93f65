#!/usr/bin/env bash
# What a Python user would run instead, for scripts/bench.sh (issue 19): PyTorch 2.x from PyPI (the
# environment of scripts/setup_libtorch2.sh, shared: one download of the large torch wheel) with
# FrEIA added; pytorch-fid and clean-fid (scripts/setup_fid_refs.sh); CodeCarbon
# (scripts/setup_codecarbon.sh). Prints three lines, KEY=PYTHON: torch2, fid, codecarbon.
# Exit 3 when PyPI cannot be reached. Only for benchmarks: never a dependency of the tools.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${TORCH_VERSION:-2.11.0}
cache=${NET2NET_CACHE:-$HOME/.cache/net2net}
scripts/setup_libtorch2.sh > /dev/null || exit 3
torch2="$cache/torch-$version/bin/python"
if ! "$torch2" -c "import FrEIA.framework, h5py" 2> /dev/null; then
  echo "[setup] FrEIA 0.2 (and h5py) from PyPI into $cache/torch-$version (once)" >&2
  "$torch2" -m pip install -q --disable-pip-version-check FrEIA==0.2 h5py >&2 || exit 3
fi
echo "torch2=$torch2"
echo "fid=$(scripts/setup_fid_refs.sh)"
echo "codecarbon=$(scripts/setup_codecarbon.sh)"
