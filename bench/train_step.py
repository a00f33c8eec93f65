#!/usr/bin/python3
"""Python PyTorch reference for `net2net-bench train` (and, with --sample B, `sample`): the same model (the reference
architecture, tests/python/reference_flow.py), the same optimizer (Adam, AMSGrad, betas of the
config) and batch, on the same number of threads. Prints median seconds per step as JSON.
Options after the positional ones: --device cuda (steps timed to the GPU's completion) and
--precision fp32|tf32|bf16 (as train.precision: TF32 matmuls, or bfloat16 autocast of the forward);
--compile 1 wraps the model in torch.compile (default mode, torch 2.x): the first calls, which
compile, are timed apart (compile_s) and left out of the step time. "impl" names the torch and
mode (torch-1.13.1, torch-2.11.0-compile)."""
import json
import statistics
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/tests/python")
from reference_flow import ConditionalFlatCouplingFlow  # noqa: E402


def main():
    cfg_path, threads, runs, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    opts = dict(zip(sys.argv[5::2], sys.argv[6::2]))
    sample_batch = int(opts.get("--sample", 0))
    device = torch.device(opts.get("--device", "cpu"))
    precision = opts.get("--precision", "fp32")
    compiled = opts.get("--compile", "0") == "1"
    impl = "torch-" + torch.__version__.split("+")[0] + ("-compile" if compiled else "")
    torch.set_num_threads(threads)
    if precision == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cfg = json.load(open(cfg_path))
    m = dict(cfg["model"])
    m.setdefault("conditioning", "none")
    m.setdefault("activation", "lrelu")
    m.setdefault("embedder", {"hidden_dim": 256, "depth": 2, "norm": "none"})
    batch = cfg["train"].get("batch_size", 16)
    torch.manual_seed(0)
    model = ConditionalFlatCouplingFlow(m).train().to(device)
    run = torch.compile(model) if compiled else model
    betas = cfg["train"].get("betas", [0.5, 0.9])
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, betas=betas, amsgrad=cfg["train"].get("amsgrad", True))
    x = torch.randn(batch, m["in_dim"]).to(device)
    c = torch.randn(batch, m["cond_dim"]).to(device)

    def step():
        opt.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            v, logdet = run(x, c)
        v, logdet = v.float(), logdet.float()
        loss = (0.5 * v.pow(2).sum(1) - logdet).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
        opt.step()
        sync()

    if sample_batch:
        model.eval()
        cs = torch.randn(sample_batch, m["cond_dim"])

        def sample():
            with torch.no_grad():
                run(torch.randn(sample_batch, m["in_dim"]), cs, reverse=True)

        t0 = time.perf_counter()
        sample()
        first_s = time.perf_counter() - t0
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            for _ in range(steps):
                sample()
            times.append((time.perf_counter() - t0) / steps)
        print(json.dumps({"impl": impl, "bench": "sample", "seconds_per_batch": statistics.median(times),
                          "threads": threads, "batch": sample_batch, "torch": torch.__version__,
                          "compile_s": first_s - statistics.median(times) if compiled else 0}))
        return
    # Warm-up (allocations, Adam state; on a GPU its kernels' first launches; with --compile the
    # compilation, timed here and reported as compile_s beyond two ordinary steps).
    t0 = time.perf_counter()
    step(), step()
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps)
    print(json.dumps({"impl": impl, "seconds_per_step": statistics.median(times), "threads": threads,
                      "compile_s": first_s - 2 * statistics.median(times) if compiled else 0,
                      "device": str(device), "precision": precision, "torch": torch.__version__,
                      "parameters": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
