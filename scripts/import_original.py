#!/usr/bin/env python3
"""Import a cINN of the original Network-to-Network repository (CompVis/net2net) into net2net.

  import_original.py CKPT --yaml CONFIG.yaml --out WEIGHTS.h5
  net2net-train --config CONFIG.json --init-from WEIGHTS.h5 --write-model MODEL.pt

CKPT is the original's PyTorch Lightning checkpoint (logs/RUN/checkpoints/last.ckpt: its
state_dict holds the flow under "flow."), or a plain state_dict of the flow. CONFIG.yaml is the
run's config (logs/RUN/configs/*-project.yaml, or the repository's configs/...yaml): the flow's
hyper-parameters are read from model.params.flow_config.params (ConditionalFlatCouplingFlow or
UnconditionalFlatCouplingFlow). Without PyYAML, --flow-params '{"in_channels": 128, ...}' gives
the same parameters as JSON.

WEIGHTS.h5 holds every tensor under net2net's names (/weights/NAME, the names of docs/formats.md)
and the model section of a net2net config (root attribute "model", JSON). net2net-train
--write-model checks that section against CONFIG.json (a missing dimension is taken from it),
loads every tensor (a missing or extra one is an error) and writes a net2net checkpoint with the
same outputs. Needs torch (to read CKPT) and h5py; run it where the original repository runs
(unpickling a Lightning checkpoint may need its packages). Not a run-time dependency of the
tools.
"""
import argparse
import json
import re
import sys

FORMAT = "net2net.imported-weights"


def fail(msg):
    sys.exit(f"import_original: {msg}")


def flow_params(args):
    if args.flow_params:
        return json.loads(args.flow_params)
    try:
        import yaml
    except ImportError:
        fail("--yaml needs PyYAML (pip install pyyaml), or give --flow-params JSON")
    with open(args.yaml) as f:
        cfg = yaml.safe_load(f)
    try:
        flow = cfg["model"]["params"]["flow_config"]
    except (KeyError, TypeError):
        fail(f"'{args.yaml}' has no model.params.flow_config (is it a translation/creativity config?)")
    target = flow.get("target", "")
    if not target.endswith(("ConditionalFlatCouplingFlow", "UnconditionalFlatCouplingFlow")):
        fail(f"flow_config.target is '{target}': only the flat coupling flows (Conditional/Unconditional"
             "FlatCouplingFlow) have a net2net counterpart")
    params = dict(flow.get("params", {}))
    params["unconditional"] = target.endswith("UnconditionalFlatCouplingFlow")
    return params


def model_section(p):
    """The original's flow parameters as net2net's model section (docs/configs.md)."""
    unconditional = p.get("unconditional", False)
    if p.get("conditioner_use_an"):
        # The original's embedder puts one ActNorm after its first linear layer only; net2net's
        # "actnorm" embedder puts one after every hidden layer: not the same network.
        fail("conditioner_use_an (ActNorm in the embedder) has no net2net counterpart yet: net2net's actnorm "
             "embedder normalises after every hidden layer, the original's after the first only")
    m = {
        "in_dim": p["in_channels"],
        "cond_dim": 0 if unconditional else p["conditioning_dim"],
        "n_flows": p["n_flows"],
        "hidden_dim": p["hidden_dim"],
        "hidden_depth": p["hidden_depth"],
        "activation": p.get("activation", "none" if unconditional else "lrelu"),  # the originals' defaults
        "conditioning": p.get("conditioning_option", "none").lower(),
    }
    if not unconditional:
        m["embedding_dim"] = p["embedding_dim"]
        m["embedder"] = {
            "hidden_dim": p.get("conditioning_hidden_dim", 256),
            "depth": p.get("conditioning_depth", 2),
            "norm": "batchnorm" if p.get("conditioner_use_bn") else "none",
        }
    if m["activation"] not in ("none", "lrelu"):
        fail(f"activation '{m['activation']}' has no net2net counterpart (none, lrelu)")
    return m


