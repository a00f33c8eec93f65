#!/usr/bin/env bash
# The Fashion-MNIST example end to end, with the four tools as a user would pipe them:
#   1. train the experts (autoencoder = expert g; classifier = expert f; a separate judge)
#   2. extract row-aligned pairs (AE latent; one-hot label; caption text; classifier stages)
#   3. train cINNs: (a) label -> AE, (b) text -> AE, (c) classifier stage k -> AE, k = 1, 2, 3;
#      (b') text -> AE through sentence-BERT when SBERT names its exported file (run_example.sh
#      exports it: scripts/setup_sbert.sh; without it that part is skipped and the report says why)
#   4. translate to PNG grids, score (accuracy by the judge, FID on the judge's features,
#      diversity, test NLL, prompts worded unlike any caption) and write OUT/report.md
#      (scripts/example/report.py reads the scores' JSON files)
#   With EXTRAS=1 (about 6 more minutes on 2 cores), the paper's other experiments at this scale: sketch -> image
#   through a shape-biased classifier (trained on texture-randomised images) beside the plain
#   one, attribute editing (label + caption properties -> AE, one property changed),
#   segmentation -> image (a 7x7 silhouette as a hard mask and as soft scores -> AE; diversity,
#   mask agreement, exemplar-guided layouts) and unaligned translation between real and inverted
#   items (an AE over both domains, which share no item; a (class, domain) cINN).
# The cINNs are the lines of EXPERIMENTS below; every step reads that table.
# What exists is reused (delete OUT to start over). Knobs (environment): OUT, TRAIN_LIMIT,
# TEST_LIMIT, STEPS, AE_EPOCHS, CLF_EPOCHS, JUDGE_EPOCHS, EXPERT_LIMIT, EVAL_ROWS, PROMPT_SAMPLES, JOBS,
# EXTRAS (1 or 0), EDIT_ROWS, AED_EPOCHS, BUILD_DIR, LOG_LEVEL; STOP_AFTER_TRAINING=1 ends after step 3. SBERT=FILE: the exported
# sentence-BERT; SBERT_SKIPPED: why there is none (for the report).
set -euo pipefail
# From a source tree it runs in the tree with the tools of BUILD_DIR; installed
# (PREFIX/share/net2net/scripts/demo.sh) it runs in the current folder with PREFIX/bin's tools.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ -f $ROOT/CMakeLists.txt ]]; then
  cd "$ROOT"
  B=${BUILD_DIR:-build}/tools
  EXTRACT=$B/net2net-extract/net2net-extract
  TRAIN=$B/net2net-train/net2net-train
  TRANSLATE=$B/net2net-translate/net2net-translate
  EVAL=$B/net2net-eval/net2net-eval
else
  B=$(cd "$ROOT/../../bin" && pwd)
  EXTRACT=$B/net2net-extract TRAIN=$B/net2net-train TRANSLATE=$B/net2net-translate EVAL=$B/net2net-eval
fi
CONFIGS=$ROOT/configs
OUT=${OUT:-out/demo}
TRAIN_LIMIT=${TRAIN_LIMIT:-30000}   # items of the cINN training cache
TEST_LIMIT=${TEST_LIMIT:-2000}      # items of the test cache (validation, scores)
STEPS=${STEPS:-}                    # cINN steps (empty: each config's train.steps)
AE_EPOCHS=${AE_EPOCHS:-5}
CLF_EPOCHS=${CLF_EPOCHS:-2}
JUDGE_EPOCHS=${JUDGE_EPOCHS:-3}
EXPERT_LIMIT=${EXPERT_LIMIT:-0}     # images for the experts (0: all 60000)
EVAL_ROWS=${EVAL_ROWS:-1000}        # generated images per experiment for the scores
PROMPT_SAMPLES=${PROMPT_SAMPLES:-10} # images per held-out / in-vocabulary prompt
JOBS=${JOBS:-$(nproc)}               # trainings run side by side, the cores split between them
EXTRAS=${EXTRAS:-0}                 # 1: the paper's other four experiments too (sketch, editing, segmentation, unaligned)
EDIT_ROWS=${EDIT_ROWS:-500}         # test items edited (attribute editing) and translated (unaligned)
AED_EPOCHS=${AED_EPOCHS:-3}         # epochs of the autoencoder over both domains (unaligned, EXTRAS)
[[ $EXTRAS == 0 || $EXTRAS == 1 ]] || { echo "demo: EXTRAS must be 0 or 1, got '$EXTRAS'" >&2; exit 2; }
SBERT=${SBERT:-}                    # the exported sentence-BERT (empty: that part is skipped)
[[ -z $SBERT || -f $SBERT ]] || { echo "demo: SBERT='$SBERT' does not exist" >&2; exit 2; }
[[ -z $SBERT ]] && SBERT_SKIPPED=${SBERT_SKIPPED:-"SBERT was not given (scripts/run_example.sh exports it)"}
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "demo: JOBS must be a positive integer, got '$JOBS'" >&2; exit 2; }
LOG=(--log-level "${LOG_LEVEL:-warn}")

