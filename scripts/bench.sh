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
# Training step time: our step vs the same model in Python PyTorch, same threads.
threads=$(nproc)
for cfg in configs/fmnist_label2ae.json configs/text2biggan.json; do
  runs=5; steps=10
  [[ $cfg == *text2biggan* ]] && { runs=3; steps=2; }
  cpp=$("$B" train --config "$cfg" --runs $runs --steps $steps --threads "$threads")
  py=$(/usr/bin/python3 bench/train_step.py "$cfg" "$threads" $runs $steps)
  echo "$cpp"; echo "$py"
  /usr/bin/python3 -c "import json,sys; c=json.loads(sys.argv[1]); p=json.loads(sys.argv[2]); print(json.dumps({'bench':'train_ratio','config':sys.argv[3],'cpp_s':c['seconds_per_step'],'python_s':p['seconds_per_step'],'ratio_cpp_over_python':c['seconds_per_step']/p['seconds_per_step']}))" "$cpp" "$py" "$cfg"
done
# FID on 10,000 x 2048 features: our eigenvalue route vs scipy's sqrtm route (pytorch-fid's).
"$B" fid --n 10000 --dim 2048 --runs 3 --threads "$threads" --out "$tmp/fid.h5"
/usr/bin/python3 tests/python/fid_reference.py "$tmp/fid.h5" a b --time
