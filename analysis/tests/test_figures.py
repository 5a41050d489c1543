"""Tests of analysis.figures: every figure function on the synthetic folder, the numbers
behind them, and the edge cases (one eps, one seed, one snapshot, 2-D fields, summary.h5).

Why this file exists: figures are read by people deciding whether the NTK scales as
eps^-2; a figure that silently averages a diverged job, or crashes on a group with one
seed, defeats the sweep. The numbers checked here come from the closed forms in conftest.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from analysis import figures
from analysis.figures import (
    NothingToPlot,
    error_field_stats,
    figure_plan,
    fit_power_law,
    ntk_scaling_table,
    plot_adaptive_weights,
    plot_error_field,
    plot_error_spectra,
    plot_loss_curves,
    plot_ntk_scaling,
    plot_ntk_spectra,
)
from analysis.load import load_results, select

from .conftest import (
    EVAL_POINTS,
    EXPECTED_FIGURES,
    SUMMARY_FIGURES,
    assert_png,
    eval_error,
    residual_frobenius,
    write_job,
    write_summary,
)

DARCY = {"problem": "darcy1d", "width": 20, "balancer": "ntk", "normalization": "none"}
SINGLE = {"problem": "darcy1d", "width": 40, "balancer": "none", "normalization": "zscore"}
WAVE = {"problem": "wave1d", "width": 20, "balancer": "grad_stats", "normalization": "zscore"}


def test_fit_power_law():
    eps = np.array([0.5, 0.25, 0.125, 0.0625])
    slope, prefactor = fit_power_law(eps, 7.0 * eps**-2)
    assert slope == pytest.approx(-2.0) and prefactor == pytest.approx(7.0)
    assert fit_power_law([0.5], [1.0]) is None
    assert fit_power_law([0.5, 0.5], [1.0, 2.0]) is None
    assert fit_power_law([0.5, 0.25], [1.0, -1.0]) is None


def test_scaling_uses_done_jobs_only_and_finds_slope_minus_two(results):
    series = ntk_scaling_table(results, where=DARCY)
    res = {s.snapshot: s for s in series if s.term == "residual"}
    assert set(res) == {"first", "last"}
    first = res["first"]
    assert first.eps.tolist() == [0.125, 0.25, 0.5]
    assert first.n.tolist() == [2, 2, 2]  # failed, diverged and missing seeds left out
    expected = [np.mean([residual_frobenius(e, s, 0) for s in (0, 1)]) for e in (0.125, 0.25, 0.5)]
    np.testing.assert_allclose(first.mean, expected)
    np.testing.assert_allclose(first.std[0], np.std([residual_frobenius(0.125, s, 0) for s in (0, 1)], ddof=1))
    assert first.fit[0] == pytest.approx(-2.0)
    assert res["last"].steps == [100] and first.steps == [0]
    boundary = next(s for s in series if s.term == "boundary" and s.snapshot == "first")
    assert boundary.fit[0] == pytest.approx(0.0, abs=1e-12)
    assert {s.term for s in series} == {"residual", "boundary", "full"}


def test_every_function_on_one_eps_one_seed_one_snapshot(results_dir, results, tmp_path):
    # every figure function, called directly, on the group with one eps, one seed and one
    # NTK snapshot (no fit, no spread), with each kind of source: a loaded Results, a
    # folder path, a list of jobs. The command-line test draws every other group.
    series = ntk_scaling_table(results, where=SINGLE)
    assert series and all(s.fit is None and s.snapshot == "first" for s in series)
    ef = error_field_stats(results, where={**SINGLE, "eps": 0.25})
    assert ef.n == 1 and np.all(ef.std == 0)
    single_jobs = select(results.jobs, SINGLE)
    for func, source, where in (
        (plot_ntk_scaling, results, SINGLE),
        (plot_ntk_spectra, results_dir, SINGLE),
        (plot_loss_curves, single_jobs, None),
        (plot_adaptive_weights, results, SINGLE),
        (plot_error_field, results, {**SINGLE, "eps": 0.25}),
    ):
        out = tmp_path / "sub" / f"{func.__name__}.png"
        assert func(source, out, where=where) == out
        assert_png(out)


def test_error_field_1d(results):
    where = {**DARCY, "eps": 0.125}
    ef = error_field_stats(results, where=where)
    assert ef.n == 2 and ef.x.shape == (EVAL_POINTS, 1)
    x = np.linspace(0.0, 1.0, EVAL_POINTS)
    errors = np.stack([eval_error(x, 0.125, s) for s in (0, 1)])
    np.testing.assert_allclose(ef.mean, errors.mean(0), atol=1e-12)
    np.testing.assert_allclose(ef.std, errors.std(0, ddof=1), atol=1e-12)
    spec = np.abs(np.fft.rfft(errors, axis=1)).mean(0)
    np.testing.assert_allclose(ef.spectrum, spec, atol=1e-12)
    assert ef.rel_l2.size == 2


def test_error_field_2d(results):
    # eps 0.5 sits on a full (t, x) grid (pcolormesh), eps 0.25 on scattered points
    # (tricontourf); the command-line test draws both
    for eps, grid in ((0.5, True), (0.25, False)):
        ef = error_field_stats(results, where={**WAVE, "eps": eps})
        assert ef.x.shape[1] == 2 and ef.spectrum is None and ef.n == 2
        assert (figures._as_grid(ef.x, ef.mean) is not None) == grid


def test_ambiguous_or_empty_selection(results, tmp_path):
    with pytest.raises(ValueError, match="pass where"):
        plot_ntk_spectra(results, tmp_path / "x.png")
    with pytest.raises(ValueError, match="one problem"):
        plot_ntk_scaling(results, tmp_path / "x.png")
    with pytest.raises(NothingToPlot):
        plot_loss_curves(results, tmp_path / "x.png", where={"problem": "helmholtz2d"})
    # a failed job alone has nothing to draw
    failed = results.by_status("failed")
    with pytest.raises(NothingToPlot):
        plot_loss_curves(failed, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_figure_plan_names_every_group(results):
    # make_all_figures draws exactly this plan; the command-line test renders all of it
    plan = figure_plan(results)
    assert sorted(name for name, _, _ in plan) == EXPECTED_FIGURES
    assert {func for _, func, _ in plan} == {
        plot_ntk_scaling, plot_ntk_spectra, plot_error_field, plot_adaptive_weights,
        plot_loss_curves, plot_error_spectra,
    }


def test_summary_only_folder(tmp_path):
    # only summary.h5 was copied: scaling and error figures come from it (the command-line
    # test renders them)
    write_summary(tmp_path / "summary.h5")
    r = load_results(tmp_path)
    series = ntk_scaling_table(r, where={"problem": "darcy1d"})
    assert {s.snapshot for s in series} == {"first", "last"}
    assert all(s.source == "summary.h5" and s.fit[0] == pytest.approx(-2.0) for s in series)
    ef = error_field_stats(r, where={"problem": "darcy1d", "eps": 0.125})
    assert ef.source == "summary.h5" and ef.n == 2 and ef.spectrum is None
    np.testing.assert_allclose(ef.std, 1e-3)
    assert sorted(name for name, _, _ in figure_plan(r)) == SUMMARY_FIGURES


def test_summary_exponent_attached_as_cross_check(results_dir, tmp_path):
    # the job files stay the source; the reducer's exponent rides along for the legend
    import shutil

    shutil.copytree(results_dir / "jobs", tmp_path / "jobs")
    write_summary(tmp_path / "summary.h5")
    r = load_results(tmp_path)
    series = ntk_scaling_table(r, where=DARCY)
    res = [s for s in series if s.term == "residual"]
    assert res and all(s.source == "jobs" and s.reducer["exponent"] == -2.0 for s in res)
    assert all(s.reducer is None for s in series if s.term != "residual")
    assert_png(plot_ntk_scaling(r, tmp_path / "s.png", where={"problem": "darcy1d"}))


def test_loss_of_an_exact_term_is_labelled_and_keeps_the_log_axis(tmp_path, monkeypatch):
    # model.exact_bc: the terms the ansatz satisfies report a loss of exactly 0 at every step
    # (train/loss/<term>, no weight, no NTK block). Beside a trained boundary loss, the zero
    # line is named "exact: loss 0" and does not force the panel onto a linear axis.
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    x1 = np.linspace(0.0, 1.0, EVAL_POINTS)[:, None]
    terms = {"residual": np.linspace(0.0, 1.0, 8)[:, None], "boundary": np.array([[0.0], [1.0]])}
    common = dict(problem="darcy1d", eps=0.25, seed=0, balancer="none", normalization="none", terms=terms, eval_x=x1)
    write_job(jobs, "trained", width=16, **common)
    exact = write_job(jobs, "exact", width=32, **common)
    with h5py.File(exact, "a") as f:
        f["train/loss/boundary"][...] = 0.0
        del f["train/weight/boundary"], f["ntk/boundary"]
        f.attrs["exact_terms"] = "boundary"
    drawn = {}
    monkeypatch.setattr(figures, "_save", lambda fig, out: drawn.setdefault("fig", fig) and out)
    plot_loss_curves(load_results(tmp_path), tmp_path / "loss.png")
    ax = next(a for a in drawn["fig"].axes if a.get_title() == "loss: boundary")
    labels = ax.get_legend_handles_labels()[1]
    assert ax.get_yscale() == "log", labels
    assert sum("exact: loss 0" in lbl for lbl in labels) == 1 and len(labels) == 2, labels
    residual = next(a for a in drawn["fig"].axes if a.get_title() == "loss: residual")
    assert not any("exact" in lbl for lbl in residual.get_legend_handles_labels()[1])
