#!/usr/bin/env bash
# CodeCarbon from PyPI (the energy tracker users compare with), in a small virtual environment of
# its own (pandas and its other dependencies; no torch): the test that our CodeCarbon CSV loads
# with CodeCarbon's own code, and bench.sh's energy rows. Prints the environment's python; a
# second run reuses it. Exit 3 when PyPI cannot be reached. NET2NET_CACHE=DIR moves the cache.
# Only for tests and benchmarks: never a dependency of the tools.
set -euo pipefail
cache=${NET2NET_CACHE:-$HOME/.cache/net2net}
venv="$cache/codecarbon"
check='from codecarbon.output_methods.file import FileOutput; import codecarbon, sys; sys.exit(codecarbon.__version__ != "3.3.2")'
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "$check" 2> /dev/null; then
  echo "$venv/bin/python"
  exit 0
fi
echo "[setup] CodeCarbon 3.3.2 from PyPI into $venv (once)" >&2
mkdir -p "$cache"
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv" >&2
if ! "$venv/bin/pip" install -q --disable-pip-version-check codecarbon==3.3.2 >&2; then
  echo "[setup] CodeCarbon: PyPI could not be reached" >&2
  exit 3
fi
"$venv/bin/python" -c "$check" >&2 || exit 3
echo "$venv/bin/python"
