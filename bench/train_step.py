#!/usr/bin/python3
"""Python PyTorch reference for `net2net-bench train` (and, with --sample B, `sample`): the same model (the reference
architecture, tests/python/reference_flow.py), the same optimizer (Adam, AMSGrad, betas of the
config) and batch, on the same number of threads. Prints median seconds per step as JSON."""
import json
import statistics
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/tests/python")
from reference_flow import ConditionalFlatCouplingFlow  # noqa: E402


def main():
    cfg_path, threads, runs, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    sample_batch = int(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[5] == "--sample" else 0
    torch.set_num_threads(threads)
    cfg = json.load(open(cfg_path))
    m = dict(cfg["model"])
    m.setdefault("conditioning", "none")
    m.setdefault("activation", "lrelu")
    m.setdefault("embedder", {"hidden_dim": 256, "depth": 2, "norm": "none"})
    batch = cfg["train"].get("batch_size", 16)
    torch.manual_seed(0)
    model = ConditionalFlatCouplingFlow(m).train()
    betas = cfg["train"].get("betas", [0.5, 0.9])
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, betas=betas, amsgrad=cfg["train"].get("amsgrad", True))
    x = torch.randn(batch, m["in_dim"])
    c = torch.randn(batch, m["cond_dim"])

    def step():
        opt.zero_grad()
        v, logdet = model(x, c)
        loss = (0.5 * v.pow(2).sum(1) - logdet).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
        opt.step()

    if sample_batch:
        model.eval()
        cs = torch.randn(sample_batch, m["cond_dim"])

        def sample():
            with torch.no_grad():
                model(torch.randn(sample_batch, m["in_dim"]), cs, reverse=True)

        sample()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            for _ in range(steps):
                sample()
            times.append((time.perf_counter() - t0) / steps)
        print(json.dumps({"impl": "python", "bench": "sample", "seconds_per_batch": statistics.median(times),
                          "threads": threads, "batch": sample_batch}))
        return
    step()  # warm-up (allocations, Adam state)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps)
    print(json.dumps({"impl": "python", "seconds_per_step": statistics.median(times), "threads": threads,
                      "parameters": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
