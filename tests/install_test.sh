#!/usr/bin/env bash
# Installs the build into a temporary prefix, moves the prefix elsewhere, hides the source and build
# folders (a mount namespace, where this runs as root; said when not), and runs the installed tools
# from another folder with a clean environment: each must find its data files beside itself
# (--version names the folder it uses) and its LibTorch through RPATH.
#   tests/install_test.sh BUILD_DIR
set -euo pipefail
fail() { echo "install_test: $*" >&2; exit 1; }
if [[ ${1:-} != --installed ]]; then
  build=$(cd "${1:?usage: install_test.sh BUILD_DIR}" && pwd)
  src=$(cd "$(dirname "$0")/.." && pwd)
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cmake --install "$build" --prefix "$tmp/first" > "$tmp/install.log" || fail "cmake --install failed: $(tail -5 "$tmp/install.log")"
  mv "$tmp/first" "$tmp/moved"  # relocatable: nothing may point at the prefix it was installed to
  cp "$0" "$tmp/check.sh"       # the checks below run from here: the source folder is about to vanish
  mkdir "$tmp/empty"
  if [[ $(id -u) == 0 ]] && unshare -m true 2> /dev/null; then
    # The build folder first: it may lie inside the source folder.
    unshare -m bash -c 'mount --bind "$1" "$2" && mount --bind "$1" "$3" && exec bash "$4" --installed "$5" "$6" "$3"' _ \
      "$tmp/empty" "$build" "$src" "$tmp/check.sh" "$tmp/moved" "$tmp"
    echo "install_test: (the source and build folders were hidden: $src, $build)"
  else
    echo "install_test: not root or no mount namespaces: the source and build folders stay visible" >&2
    bash "$tmp/check.sh" --installed "$tmp/moved" "$tmp"
  fi
  exit 0
fi
p=$2 tmp=$3
if [[ -n ${4:-} && -n $(ls -A "$4") ]]; then fail "the source folder $4 is still visible"; fi
for f in bin/net2net-extract bin/net2net-train bin/net2net-translate bin/net2net-eval \
         share/net2net/data/power_profiles.json share/net2net/data/reference_costs.json \
         share/net2net/configs/text2biggan.json share/net2net/slurm/train_one_node.sbatch \
         share/doc/net2net/README.md share/doc/net2net/formats.md; do
  [[ -e $p/$f ]] || fail "missing after install: $f"
done
mkdir "$tmp/elsewhere"
cd "$tmp/elsewhere"
# A clean environment: no LD_LIBRARY_PATH, no NET2NET_DATA_DIR, PATH with the installed tools only.
run() { env -i HOME="$tmp" PATH="$p/bin:/usr/bin:/bin" "$@"; }
for tool in net2net-extract net2net-train net2net-translate net2net-eval; do
  if ldd "$p/bin/$tool" | grep -q "not found"; then fail "$tool: $(ldd "$p/bin/$tool" | grep 'not found')"; fi
  out=$(run "$tool" --version) || fail "$tool --version failed"
  grep -q "^data files: $p/share/net2net/data$" <<< "$out" || fail "$tool does not use the installed data files: $out"
done
run net2net-train --config "$p/share/net2net/configs/text2biggan.json" --dry-run > dry.json 2> dry.log \
  || fail "dry run failed: $(cat dry.log)"
run net2net-extract --data gaussian:40:4 --expert x=identity --expert c=identity --out cache.h5 2> extract.log \
  || fail "extraction failed: $(cat extract.log)"
[[ -s cache.h5 ]] || fail "the extraction wrote no cache"
mkdir run
echo '{"wall_seconds": 3600, "cpu_energy": {"measured": false}, "gpu_energy": {"measured": false}}' > run/energy.json
run net2net-eval energy --run run --power-profile dgx1 > energy.md 2> energy.log || fail "energy report failed: $(cat energy.log)"
grep -q "3.500 kWh" energy.md || fail "energy report without the dgx1 profile's numbers: $(cat energy.md)"
# Completions and man pages, generated from the tools themselves.
for tool in net2net-extract net2net-train net2net-translate net2net-eval; do
  comp=$p/share/bash-completion/completions/$tool
  [[ -s $comp ]] || fail "no bash completion for $tool"
  bash -n "$comp" || fail "the completion of $tool is not valid bash"
  grep -q -- "--threads" "$comp" || fail "the completion of $tool lacks the global options"
  if command -v help2man > /dev/null; then
    [[ -s $p/share/man/man1/$tool.1 ]] || fail "no man page for $tool"
    grep -q -- "threads" "$p/share/man/man1/$tool.1" || fail "the man page of $tool lacks its options"
  fi
done
grep -q "model.n_flows=" "$p/share/bash-completion/completions/net2net-train" || fail "net2net-train's completion lacks the config keys"
grep -q " fid" "$p/share/bash-completion/completions/net2net-eval" || fail "net2net-eval's completion lacks its subcommands"
# The environment module, loaded by Lmod where installed (setup.sh --test installs it).
if [[ -f /usr/share/lmod/lmod/init/bash ]]; then
  found=$(env -i HOME="$tmp" PATH=/usr/bin:/bin bash -c "source /usr/share/lmod/lmod/init/bash >/dev/null 2>&1
    module use '$p/share/net2net/modulefiles' && module load net2net && command -v net2net-train && echo \$NET2NET_DATA_DIR") \
    || fail "module load net2net failed"
  [[ $found == "$p/bin/net2net-train"$'\n'"$p/share/net2net/data" ]] || fail "module load net2net gave: $found"
  echo "install_test: module load net2net (Lmod) puts $p/bin on PATH"
fi
echo "install_test: installed, moved, and the four tools ran from $p"
