"""Post-hoc analysis of ntksweep results: read the job HDF5 files, draw the figures.

Why this package exists: ntksweep writes one HDF5 file per job (DESIGN.md, "HDF5
contract") and optionally a reduced ``summary.h5``; the published results are figures made
from them. ``python -m analysis DIR [--out FIGDIR]`` (run from the repository root) writes
every figure of the results folder DIR to DIR/figures/ and prints each path.

From a notebook::

    from analysis.load import load_results
    from analysis import figures
    results = load_results("results/")
    figures.plot_ntk_scaling(results, "scaling.png", where={"problem": "darcy1d"})

Modules: ``load`` (job files, attributes, summary.h5, ``to_dataframe`` for jobs.csv),
``groups`` (trial groups and scaling series by every setting, as the reducer forms them) and
``figures`` (one function per figure, plus ``make_all_figures``). h5py, numpy, matplotlib and
PyYAML are used; pandas only by ``to_dataframe``.

Nothing is imported here on purpose: ``analysis.reference`` (torch baselines) lives in this
package too and must import without h5py or matplotlib; the attributes below are resolved
on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "load_results",
    "group_jobs",
    "to_dataframe",
    "trial_groups",
    "make_all_figures",
    "plot_ntk_scaling",
    "plot_ntk_spectra",
    "plot_error_field",
    "error_spectra",
    "plot_error_spectra",
    "plot_adaptive_weights",
    "plot_loss_curves",
]

_HOME = {
    "load_results": "load",
    "group_jobs": "load",
    "to_dataframe": "load",
    "trial_groups": "groups",
    "make_all_figures": "figures",
    "plot_ntk_scaling": "figures",
    "plot_ntk_spectra": "figures",
    "plot_error_field": "figures",
    "error_spectra": "figures",
    "plot_error_spectra": "figures",
    "plot_adaptive_weights": "figures",
    "plot_loss_curves": "figures",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
