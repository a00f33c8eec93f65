#!/usr/bin/env bash
# README command 1: installs what is missing, builds, and runs the main job: the Fashion-MNIST
# example end to end (scripts/demo.sh), then checks that every shipped config still validates.
# Results: out/demo/report.md and its PNG grids. A second run reuses what exists.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
scripts/demo.sh
for cfg in configs/*.json; do
  "$BUILD_DIR/tools/net2net-train/net2net-train" --config "$cfg" --dry-run --log-level error > /dev/null
done
echo "report: out/demo/report.md" >&2