# The experiments (cINNs), a line each in the report's order; the columns, separated by '|':
#   name | config (configs/CONFIG.json) | condition (its dataset in the caches) | cache suffix
#   (OUT/cache/train.h5 and test.h5 when empty; .sbert: train.sbert.h5, test.sbert.h5) | place in
#   the training pool (longest first) | the condition in the report's table | text expert
#   (--cond-expert for the prompts; empty: not a text condition) | that text expert in the report
# (.extra: the caches of the EXTRAS experiments, train.extra.h5 and test.extra.h5; .domains: the
# unaligned experiment's, both domains merged). sbert2ae is left out without SBERT, the EXTRAS
# experiments (cache .extra, TRAIN_ONLY) with EXTRAS=0. The training pool, the scores, the
# text-expert parts and the report (scripts/example/report.py, which takes these lines) all read
# this table.
EXPERIMENTS=(
  "label2ae|fmnist_label2ae|onehot||3|one-hot label||"
  "text2ae|fmnist_text2ae|text||1|caption, text-hash|text-hash:256|text-hash:256 (hashed n-grams)"
  "sbert2ae|fmnist_sbert2ae|sbert|.sbert|2|caption, sentence-BERT|ts:$SBERT|sentence-BERT all-MiniLM-L6-v2"
  "stage12ae|fmnist_stage2ae|s1||6|classifier stage 1||"
  "stage22ae|fmnist_stage2ae|s2||7|classifier stage 2||"
  "stage32ae|fmnist_stage2ae|s3||8|classifier stage 3||"
  "stage42ae|fmnist_stage2ae|s4||9|classifier logits||"
  "shape32ae|fmnist_stage2ae|sh3|.extra|10|shape-biased classifier stage 3||"
  "lp2ae|fmnist_labelprops2ae|lp|.extra|4|label + caption properties||"
  "seghard2ae|fmnist_silhouette2ae|hard|.extra|11|silhouette 7x7, hard mask||"
  "segsoft2ae|fmnist_silhouette2ae|soft|.extra|12|silhouette 7x7, soft scores||"
)
# Trained in the same pool, scored by their own section of the report (not the table: half its
# conditions are of the inverted domain, which the judge was not trained on). Same columns.
TRAIN_ONLY=("dom2ae|fmnist_domain2ae|ld|.domains|5|class + domain (real / inverted)||")
RUNS=() TEXT_RUNS=() TRAIN_ORDER=() kept=()
declare -A EXP_CONFIG=() EXP_COND=() EXP_CACHE=() EXP_TEXT_EXPERT=()
(( EXTRAS == 1 )) || TRAIN_ONLY=()
ALL=("${EXPERIMENTS[@]}" "${TRAIN_ONLY[@]}")
for i in "${!ALL[@]}"; do
  line=${ALL[i]}
  IFS='|' read -r name config cond cache order _ text_expert _ <<< "$line"
  if [[ $name == sbert2ae && -z $SBERT ]]; then continue; fi
  if [[ $cache == .extra && $EXTRAS == 0 ]]; then continue; fi
  [[ $order =~ ^[1-9][0-9]*$ && -z ${TRAIN_ORDER[order]:-} ]] || { echo "demo: $name: bad pool place '$order'" >&2; exit 2; }
  TRAIN_ORDER[order]=$name EXP_CONFIG[$name]=$config EXP_COND[$name]=$cond EXP_CACHE[$name]=$cache
  if (( i >= ${#EXPERIMENTS[@]} )); then continue; fi  # TRAIN_ONLY: the pool alone
  kept+=("$line") RUNS+=("$name")
  if [[ -n $text_expert ]]; then TEXT_RUNS+=("$name") EXP_TEXT_EXPERT[$name]=$text_expert; fi
done
EXPERIMENTS=("${kept[@]}")
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
  "$TRAIN" --config "$CONFIGS/example/$1.json" --run-dir "$OUT/experts/$2" --set train.epochs="$3" \
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
  # EXTRAS: the shape-biased classifier takes the AE's core, the autoencoder over both domains
  # the judge's when it is done; the pairs are extracted beside them.
  if [[ $EXTRAS == 1 ]]; then
    train_expert shape_classifier shape "$CLF_EPOCHS" & shape_pid=$!
    wait "$judge_pid"; judge_pid=
    train_expert autoencoder_domains aed "$AED_EPOCHS" & aed_pid=$!
  fi
else
  extra=(); [[ $EXTRAS == 1 ]] && extra=("train_expert shape_classifier shape $CLF_EPOCHS"
                                         "train_expert autoencoder_domains aed $AED_EPOCHS")
  pool "train_expert autoencoder ae $AE_EPOCHS" "train_expert classifier classifier $CLF_EPOCHS" \
    "train_expert judge judge $JUDGE_EPOCHS" "${extra[@]}"
fi
AE=$OUT/experts/ae/expert.pt CLF=$OUT/experts/classifier/expert.pt JUDGE=$OUT/experts/judge/expert.pt
SHAPE=$OUT/experts/shape/expert.pt AED=$OUT/experts/aed/expert.pt

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
[[ -n ${shape_pid:-} ]] && wait "$shape_pid"
# The EXTRAS experiments' own caches: the same items, AE latent, label + caption properties, and
# the shape-biased classifier's stage 3 (the plain one's is s3 of the main caches).
if [[ $EXTRAS == 1 ]]; then
  extra_experts=(--expert ae="ts:$AE:encode" --expert lp=label-props --expert sh3="ts:$SHAPE:stage3"
                 --expert hard=silhouette:hard --expert soft=silhouette:soft)
  for split in train test; do
    if [[ ! -f "$OUT/cache/$split.extra.h5" ]]; then
      limit=$TRAIN_LIMIT; [[ $split == test ]] && limit=$TEST_LIMIT
      step "extracting the $split pairs of the extra experiments ($limit items)"
      "$EXTRACT" --data "fashion-mnist:$split" --limit "$limit" "${extra_experts[@]}" --out "$OUT/cache/$split.extra.h5" \
        --resume "${LOG[@]}"
    fi
  done
  # Unaligned: domain A the real items of even index, domain B the inverted items of odd index
  # (no item in both), each through the AE over both domains with its (class, domain) condition;
  # B's images are rendered first (an h5 source), so that both take the same experts and merge
  # as two domains (/domain).
  [[ -n ${aed_pid:-} ]] && wait "$aed_pid"
  dom_experts=(--expert ae="ts:$AED:encode" --expert ld=label-domain)
  for split in train test; do
    limit=$TRAIN_LIMIT; [[ $split == test ]] && limit=$TEST_LIMIT
    c=$OUT/cache/$split
    [[ -f $c.domains.h5 ]] && continue
    step "extracting the $split pairs of the unaligned experiment ($limit items, two domains)"
    "$EXTRACT" --data "fashion-mnist:$split" --limit "$limit" --shard 0/2 "${dom_experts[@]}" --out "$c.domA.h5" --force "${LOG[@]}"
    "$EXTRACT" --data "fashion-mnist:$split" --limit "$limit" --shard 1/2 --expert img=invert --out "$c.inverted.h5" --force "${LOG[@]}"
    "$EXTRACT" --data "h5:$c.inverted.h5:img" "${dom_experts[@]}" --out "$c.domB.h5" --force "${LOG[@]}"
    "$EXTRACT" --merge --out "$c.domains.h5" --force "$c.domA.h5" "$c.domB.h5" "${LOG[@]}"
  done
fi

# 3. cINNs ---------------------------------------------------------------------------------------
train_cinn() {  # name (a line of EXPERIMENTS)
  local run=$OUT/runs/$1 config=$CONFIGS/${EXP_CONFIG[$1]}.json cache=${EXP_CACHE[$1]}
  if [[ -f "$run/summary.json" ]]; then step "cINN $1: reused"; return; fi
  local resume=(); [[ -f "$run/checkpoints/last.pt" ]] && resume=(--resume)
  local steps; steps=${STEPS:-$(jq -r .train.steps "$config")}
  step "cINN $1: training ($steps steps)"
  "$TRAIN" --config "$config" --run-dir "$run" --set data.train="$OUT/cache/train$cache.h5" \
    --set data.val="$OUT/cache/test$cache.h5" \
    --set data.condition="${EXP_COND[$1]}" --set model.cond_dim=null --set train.steps="$steps" "${resume[@]}" --json "${LOG[@]}" \
    --threads "$JOB_THREADS" > "$run.summary.tmp"
  mv "$run.summary.tmp" "$run/summary.json"
  step "cINN $1: $(jq -r '"val loss \(.best_val_loss)"' "$run/summary.json")"
}
# Longest first (EXPERIMENTS' pool column), so that the pool ends with short jobs on both cores.
pool "${TRAIN_ORDER[@]/#/train_cinn }"

[[ "${STOP_AFTER_TRAINING:-0}" == 1 ]] && { step "stopping before the translations (STOP_AFTER_TRAINING=1)"; exit 0; }

# 4. Translate, score, report ---------------------------------------------------------------
S=$OUT/samples
# run_translate_with DECODER ...: another autoencoder's decoder (the unaligned experiment's, over both domains).
run_translate_with() { local decoder=$1; shift; "$TRANSLATE" --force --json "${LOG[@]}" --decoder "$decoder" "$@"; }
run_translate() { run_translate_with "ts:$AE" "$@"; }
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
if [[ -n $SBERT ]]; then
  run_translate --checkpoint "$OUT/runs/sbert2ae" --samples 10 --out "$S/sbert_grid.h5" --png "$OUT/sbert2ae.png" "${GRID_TEXTS[@]}" \
    > "$S/sbert_grid.json"
fi
score() {  # run: samples at T = 1 and 0.7, accuracy, FID, NLL, diversity (and the stage grids)
  local run=$1 test=$OUT/cache/test${EXP_CACHE[$1]}.h5 LOG=("${LOG[@]}" --threads "$JOB_THREADS")  # run side by side (pool)
  local c="h5:$test:${EXP_COND[$1]}"
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
for set in heldout in_vocabulary; do
  awk -v n="$PROMPT_SAMPLES" 'NR == 1 { print; next } { for (i = 0; i < n; i++) print }' \
    "$CONFIGS/example/prompts_$set.tsv" > "$S/prompts_$set.tsv"
  "$EXTRACT" --data "tsv:$S/prompts_$set.tsv" --expert p=identity --out "$S/prompts_$set.props.h5" --force "${LOG[@]}"
  for run in "${TEXT_RUNS[@]}"; do
    g=$S/$run.$set
    run_translate --checkpoint "$OUT/runs/$run" --data "tsv:$S/prompts_$set.tsv" --cond-expert "${EXP_TEXT_EXPERT[$run]}" \
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

if [[ $EXTRAS == 1 ]]; then
  # Sketch -> image: edge maps of the real test images as conditions, through the plain classifier's
  # stage 3 and the shape-biased one's, each into its own cINN (trained on real images' pairs).
  step "sketches through the plain and the shape-biased classifier"
  "$EXTRACT" --data "h5:$S/real.h5:img" --expert sk=sketch --out "$S/sketch.h5" --force "${LOG[@]}"
  for pair in "stage32ae|$CLF|classifier" "shape32ae|$SHAPE|shape"; do
    IFS='|' read -r run expert name <<< "$pair"
    run_translate --checkpoint "$OUT/runs/$run" --data "h5:$S/sketch.h5:sk" --cond-expert "ts:$expert:stage3" --samples 1 \
      --out "$S/$run.sketch.h5" > /dev/null
    "$EVAL" accuracy --data "h5:$S/$run.sketch.h5:image" --classifier "ts:$JUDGE:forward" --labels "h5:$S/$run.sketch.h5:label" \
      "${LOG[@]}" > "$S/$run.sketch.accuracy.json"
    run_translate --checkpoint "$OUT/runs/$run" --data "h5:$S/sketch.h5:sk" --cond-expert "ts:$expert:stage3" --limit 10 \
      --samples 6 --out "$S/$run.sketch_grid.h5" --png "$OUT/$run.sketch.png" --png-inputs > /dev/null
    # The expert itself on the sketches: does it still see the item?
    "$EVAL" accuracy --data "h5:$S/sketch.h5:sk" --classifier "ts:$expert:forward" --labels "h5:$S/sketch.h5:label" \
      "${LOG[@]}" > "$S/$name.sketch.accuracy.json"
  done
  # Attribute editing: each of EDIT_ROWS test items re-rendered with one caption property set
  # (label-props column 10 brightness, 11 size; -1 dark/small, +1 light/large), the rest of its
  # condition kept; "own" is the same rows under the item's own condition (strength 0), the before.
  step "attribute editing"
  for attr in brightness:10 size:11; do
    name=${attr%%:*} col=${attr#*:}
    for part in own edit; do
      strength=(); [[ $part == own ]] && strength=(--alpha 0)
      run_translate --checkpoint "$OUT/runs/lp2ae" --mode transfer --exemplar "$OUT/cache/test.extra.h5" \
        --exemplars "$EDIT_ROWS" --edit "$col=-1" --edit "$col=1" "${strength[@]}" --out "$S/edit_$name.$part.h5" > /dev/null
    done
    "$EXTRACT" --data "h5:$S/edit_$name.edit.h5:cond" --expert p=columns:10:12 --out "$S/edit_$name.want.h5" --force "${LOG[@]}"
    for part in own edit; do
      "$EXTRACT" --data "h5:$S/edit_$name.$part.h5:image" --expert p=caption-props --out "$S/edit_$name.$part.props.h5" \
        --force "${LOG[@]}"
      "$EVAL" accuracy --data "h5:$S/edit_$name.$part.h5:image" --classifier "ts:$JUDGE:forward" \
        --labels "h5:$S/edit_$name.$part.h5:label" --props "h5:$S/edit_$name.$part.props.h5:p" \
        --expected-props "h5:$S/edit_$name.want.h5:p" "${LOG[@]}" > "$S/edit_$name.$part.accuracy.json"
    done
  done
  run_translate --checkpoint "$OUT/runs/lp2ae" --mode transfer --exemplar "$OUT/cache/test.extra.h5" --exemplars 10 \
    --edit 10=-1 --edit 10=1 --edit 11=-1 --edit 11=1 --out "$S/edit_grid.h5" --png "$OUT/edit.png" > /dev/null

  # Segmentation -> image: the samples the scores made (one per test item's mask, the rows of
  # real.h5) against the masks they were made from; the same for label2ae's samples (the class
  # alone, no layout) and the AE's reconstructions (the ceiling). Diversity: the table's.
  step "segmentation masks -> image"
  "$EXTRACT" --data "h5:$S/real.h5:img" --expert m=silhouette:hard --expert mi=silhouette:image --out "$S/seg_given.h5" \
    --force "${LOG[@]}"
  for pair in "seghard2ae|h5:$S/seghard2ae.h5:image" "segsoft2ae|h5:$S/segsoft2ae.h5:image" \
              "label2ae|h5:$S/label2ae.h5:image" "real.rec|h5:$S/real.rec.h5:rec"; do
    IFS='|' read -r name images <<< "$pair"
    "$EXTRACT" --data "$images" --expert m=silhouette:hard --out "$S/$name.masks.h5" --force "${LOG[@]}"
    "$EVAL" iou --pred "h5:$S/$name.masks.h5:m" --target "h5:$S/seg_given.h5:m" "${LOG[@]}" > "$S/$name.iou.json"
  done
  # Grids: each mask (drawn) then six samples; the soft scores' rows start with the item itself.
  run_translate --checkpoint "$OUT/runs/seghard2ae" --data "h5:$S/seg_given.h5:mi" --cond-expert silhouette:hard --limit 10 \
    --samples 6 --out "$S/seghard2ae.grid.h5" --png "$OUT/seghard2ae.png" --png-inputs > /dev/null
  run_translate --checkpoint "$OUT/runs/segsoft2ae" --data "h5:$S/real.h5:img" --cond-expert silhouette:soft --limit 10 \
    --samples 6 --out "$S/segsoft2ae.grid.h5" --png "$OUT/segsoft2ae.png" --png-inputs > /dev/null
  # Exemplar-guided: the layouts of 8 training items, each with the residual v of 8 test exemplars.
  "$EXTRACT" --data fashion-mnist:train --limit 8 --expert mi=silhouette:image --out "$S/seg_layouts.h5" --force "${LOG[@]}"
  run_translate --checkpoint "$OUT/runs/seghard2ae" --mode transfer --exemplar "$OUT/cache/test.extra.h5" --exemplars 8 \
    --data "h5:$S/seg_layouts.h5:mi" --cond-expert silhouette:hard --out "$S/seghard2ae.transfer.h5" \
    --png "$OUT/seghard2ae.transfer.png" --png-inputs > /dev/null

  # Unaligned translation: EDIT_ROWS test items of each domain carried into the other, v = T(z(x) | class,
  # domain a), z' = T^-1(v | class, domain b) (--edit 10=+1: inverted, -1: real); "own" is the same
  # rows under their own domain. The judge sees each result in the real domain (an
  # inverted one inverted back); the domain code (`background`) says which domain it is in.
  step "unaligned translation between the real and the inverted domain"
  for way in "a2b|A|10=1|10=-1" "b2a|B|10=-1|10=1"; do
    IFS='|' read -r name from edit own <<< "$way"
    for part in own edit; do
      domain=${!part} g=$S/dom_$name.$part  # the condition's domain column: where the results land
      run_translate_with "ts:$AED" --checkpoint "$OUT/runs/dom2ae" --mode transfer --exemplar "$OUT/cache/test.dom$from.h5" \
        --exemplars "$EDIT_ROWS" --edit "$domain" --out "$g.h5" > /dev/null
      to_real=identity; [[ $domain == 10=1 ]] && to_real=invert
      "$EXTRACT" --data "h5:$g.h5:image" --expert x="$to_real" --expert d=background --out "$g.seen.h5" --force "${LOG[@]}"
      "$EXTRACT" --data "h5:$g.h5:cond" --expert d=columns:10:11 --out "$g.want.h5" --force "${LOG[@]}"
      "$EVAL" accuracy --data "h5:$g.seen.h5:x" --classifier "ts:$JUDGE:forward" --labels "h5:$g.h5:label" \
        --props "h5:$g.seen.h5:d" --expected-props "h5:$g.want.h5:d" "${LOG[@]}" > "$g.accuracy.json"
    done
    run_translate_with "ts:$AED" --checkpoint "$OUT/runs/dom2ae" --mode transfer --exemplar "$OUT/cache/test.dom$from.h5" \
      --exemplars 10 --edit "$own" --edit "$edit" --out "$S/dom_$name.grid.h5" --png "$OUT/dom_$name.png" > /dev/null
  done
fi

step "writing $OUT/report.md"
report=(); for line in "${EXPERIMENTS[@]}"; do report+=(--experiment "$line"); done
for t in "${HELDOUT_GRID[@]}"; do report+=(--heldout-grid "$t"); done
if [[ -z $SBERT ]]; then report+=(--sbert-skipped "$SBERT_SKIPPED"); fi
if [[ $EXTRAS == 1 ]]; then
  report+=(--extras --edit-rows "$(( EDIT_ROWS < TEST_LIMIT ? EDIT_ROWS : TEST_LIMIT ))")
fi
python3 "$ROOT/scripts/example/report.py" --out "$OUT" --seconds "$(($(date +%s) - t0))" --train-limit "$TRAIN_LIMIT" \
  --test-limit "$TEST_LIMIT" --eval-rows "$EVAL_ROWS" --prompt-samples "$PROMPT_SAMPLES" \
  --heldout-prompts "$CONFIGS/example/prompts_heldout.tsv" "${report[@]}"
step "done: $OUT/report.md"
