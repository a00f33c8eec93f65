#!/usr/bin/env bash
# Benchmarks (not tests): builds net2net-bench and runs each benchmark side by side with its
# reference; prints JSON lines. Needs the test packages (python3-torch, torchvision) for the
# exported experts.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake --build "$BUILD_DIR" --target net2net-bench -j"$(nproc)" >&2
B="$BUILD_DIR/bench/net2net-bench"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 scripts/experts/export_torchvision.py --arch resnet18 --size 64 --pool-stages --out "$tmp/r18.pt"
# Extraction throughput vs the expert alone on the same batches.
"$B" extract --expert "ts:$tmp/r18.pt:stage3" --data fashion-mnist:test --limit 10000 --batch-size 64 --runs 3
"$B" extract --expert label --data fashion-mnist:test --limit 10000 --batch-size 256
