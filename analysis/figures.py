"""Figures of an ntksweep results folder: one function per figure, each writing one PNG.

Why this module exists: the questions the sweep answers - does the residual NTK block grow
as eps^-2, what does its spectrum look like before and after training, where does the error
sit and at which frequencies (paper 003 section 4.4: a low-frequency peak and one at
1/eps), what do the loss balancers do, which setting of an axis wins - are read off six
kinds of figure. Each is one function usable on its own from a notebook;
``make_all_figures`` (used by ``python -m analysis DIR``) draws every one for every problem
of a results folder.

Every figure function has the form ``plot_x(source, out, *, where=None) -> Path``:

* ``source``: a results folder (``str``/``Path``), a loaded :class:`analysis.load.Results`,
  or a list of :class:`analysis.load.Job`;
* ``out``: the PNG path to write (folders are created);
* ``where``: values selecting the jobs to draw, by root attribute or dotted setting, e.g.
  ``{"problem": "darcy1d", "training.lr": 0.01}`` (see :func:`analysis.load.select`).
  Every figure draws one problem and raises ``ValueError`` naming the problems otherwise;
  ``NothingToPlot`` (a ``ValueError``) means the selected jobs lack the data the figure
  needs.

Lines are trial groups (``analysis.groups``: all settings equal but the seed; the NTK scaling
figure draws scaling series, all equal but seed and eps), so a sweep over any setting gives
one line per value; legends name the settings that differ between the lines. When only eps
differs, lines are coloured by eps; otherwise each combination of the other settings has its
colour and eps its line style. Problems without eps (wave1d, klein_gordon1d, helmholtz2d)
have every figure but the scaling one; only 1-D problems have error spectra.

Only jobs with status ``done`` are drawn. Seeds are averaged: "mean +- std" uses the
sample standard deviation (ddof = 1; 0 for a single seed). A fit needs two distinct eps;
with one, the figure is drawn without it. When ``summary.h5`` is present, the scaling
figure adds the reducer's exponent and 95% interval to the legend as a cross-check; when
the job files lack the data (e.g. only summary.h5 was copied), the scaling and error
figures are drawn from summary.h5 instead.

Matplotlib is used through ``Figure`` + the Agg canvas, never ``pyplot``: nothing here
changes the global backend or leaves figures open in a notebook.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from .groups import KEY_ATTRS, Group, describe, distinguishing, freeze, series_groups, trial_groups, value_text
from .load import (
    CONFIG_KEYS,
    Job,
    Results,
    TrainRecord,
    load_results,
    select,
    snapshot_role,
    sort_key,
)

#: Resolution of the written PNGs.
DPI = 130
#: ``make_all_figures`` splits a problem's history and spectra figures by scaling series
#: when it has more trial groups (lines) than this.
MAX_LINES = 12
#: Rows (trial groups) per 2-D error figure.
ERROR_ROWS = 4

Source = Union[Results, str, "os.PathLike[str]", Iterable[Job]]

#: Names of the eval/x columns per problem (DESIGN.md "Problems"); others get x0, x1, ...
COORDINATES = {
    "wave1d": ("t", "x"),
    "klein_gordon1d": ("t", "x"),
    "helmholtz2d": ("x", "y"),
}


class NothingToPlot(ValueError):
    """The selected jobs hold none of the data this figure needs (the figure is skipped)."""


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _resolve(source: Source) -> tuple[list[Job], Results | None]:
    """All jobs of ``source`` and the Results they came from (``None`` for a job list)."""
    if isinstance(source, Results):
        return source.jobs, source
    if isinstance(source, (str, os.PathLike)):
        results = load_results(source)
        return results.jobs, results
    return list(source), None


def _done(source: Source, where: Mapping[str, Any] | None) -> tuple[list[Job], Results | None]:
    jobs, results = _resolve(source)
    return select([j for j in jobs if j.status == "done"], where), results


def _one_problem(jobs: list[Job], who: str) -> tuple[str, list[Job]]:
    """The single problem of ``jobs`` and the jobs."""
    problems = sorted({str(j.attrs.get("problem")) for j in jobs})
    if not problems:
        raise NothingToPlot(f"{who}: no done jobs in the selection")
    if len(problems) > 1:
        raise ValueError(
            f"{who} draws one problem but the selection holds {problems}: "
            "pass where={'problem': ...}"
        )
    return problems[0], jobs


@dataclass
class Line:
    """One trial group drawn as a line: its label, colour and line style."""

    group: Group
    label: str
    color: Any
    style: str


_STYLES = ("-", "--", ":", "-.")


def group_label(key: Mapping[str, Any], axes: Sequence[str]) -> str:
    """The settings of ``axes`` (``ε = 2^-1, training.lr=0.001``); the identifying
    attributes (``width 50, none, none``) when nothing distinguishes."""
    return describe(key, axes, eps_text=format_eps) if axes else config_label(key)


def _lines(groups: list[Group]) -> list[Line]:
    """Labels and styles of ``groups`` (module documentation: colour by eps when only eps
    differs, else by the other settings with eps as line style)."""
    axes = distinguishing([g.key for g in groups], exclude=("problem",))
    if all(a == "eps" for a in axes):
        colors = _eps_colors(sorted({g.eps for g in groups if g.eps is not None}))
        return [Line(g, group_label(g.key, axes), colors.get(g.eps, "C0"), "-") for g in groups]
    series = list(dict.fromkeys(freeze({k: v for k, v in g.key.items() if k != "eps"}) for g in groups))
    eps_values = sorted({g.eps for g in groups if g.eps is not None})
    tab10 = colormaps["tab10"]
    out = []
    for g in groups:
        i = series.index(freeze({k: v for k, v in g.key.items() if k != "eps"}))
        style = _STYLES[eps_values.index(g.eps) % len(_STYLES)] if g.eps in eps_values else "-"
        out.append(Line(g, group_label(g.key, axes), tab10(i % 10), style))
    return out


def _context_axes(source: Source, problem: str) -> list[str]:
    """The settings that tell apart the trial groups of ``problem`` in the whole source
    (not only the selection), so a figure of part of a sweep can say which part it is."""
    jobs, _ = _resolve(source)
    done = [j for j in jobs if j.status == "done" and str(j.attrs.get("problem")) == problem]
    return distinguishing([g.key for g in trial_groups(done)], exclude=("problem",))


def _shared_text(groups: list[Group], context: Sequence[str] = ()) -> str:
    """What the groups share, for a title: the identifying attributes (``width 50, none,
    zscore``) and any setting of ``context`` with one value among them
    (``training.lr=0.01``)."""
    same = lambda k: len({repr(g.key.get(k)) for g in groups}) == 1  # noqa: E731
    parts = [
        f"width {groups[0].key.get(k)}" if k == "width" else str(groups[0].key.get(k))
        for k in ("width", "balancer", "normalization") if same(k)
    ]
    parts += [f"{a}={value_text(groups[0].key.get(a))}" for a in context if a not in KEY_ATTRS and same(a)]
    return ", ".join(parts)


def _matches(key: Mapping[str, Any], where: Mapping[str, Any] | None) -> bool:
    """Whether a summary.h5 key agrees with ``where`` on the fields it has."""
    for name, wanted in (where or {}).items():
        got = key.get(name)
        if got is None:
            continue
        if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
            try:
                if not math.isclose(float(got), float(wanted), rel_tol=1e-9):
                    return False
            except (TypeError, ValueError):
                return False
        elif str(got) != str(wanted):
            return False
    return True


def format_eps(eps: Any) -> str:
    """Legend text for an eps value: ``2^-3`` for powers of two, else ``%g``."""
    if eps is None:
        return "ε = ?"
    e = float(eps)
    if e > 0:
        p = math.log2(e)
        if abs(p - round(p)) < 1e-9 and round(p) != 0:
            return rf"$\varepsilon = 2^{{{int(round(p))}}}$"
    return rf"$\varepsilon = {e:g}$"


def config_label(config: Mapping[str, Any]) -> str:
    """``width 100, ntk, zscore`` for a group (its identifying attributes)."""
    return (
        f"width {config.get('width')}, {config.get('balancer')}, "
        f"{config.get('normalization')}"
    )


def slug(*parts: Any) -> str:
    """File-name-safe join of key values: ``darcy1d__w100__ntk__none``."""
    return "__".join(re.sub(r"[^A-Za-z0-9.+-]+", "_", str(p)) for p in parts)


def coordinate_names(problem: Any, dim: int) -> tuple[str, ...]:
    names = COORDINATES.get(str(problem))
    if names and len(names) == dim:
        return names
    return ("x",) if dim == 1 else tuple(f"x{i}" for i in range(dim))


def _term_rank(term: str) -> tuple[int, str]:
    return (0 if term == "residual" else 2 if term == "full" else 1, term)


def _term_order(terms: Iterable[str]) -> list[str]:
    """residual first, the full kernel last, the rest alphabetically."""
    return sorted(set(terms), key=_term_rank)


def _eps_colors(eps_values: Sequence[Any]) -> dict[Any, Any]:
    cmap = colormaps["viridis"]
    n = len(eps_values)
    return {e: cmap(0.05 + 0.8 * (i / (n - 1) if n > 1 else 0.5)) for i, e in enumerate(eps_values)}


def _new_figure(nrows: int, ncols: int, panel: tuple[float, float] = (5.0, 3.6), **kw: Any):
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _save(fig: Figure, out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format=out.suffix[1:] or "png")
    return out


def _legend(ax: Any, **kw: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize="small", **kw)


def _no_data(ax: Any, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def _log_scale(ax: Any, axis: str = "y", min_decades: float = 0.3) -> None:
    """Log scale on ``axis``, widened to at least ``min_decades`` around the data: a
    constant curve (or a fit line equal to it up to rounding) would otherwise be zoomed
    to a 1e-16 range."""
    getattr(ax, f"set_{axis}scale")("log")
    lo, hi = (ax.dataLim.y0, ax.dataLim.y1) if axis == "y" else (ax.dataLim.x0, ax.dataLim.x1)
    if np.isfinite([lo, hi]).all() and lo > 0 and hi > 0 and hi / lo < 10**min_decades:
        centre = math.sqrt(lo * hi)
        half = 10 ** (min_decades / 2)
        getattr(ax, f"set_{axis}lim")(centre / half, centre * half)


def _eps_axis(ax: Any, eps_values: Iterable[float]) -> None:
    """Log x axis ticked at the eps values of the sweep (``2^-3`` or ``%g``)."""
    ax.set_xscale("log")
    eps = sorted({float(e) for e in eps_values if e and e > 0})
    if not eps:
        return
    ax.xaxis.set_major_locator(FixedLocator(eps))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([format_eps(e).replace(r"\varepsilon = ", "") for e in eps])
    if len(eps) == 1:
        ax.set_xlim(eps[0] / 2, eps[0] * 2)


def _slope(value: float) -> str:
    return f"{round(value, 2) + 0.0:.2f}"  # never "-0.00"


def _positive(values: np.ndarray) -> np.ndarray:
    """Values for a log axis: non-positive and non-finite entries become NaN (gaps)."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def _seed_stats(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (ddof 1, zero for one seed) over axis 0, ignoring NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(stack, axis=0)
        if stack.shape[0] > 1:
            std = np.nanstd(stack, axis=0, ddof=1)
        else:
            std = np.zeros_like(mean)
    return mean, np.nan_to_num(std)


