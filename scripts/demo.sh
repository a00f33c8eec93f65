#!/usr/bin/env bash
# The Fashion-MNIST example end to end, with the four tools as a user would pipe them:
#   1. train the experts (autoencoder = expert g; classifier = expert f; a separate judge)
#   2. extract row-aligned pairs (AE latent; one-hot label; caption text; classifier stages)
#   3. train cINNs: (a) label -> AE, (b) text -> AE, (c) classifier stage k -> AE, k = 1, 2, 3;
#      (b') text -> AE through sentence-BERT when SBERT names its exported file (run_example.sh
#      exports it: scripts/setup_sbert.sh; without it that part is skipped and the report says why)
#   4. translate to PNG grids, score (accuracy by the judge, FID on the judge's features,
#      diversity, test NLL) and write OUT/report.md
# What exists is reused (delete OUT to start over). Knobs (environment): OUT, TRAIN_LIMIT,
# TEST_LIMIT, STEPS, AE_EPOCHS, CLF_EPOCHS, JUDGE_EPOCHS, EXPERT_LIMIT, EVAL_ROWS, JOBS; STOP_AFTER_TRAINING=1 ends
# after step 3. SBERT=FILE: the exported sentence-BERT; SBERT_SKIPPED: why there is none (for the report).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build}/tools
EXTRACT=$B/net2net-extract/net2net-extract
TRAIN=$B/net2net-train/net2net-train
TRANSLATE=$B/net2net-translate/net2net-translate
EVAL=$B/net2net-eval/net2net-eval
OUT=${OUT:-out/demo}
TRAIN_LIMIT=${TRAIN_LIMIT:-30000}   # items of the cINN training cache
TEST_LIMIT=${TEST_LIMIT:-2000}      # items of the test cache (validation, scores)
STEPS=${STEPS:-}                    # cINN steps (empty: each config's train.steps)
AE_EPOCHS=${AE_EPOCHS:-5}
CLF_EPOCHS=${CLF_EPOCHS:-2}
JUDGE_EPOCHS=${JUDGE_EPOCHS:-3}
EXPERT_LIMIT=${EXPERT_LIMIT:-0}     # images for the experts (0: all 60000)
EVAL_ROWS=${EVAL_ROWS:-1000}        # generated images per experiment for the scores
JOBS=${JOBS:-$(nproc)}               # trainings run side by side, the cores split between them
SBERT=${SBERT:-}                    # the exported sentence-BERT (empty: that part is skipped)
[[ -z $SBERT || -f $SBERT ]] || { echo "demo: SBERT='$SBERT' does not exist" >&2; exit 2; }
[[ -z $SBERT ]] && SBERT_SKIPPED=${SBERT_SKIPPED:-"SBERT was not given (scripts/run_example.sh exports it)"}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "demo: JOBS must be a positive integer, got '$JOBS'" >&2; exit 2; }
LOG=(--log-level "${LOG_LEVEL:-warn}")
mkdir -p "$OUT"/{experts,cache,runs,samples}
t0=$(date +%s)
step() { echo "[demo $(($(date +%s) - t0))s] $*" >&2; }

