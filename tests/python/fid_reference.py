#!/usr/bin/python3
"""FID by the scipy.linalg.sqrtm route (as pytorch-fid computes it), for comparison with
net2net-eval fid. Usage: fid_reference.py FILE.h5 REAL FAKE -> prints the FID (and, with
--time, the seconds the statistics and sqrtm took, as JSON). With --packages (run by the python
of scripts/setup_fid_refs.sh): the FID of the packages people cite, as JSON
{"pytorch_fid": ..., "clean_fid": ...}: each package's own Frechet distance function on
statistics computed as each computes them (mean over rows, np.cov(rowvar=False)). With
--time-packages (same python): each package's whole route from the features (float32, as their
feature networks return them) timed, one JSON line each: pytorch-fid's statistics (as its
calculate_activation_statistics) + calculate_frechet_distance; clean-fid's fid_from_feats."""
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


def time_packages(a, b):
    from cleanfid.fid import fid_from_feats
    from pytorch_fid.fid_score import calculate_frechet_distance

    def pytorch_fid_route():
        stats = [(np.mean(act, axis=0), np.cov(act, rowvar=False)) for act in (a, b)]
        return calculate_frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])

    for impl, route in (("pytorch-fid-0.3.0", pytorch_fid_route), ("clean-fid-0.1.35", lambda: fid_from_feats(a, b))):
        t0 = time.perf_counter()
        value = route()
        print(json.dumps({"impl": impl, "fid": float(value), "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    if "--time-packages" in sys.argv:
        with h5py.File(sys.argv[1], "r") as f:
            time_packages(f[sys.argv[2]][()].astype(np.float32), f[sys.argv[3]][()].astype(np.float32))
        sys.exit(0)
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
