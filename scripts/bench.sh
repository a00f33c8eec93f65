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
  # The first table reference: Python PyTorch 1.13 from Debian ("python" in files of older benches).
  def is113: .impl == "python" or (.impl // "" | startswith("torch-1."));
  def py(b; c): map(select(.bench == b and is113 and ((.config // "") == c))) | mid;
  # Round by round (ours and the reference ran next to each other): the median ratio and its range,
  # which a drift of the machine between rounds moves less than the ratio of the two medians.
  def paired(b; c; key):
    [map(select(.bench == b and (.impl // "cpp") == "cpp" and ((.config // "") == c)) | .[key]),
     map(select(.bench == b and is113 and ((.config // "") == c)) | .[key])]
    | transpose | map(select(.[0] != null and .[1] != null) | .[0] / .[1]) | sort
    | if length == 0 then "" else
        "\(.[(length - 1) / 2 | floor] * 100 | round / 100) (\(first * 100 | round / 100)-\(last * 100 | round / 100))" end;
  # One periodic checkpoint: its cost from the two runs, and its share of the wall time at the
  # default checkpoint_every (2000 steps of the measured step time).
  def run_costs:
    (.without.timings.steps_s / .without.steps) as $step
    | ((.with.timings.total_s - .with.timings.validation_s) - (.without.timings.total_s - .without.timings.validation_s)) as $ckpt
    | "\nWhat a text->BigGAN run costs beyond its steps (\(.with.steps) steps, 3,000 synthetic pairs): set-up \(.without.timings.setup_s * 10 | round / 10) s; a step \($step * 1000 | round) ms;",
      "a periodic checkpoint \($ckpt * 10 | round / 10) s in all (\(.with.timings.checkpoint_s * 10 | round / 10) s blocking for its snapshot, \(.with.timings.checkpoint_write_s - .without.timings.checkpoint_write_s | . * 10 | round / 10) s serialised and written",
      "beside the steps, which it slows), \($ckpt / (2000 * $step + $ckpt) * 1000 | round / 10)% of the wall time at checkpoint_every 2000 (goal <= 2%); the final one \(.without.timings.final_checkpoint_s * 10 | round / 10) s;",
      "the run folder at the end \(.with.run_dir_bytes / 1e9 * 10 | round / 10) GB (goal < 6 GB: last.pt, and best.pt the model alone, 1 GB; no last.prev.pt above 1 GiB: train.keep_previous auto).";
  def r3: . * 1000 | round / 1000;
  def median: sort | .[(length - 1) / 2 | floor];
  # Against PyTorch 2.x (eager, torch.compile), FrEIA, pytorch-fid, clean-fid and CodeCarbon.
  def peers:
    . as $all
    | def ours(b; c): $all | map(select(.bench == b and (.impl // "cpp") == "cpp" and ((.config // "") == c)));
      def theirs(b; c; i): $all | map(select(.bench == b and .impl == i and ((.config // "") == c)));
      def goal(b; c; i): {"train|configs/text2biggan.json|torch-2.11.0": "<= 0.5", "train|configs/text2biggan.json|torch-2.11.0-compile": "<= 0.7",
                          "train|configs/fmnist_label2ae.json|torch-2.11.0": "<= 0.33", "train|configs/text2biggan.json|freia-0.2": "< 1 (and NLL)",
                          "train|configs/fmnist_label2ae.json|freia-0.2": "< 1 (and NLL)", "fid||pytorch-fid-0.3.0": "<= 0.33, equal to 1e-6"}["\(b)|\(c)|\(i)"] // "";
      ($all | map(select(.impl != null and .impl != "cpp" and (is113 | not) and .impl != "scipy-sqrtm" and (.bench == "train" or .bench == "sample" or .bench == "fid")))
            | map({bench, config: (.config // ""), impl}) | unique) as $pairs
      | "\nAgainst what a Python user would pick instead (same machine, threads and shapes; torch 2.x from PyPI",
        "on the CPU; compile: torch.compile, default mode, its compile time apart; FrEIA 0.2: the same flow from its",
        "blocks, bench/freia_flow.py). Ratio: ours / theirs in time, median of the rounds paired as they ran.\n",
        "| benchmark | ours (s) | theirs | theirs (s) | ratio (paired median, range) | their compile (s) | goal |",
        "|---|---:|---|---:|---:|---:|---|",
        ($pairs[] | . as $p
          | (if $p.bench == "train" then "seconds_per_step" elif $p.bench == "sample" then "seconds_per_batch" else "seconds" end) as $k
          | (ours($p.bench; $p.config) | map(.[$k])) as $o | (theirs($p.bench; $p.config; $p.impl) | map(.[$k])) as $t
          | select(($o | length) > 0 and ($t | length) > 0)
          | ([$o, $t] | transpose | map(select(.[0] != null and .[1] != null) | .[0] / .[1]) | sort) as $r
          | "| \({train: "train step", sample: "sample 256", fid: "FID route 10000 x 2048"}[$p.bench]) \($p.config) | \($o | median | r3) | \($p.impl) | \($t | median | r3) | \($r | median * 100 | round / 100) (\($r | first * 100 | round / 100)-\($r | last * 100 | round / 100)) | \(theirs($p.bench; $p.config; $p.impl) | map(.compile_s // 0) | median | if . > 0 then . * 10 | round / 10 else "" end) | \(goal($p.bench; $p.config; $p.impl)) |"),
        ((ours("fid"; "") | first) as $a | theirs("fid"; ""; "pytorch-fid-0.3.0") | first | select(. != null)
          | "\nFID agreement on those features: ours \($a.fid), pytorch-fid \(.fid) (relative difference \((($a.fid - .fid) / .fid) | fabs | . * 1e9 | round / 1e9))."),
        ((ours("fit"; "configs/fmnist_label2ae.json") | first) as $a | theirs("fit"; "configs/fmnist_label2ae.json"; "freia-0.2") | first | select(. != null and $a != null)
          | "\nFit at equal steps (\(.steps) steps of configs/fmnist_label2ae.json on bench/freia_flow.py data pairs, 20,000 train, 2,000 validation):",
            "validation NLL (0.5 |v|^2 - log|det J|, nats per item) ours \($a.val_nll * 1000 | round / 1000), FrEIA \(.val_nll * 1000 | round / 1000); seconds per step ours \($a.seconds_per_step | r3), FrEIA \(.seconds_per_step | r3) (\($a.parameters) vs \(.parameters) trainable parameters)."),
        ($all | map(select(.bench == "energy")) | first | select(. != null)
          | "\nEnergy of one workload (a \(.ours.wall_s | round) s training run) under both meters: ours \(if .ours.cpu_kwh == null then "not measured (\(.ours.cpu_note); net2net-eval energy then asks for --power-watts or --power-profile)" else "\(.ours.cpu_kwh) kWh CPU (RAPL)" end);",
            "CodeCarbon \(.codecarbon.version): \(.codecarbon.total_kwh * 1e6 | round / 1e3) Wh (CPU \(.codecarbon.cpu_kwh * 1e6 | round / 1e3) Wh at \(.codecarbon.cpu_power_w * 10 | round / 10) W by its \(.codecarbon.cpu_mode) mode, RAM \(.codecarbon.ram_kwh * 1e6 | round / 1e3) Wh), \(if (.codecarbon.fallback | length) > 0 then "falling back: " + (.codecarbon.fallback | join(" ")) else "measured" end)"),
        ($all | map(select(.bench == "run-costs")) | first | select(. != null) | run_costs);
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
    (map(select(.bench == "extract")) | first | select(. != null) | "| extract (vs expert alone, items/s) | \(.extract_items_per_s | floor) | \(.expert_alone_items_per_s | floor) | \(1 / .ratio_extract_over_expert_alone * 100 | round / 100) | | | | | |"),
    ((map(select(.bench == "fid" and .impl == "cpp")) | first) as $a | (map(select(.bench == "fid" and .impl == "scipy-sqrtm")) | first) as $b
      | select($a != null and $b != null)
      | "| FID 10000 x 2048 (vs scipy sqrtm) | \($a.seconds) | \($b.seconds) | \($a.seconds / $b.seconds * 100 | round / 100) | | | | | |"),
    (map(select(.bench == "gemm"))[] | "| \({nn: "b + x W", nt: "g W^T", tn: "x^T g"}[.kind]) (\(.kind)), \(.rows) rows, W \(.in) x \(.out) (vs torch, GFLOP/s) | \(.ours_gflops | floor) | \(.torch_gflops | floor) | \(.ratio_ours_over_torch * 100 | round / 100) | | | | | |"),
    peers
' "$1"
}
if [[ ${1:-} == --table ]]; then table "${2:?usage: scripts/bench.sh --table RESULTS.jsonl}"; exit; fi
scripts/setup.sh --test
scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake --build "$BUILD_DIR" --target net2net-bench -j"$(nproc)" >&2
B="$BUILD_DIR/bench/net2net-bench"
TRAIN="$BUILD_DIR/tools/net2net-train/net2net-train"
threads=${THREADS:-$(nproc)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
R=$tmp/results.jsonl
run() { "$@" | tee -a "$R"; }
# The peers a Python user would pick (PyPI, once): torch 2.x + FrEIA, pytorch-fid + clean-fid,
# CodeCarbon. Without PyPI their rows are left out and the 1.13 table stays.
torch2='' fidpy='' ccpy=''
if refs=$(scripts/setup_bench_refs.sh); then
  torch2=$(sed -n 's/^torch2=//p' <<< "$refs") fidpy=$(sed -n 's/^fid=//p' <<< "$refs") ccpy=$(sed -n 's/^codecarbon=//p' <<< "$refs")
else
  echo "[bench] PyPI references could not be set up: their rows are left out" >&2
fi

run "$B" --threads "$threads" machine
# Training step and sampling: our step vs the same model in Python PyTorch (Debian's 1.13; PyPI's
# 2.x eager and, in the first COMPILE_ROUNDS rounds, torch.compile; the flow built from FrEIA's
# blocks), in alternating rounds so that the drifts of a noisy machine hit all; the tables take
# the median round of each and the median of the paired ratios. Rounds: ROUNDS (default 3) of
# text2biggan (~2 min each) and SMALL_ROUNDS (default 7; ~30 s each) of the small config, whose
# paired ratios ranged 0.28-0.41 in 3. torch.compile takes minutes to compile text2biggan on 2
# cores: COMPILE_ROUNDS (default 1) rounds of it, SMALL_COMPILE_ROUNDS (default 3) of the small one.
rounds=${ROUNDS:-3} small_rounds=${SMALL_ROUNDS:-7}
compile_rounds=${COMPILE_ROUNDS:-1} small_compile_rounds=${SMALL_COMPILE_ROUNDS:-3}
for ((round = 1; round <= (rounds > small_rounds ? rounds : small_rounds); round++)); do
  for cfg in configs/fmnist_label2ae.json configs/text2biggan.json; do
    if [[ $cfg == *text2biggan* ]]; then (( round <= rounds )) || continue; else (( round <= small_rounds )) || continue; fi
    # Small configs: 5 runs of 30 steps (a run of 10 lasted ~0.1-0.2 s, short enough for one burst
    # of a noisy neighbour to decide its median); text2biggan: 3 runs of 2 steps.
    runs=5 steps=30 compiled=$small_compile_rounds
    [[ $cfg == *text2biggan* ]] && { runs=3; steps=2; compiled=$compile_rounds; }
    pythons=(/usr/bin/python3)
    [[ -n $torch2 ]] && pythons+=("$torch2")
    run "$B" --threads "$threads" train --config "$cfg" --runs $runs --steps $steps
    for py in "${pythons[@]}"; do
      "$py" bench/train_step.py "$cfg" "$threads" $runs $steps | jq -c --arg c "$cfg" '. + {bench: "train", config: $c}' | tee -a "$R"
    done
    if [[ -n $torch2 ]]; then
      if (( round <= compiled )); then
        "$torch2" bench/train_step.py "$cfg" "$threads" $runs $steps --compile 1 2>> "$tmp/compile.log" \
          | jq -c --arg c "$cfg" '. + {bench: "train", config: $c}' | tee -a "$R" \
          || echo "[bench] torch.compile failed ($cfg); its rows are left out: $(tail -3 "$tmp/compile.log")" >&2
      fi
      "$torch2" bench/freia_flow.py time "$cfg" "$threads" $runs $steps | jq -c --arg c "$cfg" '. + {config: $c}' | tee -a "$R"
    fi
    run "$B" --threads "$threads" sample --config "$cfg" --batch 256 --runs $runs --steps $steps
    for py in "${pythons[@]}"; do
      "$py" bench/train_step.py "$cfg" "$threads" $runs $steps --sample 256 | jq -c --arg c "$cfg" '. + {config: $c}' | tee -a "$R"
    done
    if [[ -n $torch2 ]] && (( round <= compiled )); then
      "$torch2" bench/train_step.py "$cfg" "$threads" $runs $steps --sample 256 --compile 1 2>> "$tmp/compile.log" \
        | jq -c --arg c "$cfg" '. + {config: $c}' | tee -a "$R" \
        || echo "[bench] torch.compile failed ($cfg, sampling); its rows are left out: $(tail -3 "$tmp/compile.log")" >&2
    fi
  done
done
# The GEMMs of a short-batch linear layer: our kernels vs torch on the same shapes, in one process.
run "$B" --threads "$threads" gemm --rows 16
# Extraction vs the expert alone on the same batches.
/usr/bin/python3 scripts/experts/export_torchvision.py --arch resnet18 --size 64 --pool-stages --out "$tmp/r18.pt"
run "$B" --threads "$threads" extract --expert "ts:$tmp/r18.pt:stage3" --data fashion-mnist:test --limit 10000 --batch-size 64 --runs 3
# FID on 10,000 x 2048 features: our eigenvalue route vs scipy's sqrtm route, and the whole route
# (statistics + distance) of pytorch-fid and clean-fid.
run "$B" --threads "$threads" fid --n 10000 --dim 2048 --runs 3 --out "$tmp/fid.h5"
/usr/bin/python3 tests/python/fid_reference.py "$tmp/fid.h5" a b --time | jq -c '. + {bench: "fid"}' | tee -a "$R"
[[ -z $fidpy ]] || OMP_NUM_THREADS=$threads "$fidpy" tests/python/fid_reference.py "$tmp/fid.h5" a b --time-packages | jq -c '. + {bench: "fid"}' | tee -a "$R"
# Fit at equal steps: ours and the FrEIA-built flow on the same synthetic pairs (FIT_STEPS, default
# 600), validation NLL and seconds per step.
fit_steps=${FIT_STEPS:-600}
set_fit=(--set "data.train=$tmp/train.h5" --set "data.val=$tmp/val.h5" --set data.condition=cond --set data.target=target
         --set "train.steps=$fit_steps" --set "train.val_every=$fit_steps" --set "train.checkpoint_every=$fit_steps" --set train.image_every=0)
if [[ -n $torch2 ]]; then
  "$torch2" bench/freia_flow.py data "$tmp"
  "$TRAIN" --config configs/fmnist_label2ae.json "${set_fit[@]}" --run-dir "$tmp/fit" --threads "$threads" --log-level warn --json \
    | jq -c --argjson n "$fit_steps" '{bench: "fit", impl: "cpp", config: "configs/fmnist_label2ae.json", steps: $n, val_nll: .best_val_loss,
                                       seconds_per_step: (.timings.steps_s / $n), parameters}' | tee -a "$R"
  "$torch2" bench/freia_flow.py fit configs/fmnist_label2ae.json "$threads" "$tmp/train.h5" "$tmp/val.h5" "$fit_steps" \
    | jq -c '. + {config: "configs/fmnist_label2ae.json"}' | tee -a "$R"
  # Energy of one workload under our meter and CodeCarbon's.
  [[ -z $ccpy ]] || "$ccpy" bench/energy_vs_codecarbon.py "$tmp/energy" -- "$TRAIN" --config configs/fmnist_label2ae.json \
    "${set_fit[@]}" --run-dir "$tmp/energy" --threads "$threads" --log-level warn | tee -a "$R"
fi

# What a text->BigGAN run costs beyond its steps (RUN_COSTS=0 skips; ~4 min): two runs of
# COST_STEPS (default 60) steps on 3,000 synthetic pairs, one with a validation and checkpoint
# half-way, one with neither; the difference is what one periodic checkpoint costs (its blocking
# snapshot, and the steps slowed while it is written beside them).
if [[ ${RUN_COSTS:-1} == 1 ]]; then
  n=${COST_STEPS:-60}
  /usr/bin/python3 -c "import h5py, numpy as np; r = np.random.default_rng(0); f = h5py.File('$tmp/t2b.h5', 'w')
f['sbert'] = r.standard_normal((3000, 768), dtype=np.float32); f['biggan'] = r.standard_normal((3000, 268), dtype=np.float32)"
  for every in $((n / 2)) $((n + 1)); do
    "$TRAIN" --config configs/text2biggan.json --set "data.train=$tmp/t2b.h5" --set "train.steps=$n" --set "train.val_every=$every" \
      --set "train.checkpoint_every=$every" --set train.image_every=0 --run-dir "$tmp/costs$every" --threads "$threads" --log-level warn --json \
      | jq -c --arg every "$every" --argjson n "$n" '{every: ($every | tonumber), steps: $n, timings}' > "$tmp/costs$every.json"
    jq -c --argjson bytes "$(du -sb "$tmp/costs$every" | cut -f1)" '. + {run_dir_bytes: $bytes}' "$tmp/costs$every.json" > "$tmp/costs$every.b.json"
    rm -rf "$tmp/costs$every"
  done
  jq -cs '{bench: "run-costs", config: "configs/text2biggan.json", with: .[0], without: .[1]}' "$tmp/costs$((n / 2)).b.json" "$tmp/costs$((n + 1)).b.json" | tee -a "$R"
fi

[[ -n ${RESULTS:-} ]] && cp "$R" "$RESULTS"
echo
table "$R"
