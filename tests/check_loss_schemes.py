"""Check what the loss-term schemes leave in the job files, with h5py.

Usage: python tests/check_loss_schemes.py DIR
For every done job:
- `exact_bc` = 1: the terms named in `exact_terms` report a loss that is zero up to rounding
  (train/loss/<term>, every entry <= 1e-10, one per train/step) and have no train/weight or ntk
  group, and the prediction meets the boundary data (max |error| < 1e-5 on the constrained
  faces of the evaluation grid: the box boundary, less t = T for (t, x) problems); `exact_bc`
  = 0: `exact_terms` is empty and the boundary term is trained;
- `gradient_enhanced_weight` finite: a term `residual_grad` with loss, its fixed weight (balancer
  none) and an NTK block; NaN: no such term;
- `importance_terms` names the terms whose `collocation.<term>.sampling` in `config` is
  importance.
Prints "N files: a exact, b gradient-enhanced, c importance"; exits non-zero naming the file
and the failed check.
"""
import glob
import math
import os
import sys

import h5py
import yaml


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def fail(path, msg):
    sys.exit(f"{os.path.basename(path)}: {msg}")


def constrained_face_error(h, exact):
    """max |error| on the evaluation grid's points on the faces the ansatz constrains: the
    whole box boundary (eval boundary_error), except for (t, x) problems (an `initial` term),
    whose final-time face t = T carries no condition: there the faces t = 0, x = a and x = b."""
    if "initial" not in exact:
        return h["eval"].attrs["boundary_error"]
    x, e = h["eval/x"][:], h["eval/error"][:]
    t, s = x[:, 0], x[:, 1]
    on = (t == t.min()) | (s == s.min()) | (s == s.max())
    return abs(e[on]).max()


def check(path):
    with h5py.File(path, "r") as h:
        a = h.attrs
        if text(a["status"]) != "done":
            fail(path, f"status {text(a['status'])}: {text(a['message'])}")
        cfg = yaml.safe_load(text(a["config"]))
        exact = text(a["exact_terms"]).split()
        trained = set(h["train/loss"].keys())
        if int(a["exact_bc"]) == 1:
            if cfg["model"].get("exact_bc") is not True or not exact:
                fail(path, f"exact_bc attribute without the config key or exact terms: {exact}")
            for t in exact:
                if t in h["train/weight"] or t in h["ntk"]:
                    fail(path, f"exact term {t} still has a balancer weight or NTK block")
                if t not in trained:
                    fail(path, f"exact term {t} reports no loss")
                loss = h[f"train/loss/{t}"][:]
                if loss.shape != h["train/step"].shape or not (abs(loss) <= 1e-10).all():
                    fail(path, f"exact term {t}: loss {loss} is not zero at every logged step")
            err = constrained_face_error(h, exact)
            if not err < 1e-5:
                fail(path, f"error {err} on the faces exact conditions hold")
        elif exact or "boundary" not in trained:
            fail(path, f"exact_bc 0 but exact_terms {exact}, trained {sorted(trained)}")
        w = float(a["gradient_enhanced_weight"])
        if math.isnan(w):
            if "residual_grad" in trained:
                fail(path, "residual_grad without gradient_enhanced_weight")
        else:
            if cfg["loss"]["gradient_enhanced"]["weight"] != w or "residual_grad" not in trained or "residual_grad" not in h["ntk"]:
                fail(path, f"gradient-enhanced job without residual_grad loss or NTK block: {sorted(trained)}")
            if "balancer" not in cfg or cfg["balancer"] in ("none", {"kind": "none"}):
                if not (abs(h["train/weight/residual_grad"][:] - w) <= 1e-6 * w).all():
                    fail(path, "residual_grad weight is not the configured one")
        want = sorted(t for t, s in cfg.get("collocation", {}).items() if s.get("sampling") == "importance")
        if sorted(text(a["importance_terms"]).split()) != want:
            fail(path, f"importance_terms {text(a['importance_terms'])!r}, config says {want}")
        return bool(exact), not math.isnan(w), bool(want)


def main():
    files = sorted(glob.glob(os.path.join(sys.argv[1], "jobs", "*.h5")))
    if not files:
        sys.exit("no job files")
    flags = [check(p) for p in files]
    print(f"{len(files)} files: {sum(f[0] for f in flags)} exact, {sum(f[1] for f in flags)} gradient-enhanced, {sum(f[2] for f in flags)} importance")


if __name__ == "__main__":
    main()
