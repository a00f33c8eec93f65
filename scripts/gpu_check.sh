#!/usr/bin/env bash
# The GPU check: on a machine with a GPU and a Python PyTorch 2.x with CUDA (and no internet),
# builds net2net against that torch and checks the GPU path. Prints JSON lines on stdout; exits
# non-zero on a mismatch (or when no GPU is visible). About 10 minutes on 16 cores, build included.
#   1. the CUDA kernels against the CPU ones: coupling, ActNorm + LeakyReLU, a whole flow, the
#      fused Adam, bf16 autocast (tests/test_cuda.cpp; values, gradients, inverses, float / double);
#   2. the small example config trained for TRAIN_STEPS steps on cuda and on cpu from one seed on
#      the same pairs: the train losses agree at every logged step within LOSS_RTOL;
#   3. the text->BigGAN config's training step on the GPU in fp32 and bf16, ours against the same
#      model in Python PyTorch eager on the same GPU (bench/train_step.py), with the ratios.
#
# The machine has none of the Debian -dev packages the build needs: they travel as .deb files.
#   scripts/gpu_check.sh --prepare   here (Debian 12, network): fetches them into .gpu-debs/
#                                    (git-ignored, ~10 MB)
#   scripts/gpu_check.sh             there: unpacks .gpu-debs/*.deb (dpkg -x) when the system lacks
#                                    them, builds into build-gpu/, runs 1-3.
# Needs there: python3 with torch 2.x (CUDA) plus h5py and numpy, nvcc of the same CUDA major as that
# torch, cmake >= 3.18, g++ and dpkg; the .debs are Debian 12's (glibc >= 2.36). TRAIN_STEPS,
# LOSS_RTOL and PYTHON adjust it.
# BUILD_ONLY=1 stops after the build (to try the build part on a machine without a GPU);
# FORCE_DEBS=1 builds against the carried packages even where the system has them; GPU_DEVICE=cpu
# runs checks 2 and 3 with the CPU in the GPU's place (a dry run of the script's own logic).
set -euo pipefail
cd "$(dirname "$0")/.."
debs=.gpu-debs
packages=(libcli11-dev nlohmann-json3-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libhdf5-dev libhdf5-103-1
          libhdf5-cpp-103-1 libsz2 libaec0 libgtest-dev libstb-dev libstb0 libsleef-dev libsleef3 libgloo-dev
          zlib1g-dev libssl-dev)

if [[ "${1:-}" == "--prepare" ]]; then
  mkdir -p "$debs"
  (cd "$debs" && apt-get download "${packages[@]}" >&2)
  du -sh "$debs" >&2
  exit 0
fi

