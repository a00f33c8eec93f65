#!/usr/bin/env bash
# Configures (Release, ccache when present) and builds with all cores into build/.
#   BUILD_DIR=... to build elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
# ccache with a precompiled header needs these to hit.
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$BUILD_DIR" -j"$(nproc)" >&2
