#!/usr/bin/env bash
# Writes small valid seed inputs for the libFuzzer targets of tests/fuzz/ into OUT_DIR/<target>/:
#   tests/fuzz/make_seed_corpus.sh BUILD_DIR OUT_DIR
# - fuzz_config:     configs/*.json and configs/example/*.json, plain and behind --set lines
#                    (the target's input: up to 4 lines "--set KEY=VALUE", then the file);
# - fuzz_sources:    text, tsv, IDX (both .gz modes) and PNG seeds made with python3, and the
#                    caches below as h5:FILE:DATASET seeds (byte 0: the mode, see fuzz_sources.cpp);
# - fuzz_cache:      caches made by BUILD_DIR's net2net-extract (gaussian pairs, a tsv with labels and
#                    properties, PNG images with an item shape, a shard of a sharded run), and FID
#                    statistics saved by net2net-eval fid --save-stats;
# - fuzz_checkpoint: a training checkpoint of net2net-train (a tiny config, --set train.steps=2;
#                    in_dim 16 so that the fused CPU kernels run), and the same without its checksum
#                    entry (as written before checksums), so that mutations of the model state and
#                    config are not all stopped by the CRC.
# Without BUILD_DIR's tools only the seeds that need none are written. The hand-written seeds of
# tests/fuzz/corpus/ are not copied here (scripts/fuzz.sh does that).
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR OUT_DIR" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
mkdir -p "$out"/{fuzz_config,fuzz_sources,fuzz_cache,fuzz_checkpoint}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The tools of a sanitizer build: LibTorch's static registries are never freed.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
export NET2NET_LOG_LEVEL=warn

