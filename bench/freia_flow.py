#!/usr/bin/env python3
"""The cINN of a config as a Python user would build it with FrEIA (the INN library of the field),
for scripts/bench.sh's "FrEIA" rows. Run with the PyTorch 2.x environment that
scripts/setup_bench_refs.sh makes (torch 2.x, FrEIA 0.2, h5py).

  freia_flow.py time CONFIG THREADS RUNS STEPS
      median seconds of a training step (same batch size, AMSGrad Adam, betas), as JSON
  freia_flow.py data OUT_DIR
      writes OUT_DIR/train.h5 and OUT_DIR/val.h5: synthetic pairs of a fixed seed for the
      fit comparison (/cond one-hot 10, /target 64-d: a class-dependent, non-Gaussian cloud)
  freia_flow.py fit CONFIG THREADS TRAIN.h5 VAL.h5 STEPS
      trains STEPS steps with the config's batch size, learning rate, schedule, betas and
      AMSGrad on /cond -> /target, shuffled each epoch; prints the validation NLL (mean of
      0.5 |v|^2 - log|det J|, net2net's "loss") and the mean step time, as JSON

The flow, block by block as the reference's (tests/python/reference_flow.py): FrEIA's ActNorm
(data-initialised on the first batch, as ours), our invertible leaky ReLU written as a FrEIA
module (FrEIA has none; only where model.activation is lrelu), RNVPCouplingBlock (four subnets
s1, t1, s2, t2: the reference's two s and two t MLPs of the same widths and depth, LeakyReLU
0.01; clamp 1 with TANH is the reference's tanh on s; the condition is concatenated to each
subnet's input, as the reference's), PermuteRandom (a fixed permutation). The embedder is the
same MLP outside the INN. Deviations: FrEIA's ActNorm is y = x * exp(s) + b (log-scale
parameters: the same count, another parametrisation), conditioning "none" only. The trainable
parameter count is printed: it equals the reference's (bench.sh shows both; PermuteRandom keeps
its permutation in parameters that do not train, left out).
"""
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn

import FrEIA.framework as Ff
import FrEIA.modules as Fm


class InvLeakyReLU(Fm.InvertibleModule):
    """The reference's invertible leaky ReLU (slope alpha below 0), with its exact log-det."""

    def __init__(self, dims_in, dims_c=None, alpha=0.9):
        super().__init__(dims_in, dims_c)
        self.alpha = alpha

    def forward(self, x, c=[], rev=False, jac=True):
        x = x[0]
        scaling = torch.where(x >= 0, torch.ones_like(x), torch.full_like(x, self.alpha))
        logdet = torch.log(scaling).sum(dim=1)
        return ([x / scaling], -logdet) if rev else ([x * scaling], logdet)

    def output_dims(self, input_dims):
        return input_dims


def mlp(dim_in, dim_out, hidden, depth, norm="none"):
    layers = [nn.Linear(dim_in, hidden)]
    for i in range(depth + 1):
        if norm == "batchnorm":
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(nn.LeakyReLU())
        layers.append(nn.Linear(hidden, hidden if i < depth else dim_out))
    return nn.Sequential(*layers)


class FreiaCinn(nn.Module):
    def __init__(self, m):
        super().__init__()
        if m.get("conditioning", "none") != "none":
            raise SystemExit("freia_flow.py: only model.conditioning none is built")
        e, em = m["embedding_dim"], m.get("embedder", {"hidden_dim": 256, "depth": 2, "norm": "none"})
        self.embedder = mlp(m["cond_dim"], e, em["hidden_dim"], em["depth"], em.get("norm", "none"))
        self.inn = Ff.SequenceINN(m["in_dim"])
        for k in range(m["n_flows"]):
            self.inn.append(Fm.ActNorm)
            if m.get("activation", "lrelu") == "lrelu":
                self.inn.append(InvLeakyReLU, alpha=m.get("leaky_relu_alpha", 0.9))
            self.inn.append(Fm.RNVPCouplingBlock, cond=0, cond_shape=(e,), clamp=1.0, clamp_activation="TANH",
                            subnet_constructor=lambda i, o: mlp(i, o, m["hidden_dim"], m["hidden_depth"]))
            self.inn.append(Fm.PermuteRandom, seed=k)

    def nll(self, x, c):
        v, logdet = self.inn(x, c=[self.embedder(c)])
        return (0.5 * v.pow(2).sum(1) - logdet).mean()


