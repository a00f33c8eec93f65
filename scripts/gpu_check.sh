#!/usr/bin/env bash
# One short check of the CUDA kernels on a machine with a GPU (the device machine of a task that
# has one): builds only the kernels and their checker with nvcc, runs it, and prints JSON lines.
# Needs no LibTorch. Usage: scripts/gpu_check.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-gpu}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
mkdir -p "$out"
"$nvcc" -std=c++17 -O2 -I lib -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
  lib/net2net/kernels/affine_coupling.cu tests/cuda/check_affine_coupling.cu -o "$out/check_affine_coupling"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
"$out/check_affine_coupling"
