"""Check what the network schemes and the Hutchinson NTK leave in the job files, with h5py.

Usage: python tests/check_schemes.py DIR [--ntk-balancer]
For every done job:
- the scheme attributes agree with the job's axis values (`axes` attribute);
- with adaptive activations, every hidden layer's initial slope is 1 / activation_scale
  (n a = 1) and training moved the slopes;
- with Fourier features, B depends only on the job seed and sigma (jobs with equal seed and
  sigma have equal B, different seeds different B);
- with `ntk_method = hutchinson`, the standard errors are positive and finite, and with
  --ntk-balancer (an ntk balancer updating at every NTK snapshot) the weight of term T at each
  snapshot step is sum_j trace_j / trace_T of that snapshot.
Prints a summary; exits non-zero naming the file and the failed check.
"""
import argparse
import glob
import os
import re
import sys

import h5py
import numpy as np


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def fail(path, msg):
    sys.exit(f"{os.path.basename(path)}: {msg}")


def check(path, ntk_balancer, fourier_by_seed):
    with h5py.File(path, "r") as h:
        a = h.attrs
        if text(a["status"]) != "done":
            fail(path, f"status {text(a['status'])}: {text(a['message'])}")
        # "key=value key=value ...", where a value may hold spaces ("kind: layerwise scale: 5").
        axes = dict(kv.split("=", 1) for kv in re.split(r" (?=[\w.]+=)", text(a["axes"])) if "=" in kv)
        for key in ["activation", "adaptive_activation"]:
            value = axes.get(key, text(a[key]))
            name = value.split()[1] if value.startswith("kind:") else value
            if name != text(a[key]):
                fail(path, f"attribute {key} = {text(a[key])}, axis value {value}")
        if "fourier" in axes and (axes["fourier"] == "null") != (int(a["fourier_features"]) == 0):
            fail(path, f"fourier_features = {int(a['fourier_features'])}, axis value {axes['fourier']}")
        depth = int(a["depth"])
        if text(a["adaptive_activation"]) != "none":
            n = float(a["activation_scale"])
            init = [h[f"params/init/{l}/slope"][()] for l in range(depth)]
            final = [h[f"params/final/{l}/slope"][()] for l in range(depth)]
            if not np.allclose(init, 1.0 / n, rtol=1e-15, atol=0):
                fail(path, f"initial slopes {init}, expected 1/n = {1.0 / n}")
            if np.allclose(init, final, rtol=1e-9, atol=0):
                fail(path, "training did not move the slopes")
            if text(a["adaptive_activation"]) == "global" and not np.all(np.array(final) == final[0]):
                fail(path, f"a global slope differs between layers: {final}")
        m = int(a["fourier_features"])
        if m:
            b = h["params/fourier/B"][()]
            key = (int(a["seed"]), float(a["fourier_sigma"]))
            fourier_by_seed.setdefault(key, []).append((path, b))
        if text(a["ntk_method"]) == "hutchinson":
            terms = [t for t in h["ntk"] if t != "step"]
            for t in terms:
                se = h[f"ntk/{t}/trace_stderr"][()]
                if not np.all(np.isfinite(se) & (se > 0)):
                    fail(path, f"ntk/{t}/trace_stderr not positive: {se}")
            if ntk_balancer:
                steps = list(h["train/step"][()])
                traces = {t: h[f"ntk/{t}/trace"][()] for t in terms}
                total = sum(traces.values())
                for s, step in enumerate(h["ntk/step"][()]):
                    if step not in steps:
                        continue
                    i = steps.index(step)
                    for t in terms:
                        want = total[s] / traces[t][s]
                        got = h[f"train/weight/{t}"][i]
                        if not np.isclose(got, want, rtol=1e-10, atol=0):
                            fail(path, f"weight of {t} at step {step}: {got}, trace ratio {want}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--ntk-balancer", action="store_true")
    args = p.parse_args()
    files = sorted(glob.glob(os.path.join(args.dir, "jobs", "*.h5")))
    if not files:
        sys.exit(f"{args.dir}: no job files")
    fourier_by_seed = {}
    for f in files:
        check(f, args.ntk_balancer, fourier_by_seed)
    seen = {}
    for (seed, sigma), items in fourier_by_seed.items():
        for path, b in items[1:]:
            if not np.array_equal(b, items[0][1]):
                fail(path, f"B differs from another job with seed {seed} and sigma {sigma}")
        for (other, _), b in seen.items():
            if other != seed and np.array_equal(b, items[0][1]):
                fail(items[0][0], f"seeds {seed} and {other} drew the same B")
        seen[(seed, sigma)] = items[0][1]
    print(f"schemes OK: {len(files)} files, {sum(len(v) for v in fourier_by_seed.values())} with Fourier features")


if __name__ == "__main__":
    main()
