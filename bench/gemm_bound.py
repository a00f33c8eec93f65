#!/usr/bin/env python3
"""What bounds the sampling row's share of sgemm (issue 19): the matrix products of a trained
cINN's own weight shapes at batch 256, alone (no biases, no element-wise work), in the same
BLAS and threads as Debian's LibTorch 1.13, against a 2048^3 sgemm. Usage:
  /usr/bin/python3 bench/gemm_bound.py RUN/checkpoints/best.pt [more checkpoints]
A net2net checkpoint loads with torch.jit.load. The second measurement stacks the weights of one
shape into one bmm per shape (no Python cost per product; each product still the small one).
"""
import sys, time, torch
torch.set_num_threads(2)
def weights(path):
    m = torch.jit.load(path, map_location="cpu")
    ws = []
    for name, t in m.named_parameters():
        if t.dim() == 2: ws.append(t.detach().float().contiguous())
    return ws
def rate(fn, flops, reps):
    fn()
    best = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps): fn()
        best.append((time.perf_counter() - t0) / reps)
    best.sort()
    return flops / best[len(best)//2] / 1e9
n = 2048
a, b = torch.randn(n, n), torch.randn(n, n)
big = rate(lambda: torch.mm(a, b), 2 * n**3, 3)
print(f"sgemm {n}^3: {big:.1f} GFLOP/s")
for path in sys.argv[1:]:
    ws = weights(path)
    xs = [torch.randn(256, w.shape[1]) for w in ws]
    flops = sum(2 * 256 * w.shape[0] * w.shape[1] for w in ws)
    def chain():
        for x, w in zip(xs, ws): torch.mm(x, w.t())
    r = rate(chain, flops, 3 if flops > 1e10 else 50)
    print(f"{path}: {len(ws)} weight matrices, {sum(w.numel() for w in ws)} weights; matmuls alone at batch 256: {r:.1f} GFLOP/s = {r/big:.2f} of sgemm")
# Without Python's per-call cost: weights of one shape stacked, one bmm per shape (each matrix
# product still the small one of that shape).
for path in sys.argv[1:2]:
    ws = weights(path)
    groups = {}
    for w in ws: groups.setdefault(tuple(w.shape), []).append(w)
    stacks = [(torch.randn(len(g), 256, s[1]), torch.stack([w.t().contiguous() for w in g])) for s, g in groups.items()]
    flops = sum(2 * 256 * w.shape[0] * w.shape[1] for w in ws)
    def batched():
        for x, w in stacks: torch.bmm(x, w)
    r = rate(batched, flops, 50)
    print(f"{path}: {len(groups)} shapes {sorted(groups)}; one bmm per shape: {r:.1f} GFLOP/s = {r/big:.2f} of sgemm")
