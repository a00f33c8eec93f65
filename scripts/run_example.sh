#!/usr/bin/env bash
# README command 1: installs what is missing, builds, and runs the main job.
# At this stage of the project the main job validates every shipped config and builds each
# model (net2net-train --dry-run); the Fashion-MNIST example end to end replaces it (issue 6).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
OUT=${OUT:-out/configs}
mkdir -p "$OUT"
for cfg in configs/*.json; do
  name=$(basename "$cfg" .json)
  "$BUILD_DIR/tools/net2net-train/net2net-train" --config "$cfg" --dry-run --log-level error > "$OUT/$name.json"
  /usr/bin/env python3 - "$OUT/$name.json" <<'PY' 2>/dev/null || echo "$name: see $OUT/$name.json"
import json, sys
s = json.load(open(sys.argv[1]))
m = s["config"]["model"]
print(f'{s["config"]["name"]:>18}: {m["in_dim"]:>4} <- {m["cond_dim"]:>4}, {m["n_flows"]:>2} flows, '
      f'{s["parameters"]["total"]:>12,} parameters, lr {s["learning_rate"]["lr"]:.3g}')
PY
done
echo "dry-run summaries in $OUT/" >&2