def setup(cfg_path, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = json.load(open(cfg_path))
    model = FreiaCinn(cfg["model"]).train()
    t = cfg["train"]
    lr = t.get("lr") or t.get("base_lr", 4.5e-6) * t.get("batch_size", 16)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=t.get("betas", [0.5, 0.9]),
                           amsgrad=t.get("amsgrad", True))
    return cfg, model, opt, lr


def step(model, opt, x, c):
    opt.zero_grad()
    loss = model.nll(x, c)
    loss.backward()
    opt.step()
    return loss


def time_steps(cfg_path, threads, runs, steps):
    cfg, model, opt, _ = setup(cfg_path, threads)
    m, batch = cfg["model"], cfg["train"].get("batch_size", 16)
    x, c = torch.randn(batch, m["in_dim"]), torch.randn(batch, m["cond_dim"])
    step(model, opt, x, c), step(model, opt, x, c)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(steps):
            step(model, opt, x, c)
        times.append((time.perf_counter() - t0) / steps)
    print(json.dumps({"impl": "freia-0.2", "bench": "train", "seconds_per_step": statistics.median(times),
                      "threads": threads, "torch": torch.__version__,
                      "parameters": trainable(model)}))


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def write_data(out_dir):
    import h5py
    g = torch.Generator().manual_seed(1)
    mix = torch.randn(10, 64, 64, generator=g) / 8  # per class: a linear map of a warped Gaussian
    mean = torch.randn(10, 64, generator=g)
    for name, n in (("train", 20000), ("val", 2000)):
        y = torch.randint(0, 10, (n,), generator=g)
        z = torch.randn(n, 64, generator=g)
        z = z + 0.5 * torch.sin(2 * z.roll(1, 1))  # not Gaussian: something for the couplings to learn
        x = mean[y] + torch.einsum("nij,nj->ni", mix[y], z)
        with h5py.File(f"{out_dir}/{name}.h5", "w") as f:
            f["cond"] = torch.nn.functional.one_hot(y, 10).float().numpy()
            f["target"] = x.numpy()
            f["label"] = y.numpy()


def fit(cfg_path, threads, train_path, val_path, steps):
    import h5py
    cfg, model, opt, lr = setup(cfg_path, threads)
    with h5py.File(train_path) as f:
        c, x = torch.from_numpy(f["cond"][:]), torch.from_numpy(f["target"][:])
    with h5py.File(val_path) as f:
        vc, vx = torch.from_numpy(f["cond"][:]), torch.from_numpy(f["target"][:])
    batch, cosine = cfg["train"].get("batch_size", 16), cfg["train"].get("lr_schedule") == "cosine"
    g = torch.Generator().manual_seed(cfg["train"].get("seed", 23))
    order, pos, t0 = torch.randperm(len(x), generator=g), 0, time.perf_counter()
    for s in range(steps):
        if pos + batch > len(x):
            order, pos = torch.randperm(len(x), generator=g), 0
        idx = order[pos:pos + batch]
        pos += batch
        if cosine:
            for group in opt.param_groups:
                group["lr"] = lr * (1 + math.cos(math.pi * s / steps)) / 2
        step(model, opt, x[idx], c[idx])
    seconds = (time.perf_counter() - t0) / steps
    model.eval()
    with torch.no_grad():
        val = sum(model.nll(vx[i:i + 1000], vc[i:i + 1000]).item() * len(vx[i:i + 1000])
                  for i in range(0, len(vx), 1000)) / len(vx)
    print(json.dumps({"impl": "freia-0.2", "bench": "fit", "val_nll": val, "steps": steps,
                      "seconds_per_step": seconds, "parameters": trainable(model)}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "time":
        time_steps(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "data":
        write_data(args[0])
    elif cmd == "fit":
        fit(args[0], int(args[1]), args[2], args[3], int(args[4]))
    else:
        raise SystemExit(__doc__)