def fit_power_law(eps: Sequence[float], values: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares line through (log eps, log value).

    Returns ``(exponent, prefactor)`` with ``value ~ prefactor * eps**exponent``, or
    ``None`` when fewer than two distinct positive eps carry a positive finite value.
    """
    e = np.asarray(eps, dtype=float).reshape(-1)
    v = np.asarray(values, dtype=float).reshape(-1)
    ok = np.isfinite(e) & np.isfinite(v) & (e > 0) & (v > 0)
    if np.unique(e[ok]).size < 2:
        return None
    slope, intercept = np.polyfit(np.log(e[ok]), np.log(v[ok]), 1)
    return float(slope), float(np.exp(intercept))


# --------------------------------------------------------------------------------------
# 1. NTK scaling
# --------------------------------------------------------------------------------------


@dataclass
class ScalingSeries:
    """||K_T||_F against eps for one scaling series, term and snapshot.

    ``config`` is the series' settings (the identifying attributes ``problem``, ``width``,
    ``balancer``, ``normalization`` and every dotted setting but seed and eps);
    ``snapshot`` is ``"first"`` (initialisation) or ``"last"``; ``eps``, ``mean``, ``std``
    and ``n`` (seeds per eps) are [E] with eps ascending; ``fit`` is
    :func:`fit_power_law` of (eps, mean); ``reducer`` holds the attributes of the matching
    ``summary.h5`` group (``exponent``, ``exponent_ci_low``, ...) when there is one.
    """

    config: dict[str, Any]
    term: str
    snapshot: str
    steps: list[int]
    eps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray
    fit: tuple[float, float] | None
    reducer: dict[str, Any] | None = None
    source: str = "jobs"


def _summary_settings(key: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a summary.h5 group names: its key fields and dotted attributes."""
    out = {k: key.get(k) for k in CONFIG_KEYS}
    out.update({k: v for k, v in attrs.items() if "." in k or k == "sweep"})
    return out


def _summary_scaling(results: Results | None, where: Mapping[str, Any] | None) -> list[ScalingSeries]:
    """Scaling series read from summary.h5, snapshots mapped to first/last."""
    if results is None or results.summary is None:
        return []
    entries = [s for s in results.summary.scaling if _matches({**s.key, **s.attrs}, where)]
    by_curve: dict[tuple, list] = {}
    for entry in entries:
        config = _summary_settings(entry.key, entry.attrs)
        by_curve.setdefault((freeze(config), entry.key.get("term")), []).append((config, entry))
    out: list[ScalingSeries] = []
    for (_, term), group in by_curve.items():
        roles = {e.name: snapshot_role(e.key.get("snapshot")) for _, e in group}
        numeric = sorted(r for r in roles.values() if isinstance(r, int))
        for config, entry in group:
            role = roles[entry.name]
            if isinstance(role, int) and numeric:
                role = "first" if role == numeric[0] else "last" if role == numeric[-1] else None
            if role not in ("first", "last"):
                continue
            order = np.argsort(entry.eps)
            n_trials = int(entry.attrs.get("n_trials", 0) or 0)
            out.append(
                ScalingSeries(
                    config=config,
                    term=str(term),
                    snapshot=role,
                    steps=[s for s in [snapshot_role(entry.key.get("snapshot"))] if isinstance(s, int)],
                    eps=entry.eps[order],
                    mean=entry.frobenius_mean[order],
                    std=entry.frobenius_std[order],
                    n=np.full(order.size, n_trials),
                    fit=fit_power_law(entry.eps, entry.frobenius_mean),
                    reducer=dict(entry.attrs),
                    source="summary.h5",
                )
            )
    return out


