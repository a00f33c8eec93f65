#!/usr/bin/env bash
# Installs the Debian packages net2net needs that are missing (apt-get; sudo when not root).
#   scripts/setup.sh          build and run-time packages
#   scripts/setup.sh --test   plus what the tests compare against (Python PyTorch, h5py, scipy)
#   scripts/setup.sh --sbert  plus what exporting sentence-BERT needs (Debian's Python PyTorch;
#                             scripts/setup_sbert.sh adds three small PyPI packages in a venv)
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config
  libtorch-dev
  libopenblas0-openmp   # LibTorch's BLAS at run time: ~20x faster than reference BLAS
  libgloo-dev           # c10d headers (ProcessGroupGloo, TCPStore)
  libcli11-dev nlohmann-json3-dev libspdlog-dev libhdf5-dev zlib1g-dev
  libssl-dev            # SHA-256 of expert files
  libstb-dev            # PNG/JPEG images
  libsleef-dev          # vector exp for the AVX2 build of the fused CPU kernels
  libgtest-dev
  jq                    # the example pipeline (scripts/demo.sh) reads the tools' JSON
  python3               # the example's report (scripts/example/report.py, standard library only)
  python3-venv          # scripts/setup_libtorch2.sh: PyPI's LibTorch 2.x in a virtual environment
  help2man              # the man pages, made from each tool's --help at build time
  dataset-fashion-mnist
)
for arg in "$@"; do
  case "$arg" in
    # Independent references for the tests only; never run-time dependencies of the tools.
    --test) packages+=(python3-torch python3-h5py python3-scipy python3-numpy python3-torchvision python3-yaml
                       lmod debootstrap) ;;  # lmod: the install test loads the installed module;
                       # debootstrap: scripts/test_deb.sh installs the .deb on a clean minimal Debian
    # The exporter of the pretrained text expert (run once; the tools never need Python).
    --sbert) packages+=(python3-torch python3-numpy) ;;
    *) echo "setup.sh: unknown argument '$arg' (use --test and/or --sbert)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

if (( ${#missing[@]} > 0 )); then
  echo "[setup] installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  echo "[setup] all packages present" >&2
fi

# LibTorch must run on OpenBLAS with OpenMP threads, not the pthread variant (which fights
# torch's OpenMP threads) nor reference BLAS.
alt=libblas.so.3-x86_64-linux-gnu
want=/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3
if command -v update-alternatives >/dev/null && [[ -e "$want" ]]; then
  current=$(update-alternatives --query "$alt" 2>/dev/null | awk '/^Value:/ {print $2}')
  if [[ "$current" != "$want" ]]; then
    echo "[setup] selecting OpenBLAS (OpenMP) as libblas.so.3" >&2
    $SUDO update-alternatives --set "$alt" "$want" >&2
  fi
fi
