#!/usr/bin/env bash
# Benchmarks (not tests): our code paths side by side with a reference on the same inputs and
# threads (Python PyTorch via /usr/bin/python3, scipy), medians of several runs; prints the JSON
# lines and a markdown table of the ratios, with the machine's sgemm GFLOP/s and copy GB/s.
# RESULTS=FILE keeps the JSON lines; `scripts/bench.sh --table FILE` prints the table of such a file.
set -euo pipefail
cd "$(dirname "$0")/.."
table() {
jq -rs '
  # The median round (by its time; rounds are odd in number by default) of each side.
  def mid: sort_by(.seconds_per_step // .seconds_per_batch) | .[(length - 1) / 2 | floor];
  def cpp(b; c): map(select(.bench == b and (.impl // "cpp") == "cpp" and ((.config // "") == c))) | mid;
  def py(b; c): map(select(.bench == b and .impl != "cpp" and (.impl // "") != "" and ((.config // "") == c))) | mid;
  # Round by round (ours and the reference ran next to each other): the median ratio and its range,
  # which a drift of the machine between rounds moves less than the ratio of the two medians.
  def paired(b; c; key):
    [map(select(.bench == b and (.impl // "cpp") == "cpp" and ((.config // "") == c)) | .[key]),
     map(select(.bench == b and .impl != "cpp" and (.impl // "") != "" and ((.config // "") == c)) | .[key])]
    | transpose | map(select(.[0] != null and .[1] != null) | .[0] / .[1]) | sort
    | if length == 0 then "" else
        "\(.[(length - 1) / 2 | floor] * 100 | round / 100) (\(first * 100 | round / 100)-\(last * 100 | round / 100))" end;
  (map(select(.bench == "machine")) | first) as $m
  | "Machine: \($m.threads) threads, CPU kernels \($m.cpu_kernels // "?"), sgemm \($m.sgemm_gflops | floor) GFLOP/s, copy \($m.copy_gb_per_s * 10 | floor / 10) GB/s\n",
    "Memory-traffic bound of a training step: 48 bytes per parameter (float32 weights read in the",
    "forward and the backward pass, gradients written, AMSGrad reading p, g, m, v, vmax and writing",
    "p, m, v, vmax) at the measured copy bandwidth. Phases of our step: forward / backward /",
    "gradient norm / optimizer. GFLOP/s of ours: 2 FLOP per weight and row forward, 4 backward",
    "(biases and element-wise work not counted), with its share of the measured sgemm rate.\n",
    "| benchmark | ours (s) | reference (s) | time ratio ours/reference | paired rounds: median ratio (range) | traffic bound (s) | ours/bound | phases (ms) | GFLOP/s ours (share of sgemm) |",
    "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    (["configs/fmnist_label2ae.json", "configs/text2biggan.json"][] as $c
      | def gflops(f; s): (f / s / 1e9) as $g | "\($g | floor) (\($g / $m.sgemm_gflops * 100 | round / 100))";
        (cpp("train"; $c)) as $a | (py("train"; $c)) as $b
      | ($a.parameters * 48 / ($m.copy_gb_per_s * 1e9)) as $bound
      | "| train step \($c) | \($a.seconds_per_step) | \($b.seconds_per_step) | \($a.seconds_per_step / $b.seconds_per_step * 100 | round / 100) | \(paired("train"; $c; "seconds_per_step")) | \($bound * 1000 | round / 1000) | \($a.seconds_per_step / $bound * 100 | round / 100) | \([$a.forward_s, $a.backward_s, $a.grad_norm_s, $a.optimizer_s] | map(. * 10000 | round / 10 | tostring) | join(" / ")) | \(gflops(6 * $a.parameters * $a.batch_size; $a.seconds_per_step)) |",
        ((cpp("sample"; $c)) as $a | (py("sample"; $c)) as $b
      | "| sample 256 \($c) | \($a.seconds_per_batch) | \($b.seconds_per_batch) | \($a.seconds_per_batch / $b.seconds_per_batch * 100 | round / 100) | \(paired("sample"; $c; "seconds_per_batch")) | | | | \(gflops(2 * $a.parameters * $a.batch; $a.seconds_per_batch)) |")),
    (map(select(.bench == "extract")) | first | "| extract (vs expert alone, items/s) | \(.extract_items_per_s | floor) | \(.expert_alone_items_per_s | floor) | \(1 / .ratio_extract_over_expert_alone * 100 | round / 100) | | | | | |"),
    ((map(select(.bench == "fid" and .impl == "cpp")) | first) as $a | (map(select(.bench == "fid" and .impl == "scipy-sqrtm")) | first) as $b
      | "| FID 10000 x 2048 (vs scipy sqrtm) | \($a.seconds) | \($b.seconds) | \($a.seconds / $b.seconds * 100 | round / 100) | | | | | |"),
    (map(select(.bench == "gemm"))[] | "| \({nn: "b + x W", nt: "g W^T", tn: "x^T g"}[.kind]) (\(.kind)), \(.rows) rows, W \(.in) x \(.out) (vs torch, GFLOP/s) | \(.ours_gflops | floor) | \(.torch_gflops | floor) | \(.ratio_ours_over_torch * 100 | round / 100) | | | | | |")
' "$1"
}
if [[ ${1:-} == --table ]]; then table "${2:?usage: scripts/bench.sh --table RESULTS.jsonl}"; exit; fi
scripts/setup.sh --test
scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake --build "$BUILD_DIR" --target net2net-bench -j"$(nproc)" >&2
B="$BUILD_DIR/bench/net2net-bench"
threads=${THREADS:-$(nproc)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
R=$tmp/results.jsonl
run() { "$@" | tee -a "$R"; }

run "$B" --threads "$threads" machine
# Training step and sampling: our step vs the same model in Python PyTorch, in alternating rounds
# so that the drifts of a noisy machine hit both; the table takes the median round of each and
# the median of the paired ratios. Rounds: ROUNDS (default 3) of text2biggan (~1 min each) and
# SMALL_ROUNDS (default 7; ~5 s each) of the small config, whose paired ratios ranged 0.28-0.41 in 3.
rounds=${ROUNDS:-3} small_rounds=${SMALL_ROUNDS:-7}
for ((round = 1; round <= (rounds > small_rounds ? rounds : small_rounds); round++)); do
  for cfg in configs/fmnist_label2ae.json configs/text2biggan.json; do
    if [[ $cfg == *text2biggan* ]]; then (( round <= rounds )) || continue; else (( round <= small_rounds )) || continue; fi
    # Small configs: 5 runs of 30 steps (a run of 10 lasted ~0.1-0.2 s, short enough for one burst
    # of a noisy neighbour to decide its median); text2biggan: 3 runs of 2 steps.
    runs=5 steps=30
    [[ $cfg == *text2biggan* ]] && { runs=3; steps=2; }
    run "$B" --threads "$threads" train --config "$cfg" --runs $runs --steps $steps
    /usr/bin/python3 bench/train_step.py "$cfg" "$threads" $runs $steps | jq -c --arg c "$cfg" '. + {bench: "train", config: $c}' | tee -a "$R"
    run "$B" --threads "$threads" sample --config "$cfg" --batch 256 --runs $runs --steps $steps
    /usr/bin/python3 bench/train_step.py "$cfg" "$threads" $runs $steps --sample 256 | jq -c --arg c "$cfg" '. + {config: $c}' | tee -a "$R"
  done
done
# The GEMMs of a short-batch linear layer: our kernels vs torch on the same shapes, in one process.
run "$B" --threads "$threads" gemm --rows 16
# Extraction vs the expert alone on the same batches.
/usr/bin/python3 scripts/experts/export_torchvision.py --arch resnet18 --size 64 --pool-stages --out "$tmp/r18.pt"
run "$B" --threads "$threads" extract --expert "ts:$tmp/r18.pt:stage3" --data fashion-mnist:test --limit 10000 --batch-size 64 --runs 3
# FID on 10,000 x 2048 features: our eigenvalue route vs scipy's sqrtm route (pytorch-fid's).
run "$B" --threads "$threads" fid --n 10000 --dim 2048 --runs 3 --out "$tmp/fid.h5"
/usr/bin/python3 tests/python/fid_reference.py "$tmp/fid.h5" a b --time | jq -c '. + {bench: "fid"}' | tee -a "$R"

[[ -n ${RESULTS:-} ]] && cp "$R" "$RESULTS"
echo
table "$R"