def ntk_scaling_table(source: Source, *, where: Mapping[str, Any] | None = None) -> list[ScalingSeries]:
    """||K_T||_F (``ntk/<term>/frobenius``) against eps at the first and last snapshot,
    averaged over the seeds of each scaling series, with a log-log least-squares fit.

    Computed from the done job files that have an eps; falls back to ``summary.h5`` when
    none of the selected jobs has NTK data. The ``full`` kernel appears as term ``full``.
    """
    jobs, results = _done(source, where)
    all_series = series_groups([j for j in jobs if j.attrs.get("eps") is not None])
    values: dict[tuple, dict[float, list[float]]] = {}
    steps: dict[tuple, set[int]] = {}
    for index, series in enumerate(all_series):
        for job in series.jobs:
            ntk = job.read_ntk()
            if ntk is None or ntk.step.size == 0:
                continue
            snaps = [("first", 0)] + ([("last", ntk.step.size - 1)] if ntk.step.size > 1 else [])
            for term, data in ntk.terms.items():
                if "frobenius" not in data:
                    continue
                frob = np.asarray(data["frobenius"], dtype=float).reshape(-1)
                for role, i in snaps:
                    if i < frob.size:
                        k = (index, term, role)
                        values.setdefault(k, {}).setdefault(float(job.eps), []).append(float(frob[i]))
                        steps.setdefault(k, set()).add(int(ntk.step[i]))
    if not values:
        return _summary_scaling(results, where)

    from_summary = _summary_scaling(results, where)
    out: list[ScalingSeries] = []
    for (index, term, role), by_eps in values.items():
        config = dict(all_series[index].key)
        eps = np.array(sorted(by_eps))
        stats = []
        for e in eps:
            v = np.array(by_eps[e])
            v = v[np.isfinite(v)]
            mean = float(v.mean()) if v.size else float("nan")
            std = float(v.std(ddof=1)) if v.size > 1 else 0.0
            stats.append((mean, std, v.size))
        mean, std, n = (np.array(c) for c in zip(*stats))
        reducer = next(
            (r.reducer for r in from_summary
             if r.term == term and r.snapshot == role and _matches(config, r.config)),
            None,
        )
        out.append(
            ScalingSeries(
                config=config, term=term, snapshot=role, steps=sorted(steps[(index, term, role)]),
                eps=eps, mean=mean, std=std, n=n.astype(int), fit=fit_power_law(eps, mean),
                reducer=reducer,
            )
        )
    out.sort(key=lambda s: (all_series_index(all_series, s.config), _term_rank(s.term), s.snapshot != "first"))
    return out


def all_series_index(all_series: list[Group], config: Mapping[str, Any]) -> int:
    """Position of the series with settings ``config`` (for a stable figure order)."""
    frozen = freeze(config)
    return next((i for i, s in enumerate(all_series) if freeze(s.key) == frozen), len(all_series))


def _snapshot_title(role: str, steps: set[int]) -> str:
    """``at initialisation (step 0)``; the step is left out when unknown (summary.h5)."""
    title = "at initialisation" if role == "first" else "after training"
    if len(steps) == 1:
        return f"{title} (step {min(steps)})"
    if steps:
        return f"{title} (steps {', '.join(map(str, sorted(steps)))})"
    return title


def plot_ntk_scaling(source: Source, out: str | os.PathLike[str], *, where: Mapping[str, Any] | None = None) -> Path:
    """Figure 1: log-log ||K_T||_F vs eps, one panel per (term, snapshot) of one problem.

    One colour per scaling series (legend: the settings that tell series apart); markers are
    the mean over seeds with +-1 std error bars, the line the least-squares fit (slope in the
    legend, and the summary.h5 exponent with its 95% interval when available). Residual
    panels carry a dashed reference line of slope -2 through the centroid of the first curve.
    """
    series = ntk_scaling_table(source, where=where)
    if not series:
        raise NothingToPlot("no NTK Frobenius norms of jobs with an eps (nor in summary.h5)")
    problems = sorted({str(s.config["problem"]) for s in series})
    if len(problems) > 1:
        raise ValueError(f"plot_ntk_scaling draws one problem; the selection holds {problems}: pass where={{'problem': ...}}")
    terms = _term_order(s.term for s in series)
    roles = [r for r in ("first", "last") if any(s.snapshot == r for s in series)]
    configs = list(dict.fromkeys(freeze(s.config) for s in series))
    by_frozen = {freeze(s.config): s.config for s in series}
    axes = distinguishing([by_frozen[c] for c in configs], exclude=("problem",))
    tab10 = colormaps["tab10"]
    color = {c: tab10(i % 10) for i, c in enumerate(configs)}

    fig, axs = _new_figure(len(terms), len(roles), panel=(5.6, 3.8))
    for r, term in enumerate(terms):
        for c, role in enumerate(roles):
            ax = axs[r][c]
            panel = [s for s in series if s.term == term and s.snapshot == role]
            steps = set().union(*(s.steps for s in panel)) if panel else set()
            name = "full kernel K" if term == "full" else f"{term} block"
            ax.set_title(f"{name}, {_snapshot_title(role, steps)}", fontsize="medium")
            ax.set_xlabel(r"$\varepsilon$")
            ax.set_ylabel(r"$\|K\|_F$" if term == "full" else r"$\|K_{TT}\|_F$" + f",  T = {term}")
            drawn = []
            for s in panel:
                ok = np.isfinite(s.mean) & (s.mean > 0)
                if not ok.any():
                    continue
                label = group_label(s.config, axes) + f" (n={int(s.n.max())})"
                label += f": slope {_slope(s.fit[0])}" if s.fit is not None else ": one ε, no fit"
                red = s.reducer or {}
                if s.source == "jobs" and "exponent" in red:
                    lo, hi = red.get("exponent_ci_low"), red.get("exponent_ci_high")
                    ci = f" [{float(lo):.2f}, {float(hi):.2f}]" if lo is not None and hi is not None else ""
                    label += f" (summary.h5: {_slope(float(red['exponent']))}{ci})"
                lower = np.minimum(s.std[ok], 0.999 * s.mean[ok])
                col = color[freeze(s.config)]
                ax.errorbar(s.eps[ok], s.mean[ok], yerr=[lower, s.std[ok]], fmt="o", ms=4,
                            color=col, capsize=3, label=label)
                if s.fit is not None:
                    e = np.geomspace(s.eps[ok].min(), s.eps[ok].max(), 50)
                    ax.plot(e, s.fit[1] * e ** s.fit[0], "-", color=col, lw=1.2, alpha=0.8)
                drawn.append((s, ok))
            if not drawn:
                _no_data(ax)
                continue
            _eps_axis(ax, np.concatenate([d.eps[o] for d, o in drawn]))
            if term == "residual":
                anchor = next(((s, ok) for s, ok in drawn if np.unique(s.eps[ok]).size > 1), None)
                if anchor is not None:
                    s, ok = anchor
                    all_eps = np.concatenate([d.eps[o] for d, o in drawn])
                    e = np.geomspace(all_eps.min(), all_eps.max(), 50)
                    # through half the centroid of the first curve, so it never hides it
                    e0 = math.exp(np.mean(np.log(s.eps[ok])))
                    y0 = 0.5 * math.exp(np.mean(np.log(s.mean[ok])))
                    ax.plot(e, y0 * (e / e0) ** -2.0, "--", color="grey", lw=1, label="reference slope −2")
            _log_scale(ax, "y")
            ax.grid(True, which="major", alpha=0.25)
            _legend(ax)
    origin = "summary.h5" if series[0].source != "jobs" else "job files"
    fig.suptitle(
        f"NTK Frobenius norm vs ε: {problems[0]}\n"
        f"mean ± std over seeds, least-squares fit in log-log (from {origin})"
    )
    return _save(fig, out)


# --------------------------------------------------------------------------------------
# 2. Eigenvalue spectra
# --------------------------------------------------------------------------------------


