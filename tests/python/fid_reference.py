#!/usr/bin/python3
"""FID by the scipy.linalg.sqrtm route (as pytorch-fid computes it), for comparison with
net2net-eval fid. Usage: fid_reference.py FILE.h5 REAL FAKE -> prints the FID (and, with
--time, the seconds the statistics and sqrtm took, as JSON)."""
import json
import sys
import time

import h5py
import numpy as np
from scipy import linalg


def fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


if __name__ == "__main__":
    with h5py.File(sys.argv[1], "r") as f:
        a = f[sys.argv[2]][()].astype(np.float64)
        b = f[sys.argv[3]][()].astype(np.float64)
    t0 = time.perf_counter()
    value = fid(a, b)
    seconds = time.perf_counter() - t0
    if "--time" in sys.argv:
        print(json.dumps({"impl": "scipy-sqrtm", "fid": float(value), "seconds": seconds}))
    else:
        print(repr(float(value)))
