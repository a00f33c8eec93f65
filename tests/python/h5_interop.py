#!/usr/bin/python3
"""h5py side of the embedding-cache interop tests (docs/formats.md).

  h5_interop.py write DIR    writes DIR/with_attrs.h5 and DIR/plain.h5 as any h5py user would
  h5_interop.py check FILE   checks a cache written by net2net against the same formula

Values: /emb[i, j] = sin(0.37 i + 1.3 j) (float32, 37 x 5), /label[i] = i % 7, /index[i] = i.
"""
import json
import sys

import h5py
import numpy as np

ROWS, COLS = 37, 5


def expected():
    i = np.arange(ROWS)[:, None]
    j = np.arange(COLS)[None, :]
    return np.sin(0.37 * i + 1.3 * j).astype(np.float32)


def write(folder):
    with h5py.File(f"{folder}/with_attrs.h5", "w") as f:
        f.attrs["format"] = "net2net.embeddings"
        f.attrs["version"] = 1
        f.attrs["source"] = "h5py-test"
        f.create_dataset("emb", data=expected(), chunks=(8, COLS), maxshape=(None, COLS), compression="gzip")
        f.create_dataset("label", data=np.arange(ROWS, dtype=np.int64) % 7)
        f.create_dataset("index", data=np.arange(ROWS, dtype=np.int64))
    with h5py.File(f"{folder}/plain.h5", "w") as f:  # no attributes at all, float64 data, int32 labels
        f.create_dataset("emb", data=expected().astype(np.float64))
        f.create_dataset("label", data=(np.arange(ROWS) % 7).astype(np.int32))


def check(path):
    with h5py.File(path, "r") as f:
        problems = []
        if f.attrs.get("format") != "net2net.embeddings":
            problems.append(f"format attribute is {f.attrs.get('format')!r}")
        if int(f.attrs.get("version", -1)) != 1:
            problems.append("version attribute is not 1")
        if int(f.attrs.get("complete", 0)) != 1:
            problems.append("complete attribute is not 1")
        json.loads(f.attrs["experts"])  # provenance JSON parses
        emb = f["emb"]
        if emb.dtype != np.float32 or emb.shape != (ROWS, COLS):
            problems.append(f"/emb is {emb.dtype} {emb.shape}")
        elif not np.array_equal(emb[()], expected()):
            problems.append(f"/emb values differ: max {np.abs(emb[()] - expected()).max()}")
        if not np.array_equal(f["label"][()], np.arange(ROWS) % 7) or f["label"].dtype != np.int64:
            problems.append("/label differs")
        if not np.array_equal(f["index"][()], np.arange(ROWS)):
            problems.append("/index differs")
    if problems:
        sys.exit("; ".join(problems))
    print("ok")


if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](sys.argv[2])