def plot_ntk_spectra(source: Source, out: str | os.PathLike[str], *, where: Mapping[str, Any] | None = None) -> Path:
    """Figure 2: NTK eigenvalues (``ntk/<term>/eigenvalues``, descending) of one problem, at
    initialisation and after training, one line per trial group (mean over seeds of the k-th
    largest eigenvalue), log y. Non-positive eigenvalues leave gaps."""
    jobs, _ = _done(source, where)
    problem, jobs = _one_problem(jobs, "plot_ntk_spectra")
    lines = _lines(trial_groups(jobs))
    # spectra[term][role][line index] -> list of 1-D arrays; steps[role] -> set of steps
    spectra: dict[str, dict[str, dict[int, list[np.ndarray]]]] = {}
    steps: dict[str, set[int]] = {"first": set(), "last": set()}
    for index, line in enumerate(lines):
        for job in line.group.jobs:
            ntk = job.read_ntk()
            if ntk is None or ntk.step.size == 0:
                continue
            for term, data in ntk.terms.items():
                ev = data.get("eigenvalues")
                if ev is None or ev.size == 0:
                    continue
                ev = np.atleast_2d(np.asarray(ev, dtype=float))
                snaps = [("first", 0)] + ([("last", ev.shape[0] - 1)] if ev.shape[0] > 1 else [])
                for role, i in snaps:
                    spectra.setdefault(term, {}).setdefault(role, {}).setdefault(index, []).append(np.sort(ev[i])[::-1])
                    if i < ntk.step.size:
                        steps[role].add(int(ntk.step[i]))
    if not spectra:
        raise NothingToPlot(f"no NTK eigenvalues for {problem}")
    terms = _term_order(spectra)
    roles = [r for r in ("first", "last") if any(r in spectra[t] for t in terms)]

    fig, axes = _new_figure(len(terms), len(roles), panel=(5.2, 3.6))
    for r, term in enumerate(terms):
        for c, role in enumerate(roles):
            ax = axes[r][c]
            ax.set_title(f"{term} block, {_snapshot_title(role, steps[role])}", fontsize="medium")
            ax.set_xlabel("eigenvalue index k (descending)")
            ax.set_ylabel(r"$\lambda_k$")
            drawn = False
            for index, arrays in sorted(spectra[term].get(role, {}).items()):
                line = lines[index]
                m = min(a.size for a in arrays)
                mean, _ = _seed_stats(np.stack([a[:m] for a in arrays]))
                mean = _positive(mean)
                if not np.isfinite(mean).any():
                    continue
                ax.plot(np.arange(1, m + 1), mean, line.style, color=line.color, lw=1.4,
                        label=f"{line.label} (n={len(arrays)})")
                drawn = True
            if not drawn:
                _no_data(ax, "no positive eigenvalues")
                continue
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            _log_scale(ax, "y")
            ax.grid(True, which="major", alpha=0.25)
            _legend(ax)
    shared = _shared_text([line.group for line in lines], _context_axes(source, problem))
    fig.suptitle(f"NTK eigenvalue spectra: {problem}{', ' + shared if shared else ''}\n"
                 "mean over seeds of the k-th eigenvalue")
    return _save(fig, out)


# --------------------------------------------------------------------------------------
# 3. Error fields
# --------------------------------------------------------------------------------------


@dataclass
class ErrorField:
    """Seed statistics of ``eval/error`` for one trial group.

    ``x`` [M, d]; ``mean`` and ``std`` [M]; ``n`` seeds; ``spectrum`` [K] the mean of
    ``eval/error_spectrum`` (1-D problems, else ``None``); ``rel_l2`` [n] per-seed
    ``eval`` attribute ``rel_l2`` (empty if absent); ``source`` "jobs" or "summary.h5";
    ``errors`` [n, M] each seed's error on ``x`` (``None`` from summary.h5, which keeps only
    the mean and variance), so per-seed statistics such as :func:`error_spectra` need not
    read the files again.
    """

    key: dict[str, Any]
    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: int
    spectrum: np.ndarray | None
    rel_l2: np.ndarray
    source: str = "jobs"
    notes: list[str] = field(default_factory=list)
    errors: np.ndarray | None = None


def error_field_stats(source: Source, *, where: Mapping[str, Any] | None = None) -> ErrorField:
    """Mean and std over seeds of the error field of one trial group (all settings equal but
    the seed). Seeds whose ``eval/x`` differs from the first seed's are interpolated onto it
    (1-D) or left out with a note (2-D). Falls back to ``summary.h5`` ``trials/`` when no
    selected job has ``eval`` data."""
    jobs, results = _done(source, where)
    if not jobs:
        return _summary_error_field(results, where)
    groups = trial_groups(jobs)
    if len(groups) > 1:
        axes = distinguishing([g.key for g in groups])
        shown = "; ".join(describe(g.key, axes) for g in groups[:4])
        raise ValueError(
            f"error_field_stats draws one trial group but the selection holds {len(groups)}: "
            f"{shown}{' ...' if len(groups) > 4 else ''}; pass where={{...}}"
        )
    key, members = groups[0].key, groups[0].jobs
    evals = [(j, j.read_eval()) for j in members]
    evals = [(j, e) for j, e in evals if e is not None]
    if not evals:
        return _summary_error_field(results, where)
    notes: list[str] = []
    x = evals[0][1].x.astype(float)
    errors, spectra, rel = [], [], []
    for job, ev in evals:
        err = ev.error.astype(float)
        if ev.x.shape == x.shape and np.allclose(ev.x, x):
            pass
        elif x.shape[1] == 1 and ev.x.shape[1] == 1 and err.size == ev.x.shape[0]:
            order = np.argsort(ev.x[:, 0])
            err = np.interp(x[:, 0], ev.x[order, 0], err[order])
            notes.append(f"{job.job_id}: eval/x differs, interpolated")
        else:
            notes.append(f"{job.job_id}: eval/x differs from the first seed, left out")
            continue
        errors.append(err)
        if ev.error_spectrum is not None:
            spectra.append(np.abs(np.asarray(ev.error_spectrum, dtype=float).reshape(-1)))
        if "rel_l2" in ev.attrs:
            rel.append(float(ev.attrs["rel_l2"]))
    stack = np.stack(errors)
    mean, std = _seed_stats(stack)
    spectrum = None
    if spectra:
        m = min(s.size for s in spectra)
        spectrum, _ = _seed_stats(np.stack([s[:m] for s in spectra]))
    return ErrorField(key=key, x=x, mean=mean, std=std, n=len(errors), spectrum=spectrum,
                      rel_l2=np.array(rel), notes=notes, errors=stack)


def _summary_error_field(results: Results | None, where: Mapping[str, Any] | None) -> ErrorField:
    entries = [] if results is None or results.summary is None else [
        t for t in results.summary.trials if _matches({**t.key, **t.attrs}, where)
    ]
    if not entries:
        raise NothingToPlot("no eval data in the selected jobs (nor in summary.h5)")
    if len(entries) > 1:
        raise ValueError(
            f"error_field_stats draws one trial group; summary.h5 holds {len(entries)} "
            f"matching: {[t.name for t in entries[:4]]}: pass where={{...}}"
        )
    t = entries[0]
    rel = t.attrs.get("rel_l2_mean")
    key = {k: v for k, v in _summary_settings(t.key, t.attrs).items()}
    key["eps"] = t.key.get("eps")
    return ErrorField(
        key=key, x=t.x, mean=t.mean_error, std=np.sqrt(np.clip(t.error_variance, 0, None)),
        n=int(t.attrs.get("n_trials", 0) or 0), spectrum=None,
        rel_l2=np.array([] if rel is None else [float(rel)]), source="summary.h5",
    )


def _as_grid(x: np.ndarray, values: np.ndarray):
    """(axis0 [n0], axis1 [n1], values [n0, n1]) if the points fill a tensor grid."""
    u0, u1 = np.unique(x[:, 0]), np.unique(x[:, 1])
    if u0.size < 2 or u1.size < 2 or u0.size * u1.size != x.shape[0]:
        return None
    order = np.lexsort((x[:, 1], x[:, 0]))
    xs = x[order]
    if not (np.allclose(xs[:, 0].reshape(u0.size, u1.size), u0[:, None])
            and np.allclose(xs[:, 1].reshape(u0.size, u1.size), u1[None, :])):
        return None
    return u0, u1, values[order].reshape(u0.size, u1.size)