# Runs each argument (a command line: a function and its arguments) as a background job, at most
# JOBS at a time (fewer if there are fewer jobs), the cores split evenly between them
# (JOB_THREADS). Small models gain less than 2x from a second thread (1 thread: 44-47 ms a step,
# 2 threads: 25-30 ms) while two 1-thread jobs run side by side at full speed, so two jobs of
# one thread each finish sooner; most of a short job is process start-up, which overlaps too. A failed job stops the demo (set -e on `wait -n`);
# the trap ends the others.
pool() {
  local running=0 job width=$(( JOBS < $# ? JOBS : $# ))
  JOB_THREADS=$(( $(nproc) / width )); (( JOB_THREADS >= 1 )) || JOB_THREADS=1
  for job in "$@"; do
    if (( running >= width )); then wait -n; running=$((running - 1)); fi
    eval "$job" &
    running=$((running + 1))
  done
  while (( running > 0 )); do wait -n; running=$((running - 1)); done
}
trap 'kill $(jobs -pr) 2>/dev/null || true' EXIT

# 1. Experts -------------------------------------------------------------------------------
train_expert() {  # config name epochs
  if [[ -f "$OUT/experts/$2/expert.pt" ]]; then step "expert $2: reused"; return; fi
  step "expert $2: training ($3 epochs)"
  mkdir -p "$OUT/experts/$2"
  "$TRAIN" --config "configs/example/$1.json" --run-dir "$OUT/experts/$2" --set train.epochs="$3" \
    --set data.limit="$EXPERT_LIMIT" --json "${LOG[@]}" --threads "$JOB_THREADS" > "$OUT/experts/$2/summary.json.tmp"
  mv "$OUT/experts/$2/summary.json.tmp" "$OUT/experts/$2/summary.json"
  step "expert $2: done"
}
# The judge (only needed for the scores) takes the core the classifier frees while the AE, the
# longest, still trains (that core idled ~70 s when the judge trained beside the cINNs); the
# pairs are extracted on the AE's core while the judge finishes (10-20 s sooner than after it).
EXTRACT_THREADS=()
if (( JOBS >= 2 && $(nproc) >= 2 )); then
  JOB_THREADS=$(( $(nproc) / 2 ))
  train_expert autoencoder ae "$AE_EPOCHS" & ae_pid=$!
  train_expert classifier classifier "$CLF_EPOCHS" & clf_pid=$!
  wait "$clf_pid"
  train_expert judge judge "$JUDGE_EPOCHS" & judge_pid=$!
  wait "$ae_pid"
  EXTRACT_THREADS=(--threads "$(( $(nproc) - JOB_THREADS ))")
else
  pool "train_expert autoencoder ae $AE_EPOCHS" "train_expert classifier classifier $CLF_EPOCHS" \
    "train_expert judge judge $JUDGE_EPOCHS"
fi
AE=$OUT/experts/ae/expert.pt CLF=$OUT/experts/classifier/expert.pt JUDGE=$OUT/experts/judge/expert.pt

# 2. Pairs ---------------------------------------------------------------------------------
experts=(--expert ae="ts:$AE:encode" --expert onehot=label --expert text=caption,text-hash:256
         --expert s1="ts:$CLF:stage1" --expert s2="ts:$CLF:stage2" --expert s3="ts:$CLF:stage3"
         --expert s4="ts:$CLF:forward")
if [[ ! -f "$OUT/cache/train.h5" ]]; then
  step "extracting the training pairs ($TRAIN_LIMIT items)"
  "$EXTRACT" --data fashion-mnist:train --limit "$TRAIN_LIMIT" "${experts[@]}" --out "$OUT/cache/train.h5" --resume \
    "${EXTRACT_THREADS[@]}" "${LOG[@]}"
fi
if [[ ! -f "$OUT/cache/test.h5" ]]; then
  step "extracting the test pairs ($TEST_LIMIT items)"
  "$EXTRACT" --data fashion-mnist:test --limit "$TEST_LIMIT" "${experts[@]}" --expert img=identity \
    --out "$OUT/cache/test.h5" --resume "${EXTRACT_THREADS[@]}" "${LOG[@]}"
fi
TEST=$OUT/cache/test.h5
# Sentence-BERT's own caches: the same items, AE latent and the captions through sentence-BERT (the
# existing caches stay as they are). Repeated captions cost one lookup in the exported module.
if [[ -n $SBERT ]]; then
  sbert_experts=(--expert ae="ts:$AE:encode" --expert sbert="caption,ts:$SBERT")
  for split in train test; do
    if [[ ! -f "$OUT/cache/$split.sbert.h5" ]]; then
      limit=$TRAIN_LIMIT; [[ $split == test ]] && limit=$TEST_LIMIT
      step "extracting the $split pairs through sentence-BERT ($limit items)"
      "$EXTRACT" --data "fashion-mnist:$split" --limit "$limit" "${sbert_experts[@]}" --out "$OUT/cache/$split.sbert.h5" \
        --resume "${EXTRACT_THREADS[@]}" "${LOG[@]}"
    fi
  done
fi
[[ -n ${judge_pid:-} ]] && wait "$judge_pid"

# 3. cINNs ---------------------------------------------------------------------------------------
train_cinn() {  # name config condition [cache name: train.h5 / test.h5 by default]
  local run=$OUT/runs/$1 cache=${4:-}
  if [[ -f "$run/summary.json" ]]; then step "cINN $1: reused"; return; fi
  local resume=(); [[ -f "$run/checkpoints/last.pt" ]] && resume=(--resume)
  local steps; steps=${STEPS:-$(jq -r .train.steps "configs/$2.json")}
  step "cINN $1: training ($steps steps)"
  "$TRAIN" --config "configs/$2.json" --run-dir "$run" --set data.train="$OUT/cache/train$cache.h5" \
    --set data.val="$OUT/cache/test$cache.h5" \
    --set data.condition="$3" --set model.cond_dim=null --set train.steps="$steps" "${resume[@]}" --json "${LOG[@]}" \
    --threads "$JOB_THREADS" > "$run.summary.tmp"
  mv "$run.summary.tmp" "$run/summary.json"
  step "cINN $1: $(jq -r '"val loss \(.best_val_loss)"' "$run/summary.json")"
}
# Longest first, so that the pool ends with short jobs on both cores.
cinns=("train_cinn text2ae fmnist_text2ae text")
[[ -n $SBERT ]] && cinns+=("train_cinn sbert2ae fmnist_sbert2ae sbert .sbert")
pool "${cinns[@]}" "train_cinn label2ae fmnist_label2ae onehot" \
  "train_cinn stage12ae fmnist_stage2ae s1" "train_cinn stage22ae fmnist_stage2ae s2" \
  "train_cinn stage32ae fmnist_stage2ae s3" "train_cinn stage42ae fmnist_stage2ae s4"

[[ "${STOP_AFTER_TRAINING:-0}" == 1 ]] && { step "stopping before the translations (STOP_AFTER_TRAINING=1)"; exit 0; }

# 4. Translate, score, report ---------------------------------------------------------------
S=$OUT/samples
run_translate() { "$TRANSLATE" --force --json "${LOG[@]}" --decoder "ts:$AE" "$@"; }
step "translating"
run_translate --checkpoint "$OUT/runs/label2ae" --labels 0,1,2,3,4,5,6,7,8,9 --samples 10 --out "$S/label_grid.h5" --png "$OUT/label2ae.png" > "$S/label_grid.json"
GRID_TEXTS=(--text "a dark large coat" --text "a light coat" --text "a small sandal" --text "a large sandal" --text "a dark dress"
  --text "a light dress" --text "a dark small bag" --text "a light large bag" --text "a sneaker" --text "a trouser")
run_translate --checkpoint "$OUT/runs/text2ae" --samples 10 --out "$S/text_grid.h5" --png "$OUT/text2ae.png" "${GRID_TEXTS[@]}" \
  > "$S/text_grid.json"
run_translate --checkpoint "$OUT/runs/label2ae" --mode transfer --exemplar "$TEST" --exemplars 10 --labels 0,1,2,3,4,5,6,7,8,9 \
  --out "$S/transfer.h5" --png "$OUT/transfer.png" > "$S/transfer.json"
# Scores on EVAL_ROWS test conditions, one sample each (and 8 each for diversity).
"$EXTRACT" --data "h5:$TEST:img" --limit "$EVAL_ROWS" --expert img=identity --out "$S/real.h5" --force "${LOG[@]}"
declare -A cond=([label2ae]=onehot [text2ae]=text [sbert2ae]=sbert [stage12ae]=s1 [stage22ae]=s2 [stage32ae]=s3 [stage42ae]=s4)
declare -A test_cache=([sbert2ae]="$OUT/cache/test.sbert.h5")  # default: $TEST
RUNS=(label2ae text2ae stage12ae stage22ae stage32ae stage42ae)
TEXT_RUNS=(text2ae)
declare -A text_expert=([text2ae]="text-hash:256" [sbert2ae]="ts:$SBERT")
if [[ -n $SBERT ]]; then
  RUNS=(label2ae text2ae sbert2ae stage12ae stage22ae stage32ae stage42ae)
  TEXT_RUNS=(text2ae sbert2ae)
  run_translate --checkpoint "$OUT/runs/sbert2ae" --samples 10 --out "$S/sbert_grid.h5" --png "$OUT/sbert2ae.png" "${GRID_TEXTS[@]}" \
    > "$S/sbert_grid.json"
fi
score() {  # run: samples at T = 1 and 0.7, accuracy, FID, NLL, diversity (and the stage grids)
  local run=$1 test=${test_cache[$1]:-$TEST} LOG=("${LOG[@]}" --threads "$JOB_THREADS")  # run side by side (pool)
  local c="h5:$test:${cond[$1]}"
  run_translate --checkpoint "$OUT/runs/$run" --cond "$c" --limit "$EVAL_ROWS" --samples 1 --out "$S/$run.h5" > /dev/null
  run_translate --checkpoint "$OUT/runs/$run" --cond "$c" --limit "$EVAL_ROWS" --samples 1 --temperature 0.7 --out "$S/$run.t07.h5" > /dev/null
  for t in "" .t07; do
    "$EVAL" accuracy --data "h5:$S/$run$t.h5:image" --classifier "ts:$JUDGE:forward" --labels "h5:$S/$run$t.h5:label" \
      "${LOG[@]}" > "$S/$run$t.accuracy.json"
  done
  "$EVAL" fid --real "h5:$S/real.h5:img" --fake "h5:$S/$run.h5:image" --features "ts:$JUDGE:features" --kid-subsets 0 "${LOG[@]}" > "$S/$run.fid.json"
  "$EVAL" nll --checkpoint "$OUT/runs/$run" --data "$test" "${LOG[@]}" > "$S/$run.nll.json"
  # Diversity: 8 samples for each of 100 conditions; the stage grids show the first 8 of them.
  local png=(); [[ $run == stage* ]] && png=(--png "$OUT/$run.png" --grid-rows 8)
  run_translate --checkpoint "$OUT/runs/$run" --cond "$c" --limit 100 --samples 8 --out "$S/$run.div.h5" "${png[@]}" > "$S/$run.div.json"
}
# Side by side (pool): most of a small job is process start-up, which overlaps well.
pool "${RUNS[@]/#/score }"
"$EVAL" fid --real "h5:$S/real.h5:img" --fake "h5:$TEST:img" --features "ts:$JUDGE:features" --kid-subsets 0 "${LOG[@]}" \
  > "$S/reference.fid.json" 2>/dev/null || true
"$EVAL" accuracy --data "h5:$S/real.h5:img" --classifier "ts:$JUDGE:forward" --labels "h5:$S/real.h5:label" "${LOG[@]}" \
  > "$S/real.accuracy.json"
# The ceiling of any translation into the AE: the judge on the AE's reconstructions of real images.
"$EXTRACT" --data "h5:$S/real.h5:img" --expert rec="ts:$AE:forward" --out "$S/real.rec.h5" --force "${LOG[@]}"
"$EVAL" accuracy --data "h5:$S/real.rec.h5:rec" --classifier "ts:$JUDGE:forward" --labels "h5:$S/real.rec.h5:label" "${LOG[@]}" \
  > "$S/real.rec.accuracy.json"
# Text: the requested class and the requested properties (the caption's dark/light, small/large,
# measured on the generated image by the caption's own rule).
"$EXTRACT" --data "h5:$S/real.h5:img" --expert p=caption-props --out "$S/real.props.h5" --force "${LOG[@]}"
# Its ceiling: the same score for the AE's reconstructions of the real images, captioned as the originals.
"$EXTRACT" --data "h5:$S/real.rec.h5:rec" --expert p=caption-props --out "$S/real.rec.props.h5" --force "${LOG[@]}"
"$EVAL" accuracy --data "h5:$S/real.rec.h5:rec" --classifier "ts:$JUDGE:forward" --labels "h5:$S/real.rec.h5:label" \
  --props "h5:$S/real.rec.props.h5:p" --expected-props "h5:$S/real.props.h5:p" "${LOG[@]}" > "$S/real.rec.props.json"
for run in "${TEXT_RUNS[@]}"; do
  for t in "" .t07; do
    "$EXTRACT" --data "h5:$S/$run$t.h5:image" --expert p=caption-props --out "$S/$run$t.props.h5" --force "${LOG[@]}"
    "$EVAL" accuracy --data "h5:$S/$run$t.h5:image" --classifier "ts:$JUDGE:forward" --labels "h5:$S/$run$t.h5:label" \
      --props "h5:$S/$run$t.props.h5:p" --expected-props "h5:$S/real.props.h5:p" "${LOG[@]}" > "$S/$run$t.props.json"
  done
done
# Wording never seen in training: prompts whose words occur in no training caption, each with the
# class and properties it means (configs/example/prompts_heldout.tsv), beside the same requests in
# the captions' own words (prompts_in_vocabulary.tsv). PROMPT_SAMPLES images per prompt, T = 1.
PROMPT_SAMPLES=${PROMPT_SAMPLES:-10}
for set in heldout in_vocabulary; do
  awk -v n="$PROMPT_SAMPLES" 'NR == 1 { print; next } { for (i = 0; i < n; i++) print }' \
    "configs/example/prompts_$set.tsv" > "$S/prompts_$set.tsv"
  "$EXTRACT" --data "tsv:$S/prompts_$set.tsv" --expert p=identity --out "$S/prompts_$set.props.h5" --force "${LOG[@]}"
  for run in "${TEXT_RUNS[@]}"; do
    g=$S/$run.$set
    run_translate --checkpoint "$OUT/runs/$run" --data "tsv:$S/prompts_$set.tsv" --cond-expert "${text_expert[$run]}" \
      --samples 1 --out "$g.h5" > /dev/null
    "$EXTRACT" --data "h5:$g.h5:image" --expert p=caption-props --out "$g.props.h5" --force "${LOG[@]}"
    "$EVAL" accuracy --data "h5:$g.h5:image" --classifier "ts:$JUDGE:forward" --labels "h5:$g.h5:label" \
      --props "h5:$g.props.h5:p" --expected-props "h5:$S/prompts_$set.props.h5:p" "${LOG[@]}" > "$g.accuracy.json"
  done
done
# A grid of held-out prompts for each text expert.
HELDOUT_GRID=("black jacket" "white parka" "trainers" "tiny purse" "huge tote" "summer frock" "jeans" "sweater" "flip-flop"
  "booties")
HELDOUT_TEXTS=(); for t in "${HELDOUT_GRID[@]}"; do HELDOUT_TEXTS+=(--text "$t"); done
for run in "${TEXT_RUNS[@]}"; do
  run_translate --checkpoint "$OUT/runs/$run" --samples 10 --out "$S/$run.heldout_grid.h5" --png "$OUT/$run.heldout.png" \
    "${HELDOUT_TEXTS[@]}" > /dev/null
done

step "writing $OUT/report.md"
jqn() { jq -r "$1" "$2"; }
{
  echo "# net2net: the Fashion-MNIST example"
  echo
  echo "Every number below is computed by this run ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(($(date +%s) - t0)) s for the steps"
  echo "that were not reused). Experts: autoencoder (test L1 $(jqn '.test_l1 // "reused" | tostring' "$OUT/experts/ae/summary.json")),"
  echo "classifier (test accuracy $(jqn '.test_accuracy | tostring' "$OUT/experts/classifier/summary.json")), and a separately trained"
  echo "judge (test accuracy $(jqn '.test_accuracy | tostring' "$OUT/experts/judge/summary.json")) that labels generated images and"
  echo "gives the FID features (the example's own feature network, not Inception: these FIDs are not"
  echo "comparable to published ones). cINN caches: $TRAIN_LIMIT training and $TEST_LIMIT test items; steps: $(for r in "${RUNS[@]}"; do printf '%s %s, ' "$r" "$(jqn .steps "$OUT/runs/$r/summary.json")"; done | sed 's/, $//')."
  echo
  echo "## Scores"
  echo
  echo "One sample per test condition ($EVAL_ROWS conditions). Accuracy: the judge's class of the generated"
  echo "image equals the class of the condition's item, at temperature 1 and 0.7 (the judge on the real"
  echo "images themselves: $(jqn '.accuracy * 1000 | round / 1000' "$S/real.accuracy.json"); on their AE reconstructions:"
  echo "$(jqn '.accuracy * 1000 | round / 1000' "$S/real.rec.accuracy.json"), the ceiling of any translation into the AE). FID: samples at temperature 1"
  echo "against real test images. Diversity: mean pairwise distance of 8 samples per condition (100"
  echo "conditions), in the AE latent and in pixels. NLL: test loss (0.5|v|^2 - log|det J|)."
  echo
  echo "| translation | condition | accuracy (T=1) | accuracy (T=0.7) | FID (judge features) | diversity (latent) | diversity (pixels) | test NLL | bits/dim |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
  declare -A what=([label2ae]="one-hot label" [text2ae]="caption, text-hash" [sbert2ae]="caption, sentence-BERT" [stage12ae]="classifier stage 1"
                   [stage22ae]="classifier stage 2" [stage32ae]="classifier stage 3" [stage42ae]="classifier logits")
  for run in "${RUNS[@]}"; do
    printf '| %s | %s | %.3f | %.3f | %.2f | %.2f | %.2f | %.3f | %.3f |\n' "$run" "${what[$run]}" \
      "$(jqn .accuracy "$S/$run.accuracy.json")" "$(jqn .accuracy "$S/$run.t07.accuracy.json")" "$(jqn .fid "$S/$run.fid.json")" \
      "$(jqn .diversity_z "$S/$run.div.json")" "$(jqn .diversity_pixels "$S/$run.div.json")" \
      "$(jqn .nll "$S/$run.nll.json")" "$(jqn .bits_per_dim "$S/$run.nll.json")"
  done
  echo
  echo "Text, class and requested properties together (an image counts if the judge gives the requested"
  echo "class and every property word of its caption holds on the generated image):"
  echo "$(jqn '.accuracy_with_properties * 1000 | round / 1000' "$S/text2ae.props.json") at temperature 1,"
  echo "$(jqn '.accuracy_with_properties * 1000 | round / 1000' "$S/text2ae.t07.props.json") at temperature 0.7 (properties alone:"
  echo "$(jqn '.property_agreement * 1000 | round / 1000' "$S/text2ae.t07.props.json") of $(jqn .properties_requested "$S/text2ae.t07.props.json") requested; a random image of the right class meets a"
  echo "requested tertile with probability about 1/3). The AE's reconstructions of the real images score"
  echo "$(jqn '.accuracy_with_properties * 1000 | round / 1000' "$S/real.rec.props.json") (properties alone: $(jqn '.property_agreement * 1000 | round / 1000' "$S/real.rec.props.json")): the ceiling of this score for any translation into the AE."
  if [[ -n $SBERT ]]; then
    echo "The same captions through sentence-BERT: $(jqn '.accuracy_with_properties * 1000 | round / 1000' "$S/sbert2ae.props.json") at temperature 1,"
    echo "$(jqn '.accuracy_with_properties * 1000 | round / 1000' "$S/sbert2ae.t07.props.json") at temperature 0.7 (properties alone: $(jqn '.property_agreement * 1000 | round / 1000' "$S/sbert2ae.t07.props.json"))."
  fi
  if [[ -s "$S/reference.fid.json" ]]; then
    echo
    echo "For scale: FID of the first $EVAL_ROWS real test images against all $TEST_LIMIT: $(jqn '.fid * 100 | round / 100' "$S/reference.fid.json")."
  fi
  echo
  echo "## (a) label -> autoencoder"
  echo
  echo "A row per class, ten samples each (temperature 1)."
  echo
  echo "![label to image](label2ae.png)"
  echo
  echo "## (b) text -> autoencoder"
  echo
  echo "Captions (class plus dark/light and small/large, relative to the class) through text-hash:256."
  echo
  echo "![text to image](text2ae.png)"
  echo
  echo "## (b') text -> autoencoder through a pretrained language model"
  echo
  if [[ -n $SBERT ]]; then
    echo "The same captions through sentence-BERT (all-MiniLM-L6-v2, 384-d, trained by others on a billion"
    echo "sentence pairs; exported with its tokenizer by scripts/experts/export_sbert.py), the same prompts:"
    echo
    echo "![sentence-BERT text to image](sbert2ae.png)"
    echo
  else
    echo "Skipped: $SBERT_SKIPPED."
    echo
  fi
  echo "### Wording never seen in training"
  echo
  echo "$(($(wc -l < configs/example/prompts_heldout.tsv) - 1)) prompts whose words occur in no training caption (\"black jacket\", \"trainers\", \"tiny purse\","
  echo "\"summer frock\": configs/example/prompts_heldout.tsv), each with the class and the properties it means,"
  echo "beside the same requests in the captions' own words (\"a dark coat\": prompts_in_vocabulary.tsv)."
  echo "$PROMPT_SAMPLES samples per prompt at temperature 1; the judge's class, and class with every requested property"
  echo "(chance for the class: 0.1)."
  echo
  echo "| text expert | in-vocabulary: class | in-vocabulary: class + properties | held-out: class | held-out: class + properties |"
  echo "|---|---:|---:|---:|---:|"
  declare -A expert_name=([text2ae]="text-hash:256 (hashed n-grams)" [sbert2ae]="sentence-BERT all-MiniLM-L6-v2")
  for run in "${TEXT_RUNS[@]}"; do
    printf '| %s | %.3f | %.3f | %.3f | %.3f |\n' "${expert_name[$run]}" \
      "$(jqn .accuracy "$S/$run.in_vocabulary.accuracy.json")" "$(jqn .accuracy_with_properties "$S/$run.in_vocabulary.accuracy.json")" \
      "$(jqn .accuracy "$S/$run.heldout.accuracy.json")" "$(jqn .accuracy_with_properties "$S/$run.heldout.accuracy.json")"
  done
  echo
  for run in "${TEXT_RUNS[@]}"; do
    echo "Held-out prompts through ${expert_name[$run]} (rows: $(printf '%s, ' "${HELDOUT_GRID[@]}" | sed 's/, $//')):"
    echo
    echo "![held-out prompts, $run]($run.heldout.png)"
    echo
  done
  echo "## (c) what the classifier's stages keep"
  echo
  echo "The same 8 test items as conditions, through stage 1, 2, 3 and the logits of the classifier, 8 samples each."
  echo "Early stages keep more of the input (samples vary less); later stages are more invariant"
  echo "(samples vary more): the diversity column above."
  echo
  for k in 1 2 3 4; do echo "Stage $k:"; echo; echo "![stage $k](stage${k}2ae.png)"; echo; done
  echo "## Transfer (exemplar-guided synthesis)"
  echo
  echo "First row: test exemplars (their autoencoder reconstructions). Then, for each class c, the"
  echo "exemplar's residual v = T(z(x) | label(x)) rendered under label c: z' = T^-1(v | c)."
  echo
  echo "![transfer](transfer.png)"
} > "$OUT/report.md.tmp"
mv "$OUT/report.md.tmp" "$OUT/report.md"
step "done: $OUT/report.md"