log() { echo "[gpu_check] $*" >&2; }
python=${PYTHON:-python3}
torch_prefix=$("$python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)') \
  || { log "$python has no torch (PYTHON=... names another interpreter)"; exit 2; }
root="$PWD/$debs/root"
prefixes="$torch_prefix"
if [[ ! -e /usr/include/spdlog/spdlog.h || "${FORCE_DEBS:-0}" == 1 ]]; then
  [[ -d "$debs" ]] || { log "no Debian -dev packages here and no $debs/ (run --prepare where apt works, carry it)"; exit 2; }
  log "unpacking $(ls "$debs"/*.deb | wc -l) Debian packages into $root"
  rm -rf "$root" && mkdir -p "$root"
  for f in "$debs"/*.deb; do dpkg -x "$f" "$root"; done
  prefixes="$prefixes;$root/usr"
  arch_lib="$root/usr/lib/x86_64-linux-gnu"
  export LD_LIBRARY_PATH="$arch_lib:$arch_lib/hdf5/serial${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export CPATH="$root/usr/include${CPATH:+:$CPATH}"
  hdf5_args=(-DHDF5_ROOT="$root/usr" -DHDF5_C_INCLUDE_DIR="$root/usr/include/hdf5/serial"
             -DHDF5_CXX_INCLUDE_DIR="$root/usr/include/hdf5/serial"
             -DHDF5_hdf5_LIBRARY_RELEASE="$arch_lib/hdf5/serial/libhdf5.so"
             -DHDF5_hdf5_cpp_LIBRARY_RELEASE="$arch_lib/hdf5/serial/libhdf5_cpp.so")
else
  hdf5_args=()
fi
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime CCACHE_BASEDIR=$PWD
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
jobs=$(nproc)
t0=$(date +%s)
cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefixes" \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" "${hdf5_args[@]}" >&2
cmake --build build-gpu -j"$jobs" --target test_cuda net2net-train net2net-bench >&2
echo "{\"check\": \"build\", \"seconds\": $(( $(date +%s) - t0 )), \"torch_prefix\": \"$torch_prefix\"}"
[[ "${BUILD_ONLY:-0}" == 1 ]] && exit 0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true
status=0

# 1. CUDA kernels against the CPU ones.
rm -f build-gpu/test_cuda.json
if build-gpu/tests/test_cuda --gtest_output=json:build-gpu/test_cuda.json >&2; then ok=true; else ok=false; status=1; fi
[[ -f build-gpu/test_cuda.json ]] || { echo '{"check": "cuda_kernels_vs_cpu", "ok": false, "error": "test_cuda crashed"}'; exit 1; }
"$python" - "$ok" <<'EOF' || status=1
import json, sys
r = json.load(open("build-gpu/test_cuda.json"))
cases = [t for s in r["testsuites"] for t in s["testsuite"]]
skipped = [t["name"] for t in cases if t.get("result") == "SKIPPED"]
failed = [t["name"] for t in cases if t.get("failures")]
print(json.dumps({"check": "cuda_kernels_vs_cpu", "ok": sys.argv[1] == "true" and not skipped, "tests": len(cases),
                  "failed": failed, "skipped": skipped}))
sys.exit(1 if skipped else 0)
EOF

# 2. The small example config on cuda and on cpu, one seed, the same pairs.
steps=${TRAIN_STEPS:-300}
work=build-gpu/check
rm -rf "$work" && mkdir -p "$work"
"$python" - "$work/pairs.h5" <<'EOF'
# Pairs shaped like the example's label -> AE cache: a 10-class one-hot condition, a 64-d target
# whose mean depends on the class.
import sys, h5py, numpy as np
rng = np.random.default_rng(0)
n = 8192
labels = rng.integers(0, 10, n)
centres = rng.normal(size=(10, 64)).astype(np.float32)
with h5py.File(sys.argv[1], "w") as f:
    f["onehot"] = np.eye(10, dtype=np.float32)[labels]
    f["ae"] = centres[labels] + 0.5 * rng.normal(size=(n, 64)).astype(np.float32)
EOF
gpu=${GPU_DEVICE:-cuda}
for side in cpu:cpu gpu:"$gpu"; do
  name=${side%%:*} dev=${side#*:}
  build-gpu/tools/net2net-train/net2net-train --config configs/fmnist_label2ae.json --device "$dev" --threads "$jobs" \
    --run-dir "$work/run-$name" --force --set data.train="$work/pairs.h5" --set data.val=null --set train.steps="$steps" \
    --set train.log_every=50 --set train.val_every=100000 --set train.checkpoint_every=100000 --json \
    > "$work/$name.json" 2> "$work/$name.log" || { log "training on $dev failed:"; tail -5 "$work/$name.log" >&2; status=1; }
done
"$python" - "$work" "${LOSS_RTOL:-0.02}" "$gpu" <<'EOF' || status=1
import json, sys
work, rtol, gpu = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def losses(dev):
    rows = [json.loads(l) for l in open(f"{work}/run-{dev}/metrics.jsonl")]
    return {r["step"]: r["loss"] for r in rows if r.get("split") == "train" and "loss" in r}
a, b = losses("cpu"), losses("gpu")
if not a or sorted(a) != sorted(b):
    print(json.dumps({"check": "train_cuda_vs_cpu", "ok": False, "steps_cpu": sorted(a), "steps_cuda": sorted(b)}))
    sys.exit(1)
worst = max(abs(a[s] - b[s]) / max(1.0, abs(a[s])) for s in a)
ok = worst <= rtol
print(json.dumps({"check": "train_cuda_vs_cpu", "ok": ok, "device": gpu, "steps": max(a), "rtol": rtol, "worst_relative_diff": worst,
                  "loss_cpu": a[max(a)], "loss_cuda": b[max(b)]}))
sys.exit(0 if ok else 1)
EOF

# 3. text->BigGAN training steps on the GPU: ours and Python PyTorch eager, fp32 and bf16.
for precision in fp32 bf16; do
  ours=$(build-gpu/bench/net2net-bench --threads "$jobs" train --config configs/text2biggan.json --device "$gpu" \
           --precision "$precision" --runs 5 --steps 20 2> "$work/bench-$precision.log" | tail -1) \
    || { log "net2net-bench ($precision) failed:"; tail -5 "$work/bench-$precision.log" >&2; status=1; continue; }
  ref=$("$python" bench/train_step.py configs/text2biggan.json "$jobs" 5 20 --device "$gpu" --precision "$precision") \
    || { status=1; continue; }
  "$python" -c 'import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print(json.dumps({"check":"text2biggan_step_gpu","precision":sys.argv[3],"ours_s":a["seconds_per_step"],"python_eager_s":b["seconds_per_step"],"ratio_ours_over_python":a["seconds_per_step"]/b["seconds_per_step"],"phases_ms":[round(a[k]*1e3,2) for k in ("forward_s","backward_s","grad_norm_s","optimizer_s")],"torch":b["torch"]}))' \
    "$ours" "$ref" "$precision" || status=1
done
exit $status
