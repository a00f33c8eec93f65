#!/usr/bin/env python3
"""Compare the model state of two net2net checkpoints (docs/formats.md: a LibTorch serialize
archive that torch.jit.load opens as a module; its `model` submodule holds every parameter and
buffer by name).

  compare_checkpoints.py A.pt B.pt            # --exact (default): every tensor bit-identical
  compare_checkpoints.py A.pt B.pt --atol 1e-6 [--rtol 0]
  compare_checkpoints.py A.pt B.pt --optimizer   # also the `optimizer` submodule's tensors

Prints each tensor that differs (name, shape, max |a - b|, entries off) and a summary line;
exits 0 when they agree, 1 when they differ (or the names, shapes or dtypes do not match),
2 on usage errors. Needs torch (Debian: /usr/bin/python3 with python3-torch).
"""
import argparse
import sys

import torch


def tensors(module, prefix):
    out = {}
    for name, t in module.state_dict().items():
        out[prefix + name] = t
    return out


def raw(t):
    """The tensor's bytes, for a bit-wise comparison (NaN == NaN, -0.0 != 0.0)."""
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8) if t.dtype != torch.bool else t


def load(path, with_optimizer):
    m = torch.jit.load(path, map_location="cpu")
    if not hasattr(m, "model"):
        sys.exit(f"{path}: no `model` sub-archive (not a net2net checkpoint?)")
    out = tensors(m.model, "model.")
    if with_optimizer and hasattr(m, "optimizer"):
        out.update(tensors(m.optimizer, "optimizer."))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--exact", action="store_true", help="bit-identical (the default)")
    mode.add_argument("--atol", type=float, help="absolute tolerance: |a - b| <= atol + rtol * |b|")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance with --atol (default 0)")
    p.add_argument("--optimizer", action="store_true", help="also compare the optimizer state")
    args = p.parse_args()

    a, b = load(args.a, args.optimizer), load(args.b, args.optimizer)
    bad = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name}: only in {'A' if name in a else 'B'}")
            bad += 1
            continue
        x, y = a[name], b[name]
        if x.shape != y.shape or x.dtype != y.dtype:
            print(f"{name}: shape/dtype {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}")
            bad += 1
            continue
        if args.atol is None:
            # Bit-identical: compare the raw bytes (NaN == NaN, -0.0 != 0.0).
            same = torch.equal(raw(x), raw(y))
            if not same:
                d = (x.double() - y.double()).abs()
                off = int((x != y).sum())
                print(f"{name}: differs {tuple(x.shape)}: max |a-b| {d.max().item():.3g}, {off} of {x.numel()} entries")
                bad += 1
        else:
            d = (x.double() - y.double()).abs()
            lim = args.atol + args.rtol * y.double().abs()
            off = int((d > lim).sum()) if x.numel() else 0
            if off:
                print(f"{name}: differs {tuple(x.shape)}: max |a-b| {d.max().item():.3g}, {off} of {x.numel()} entries beyond tolerance")
                bad += 1
    what = "bit-identical" if args.atol is None else f"within atol {args.atol} rtol {args.rtol}"
    n = len(set(a) | set(b))
    if bad:
        print(f"DIFFER: {bad} of {n} tensors are not {what}")
        return 1
    print(f"SAME: all {n} tensors {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
