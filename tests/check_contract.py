"""Check every job file of a results folder against the public HDF5 contract with h5py.

Used by the Rust integration tests (the files are read back with the tool users use).
Usage: python tests/check_contract.py DIR [--expect-status done]
Exits non-zero with a message naming the file and the missing/misshapen item.
"""
import argparse
import glob
import os
import sys

import h5py
import numpy as np

ROOT_ATTRS = ["job_id", "problem", "eps", "width", "depth", "seed", "balancer", "normalization",
              "status", "message", "config", "wall_seconds", "device", "rank", "host", "version",
              "activation", "adaptive_activation", "activation_scale", "fourier_features",
              "fourier_sigma", "ntk_method", "ntk_probes"]


def fail(path, msg):
    sys.exit(f"{path}: {msg}")


def check(path, expect_status):
    with h5py.File(path, "r") as h:
        for a in ROOT_ATTRS:
            if a not in h.attrs:
                fail(path, f"missing root attribute {a}")
        status = h.attrs["status"]
        status = status.decode() if isinstance(status, bytes) else status
        if h.attrs["job_id"] + ".h5" != os.path.basename(path):
            fail(path, "job_id does not match the file name")
        if expect_status and status != expect_status:
            fail(path, f"status {status}, expected {expect_status}: {h.attrs['message']}")
        if status == "failed":
            return status
        d = h["eval/x"].shape[1] if "eval" in h else None
        steps = h["ntk/step"][()]
        S = len(steps)
        if h["ntk/step"].dtype != np.int64 or S < 1:
            fail(path, "ntk/step must be int64 [S]")
        terms = [k for k in h["ntk"] if k not in ("step", "full")]
        hutchinson = text(h.attrs["ntk_method"]) == "hutchinson"
        for t in terms:
            g = h["ntk"][t]
            n = g["x"].shape[0]
            if g["trace"].shape != (S,):
                fail(path, f"ntk/{t}/trace must be [S]")
            if hutchinson:
                # Trace estimates with standard errors only (no kernel, so no norms or spectra).
                if g["trace_stderr"].shape != (S,) or np.any(g["trace_stderr"][()] < 0):
                    fail(path, f"ntk/{t}/trace_stderr must be [S] and >= 0")
                if "frobenius" in g or "eigenvalues" in g:
                    fail(path, f"ntk/{t}: hutchinson snapshots have no frobenius/eigenvalues")
                continue
            if g["frobenius"].shape != (S,) or "trace_stderr" in g:
                fail(path, f"ntk/{t}/frobenius must be [S] (and no trace_stderr for exact)")
            ev = g["eigenvalues"][()]
            if ev.shape != (S, n):
                fail(path, f"ntk/{t}/eigenvalues shape {ev.shape}, expected {(S, n)}")
            if np.any(np.diff(ev, axis=1) > 1e-9 * np.abs(ev).max()):
                fail(path, f"ntk/{t}/eigenvalues not descending")
            if not np.allclose(ev.sum(axis=1), g["trace"][()], rtol=1e-8):
                fail(path, f"ntk/{t}: trace != sum of eigenvalues")
        if hutchinson == ("full" in h["ntk"]):
            fail(path, "ntk/full must exist exactly for the exact method")
        if not hutchinson and h["ntk/full/frobenius"].shape != (S,):
            fail(path, "ntk/full/frobenius must be [S]")
        L = h["train/step"].shape[0]
        for k in ["rel_l2", "lr"]:
            if h["train"][k].shape != (L,):
                fail(path, f"train/{k} must be [L]")
        for t in terms:
            for grp in ["loss", "weight"]:
                if h["train"][grp][t].shape != (L,):
                    fail(path, f"train/{grp}/{t} must be [L]")
        if status == "done":
            M = h["eval/x"].shape[0]
            for k in ["u_pred", "u_exact", "error"]:
                if h["eval"][k].shape != (M,):
                    fail(path, f"eval/{k} must be [M]")
            if not np.allclose(h["eval/error"][()], h["eval/u_pred"][()] - h["eval/u_exact"][()]):
                fail(path, "eval/error != u_pred - u_exact")
            for a in ["rel_l2", "max_abs_error", "boundary_error"]:
                if a not in h["eval"].attrs:
                    fail(path, f"eval attribute {a} missing")
            if d == 1 and "error_spectrum" not in h["eval"]:
                fail(path, "1-D problems need eval/error_spectrum")
        width, depth = int(h.attrs["width"]), int(h.attrs["depth"])
        adaptive = text(h.attrs["adaptive_activation"]) != "none"
        m = int(h.attrs["fourier_features"])
        inputs = 2 * m if m else d
        for phase in ["init", "final"]:
            layers = sorted(h["params"][phase], key=int)
            if len(layers) != depth + 1:
                fail(path, f"params/{phase}: {len(layers)} layers, expected {depth + 1}")
            w0 = h["params"][phase]["0"]["weight"]
            if w0.shape[0] != width or (d is not None and w0.shape[1] != inputs):
                fail(path, f"params/{phase}/0/weight shape {w0.shape}: [out, in] with out = width, in = {inputs}")
            if h["params"][phase][layers[-1]]["weight"].shape[0] != 1:
                fail(path, "last layer must have one output")
            for layer in layers:
                has = "slope" in h["params"][phase][layer]
                hidden = int(layer) < depth
                if has != (adaptive and hidden) or (has and h["params"][phase][layer]["slope"].shape != ()):
                    fail(path, f"params/{phase}/{layer}/slope: a scalar on hidden layers exactly with adaptive activations")
        if m and (d is not None and h["params/fourier/B"].shape != (m, d)):
            fail(path, f"params/fourier/B must be [m, d] = {(m, d)}")
        if not m and "fourier" in h["params"]:
            fail(path, "params/fourier without Fourier features")
    return status


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--expect-status")
    a = p.parse_args()
    files = sorted(f for f in glob.glob(os.path.join(a.dir, "jobs", "*.h5")))
    if not files:
        sys.exit(f"{a.dir}: no job files")
    counts = {}
    for f in files:
        s = check(f, a.expect_status)
        counts[s] = counts.get(s, 0) + 1
    print(f"contract OK: {len(files)} files {counts}")


if __name__ == "__main__":
    main()
