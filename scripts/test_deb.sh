#!/usr/bin/env bash
# Builds the Debian package (CPack) of a build against Debian's LibTorch and installs it with apt-get
# on a clean machine: a fresh minimal Debian (debootstrap --variant=minbase, the host's release and
# mirror) in a chroot, so that every run-time dependency must come from the package's Depends, and
# nothing of the build or source tree is there. In it: the installed tools run from /usr/bin with a
# clean environment (first without /proc, then with it), the Tcl environment module (of the package,
# and of a `cmake --install` prefix copied in) loads under environment-modules (Lmod's is tested by
# tests/install_test.sh), and the package is removed again.
#   scripts/test_deb.sh [BUILD_DIR]      (default build; as root: debootstrap, chroot, mount)
# The minimal base is made once and kept as a tarball in ${NET2NET_CACHE:-~/.cache/net2net}; the
# chroot itself is new each run and deleted afterwards. The host system is not changed.
set -euo pipefail
fail() { echo "test_deb: $*" >&2; exit 1; }
if [[ ${1:-} == --in-chroot ]]; then  # the checks on the clean system, in /tmp of the chroot
  cd "$(mktemp -d)"
  for tool in net2net-extract net2net-train net2net-translate net2net-eval; do
    [[ $(command -v $tool) == /usr/bin/$tool ]] || fail "$tool is not in /usr/bin"
    out=$($tool --version) || fail "$tool --version failed"
    grep -q "^data files: /usr/share/net2net/data$" <<< "$out" || fail "$tool does not use /usr/share/net2net/data: $out"
    [[ -s /usr/share/bash-completion/completions/$tool ]] || fail "no bash completion for $tool"
    [[ -s /usr/share/man/man1/$tool.1 ]] || [[ -s /usr/share/man/man1/$tool.1.gz ]] || fail "no man page for $tool"
  done
  net2net-train --config /usr/share/net2net/configs/text2biggan.json --dry-run > dry.json 2> dry.log \
    || fail "dry run failed: $(cat dry.log)"
  net2net-extract --data gaussian:40:4 --expert x=identity --expert c=identity --out cache.h5 2> extract.log \
    || fail "extraction failed: $(cat extract.log)"
  echo '{"data": {"train": "cache.h5", "val": "cache.h5", "condition": "c", "target": "x"},
         "model": {"n_flows": 2, "hidden_dim": 16, "embedding_dim": 4}, "train": {"batch_size": 8, "steps": 3}}' > tiny.json
  net2net-train --config tiny.json --run-dir run --log-level error > train.json 2> train.log || fail "training failed: $(cat train.log)"
  net2net-eval energy --run run --power-profile dgx1 > energy.md 2> energy.log || fail "energy report failed: $(cat energy.log)"
  grep -q "3500 W" energy.md || fail "energy report without the dgx1 profile: $(cat energy.md)"
  # The Tcl environment module under environment-modules (which conflicts with Lmod: not on the host).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends environment-modules > apt-modules.log 2>&1 \
    || fail "could not install environment-modules: $(tail -5 apt-modules.log)"
  # Of the package (/usr) and of a `cmake --install` prefix copied to /opt/net2net (not on PATH before).
  for p in /usr /opt/net2net; do
    found=$(bash -c "source /usr/share/modules/init/bash && module use $p/share/net2net/modulefiles-tcl \
      && module load net2net && command -v net2net-train && echo \$NET2NET_DATA_DIR && net2net-train --version") \
      || fail "module load net2net (Tcl, $p) failed: $found"
    [[ $found == $p/bin/net2net-train$'\n'$p/share/net2net/data$'\n'*"data files: $p/share/net2net/data" ]] \
      || fail "module load net2net (Tcl, $p) gave: $found"
  done
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq net2net > /dev/null 2>&1 || fail "apt-get remove net2net failed"
  [[ ! -e /usr/bin/net2net-train ]] || fail "net2net-train is still there after apt-get remove"
  exit 0
fi
cd "$(dirname "$0")/.."
build=${1:-${BUILD_DIR:-build}}
[[ $(id -u) == 0 ]] || fail "needs root (debootstrap, chroot, mount)"
[[ -f $build/CMakeCache.txt ]] || fail "'$build' is not a build folder (run scripts/build.sh first)"
if grep -q "site-packages/torch" "$build/CMakeCache.txt"; then
  fail "'$build' is built against PyPI's LibTorch: the package is made from a build against Debian's"
fi
(cd "$build" && cpack -G DEB > cpack.log 2>&1) || fail "cpack failed: $(tail -20 "$build/cpack.log")"
deb=$(ls -t "$build"/net2net_*.deb | head -1)
echo "test_deb: $deb"
dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/^ */  depends: /'

. /etc/os-release
suite=$VERSION_CODENAME
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2> /dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
cache=${NET2NET_CACHE:-$HOME/.cache/net2net}
base=$cache/debian-$suite-minbase.tar
if [[ ! -s $base ]]; then
  command -v debootstrap > /dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap > /dev/null \
    || fail "debootstrap is missing and could not be installed"
  mkdir -p "$cache"
  staging=$(mktemp -d /var/tmp/net2net-base.XXXXXX)
  echo "test_deb: making a minimal Debian $suite ($mirror) once, kept as $base"
  debootstrap --variant=minbase "$suite" "$staging" "$mirror" > "$cache/debootstrap.log" 2>&1 \
    || { rm -rf "$staging"; fail "debootstrap failed: $(tail -5 "$cache/debootstrap.log")"; }
  tar -C "$staging" -cf "$base.tmp" . && mv "$base.tmp" "$base"
  rm -rf "$staging"
fi
root=$(mktemp -d /var/tmp/net2net-clean.XXXXXX)
trap 'rm -rf "$root"' EXIT
tar -C "$root" -xf "$base"
cp /etc/resolv.conf "$root/etc/resolv.conf"
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
  rm -f "$root/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
fi
cp "$deb" "$root/tmp/net2net.deb"
cmake --install "$build" --prefix "$root/opt/net2net" > "$root/install.log" || fail "cmake --install failed: $(tail -5 "$root/install.log")"
cp "$0" "$root/tmp/test_deb.sh"

# In the chroot (a private mount namespace: /proc is unmounted with it when this ends).
unshare -m bash -c '
  set -euo pipefail
  root=$1
  inroot() { chroot "$root" env -i HOME=/tmp PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
  fail() { echo "test_deb: $*" >&2; exit 1; }
  inroot bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/net2net.deb" \
    > "$root/apt.log" 2>&1 || fail "apt-get install failed on a clean system: $(tail -20 "$root/apt.log")"
  # Without /proc (the tool cannot see its own path): the data files still come from the package.
  out=$(inroot net2net-train --version) || fail "net2net-train --version failed without /proc"
  grep -q "^data files: /usr/share/net2net/data$" <<< "$out" || fail "without /proc: $out"
  mount -t proc proc "$root/proc"
  inroot bash /tmp/test_deb.sh --in-chroot
' _ "$root" || exit 1
echo "test_deb: installed with apt-get on a clean $suite, the tools ran from /usr/bin, the Tcl module loaded, removed again"
