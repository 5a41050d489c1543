"""Compare the job files of two results folders whose job ids differ (the same equations
written two ways, e.g. a built-in problem and its `kind: expression` twin), pairing jobs by
their attributes (seed, eps, width, depth, normalization, balancer).

Usage: python tests/compare_matched.py DIR_A DIR_B --rtol 1e-10
Prints the largest difference (max |a - b| / max |a| per dataset); exits non-zero if the job
sets or dataset names differ or any dataset differs by more than rtol.
"""
import argparse
import glob
import os
import sys

import h5py
import numpy as np

KEY = ("seed", "eps", "width", "depth", "normalization", "balancer")


def load(d):
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "jobs", "*.h5"))):
        with h5py.File(f, "r") as h:
            key = tuple(str(h.attrs[k]) for k in KEY)
            vals = {}
            h.visititems(lambda n, o: vals.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
            vals["@status"] = h.attrs["status"]
        if key in out:
            sys.exit(f"{d}: two jobs with attributes {key}")
        out[key] = vals
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, required=True)
    args = p.parse_args()
    a, b = load(args.a), load(args.b)
    if not a or a.keys() != b.keys():
        sys.exit(f"different job sets: {sorted(a.keys() ^ b.keys())} (of {len(a)} and {len(b)})")
    worst, where = 0.0, ""
    for job in a:
        if a[job].keys() != b[job].keys():
            sys.exit(f"{job}: different datasets {sorted(a[job].keys() ^ b[job].keys())}")
        for name, va in a[job].items():
            vb = b[job][name]
            if isinstance(va, (str, bytes)):
                if va != vb:
                    sys.exit(f"{job}/{name}: {va!r} != {vb!r}")
                continue
            if va.shape != vb.shape:
                sys.exit(f"{job}/{name}: shapes {va.shape} vs {vb.shape}")
            scale = max(np.max(np.abs(va)), 1e-300)
            rel = np.max(np.abs(va - vb)) / scale
            if rel > worst:
                worst, where = rel, f"{job}/{name}"
    print(f"{len(a)} jobs compared; largest relative difference {worst:.3e} ({where})")
    if not worst <= args.rtol:
        sys.exit(f"difference {worst} exceeds rtol {args.rtol}")


if __name__ == "__main__":
    main()
