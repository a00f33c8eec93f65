#!/usr/bin/env bash
# The second LibTorch: 2.x with CUDA, from PyPI's torch wheel, into a virtual environment outside
# the repository (fetched once, then reused). Prints the CMake prefix path of its LibTorch.
#   scripts/setup_libtorch2.sh            -> e.g. ~/.cache/net2net/torch-2.11.0/lib/python3.11/site-packages/torch/share/cmake
#   TORCH_VERSION=2.11.0 (default): its CUDA (13.0) matches this toolkit's nvcc and the lent
#   GPU machine's torch; NET2NET_CACHE=DIR to keep the environment elsewhere.
set -euo pipefail
version=${TORCH_VERSION:-2.11.0}
cache=${NET2NET_CACHE:-$HOME/.cache/net2net}
venv="$cache/torch-$version"
python=/usr/bin/python3   # Debian's interpreter (python3-venv); the python3 first on PATH may differ
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$version')" 2>/dev/null; then
  echo "[setup] torch $version from PyPI into $venv (a few GB, once)" >&2
  mkdir -p "$cache"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$version" numpy >&2
fi
"$venv/bin/python" -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
