#!/usr/bin/env bash
# A tiny version of the example pipeline (scripts/demo.sh) with checks of what it produced; with the
# sentence-BERT part where NET2NET_SBERT names the exported model (scripts/run_tests.sh sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SBERT=${NET2NET_SBERT:-}
fail() { echo "demo_tiny: $*" >&2; exit 1; }
# The first run is the installed example (cmake --install into a prefix, run from another folder);
# the second, the source tree's, which must reuse what the first made.
build=${1:-build}
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log" || fail "cmake --install failed: $(tail -5 "$tmp/install.log")"
(cd "$tmp" && OUT=demo TRAIN_LIMIT=600 TEST_LIMIT=200 STEPS=30 AE_EPOCHS=1 CLF_EPOCHS=1 JUDGE_EPOCHS=1 \
  EXPERT_LIMIT=2000 EVAL_ROWS=40 PROMPT_SAMPLES=2 EDIT_ROWS=20 AED_EPOCHS=1 EXTRAS=1 LOG_LEVEL=error "$tmp/prefix/share/net2net/scripts/demo.sh")
out=$tmp/demo
files=(report.md label2ae.png text2ae.png stage12ae.png stage22ae.png stage32ae.png stage42ae.png transfer.png text2ae.heldout.png
       stage32ae.sketch.png shape32ae.sketch.png edit.png experts/shape/expert.pt seghard2ae.png segsoft2ae.png
       seghard2ae.transfer.png dom_a2b.png dom_b2a.png experts/aed/expert.pt runs/dom2ae/summary.json)
runs=10 text_experts=1
if [[ -n $SBERT ]]; then files+=(sbert2ae.png sbert2ae.heldout.png); runs=11 text_experts=2; fi
for f in "${files[@]}"; do
  [[ -s "$out/$f" ]] || fail "missing $f"
done
# The grids and loss curves net2net-train wrote while the cINNs trained (train.image_every).
for f in runs/label2ae/images/step_0000001.png runs/label2ae/images/step_0000030.png runs/label2ae/images/loss.png; do
  [[ -s "$out/$f" ]] || fail "missing $f"
done
grep -q "^## During training" "$out/report.md" || fail "the report does not show the training-time images"
rows=$(grep -cE '^\| (label2ae|text2ae|sbert2ae|stage[1234]2ae|shape32ae|lp2ae|seg(hard|soft)2ae) \| [^|]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|' "$out/report.md")
[[ $rows -eq $runs ]] || fail "report.md has $rows score rows, expected $runs"
rows=$(grep -cE '^\| (text-hash|sentence-BERT)[^|]* \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$' "$out/report.md")
[[ $rows -eq $text_experts ]] || fail "report.md has $rows held-out rows, expected $text_experts"
# The extra experiments (EXTRAS=1): the sketch, editing, segmentation and unaligned rows, each with its numbers.
rows=$(grep -cE '^\| (plain|shape-biased) classifier \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$' "$out/report.md")
[[ $rows -eq 2 ]] || fail "report.md has $rows sketch rows, expected 2"
rows=$(grep -cE '^\| (brightness|size) \(-1 / \+1\) \| ([0-9.]+|n/a) \| ([0-9.]+|n/a) \| [0-9.]+ \| ([0-9.]+|n/a) \|$' "$out/report.md")
[[ $rows -eq 2 ]] || fail "report.md has $rows attribute-editing rows, expected 2"
rows=$(grep -cE '^\| (hard mask \(argmax\)|soft scores) \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$' "$out/report.md")
[[ $rows -eq 2 ]] || fail "report.md has $rows segmentation rows, expected 2"
rows=$(grep -cE '^\| (the class alone \(label2ae\)|AE reconstructions \(ceiling\)) \| [0-9.]+ \| [0-9.]+ \|' "$out/report.md")
[[ $rows -eq 2 ]] || fail "report.md has $rows mask-agreement reference rows, expected 2"
rows=$(grep -cE '^\| (real -> inverted|inverted -> real) \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$' "$out/report.md")
[[ $rows -eq 2 ]] || fail "report.md has $rows unaligned-translation rows, expected 2"
[[ -n $SBERT ]] || grep -q "^Skipped: SBERT was not given" "$out/report.md" || fail "the report does not say why sentence-BERT is missing"
# A second run reuses everything it can (experts, caches, cINNs).
OUT=$out TRAIN_LIMIT=600 TEST_LIMIT=200 STEPS=30 EVAL_ROWS=40 EXTRAS=1 BUILD_DIR=$build LOG_LEVEL=error STOP_AFTER_TRAINING=1 \
  scripts/demo.sh 2> "$out/second.log"
grep -q "expert ae: reused" "$out/second.log" || fail "experts were not reused"
grep -q "cINN label2ae: reused" "$out/second.log" || fail "cINNs were not reused"
grep -q "training (" "$out/second.log" && fail "the second run trained again"
echo "1 passed, 0 failed"
