#!/usr/bin/env bash
# Configures (Release, ccache when present) and builds with all cores.
#   scripts/build.sh                        Debian's LibTorch 1.13 (CPU only) into build/
#   NET2NET_LIBTORCH=pypi scripts/build.sh  LibTorch 2.x with CUDA from PyPI's torch wheel (fetched
#                                           once by scripts/setup_libtorch2.sh) into build-torch2/
#   BUILD_DIR=DIR to build elsewhere; CMAKE_PREFIX_PATH=DIR (a LibTorch's share/cmake or its root)
#   for any other LibTorch, e.g. one unpacked from pytorch.org.
set -euo pipefail
cd "$(dirname "$0")/.."
libtorch=${NET2NET_LIBTORCH:-debian}
args=(-DCMAKE_BUILD_TYPE=Release)
case "$libtorch" in
  debian) BUILD_DIR=${BUILD_DIR:-build} ;;
  pypi)
    BUILD_DIR=${BUILD_DIR:-build-torch2}
    prefix=$(scripts/setup_libtorch2.sh)
    args+=("-DCMAKE_PREFIX_PATH=$prefix${CMAKE_PREFIX_PATH:+;$CMAKE_PREFIX_PATH}")
    ;;
  *) echo "NET2NET_LIBTORCH must be debian or pypi, got '$libtorch'" >&2; exit 2 ;;
esac
# ccache with a precompiled header needs these to hit; paths relative to the checkout, so that a
# fresh clone elsewhere (CI) hits what this machine compiled before.
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
cmake -S . -B "$BUILD_DIR" "${args[@]}" >&2
cmake --build "$BUILD_DIR" -j"$(nproc)" >&2
