"""Compare two results folders dataset by dataset (used by the MPI rank-count tests, the
batching tests, and the expression-problem tests).

Usage: python tests/compare_results.py DIR_A DIR_B [--rtol 0] [--by-attributes] [--attrs]
Jobs are paired by file name (job id); with --by-attributes by their attributes (seed, eps,
width, depth, normalization, balancer) instead, for the same equations written two ways (a
built-in problem and its `kind: expression` twin have different job ids).
Prints the largest difference (max |a - b| / max |a| per dataset); exits non-zero if the job
sets differ or any dataset differs by more than rtol (0 = bit-identical). With --attrs every
attribute of the root and of every group is compared too, except the provenance of a run
(PROVENANCE: wall time, host, pid, rank).
"""
import argparse
import glob
import os
import sys

import h5py
import numpy as np

KEY = ("seed", "eps", "width", "depth", "normalization", "balancer")

PROVENANCE = {"wall_seconds", "host", "pid", "rank"}


def load(d, by_attributes, attrs=False):
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "jobs", "*.h5"))):
        vals = {}
        with h5py.File(f, "r") as h:
            h.visititems(lambda n, o: vals.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
            vals["@status"] = h.attrs["status"]
            if attrs:
                for a, v in h.attrs.items():
                    if a not in PROVENANCE:
                        vals["@" + a] = np.asarray(v) if not isinstance(v, (str, bytes)) else v
                h.visititems(lambda n, o: [vals.__setitem__(f"{n}@{a}", np.asarray(v) if not isinstance(v, (str, bytes)) else v) for a, v in o.attrs.items()])
            key = tuple(str(h.attrs[k]) for k in KEY) if by_attributes else os.path.basename(f)
        if key in out:
            sys.exit(f"{d}: two jobs with attributes {key}")
        out[key] = vals
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=0.0)
    p.add_argument("--by-attributes", action="store_true")
    p.add_argument("--attrs", action="store_true", help="also compare every attribute except provenance")
    args = p.parse_args()
    a, b = load(args.a, args.by_attributes, args.attrs), load(args.b, args.by_attributes, args.attrs)
    if not a or a.keys() != b.keys():
        sys.exit(f"different job sets: {sorted(a.keys() ^ b.keys())} ({len(a)} and {len(b)} jobs)")
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
            if not np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"):
                # Relative to the dataset's scale: the trailing eigenvalues of a rank-deficient
                # kernel sit at the solver's round-off floor (~1e-16 of the largest, either
                # sign), where an elementwise relative difference means nothing.
                scale = max(np.max(np.abs(va)), 1e-300)
                rel = np.max(np.abs(va - vb)) / scale
                if not rel <= worst:
                    worst, where = rel, f" ({job}/{name})"
    print(f"{len(a)} jobs compared; largest relative difference {worst:.3e}{where}")
    if not worst <= args.rtol:
        sys.exit(f"difference {worst} exceeds rtol {args.rtol}")


if __name__ == "__main__":
    main()
