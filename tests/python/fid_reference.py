#!/usr/bin/python3
"""FID by the scipy.linalg.sqrtm route (as pytorch-fid computes it), for comparison with
net2net-eval fid. Usage: fid_reference.py FILE.h5 REAL FAKE -> prints the FID (and, with
--time, the seconds the statistics and sqrtm took, as JSON). With --packages (run by the python
of scripts/setup_fid_refs.sh): the FID of the packages people cite, as JSON
{"pytorch_fid": ..., "clean_fid": ...}: each package's own Frechet distance function on
statistics computed as each computes them (mean over rows, np.cov(rowvar=False))."""
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


def packages(a, b):
    from cleanfid.fid import frechet_distance
    from pytorch_fid.fid_score import calculate_frechet_distance
    # pytorch_fid.fid_score.calculate_activation_statistics: np.mean(act, axis=0), np.cov(act, rowvar=False)
    mu1, mu2 = np.mean(a, axis=0), np.mean(b, axis=0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # cleanfid.fid.fid_from_feats: np.mean(feats, axis=0), np.cov(feats, rowvar=False)
    return {"pytorch_fid": float(calculate_frechet_distance(mu1, s1, mu2, s2)),
            "clean_fid": float(frechet_distance(mu1, s1, mu2, s2))}


if __name__ == "__main__":
    with h5py.File(sys.argv[1], "r") as f:
        a = f[sys.argv[2]][()].astype(np.float64)
        b = f[sys.argv[3]][()].astype(np.float64)
    if "--packages" in sys.argv:
        print(json.dumps(packages(a, b)))
        sys.exit(0)
    t0 = time.perf_counter()
    value = fid(a, b)
    seconds = time.perf_counter() - t0
    if "--time" in sys.argv:
        print(json.dumps({"impl": "scipy-sqrtm", "fid": float(value), "seconds": seconds}))
    else:
        print(repr(float(value)))
