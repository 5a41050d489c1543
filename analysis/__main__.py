"""Command line of the analysis package: ``python -m analysis DIR [--out FIGDIR]``.

Why this file exists: after ``ntksweep run`` (and optionally ``ntksweep reduce``) a person
wants every figure of a results folder with one command. This prints how many jobs were
done, failed, diverged, unreadable or missing, then draws every figure (see
``figures.figure_plan``) and prints each written path, one per line.

Exit status: 0 when every figure was drawn (figures whose data is absent are skipped with
a note), 1 when a figure failed or nothing could be drawn, 2 for a bad command line or a
missing results folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from .figures import make_all_figures  # noqa: E402
from .load import load_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Draw the figures of an ntksweep results folder "
        "(DIR/jobs/<job_id>.h5 and optionally DIR/summary.h5).",
    )
    parser.add_argument("results", metavar="DIR", help="results folder written by ntksweep run")
    parser.add_argument("--out", metavar="FIGDIR", default=None,
                        help="folder for the PNG figures (default: DIR/figures)")
    args = parser.parse_args(argv)

    root = Path(args.results)
    if not root.is_dir():
        print(f"error: results folder {root} does not exist", file=sys.stderr)
        return 2
    results = load_results(root)
    print(results.describe())
    out = Path(args.out) if args.out else root / "figures"

    def log(line: str) -> None:
        print(line, file=sys.stderr if line.startswith("error:") else sys.stdout, flush=True)

    run = make_all_figures(results, out, log=log)
    print(f"{len(run.written)} figures in {out}; {len(run.skipped)} skipped, {len(run.errors)} failed")
    if run.errors or not run.written:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