def mlp_names(state, prefix, ours, out):
    """BasicFullyConnectedNet: main.{i} interleaves Linear, [BatchNorm1d | ActNorm], LeakyReLU, ...;
    net2net's Mlp names them linear{k} and norm{k}."""
    indices = sorted({int(m.group(1)) for k in state for m in [re.match(re.escape(prefix) + r"main\.(\d+)\.", k)] if m})
    linear = norm = 0
    for i in indices:
        keys = {k[len(f"{prefix}main.{i}."):]: k for k in state if k.startswith(f"{prefix}main.{i}.")}
        if "running_mean" in keys or "loc" in keys:  # BatchNorm1d or ActNorm
            for leaf, key in keys.items():
                t = state[key]
                if leaf in ("loc", "scale"):
                    t = t.reshape(-1)
                out[f"{ours}norm{norm}.{leaf}"] = t
            norm += 1
        elif "weight" in keys:
            out[f"{ours}linear{linear}.weight"] = state[keys["weight"]]
            out[f"{ours}linear{linear}.bias"] = state[keys["bias"]]
            linear += 1
    if linear == 0:
        fail(f"no linear layers under '{prefix}main.'")


def convert(state, m):
    out = {}
    if m["cond_dim"] > 0:
        mlp_names(state, "embedder.", "embedder.", out)
    for i in range(m["n_flows"]):
        b = f"sub_layers.{i}."
        for leaf in ("loc", "scale"):
            out[f"block{i}.norm.{leaf}"] = state[f"{b}norm_layer.{leaf}"].reshape(-1)
        if f"{b}norm_layer.initialized" in state:
            out[f"block{i}.norm.initialized"] = state[f"{b}norm_layer.initialized"].reshape(())
        for j in range(2):
            for st in ("s", "t"):
                mlp_names(state, f"{b}coupling.{st}.{j}.", f"block{i}.coupling.{st}{j}.", out)
        out[f"block{i}.shuffle.forward_index"] = state[f"{b}shuffle.forward_shuffle_idx"].long()
        out[f"block{i}.shuffle.backward_index"] = state[f"{b}shuffle.backward_shuffle_idx"].long()
        if m["conditioning"] != "none":
            w = state[f"conditioning_layers.{i}.weight"]
            out[f"cond_map{i}.weight"] = w.reshape(w.shape[0], w.shape[1])
            out[f"cond_map{i}.bias"] = state[f"conditioning_layers.{i}.bias"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("ckpt", help="the original's Lightning checkpoint (.ckpt) or a state_dict (.pt)")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--yaml", help="the original run's config (model.params.flow_config)")
    group.add_argument("--flow-params", help="flow_config.params as JSON, instead of --yaml")
    ap.add_argument("--prefix", default="flow.", help="the flow's prefix in the state_dict (default 'flow.')")
    ap.add_argument("--out", required=True, help="WEIGHTS.h5 for net2net-train --init-from")
    args = ap.parse_args()
    import h5py
    import torch

    try:
        ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    except TypeError:  # torch < 1.13 has no weights_only
        ckpt = torch.load(args.ckpt, map_location="cpu")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        fail(f"'{args.ckpt}' holds no state_dict")
    flow = {k[len(args.prefix):]: v for k, v in state.items() if k.startswith(args.prefix)}
    if not flow:
        flow = state  # a state_dict of the flow alone
    m = model_section(flow_params(args))
    try:
        weights = convert(flow, m)
    except KeyError as e:
        fail(f"'{args.ckpt}': the flow has no tensor {e} (do --yaml / --flow-params describe this checkpoint?)")
    import os
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["model"] = json.dumps(m)
        f.attrs["source"] = args.ckpt
        g = f.create_group("weights")
        for name, t in sorted(weights.items()):
            t = t.detach().cpu()
            g.create_dataset(name, data=t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy())
    os.replace(tmp, args.out)
    print(json.dumps({"out": args.out, "tensors": len(weights), "model": m}))


if __name__ == "__main__":
    main()