def _largest(arrays: Iterable[np.ndarray]) -> float:
    """Largest finite |value| over ``arrays`` (1 when there is none or it is 0)."""
    finite = [np.abs(a[np.isfinite(a)]) for a in arrays]
    top = max((float(f.max()) for f in finite if f.size), default=0.0)
    return top if top > 0 else 1.0


def _field_panel(fig: Figure, ax: Any, x: np.ndarray, values: np.ndarray, *, norm: Normalize,
                 diverging: bool, names: tuple[str, ...], title: str, label: str) -> None:
    """A 2-D field on the colour scale ``norm`` (shared between the panels of a figure):
    pcolormesh on a full grid, tricontourf on scattered points."""
    cmap = "RdBu_r" if diverging else "viridis"
    grid = _as_grid(x, values)
    if grid is not None:
        a0, a1, v = grid
        mappable = ax.pcolormesh(a0, a1, v.T, shading="nearest", cmap=cmap, norm=norm)
    else:
        try:
            levels = (
                MaxNLocator(20, symmetric=diverging).tick_values(norm.vmin, norm.vmax)
                if norm.vmax > norm.vmin else 20
            )
            mappable = ax.tricontourf(x[:, 0], x[:, 1], values, levels=levels, cmap=cmap, norm=norm,
                                      extend="both")
        except (ValueError, RuntimeError):  # too few or collinear points
            mappable = ax.scatter(x[:, 0], x[:, 1], c=values, cmap=cmap, norm=norm, s=12)
    fig.colorbar(mappable, ax=ax, label=label)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(title, fontsize="medium")


def _error_fields(source: Source, where: Mapping[str, Any] | None) -> list[ErrorField]:
    """:func:`error_field_stats` of every trial group of the selection (one problem)."""
    jobs, _ = _done(source, where)
    if not jobs:
        return [error_field_stats(source, where=where)]
    _one_problem(jobs, "plot_error_field")
    fields = []
    for group in trial_groups(jobs):
        try:
            fields.append(error_field_stats(group.jobs))
        except NothingToPlot:
            continue
    if not fields:
        raise NothingToPlot("no eval data in the selected jobs")
    return fields


def _row_title(ef: ErrorField, label: str) -> str:
    rel = ""
    if ef.rel_l2.size:
        rel = f", rel. L2 {ef.rel_l2.mean():.3g}" + (f" ± {ef.rel_l2.std(ddof=1):.2g}" if ef.rel_l2.size > 1 else "")
    return f"{label} ({ef.n} seed{'s' if ef.n != 1 else ''}{rel})"


def plot_error_field(source: Source, out: str | os.PathLike[str], *, where: Mapping[str, Any] | None = None) -> Path:
    """Figure 3: the error field of each trial group of the selection (one problem), averaged
    over seeds, one row per group.

    1-D problems: mean error (``eval/error``) with a +-1 std band against ``eval/x`` (rows
    share the error axis), and beside it the mean Fourier modulus ``eval/error_spectrum``
    (log y) with the fast scale k = L/eps marked. 2-D problems: images of the mean error and
    of the std, every mean image on one symmetric colour scale and every std image on
    another, so rows compare at a glance.
    """
    fields = _error_fields(source, where)
    dims = {ef.x.shape[1] for ef in fields}
    if len(dims) > 1:
        raise ValueError(f"plot_error_field: the selected groups mix {sorted(dims)}-D evaluation points")
    dim = dims.pop()
    key0 = fields[0].key
    names = coordinate_names(key0.get("problem"), dim)
    axes_ = distinguishing([ef.key for ef in fields], exclude=("problem",))
    if len(fields) == 1:  # the title says the rest
        axes_ = ["eps"] if fields[0].key.get("eps") is not None else []
    labels = [group_label(ef.key, axes_) if axes_ else "all seeds" for ef in fields]
    origin = " (from summary.h5)" if fields[0].source != "jobs" else ""
    if dim == 1:
        ncols = 2 if any(ef.spectrum is not None for ef in fields) else 1
        fig, axs = _new_figure(len(fields), ncols, panel=(5.6, 3.8))
        top = _largest([np.abs(ef.mean) + ef.std for ef in fields])
        for row, (ef, label) in enumerate(zip(fields, labels)):
            _error_row_1d(axs[row], ef, names, _row_title(ef, label), top)
    elif dim == 2:
        # A std image of a single seed is all zeros: drawn only when some group has two seeds.
        spread = any(ef.n > 1 for ef in fields)
        fig, axs = _new_figure(len(fields), 2 if spread else 1, panel=(5.4, 4.2))
        mean_norm = Normalize(-_largest([ef.mean for ef in fields]), _largest([ef.mean for ef in fields]))
        std_norm = Normalize(0.0, _largest([ef.std for ef in fields]))
        for row, (ef, label) in enumerate(zip(fields, labels)):
            title = _row_title(ef, label)
            _field_panel(fig, axs[row][0], ef.x, ef.mean, norm=mean_norm, diverging=True, names=names,
                         title=f"mean error: {title}", label=r"$u_\mathrm{pred} - u_\mathrm{exact}$")
            if spread:
                _field_panel(fig, axs[row][1], ef.x, ef.std, norm=std_norm, diverging=False, names=names,
                             title="std over seeds", label="std of error")
    else:
        raise NothingToPlot(f"eval/x has {dim} columns: only 1-D and 2-D fields are drawn")
    problem = str(key0.get("problem"))
    context = _context_axes(source, problem) if fields[0].source == "jobs" else []
    shared = _shared_text([Group(ef.key) for ef in fields], context)
    fig.suptitle(f"Error over seeds: {key0.get('problem')}{', ' + shared if shared else ''}{origin}"
                 + ("\ncolour scales shared between rows" if dim == 2 and len(fields) > 1 else ""))
    return _save(fig, out)


