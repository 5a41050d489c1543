#!/usr/bin/env python3
"""The per-scheme table of docs/reproductions/schemes_darcy from a reduced sweep's jobs.csv.

Usage: python scripts/schemes-table.py RESULTS/jobs.csv

A job's scheme names its non-default settings (the network's first) among model.activation (sin),
model.adaptive_activation.kind (adaptive), model.fourier.features (fourier), model.exact_bc
(exact_bc), loss.gradient_enhanced.weight (gradient) and collocation.residual.sampling
(importance); "none" when it has none. For each scheme: the log-log least-squares slope of
||K_res||_F against eps over all its done jobs at the first and the last NTK snapshot, and the
rel L2 error mean over seeds at each eps (largest eps first). Rows: single schemes, then pairs,
then triples, each in name order. Prints a Markdown table.
"""
import sys

import numpy as np
import pandas as pd

PARTS = [
    ("adaptive", "model.adaptive_activation.kind", lambda v: v == "layerwise" or v == "global"),
    ("exact_bc", "model.exact_bc", lambda v: str(v).lower() == "true"),
    ("fourier", "model.fourier.features", lambda v: pd.notna(v) and str(v) not in ("", "0")),
    ("sin", "model.activation", lambda v: v == "sin"),
    ("gradient", "loss.gradient_enhanced.weight", lambda v: pd.notna(v) and str(v) != ""),
    ("importance", "collocation.residual.sampling", lambda v: v == "importance"),
]


def scheme(row):
    names = [name for name, col, on in PARTS if col in row and on(row[col])]
    return "+".join(names) or "none"


def slope(eps, values):
    ok = np.isfinite(values) & (values > 0)
    return np.polyfit(np.log(eps[ok]), np.log(values[ok]), 1)[0]


def main():
    jobs = pd.read_csv(sys.argv[1])
    jobs = jobs[jobs["status"] == "done"].copy()
    jobs["scheme"] = jobs.apply(scheme, axis=1)
    eps_values = sorted(jobs["eps"].unique(), reverse=True)
    head = ["scheme", "p(K_res) init", f"p(K_res) step {int(jobs['ntk_step_last'].max())}"]
    head += [f"rel L2 eps 1/{round(1 / e)}" if i == 0 else f"eps 1/{round(1 / e)}" for i, e in enumerate(eps_values)]
    print("| " + " | ".join(head) + " |")
    print("| --- |" + " ---: |" * (len(head) - 1))
    order = sorted(jobs["scheme"].unique(), key=lambda s: (s.count("+") + 1, s))
    for s in order:
        g = jobs[jobs["scheme"] == s]
        eps = g["eps"].to_numpy(float)
        cells = [s, f"{slope(eps, g['ntk_residual_frobenius_first'].to_numpy(float)):.2f}",
                 f"{slope(eps, g['ntk_residual_frobenius_last'].to_numpy(float)):.2f}"]
        cells += [f"{g[g['eps'] == e]['rel_l2'].mean():.3f}" for e in eps_values]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
