#!/usr/bin/env bash
# Builds the Debian package (CPack) of a build against Debian's LibTorch, installs it with apt-get
# (which pulls in the declared dependencies), runs the installed tools from /usr/bin in a clean
# environment, and removes the package again.
#   scripts/test_deb.sh [BUILD_DIR]      (default build; as root or with sudo)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-${BUILD_DIR:-build}}
SUDO=$([[ $(id -u) == 0 ]] && echo || echo sudo)
fail() { echo "test_deb: $*" >&2; exit 1; }
[[ -f $build/CMakeCache.txt ]] || fail "'$build' is not a build folder (run scripts/build.sh first)"
if grep -q "site-packages/torch" "$build/CMakeCache.txt"; then
  fail "'$build' is built against PyPI's LibTorch: the package is made from a build against Debian's"
fi
(cd "$build" && cpack -G DEB > cpack.log 2>&1) || fail "cpack failed: $(tail -20 "$build/cpack.log")"
deb=$(ls -t "$build"/net2net_*.deb | head -1)
echo "test_deb: $deb"
dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/^ */  depends: /'
if dpkg -s net2net > /dev/null 2>&1; then $SUDO apt-get remove -y -qq net2net > /dev/null; fi
trap '$SUDO apt-get remove -y -qq net2net > /dev/null 2>&1 || true' EXIT
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$(realpath "$deb")" > "$build/apt.log" 2>&1 \
  || fail "apt-get install failed: $(tail -20 "$build/apt.log")"
tmp=$(mktemp -d)
cd "$tmp"
run() { env -i HOME="$tmp" PATH=/usr/bin:/bin "$@"; }
for tool in net2net-extract net2net-train net2net-translate net2net-eval; do
  [[ $(command -v $tool) == /usr/bin/$tool ]] || fail "$tool is not in /usr/bin"
  out=$(run $tool --version) || fail "$tool --version failed"
  grep -q "^data files: /usr/share/net2net/data$" <<< "$out" || fail "$tool does not use /usr/share/net2net/data: $out"
done
[[ -s /usr/share/bash-completion/completions/net2net-train ]] || fail "no bash completion installed"
run net2net-extract --data gaussian:40:4 --expert x=identity --expert c=identity --out cache.h5 2> extract.log \
  || fail "extraction failed: $(cat extract.log)"
mkdir run
echo '{"wall_seconds": 3600, "cpu_energy": {"measured": false}, "gpu_energy": {"measured": false}}' > run/energy.json
run net2net-eval energy --run run --power-profile dgx1 | grep -q "3.500 kWh" || fail "energy report failed"
cd / && rm -rf "$tmp"
echo "test_deb: installed with apt-get, the tools ran from /usr/bin, removed again"
