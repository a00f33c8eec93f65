#!/usr/bin/env bash
# The FID implementations users cite, as references for the FID agreement test (issue 19): PyPI's
# pytorch-fid and clean-fid in a virtual environment that sees Debian's python3-torch, numpy and
# scipy (their imports want torch; the test uses only their Frechet distance functions). Prints
# the environment's python; a second run reuses it. Exit 3 when PyPI cannot be reached.
#   scripts/setup_fid_refs.sh      -> ~/.cache/net2net/fid-refs/bin/python
# NET2NET_CACHE=DIR moves the cache. Only for tests and benchmarks: never a dependency of the tools.
set -euo pipefail
cache=${NET2NET_CACHE:-$HOME/.cache/net2net}
venv="$cache/fid-refs"
packages=(pytorch-fid==0.3.0 clean-fid==0.1.35 tqdm)
check='from pytorch_fid.fid_score import calculate_frechet_distance; from cleanfid.fid import frechet_distance'
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "$check" 2> /dev/null; then
  echo "$venv/bin/python"
  exit 0
fi
if ! /usr/bin/python3 -c "import torch, scipy, numpy" 2> /dev/null; then
  echo "[setup] FID references: Debian's python3-torch, -scipy, -numpy are missing (scripts/setup.sh --test)" >&2
  exit 3
fi
echo "[setup] FID references: ${packages[*]} from PyPI into $venv (once)" >&2
mkdir -p "$cache"
rm -rf "$venv"
/usr/bin/python3 -m venv --system-site-packages "$venv" >&2
if ! "$venv/bin/pip" install -q --no-deps "${packages[@]}" >&2; then
  echo "[setup] FID references: PyPI could not be reached" >&2
  exit 3
fi
"$venv/bin/python" -c "$check" >&2 || exit 3
echo "$venv/bin/python"