def _error_row_1d(row: Sequence[Any], ef: ErrorField, names: tuple[str, ...], title: str, top: float) -> None:
    """Mean error +- std (y range ``top``, shared) and the Fourier modulus of one group."""
    ax = row[0]
    order = np.argsort(ef.x[:, 0])
    xs, m, s = ef.x[order, 0], ef.mean[order], ef.std[order]
    ax.fill_between(xs, m - s, m + s, color="C0", alpha=0.25, lw=0, label="± 1 std over seeds")
    ax.plot(xs, m, color="C0", lw=1.4, label="mean error")
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_ylim(-1.05 * top, 1.05 * top)
    ax.set_xlabel(names[0])
    ax.set_ylabel(r"$u_\mathrm{pred} - u_\mathrm{exact}$")
    ax.set_title(f"error field: {title}", fontsize="medium")
    ax.grid(True, alpha=0.25)
    _legend(ax)
    if len(row) < 2:
        return
    ax = row[1]
    if ef.spectrum is None:
        ax.set_axis_off()
        return
    spec = ef.spectrum
    if spec.size == ef.x.shape[0] and spec.size > 2:  # a full DFT: keep 0..M/2
        spec = spec[: spec.size // 2 + 1]
    k = np.arange(spec.size)
    ax.plot(k, _positive(spec), "-", color="C1", lw=1.2, marker=".", ms=3, label="mean |DFT(error)|")
    if np.isfinite(_positive(spec)).any():
        _log_scale(ax, "y")
    eps = ef.key.get("eps")
    length = float(xs.max() - xs.min()) if xs.size > 1 else 1.0
    if eps and length > 0 and 0 < length / float(eps) <= k.max():
        ax.axvline(length / float(eps), color="grey", ls="--", lw=1, label=r"$k = L/\varepsilon$")
    ax.set_xlabel("wavenumber index k (cycles over the domain)")
    ax.set_ylabel("|DFT of error|")
    ax.set_title("Fourier modulus of the error", fontsize="medium")
    ax.grid(True, which="major", alpha=0.25)
    _legend(ax)


# --------------------------------------------------------------------------------------
# 3b. Error spectra
# --------------------------------------------------------------------------------------


def amplitude_spectrum(x: np.ndarray, values: np.ndarray, *, remove_jump: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One-sided amplitude spectrum of samples on an equispaced 1-D grid that holds both end
    points (ntksweep's evaluation grids do: x_j = a + j L / (M - 1), j = 0..M-1).

    Why the last point is dropped: the discrete Fourier series treats its N samples as one
    period of a periodic function. Keeping both ends would repeat x = a as x = a + L, so the
    period would be L M / (M - 1) and sin(2 pi k x) would fall between bins and leak. With
    the first N = M - 1 points the period is exactly L and the grid step h = L / N, so a
    sine with a whole number of cycles over the domain lands on one bin with its full
    amplitude.

    Why the end jump is removed (``remove_jump``): an error that differs at the two ends
    (a PINN's boundary errors) has a jump J = v(a + L) - v(a) in its periodic extension,
    which adds the sawtooth series, |J| / (pi k) at the k-th frequency, to every bin. In the
    paper 003 section 4.4 runs that sawtooth was as large as the whole spectrum from k = 1
    to past 1/eps and hid the 1/eps peak. Subtracting the zero-mean ramp
    J ((x - a) / L - 1/2) makes the extension continuous, keeps the mean, and leaves any
    error with equal end values (a sine with whole cycles, a cosine) unchanged; the ramp's
    own spectrum is the sawtooth, known from J alone (``ErrorSpectrum.end_jump``).

    Frequencies are in cycles per unit length, f_k = k / L (``numpy.fft.rfftfreq(N, h)``),
    so sin(2 pi x / eps) sits at 1 / eps whatever the domain length. Amplitudes are
    normalised so that A sin(2 pi f x + phi) on the grid shows A at f: |X_k| 2 / N for
    0 < k < N / 2, and |X_k| / N at k = 0 (the mean) and at the Nyquist bin k = N / 2.

    # Reference: the DFT of a sampled sine, X_k = -i A N / 2 at its bin (numpy.fft
    #   documentation, "Implementation details"); the sawtooth series
    #   x - 1/2 = -sum_k sin(2 pi k x) / (pi k) on (0, 1); paper 003 section 4.4 and Fig. 7
    #   (the Fourier coefficients of the error, peaks near 0 and at 1/eps).
    # Shapes: x [M] or [M, 1] ascending; values [..., M] -> frequency [K], amplitude [..., K]
    #   with K = N // 2 + 1, N = M - 1.

    Raises ``ValueError`` for fewer than three points or a grid that is not equispaced
    (relative tolerance 1e-6 on the steps; the spectrum of scattered points needs a
    different transform).
    """
    xs = np.asarray(x, dtype=float).reshape(-1)
    v = np.asarray(values, dtype=float)
    if xs.size < 3 or v.shape[-1] != xs.size:
        raise ValueError(f"an amplitude spectrum needs >= 3 points and one value per point "
                         f"(got {xs.size} points, values of shape {v.shape})")
    steps = np.diff(xs)
    length = xs[-1] - xs[0]
    h = length / (xs.size - 1)
    if not (h > 0 and np.allclose(steps, h, rtol=1e-6, atol=0.0)):
        raise ValueError(f"eval/x is not an equispaced ascending grid (steps {steps.min():g} "
                         f"to {steps.max():g})")
    if remove_jump:
        jump = v[..., -1:] - v[..., :1]
        v = v - jump * ((xs - xs[0]) / length - 0.5)
    n = xs.size - 1
    amplitude = np.abs(np.fft.rfft(v[..., :n], axis=-1)) * (2.0 / n)
    amplitude[..., 0] /= 2.0
    if n % 2 == 0:
        amplitude[..., -1] /= 2.0
    return np.fft.rfftfreq(n, d=h), amplitude


@dataclass
class ErrorSpectrum:
    """Amplitude spectra of the error of one trial group (see :func:`amplitude_spectrum`).

    ``key`` the group's settings (eps included) and ``series`` the same without eps (one
    panel of :func:`plot_error_spectra` per series); ``frequency`` [K] in cycles per unit
    length; ``amplitude`` [K] of the seed-mean error (what the paper's Fig. 7 shows: error
    common to every seed); ``trial_amplitude`` [K] the mean over seeds of each seed's
    amplitude (never below ``amplitude``; the gap is error that changes sign between seeds);
    ``n`` seeds; ``end_jump`` J, the seed-mean error at the last point minus at the first:
    the ramp removed before the transform (unless ``remove_jump=False``), whose spectrum is
    |J| / (pi k) at f_k = k / L.
    """

    key: dict[str, Any]
    series: dict[str, Any]
    frequency: np.ndarray
    amplitude: np.ndarray
    trial_amplitude: np.ndarray
    n: int
    end_jump: float
    notes: list[str] = field(default_factory=list)

    @property
    def eps(self) -> float | None:
        eps = self.key.get("eps")
        return float(eps) if isinstance(eps, (int, float)) else None

    def peak(self, low: float, high: float) -> tuple[float, float]:
        """(frequency, amplitude) of the largest ``amplitude`` with ``low <= f <= high``;
        (nan, nan) when no bin lies there."""
        inside = (self.frequency >= low) & (self.frequency <= high) & np.isfinite(self.amplitude)
        if not inside.any():
            return float("nan"), float("nan")
        i = np.flatnonzero(inside)[np.argmax(self.amplitude[inside])]
        return float(self.frequency[i]), float(self.amplitude[i])

    def low_peak(self) -> tuple[float, float]:
        """The low-frequency peak: the largest amplitude below half the eps frequency,
        0 <= f <= 1 / (2 eps) (0 included: a constant offset is low-frequency error); over
        every frequency when the problem has no eps."""
        return self.peak(0.0, 0.5 / self.eps if self.eps else math.inf)

    def eps_peak(self) -> tuple[float, float]:
        """The peak of the fast scale: the largest amplitude within one bin of f = 1 / eps
        (1/eps need not fall on a bin when L / eps is not an integer); nan without eps."""
        if not self.eps or self.frequency.size < 2:
            return float("nan"), float("nan")
        df = float(self.frequency[1] - self.frequency[0])
        return self.peak(1.0 / self.eps - df, 1.0 / self.eps + df)


def error_spectra(source: Source, *, where: Mapping[str, Any] | None = None,
                  remove_jump: bool = True) -> list[ErrorSpectrum]:
    """Amplitude spectra of ``eval/error`` for every trial group of the selection (one 1-D
    problem), in the reducer's group order: the seed-mean error's spectrum and the mean of
    the per-seed spectra, on the evaluation grid (:func:`amplitude_spectrum`, whose
    ``remove_jump`` this passes on; seeds are put on the first seed's grid as in
    :func:`error_field_stats`).

    Why not ``eval/error_spectrum``: that dataset is |DFT| of all M points, unnormalised and
    indexed by bin, with the repeated end point; it is kept for the error-field figure.

    Raises ``NothingToPlot`` for a problem that is not 1-D (the paper's spectra are of 1-D
    errors; a 2-D field needs a 2-D transform) or a grid that is not equispaced.
    """
    jobs, _ = _done(source, where)
    problem, jobs = _one_problem(jobs, "error_spectra")
    dim = _eval_dim(jobs)
    if dim is None:
        raise NothingToPlot(f"error_spectra: no eval data for {problem}")
    if dim != 1:
        raise NothingToPlot(f"error_spectra: {problem} is evaluated on {dim}-D points; "
                            "error spectra are drawn for 1-D problems only")
    out = []
    for group in trial_groups(jobs):
        try:
            ef = error_field_stats(group.jobs)
        except NothingToPlot:  # no seed of this group has eval data
            continue
        order = np.argsort(ef.x[:, 0])
        try:
            freq, amps = amplitude_spectrum(ef.x[order, 0], np.vstack([ef.mean[order], ef.errors[:, order]]),
                                            remove_jump=remove_jump)
        except ValueError as exc:
            raise NothingToPlot(f"error_spectra: {problem}: {exc}") from exc
        out.append(ErrorSpectrum(
            key=dict(group.key), series={k: v for k, v in group.key.items() if k != "eps"},
            frequency=freq, amplitude=amps[0], trial_amplitude=amps[1:].mean(axis=0), n=ef.n,
            end_jump=float(ef.mean[order][-1] - ef.mean[order][0]), notes=ef.notes,
        ))
    if not out:
        raise NothingToPlot(f"error_spectra: no eval data for {problem}")
    return out


def _amount(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.2g}"


def plot_error_spectra(source: Source, out: str | os.PathLike[str], *, where: Mapping[str, Any] | None = None) -> Path:
    """Figure 3b: amplitude spectra of the error (:func:`error_spectra`) of one 1-D problem,
    one panel per scaling series (all settings equal but seed and eps: e.g. unscaled and
    eps-rescaled Darcy side by side), one line per eps coloured as elsewhere, a dashed
    marker at 1/eps in the line's colour. Solid: the seed-mean error's spectrum; faint: the
    mean of the per-seed spectra. Legends give both peaks (:meth:`ErrorSpectrum.low_peak`,
    :meth:`ErrorSpectrum.eps_peak`). Log y; x is linear from 0 to 1 and logarithmic beyond
    (symlog), so the mean (f = 0) stays visible.

    # Reference: paper 003 section 4.4 and Fig. 7 (error spectra of the rescaled Darcy
    #   PINN: a low-frequency peak and one at 1/eps, both growing as eps shrinks).
    """
    spectra = error_spectra(source, where=where)
    problem = str(spectra[0].key.get("problem"))
    series = list(dict.fromkeys(freeze(s.series) for s in spectra))
    by_series = {f: [s for s in spectra if freeze(s.series) == f] for f in series}
    keys = [by_series[f][0].series for f in series]
    axes_ = distinguishing(keys, exclude=("problem",))
    colors = _eps_colors(sorted({s.eps for s in spectra if s.eps is not None}))
    ncols = min(2, len(series))
    fig, axs = _new_figure(math.ceil(len(series) / ncols), ncols, panel=(6.0, 4.0))
    for ax in axs.flat[len(series):]:
        ax.set_axis_off()
    for ax, f in zip(axs.flat, series):
        for s in sorted(by_series[f], key=lambda s: -(s.eps or 0.0)):
            color = colors.get(s.eps, "C0")
            (fl, al), (fe, ae) = s.low_peak(), s.eps_peak()
            label = (f"{format_eps(s.eps) if s.eps is not None else 'all seeds'} (n={s.n}): "
                     f"low {_amount(al)} at {fl:g}" + (f", 1/ε {_amount(ae)} at {fe:g}" if s.eps else ""))
            ax.plot(s.frequency, _positive(s.amplitude), "-", color=color, lw=1.3, label=label)
            ax.plot(s.frequency, _positive(s.trial_amplitude), "-", color=color, lw=0.8, alpha=0.35)
            if s.eps:
                ax.axvline(1.0 / s.eps, color=color, ls="--", lw=1)
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
        ax.set_xlim(0.0, max(float(s.frequency[-1]) for s in by_series[f]))
        _log_scale(ax, "y")
        ax.set_xlabel("frequency (cycles per unit length)")
        ax.set_ylabel("amplitude of the error")
        title = group_label(by_series[f][0].series, axes_) if axes_ else "all trial groups"
        ax.set_title(title, fontsize="medium")
        ax.grid(True, which="major", alpha=0.25)
        _legend(ax)
    shared = _shared_text([Group(s.key) for s in spectra], _context_axes(source, problem))
    fig.suptitle(f"Error spectra: {problem}{', ' + shared if shared else ''}\n"
                 "solid: spectrum of the seed-mean error, faint: mean of per-seed spectra, "
                 "dashed: f = 1/ε; end jump removed (amplitude_spectrum)")
    return _save(fig, out)


# --------------------------------------------------------------------------------------
# 4 and 5. Training histories
# --------------------------------------------------------------------------------------


def _history(pairs: list[tuple[np.ndarray, np.ndarray]]):
    """Align per-seed histories on their common steps: (steps, mean, min, max, n)."""
    pairs = [(s.reshape(-1), np.asarray(v, dtype=float).reshape(-1)) for s, v in pairs
             if v is not None and s.size and s.size == np.size(v)]
    if not pairs:
        return None
    common = reduce(np.intersect1d, [s for s, _ in pairs])
    if common.size == 0:
        return None
    stack = []
    for s, v in pairs:
        _, _, idx = np.intersect1d(common, s, return_indices=True)
        stack.append(v[idx])
    stack = np.stack(stack)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return common, np.nanmean(stack, 0), np.nanmin(stack, 0), np.nanmax(stack, 0), len(pairs)


def _history_figure(
    source: Source,
    out: str | os.PathLike[str],
    where: Mapping[str, Any] | None,
    who: str,
    panels: Callable[[list[TrainRecord]], list[tuple[str, str, Callable[[TrainRecord], Any], str]]],
    heading: str,
) -> Path:
    """One panel per (title, ylabel, extractor, yscale); one line per trial group (mean over
    seeds, shaded from the smallest to the largest seed)."""
    jobs, _ = _done(source, where)
    problem, jobs = _one_problem(jobs, who)
    lines = _lines(trial_groups(jobs))
    records = [(line, [r for j in line.group.jobs for r in [j.read_train()] if r is not None]) for line in lines]
    records = [(line, recs) for line, recs in records if recs]
    if not records:
        raise NothingToPlot(f"{who}: no train/ histories for {problem}")
    specs = panels([r for _, recs in records for r in recs])
    if not specs:
        raise NothingToPlot(f"{who}: nothing to draw for {problem}")
    ncols = min(3, len(specs))
    nrows = math.ceil(len(specs) / ncols)
    fig, axes = _new_figure(nrows, ncols, panel=(4.8, 3.4))
    for i, ax in enumerate(axes.flat):
        if i >= len(specs):
            ax.set_axis_off()
            continue
        title, ylabel, extract, yscale = specs[i]
        drawn, zeros = [], []
        for line, recs in records:
            stats = _history([(r.step, extract(r)) for r in recs])
            if stats is None:
                continue
            steps, mean, lo, hi, n = stats
            # A loss that is zero at every step and every seed is a term the exact-boundary
            # ansatz satisfies (model.exact_bc): the legend says so, and the line stays out of
            # the choice of scale, so that trained lines in the same panel keep their log axis.
            exact = title.startswith("loss: ") and bool(np.all(hi == 0))
            label = f"{line.label} (n={n}{', exact: loss 0' if exact else ''})"
            ax.plot(steps, mean, line.style, color=line.color, lw=1.3, label=label)
            if n > 1:
                ax.fill_between(steps, lo, hi, color=line.color, alpha=0.2, lw=0)
            (zeros if exact else drawn).append(mean)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        if not drawn and not zeros:
            _no_data(ax)
            continue
        values = np.concatenate(drawn or zeros)
        values = values[np.isfinite(values)]
        positive = values.size and bool(np.all(values > 0))
        if yscale == "log" and positive:
            _log_scale(ax, "y")
        elif yscale == "auto" and positive and values.max() / values.min() > 20:
            _log_scale(ax, "y")
        ax.grid(True, which="major", alpha=0.25)
        _legend(ax)
    shared = _shared_text([line.group for line, _ in records], _context_axes(source, problem))
    fig.suptitle(f"{heading}: {problem}{', ' + shared if shared else ''}\n"
                 "mean over seeds, shaded: range over seeds")
    return _save(fig, out)


def plot_adaptive_weights(source: Source, out: str | os.PathLike[str], *, where: Mapping[str, Any] | None = None) -> Path:
    """Figure 4: loss weights ``train/weight/<term>`` against ``train/step`` for one problem,
    one panel per term, one line per trial group (log y when they span > 20x)."""

    def panels(records: list[TrainRecord]):
        terms = _term_order(t for r in records for t in r.weight)
        return [(f"weight of {t}", rf"$\lambda$ ({t})", (lambda r, t=t: r.weight.get(t)), "auto") for t in terms]

    return _history_figure(source, out, where, "plot_adaptive_weights", panels, "Loss weights over training")


def plot_loss_curves(source: Source, out: str | os.PathLike[str], *, where: Mapping[str, Any] | None = None) -> Path:
    """Figure 5: ``train/loss/<term>`` (one panel per term) and ``train/rel_l2`` against
    ``train/step`` for one problem, one line per trial group, log y."""

    def panels(records: list[TrainRecord]):
        terms = _term_order(t for r in records for t in r.loss)
        specs = [(f"loss: {t}", f"mean-squared {t} loss", (lambda r, t=t: r.loss.get(t)), "log") for t in terms]
        if any(r.rel_l2 is not None for r in records):
            specs.append(("relative L2 error", "relative L2 error", lambda r: r.rel_l2, "log"))
        return specs

    return _history_figure(source, out, where, "plot_loss_curves", panels, "Training losses")


# --------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------


@dataclass
class FigureRun:
    """What :func:`make_all_figures` did: paths written, figures skipped (with why) and
    figures that failed with an unexpected error."""

    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _eval_dim(jobs: Sequence[Job]) -> int | None:
    """Columns of ``eval/x`` of the first job that has them."""
    for job in jobs:
        ev = job.read_eval()
        if ev is not None:
            return ev.dim
    return None


def _group_slug(group: Group, axes: Sequence[str]) -> str:
    """``darcy1d__eps0.125__w50__none__none`` plus the other distinguishing settings."""
    k = group.key
    eps = [f"eps{k['eps']:g}"] if isinstance(k.get("eps"), (int, float)) else []
    extras = [f"{a}={value_text(k.get(a))}" for a in axes if a not in KEY_ATTRS]
    return slug(k.get("problem"), *eps, f"w{k.get('width')}", k.get("balancer"), k.get("normalization"), *extras)


def _problem_parts(problem: str, jobs: list[Job]) -> list[tuple[str, dict[str, Any]]]:
    """(file-name suffix, where) of the history and spectra figures of one problem: one
    figure, or one per scaling series when there are more than ``MAX_LINES`` lines."""
    if len(trial_groups(jobs)) <= MAX_LINES:
        return [("", {"problem": problem})]
    series = series_groups(jobs)
    axes = distinguishing([s.key for s in series], exclude=("problem",))
    return [
        (f"__{slug(describe(s.key, axes) or i)}", {"problem": problem, "job_id": s.job_ids})
        for i, s in enumerate(series)
    ]


def figure_plan(results: Results) -> list[tuple[str, Callable[..., Path], dict[str, Any]]]:
    """(file name, figure function, where) for every figure of a results folder, per
    problem: ``ntk_scaling__<problem>.png`` (problems with eps); ``ntk_spectra__``,
    ``loss__`` and ``weights__<problem>.png``, and for 1-D problems
    ``error_spectra__<problem>.png`` (all four split by scaling series,
    ``..__<settings>.png``, beyond ``MAX_LINES`` trial groups; 2-D problems have no error
    spectra, ``plot_error_spectra`` says so when called on one); error fields
    ``error__<problem>__eps<eps>__w<width>__<balancer>__<normalization>[__<settings>].png``
    per trial group for 1-D problems, ``error__<problem>[__part<k>].png`` with up to
    ``ERROR_ROWS`` groups for 2-D problems. Without done jobs, scaling and error figures
    come from summary.h5."""
    done = results.done()
    plan: list[tuple[str, Callable[..., Path], dict[str, Any]]] = []
    if not done and results.summary is not None:
        problems = {s.key.get("problem") for s in results.summary.scaling}
        for problem in sorted(problems, key=lambda p: sort_key([p])):
            plan.append((f"ntk_scaling__{slug(problem)}.png", plot_ntk_scaling, {"problem": problem}))
        for t in results.summary.trials:
            where = {k: v for k, v in t.key.items() if v is not None}
            eps = where.get("eps")
            name = slug(where.get("problem"), f"eps{eps:g}" if isinstance(eps, (int, float)) else f"eps{eps}",
                        f"w{where.get('width')}", where.get("balancer"), where.get("normalization"))
            plan.append((f"error__{name}.png", plot_error_field, where))
        return plan
    axes = distinguishing([g.key for g in trial_groups(done)])
    for problem in sorted({str(j.attrs.get("problem")) for j in done}):
        jobs = select(done, {"problem": problem})
        if any(j.attrs.get("eps") is not None for j in jobs):
            plan.append((f"ntk_scaling__{slug(problem)}.png", plot_ntk_scaling, {"problem": problem}))
        for suffix, where in _problem_parts(problem, jobs):
            plan.append((f"ntk_spectra__{slug(problem)}{suffix}.png", plot_ntk_spectra, where))
            plan.append((f"loss__{slug(problem)}{suffix}.png", plot_loss_curves, where))
            plan.append((f"weights__{slug(problem)}{suffix}.png", plot_adaptive_weights, where))
            if (_eval_dim(jobs) or 1) == 1:
                plan.append((f"error_spectra__{slug(problem)}{suffix}.png", plot_error_spectra, where))
        groups = trial_groups(jobs)
        if (_eval_dim(jobs) or 1) >= 2:
            chunks = [groups[i:i + ERROR_ROWS] for i in range(0, len(groups), ERROR_ROWS)]
            for k, chunk in enumerate(chunks):
                ids = tuple(i for g in chunk for i in g.job_ids)
                part = f"__part{k + 1}" if len(chunks) > 1 else ""
                plan.append((f"error__{slug(problem)}{part}.png", plot_error_field, {"problem": problem, "job_id": ids}))
        else:
            for g in groups:
                where = {"problem": problem, "job_id": g.job_ids}
                plan.append((f"error__{_group_slug(g, axes)}.png", plot_error_field, where))
    return plan


def make_all_figures(source: Source, out_dir: str | os.PathLike[str], *,
                     log: Callable[[str], None] | None = None) -> FigureRun:
    """Draw every figure of :func:`figure_plan` into ``out_dir``.

    A figure whose data is absent is skipped with a note; any other error is recorded and
    the remaining figures are still drawn. ``log`` (e.g. ``print``) receives each written
    path as it is written, and ``note: ...`` / ``error: ...`` lines.
    """
    if isinstance(source, Results):
        results = source
    elif isinstance(source, (str, os.PathLike)):
        results = load_results(source)
    else:
        results = Results(root=Path("."), jobs=list(source))
    out_dir = Path(out_dir)
    run = FigureRun()
    say = log or (lambda _line: None)
    for name, func, where in figure_plan(results):
        try:
            path = func(results, out_dir / name, where=where)
        except NothingToPlot as exc:
            run.skipped.append(f"{name}: {exc}")
            say(f"note: skipped {name}: {exc}")
        except Exception as exc:  # one bad figure must not cost the others
            run.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            say(f"error: {name}: {type(exc).__name__}: {exc}")
        else:
            run.written.append(path)
            say(str(path))
    return run
