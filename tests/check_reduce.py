"""Recompute summary.h5 independently with numpy/scipy from the job files and compare.

Groups the done job files by their settings - the `config` attribute loaded with PyYAML and
flattened into dotted paths, the `sweep` attribute and the root attributes problem, width,
balancer, normalization - without the seed (trial groups, plus eps) or without seed and eps
(scaling series). Then checks that every trials/<key> group holds exactly one such group's
jobs, with its seed-mean error field, pointwise variance (ddof 1), their root-mean-square
norms, the max |mean error| on the boundary, the mean relative L2 error and its 95% Student t
interval; and that every scaling/<key> group, found by its attributes, has the OLS slope of
log frobenius vs log eps over all trials with its t interval and r^2. Usage:
python tests/check_reduce.py DIR
"""
import glob
import math
import os
import sys
from collections import defaultdict

import h5py
import numpy as np
import yaml
from scipy import stats


def s(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def flatten(value, path=""):
    """Leaves of a loaded YAML tree by dotted path; empty lists and maps are leaves."""
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{path}.{k}" if path else str(k)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{path}.{i}" if path else str(i)))
        return out
    return {path: "{}" if value == {} else "[]" if value == [] else value}


def read(f):
    h = h5py.File(f, "r")
    settings = flatten(yaml.safe_load(s(h.attrs["config"]))) if "config" in h.attrs else {}
    if "sweep" in h.attrs:
        settings["sweep"] = s(h.attrs["sweep"])
    for name in ("problem", "balancer", "normalization"):
        settings[name] = s(h.attrs[name])
    settings["width"] = int(h.attrs["width"])
    eps = float(h.attrs["eps"])
    series = frozenset((k, repr(v)) for k, v in settings.items() if k not in ("seed", "problem.eps"))
    job = {
        "id": s(h.attrs["job_id"]), "settings": settings, "series": series,
        "eps": None if math.isnan(eps) else eps,
        "x": h["eval/x"][()], "error": h["eval/error"][()], "rel_l2": float(h["eval"].attrs["rel_l2"]),
        "steps": list(h["ntk/step"][()]),
        "frob": {t: h["ntk"][t]["frobenius"][()] for t in h["ntk"] if t != "step"},
    }
    h.close()
    return job


def main(d):
    jobs = []
    for f in sorted(glob.glob(os.path.join(d, "jobs", "*.h5"))):
        with h5py.File(f, "r") as h:
            if s(h.attrs["status"]) != "done":
                continue
        jobs.append(read(f))
    trials = defaultdict(list)
    series = defaultdict(list)
    for j in jobs:
        trials[(j["series"], j["eps"])].append(j)
        series[j["series"]].append(j)
    by_id = {j["id"]: (j["series"], j["eps"]) for j in jobs}
    checked = 0
    with h5py.File(os.path.join(d, "summary.h5"), "r") as h:
        assert len(h["trials"]) == len(trials), (len(h["trials"]), len(trials))
        for name, g in h["trials"].items():
            ids = [s(i) for i in g["job_ids"][()]]
            js = trials[by_id[ids[0]]]
            assert sorted(ids) == sorted(j["id"] for j in js), f"{name}: grouped differently"
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
            # The series whose settings agree with every setting the group names.
            named = {k: v for k, v in g.attrs.items() if "." in k or k in ("sweep", "problem", "width", "balancer", "normalization")}
            match = [key for key in series if agrees(dict(key), named)]
            assert len(match) == 1, f"{name}: {len(match)} series agree with its attributes"
            lx, ly = [], []
            for j in series[match[0]]:
                if step in j["steps"] and j["eps"] is not None:
                    lx.append(np.log(j["eps"]))
                    ly.append(np.log(j["frob"][term][j["steps"].index(step)]))
            lx, ly = np.array(lx), np.array(ly)
            assert int(g.attrs["n_trials"]) == len(lx), name
            if len(lx) < 3 or np.unique(lx).size < 2:
                assert math.isnan(float(g.attrs["exponent"])), name
                checked += 1
                continue
            res = stats.linregress(lx, ly)
            half = stats.t.ppf(0.975, len(lx) - 2) * res.stderr
            np.testing.assert_allclose(float(g.attrs["exponent"]), res.slope, rtol=1e-9, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(float(g.attrs["exponent_ci_low"]), res.slope - half, rtol=1e-9, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(float(g.attrs["exponent_ci_high"]), res.slope + half, rtol=1e-9, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(float(g.attrs["r_squared"]), res.rvalue ** 2, rtol=1e-9, atol=1e-12, err_msg=name)
            checked += 1
    print(f"reduce OK: {checked} groups match numpy/scipy")


def agrees(series_key, named):
    """Whether a series (frozenset of (path, repr(value))) has every named setting."""
    for k, v in named.items():
        v = v.item() if hasattr(v, "item") else s(v) if isinstance(v, (bytes, str)) else v
        if series_key.get(k) != repr(v):
            return False
    return True


if __name__ == "__main__":
    main(sys.argv[1])
