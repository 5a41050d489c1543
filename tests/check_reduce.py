"""Recompute summary.h5 independently with numpy/scipy from the job files and compare.

Groups the done job files by their attributes, then for every trials/<key> group checks the
seed-mean error field, pointwise variance (ddof 1), their root-mean-square norms, the max
|mean error| on the boundary, the mean relative L2 error and its 95% Student t interval; and
for every scaling/<key> group the OLS slope of log frobenius vs log eps over all trials with
its t interval and r^2. Usage: python tests/check_reduce.py DIR
"""
import glob
import os
import sys
from collections import defaultdict

import h5py
import numpy as np
from scipy import stats


def s(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def main(d):
    jobs = []
    for f in sorted(glob.glob(os.path.join(d, "jobs", "*.h5"))):
        with h5py.File(f, "r") as h:
            if s(h.attrs["status"]) != "done":
                continue
            jobs.append({
                "key": (s(h.attrs["problem"]), float(h.attrs["eps"]), int(h.attrs["width"]), s(h.attrs["balancer"]), s(h.attrs["normalization"])),
                "x": h["eval/x"][()], "error": h["eval/error"][()], "rel_l2": float(h["eval"].attrs["rel_l2"]),
                "steps": h["ntk/step"][()],
                "frob": {t: h["ntk"][t]["frobenius"][()] for t in h["ntk"] if t != "step"},
            })
    groups = defaultdict(list)
    for j in jobs:
        groups[j["key"]].append(j)
    checked = 0
    with h5py.File(os.path.join(d, "summary.h5"), "r") as h:
        for name, g in h["trials"].items():
            key = (s(g.attrs["problem"]), float(g.attrs["eps"]), int(g.attrs["width"]), s(g.attrs["balancer"]), s(g.attrs["normalization"]))
            js = groups[key]
            e = np.stack([j["error"] for j in js])
            n = len(js)
            mean = e.mean(axis=0)
            var = e.var(axis=0, ddof=1) if n > 1 else np.zeros_like(mean)
            x = js[0]["x"]
            on_b = np.any((x == x.min(axis=0)) | (x == x.max(axis=0)), axis=1)
            rel = np.array([j["rel_l2"] for j in js])
            half = stats.t.ppf(0.975, n - 1) * rel.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
            expect = {
                "n_trials": n, "l2_mean_error": np.sqrt(np.mean(mean ** 2)), "l2_variance": np.sqrt(np.mean(var ** 2)),
                "max_boundary_error": np.abs(mean[on_b]).max(), "rel_l2_mean": rel.mean(),
                "rel_l2_ci_low": rel.mean() - half, "rel_l2_ci_high": rel.mean() + half,
            }
            np.testing.assert_allclose(g["mean_error"][()], mean, rtol=1e-12, atol=1e-14, err_msg=name)
            np.testing.assert_allclose(g["error_variance"][()], var, rtol=1e-10, atol=1e-14, err_msg=name)
            for k, v in expect.items():
                np.testing.assert_allclose(float(g.attrs[k]), v, rtol=1e-10, err_msg=f"{name}.{k}")
            checked += 1
        for name, g in h["scaling"].items():
            term, step = s(g.attrs["term"]), int(g.attrs["step"])
            sel = [j for j in jobs if (j["key"][0], j["key"][2], j["key"][3], j["key"][4]) ==
                   (s(g.attrs["problem"]), int(g.attrs["width"]), s(g.attrs["balancer"]), s(g.attrs["normalization"]))]
            lx, ly = [], []
            for j in sel:
                i = list(j["steps"]).index(step)
                lx.append(np.log(j["key"][1]))
                ly.append(np.log(j["frob"][term][i]))
            lx, ly = np.array(lx), np.array(ly)
            res = stats.linregress(lx, ly)
            half = stats.t.ppf(0.975, len(lx) - 2) * res.stderr
            np.testing.assert_allclose(float(g.attrs["exponent"]), res.slope, rtol=1e-9, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(float(g.attrs["exponent_ci_low"]), res.slope - half, rtol=1e-9, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(float(g.attrs["exponent_ci_high"]), res.slope + half, rtol=1e-9, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(float(g.attrs["r_squared"]), res.rvalue ** 2, rtol=1e-9, atol=1e-12, err_msg=name)
            checked += 1
    print(f"reduce OK: {checked} groups match numpy/scipy")


if __name__ == "__main__":
    main(sys.argv[1])