# ---- fuzz_config: the shipped configs, plain and behind overrides the tools take
for f in "$root"/configs/*.json "$root"/configs/example/*.json; do
  [[ -f $f ]] || continue
  name=$(basename "$f" .json)
  cp "$f" "$out/fuzz_config/$name.json"
  if grep -q '"kind": *"\(autoencoder\|classifier\)"' "$f"; then
    sets='--set train.seed=7\n--set name=fuzz\n--set train.epochs=1\n--set data.limit=8\n'
  else
    sets='--set train.seed=7\n--set name=fuzz\n--set model.in_dim=16\n--set model.cond_dim=4\n'
  fi
  { printf '%b' "$sets"; cat "$f"; } > "$out/fuzz_config/${name}_sets.json"
done

# ---- fuzz_sources: the seeds that need no tool (same formats as tests/fuzz/corpus/fuzz_sources)
mkdir -p "$work/img"
python3 - "$out/fuzz_sources" "$work/img" <<'EOF'
import gzip, os, struct, sys, zlib
out, img_dir = sys.argv[1], sys.argv[2]
def w(name, data):
    with open(os.path.join(out, name), 'wb') as f: f.write(data)
w('text_lines.bin', b'\x00' + b'\n'.join(b'caption %d: a dark small T-shirt' % i for i in range(20)) + b'\n')
w('text_empty_lines.bin', b'\x00\n\n\r\n')
w('tsv_full.bin', b'\x01' + b'label\ttext\tsize\tdark\n' + b''.join(b'%d\tprompt %d\t%g\t%g\n' % (i % 10, i, i * 0.5, -i) for i in range(12)))
w('tsv_no_label.bin', b'\x01text\tscore\na\t1\nb\t-0.5e-3\n')
def idx(n, h, wd):
    img = struct.pack('>IIII', 2051, n, h, wd) + bytes((i * 37) % 256 for i in range(n * h * wd))
    lbl = struct.pack('>II', 2049, n) + bytes(i % 10 for i in range(n))
    return img, lbl
for name, (n, h, wd) in {'idx_5x28x28': (5, 28, 28), 'idx_1x1x1': (1, 1, 1), 'idx_7x3x5': (7, 3, 5)}.items():
    img, lbl = idx(n, h, wd)
    w(name + '_plain.bin', b'\x02\x01' + struct.pack('>I', len(img)) + img + lbl)
    gi, gl = gzip.compress(img, mtime=0), gzip.compress(lbl, mtime=0)
    w(name + '_gz.bin', b'\x03\x00' + struct.pack('>I', len(gi)) + gi + gl)
def png(wd, h, ct):
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ct]
    raw = b''.join(b'\x00' + bytes((x * 50 + y * 20 + c * 7) % 256 for x in range(wd) for c in range(ch)) for y in range(h))
    def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', wd, h, 8, ct, 0, 0, 0)) +
            chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))
for ct in (0, 2, 4, 6):
    w('png_ct%d.bin' % ct, b'\x05\x00' + png(5, 4, ct))
# Two RGB images of one size for the images:DIR cache below.
for i in range(2):
    with open(os.path.join(img_dir, 'im%d.png' % i), 'wb') as f: f.write(png(4, 4, 2))
EOF

# ---- the seeds made by the built tools
extract=$build/tools/net2net-extract/net2net-extract
train=$build/tools/net2net-train/net2net-train
eval=$build/tools/net2net-eval/net2net-eval
if [[ ! -x $extract || ! -x $train || ! -x $eval ]]; then
  echo "make_seed_corpus.sh: no tools in '$build/tools': only the seeds that need none were written" >&2
  exit 0
fi
cd "$work"
# h5 seeds of fuzz_sources: byte 0 = 4 (h5), byte 1 = the dataset (fuzz_sources.cpp kH5Names:
# 0 x, 1 c, 2 label, 3 index, 4 img, 5 t).
h5_seed() {  # CACHE SELECTOR NAME
  { printf '\x04'; printf '%b' "\\x$(printf %02x "$2")"; cat "$1"; } > "$out/fuzz_sources/$3.bin"
}
printf 'text\tlabel\tsize\tdark\nred shirt\t0\t1.5\t-2\nblue bag\t8\t0.25\t1\nshoe\t7\t3\t0\n' > props.tsv
"$extract" --data gaussian:6:16 --expert c=identity --expert x=identity --out gauss.h5 --compress 9 --threads 1
"$extract" --data tsv:props.tsv --expert c=label --expert x=identity --expert t=text-hash:8 --out tsv.h5 --compress 9 --threads 1
"$extract" --data images:img --expert img=identity --out images.h5 --compress 9 --threads 1
"$extract" --data gaussian:8:4 --expert c=identity --expert x=identity --shard 1/2 --out shard.h5 --compress 9 --threads 1
"$eval" fid --real h5:gauss.h5:c --fake h5:gauss.h5:x --save-stats stats.h5 --kid-subsets 0 --threads 1 > /dev/null
cp gauss.h5 tsv.h5 images.h5 shard.h5 stats.h5 "$out/fuzz_cache/"
h5_seed gauss.h5 0 h5_gauss_x
h5_seed gauss.h5 3 h5_gauss_index
h5_seed tsv.h5 2 h5_tsv_label
h5_seed tsv.h5 5 h5_tsv_t
h5_seed images.h5 4 h5_images_img

# ---- fuzz_checkpoint: a tiny training run over gauss.h5
cat > tiny.json <<'EOF'
{"name": "fuzz-seed",
 "data": {"train": "gauss.h5", "condition": "c", "target": "x"},
 "model": {"n_flows": 2, "hidden_dim": 8, "hidden_depth": 1, "embedding_dim": 4,
           "embedder": {"hidden_dim": 8, "depth": 1, "norm": "none"}},
 "train": {"batch_size": 4, "steps": 100, "log_every": 1, "val_every": 1, "checkpoint_every": 1}}
EOF
"$train" --config tiny.json --set train.steps=2 --run-dir run --threads 1 > /dev/null
cp run/checkpoints/last.pt "$out/fuzz_checkpoint/train_last.pt"
# The same without the "checksum" entry: renamed in the module's code and its pickle (same length).
python3 - run/checkpoints/last.pt "$out/fuzz_checkpoint/train_no_checksum.pt" <<'EOF'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as zout:
    for info in zin.infolist():
        data = zin.read(info.filename)
        if '/data/' not in info.filename:  # not the tensor records
            data = data.replace(b'checksum', b'checksuX')
        zout.writestr(info.filename, data)
EOF
echo "make_seed_corpus.sh: seeds in $out ($(find "$out" -type f | wc -l) files)" >&2
