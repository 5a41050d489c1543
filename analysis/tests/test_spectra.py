"""Tests of the error spectra (paper 003 section 4.4): ``amplitude_spectrum``,
``error_spectra`` and ``plot_error_spectra``.

Why this file exists: the claim read off the figure is "a low-frequency peak and a peak at
1/eps, both growing as eps shrinks"; a spectrum whose amplitudes are off by the factor
2 / N, or whose frequency axis counts bins instead of cycles per unit length, would put the
peaks at the wrong height or place. The synthetic errors below are sums of sines with whole
cycles on the grid, so after dropping the repeated end point their discrete Fourier series
is exact: the peaks must come back to rounding (float64 sums over 64-128 points of values
of order 1: |error| about N * 2.2e-16 = 3e-14, hence the absolute tolerance 1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.figures import (
    NothingToPlot,
    amplitude_spectrum,
    error_spectra,
    figure_plan,
    plot_error_spectra,
)
from analysis.load import load_results

from .conftest import EVAL_POINTS, assert_png, write_job

TOL = 1e-12
SPECTRA_EPS = (0.25, 0.125)
#: The trial groups of the folder below: balancer -> eps -> (A1, A2), the seed-mean
#: amplitudes of sin(2 pi x) and sin(2 pi x / eps) (the first two groups mimic unscaled and
#: eps-rescaled Darcy).
AMPLITUDES = {
    "none": {0.25: (0.02, 0.005), 0.125: (0.04, 0.009)},
    "eps_rescale": {0.25: (0.003, 0.0007), 0.125: (0.006, 0.0011)},
}
#: A component that changes sign between the two seeds (gone from the seed mean, present in
#: the mean of the per-seed spectra) and a ramp c x (a jump c between the ends).
SIGN_FLIP = (3.0, 0.01)
RAMP = 0.004


def synthetic_error(x: np.ndarray, eps: float, balancer: str, seed: int) -> np.ndarray:
    a1, a2 = AMPLITUDES[balancer][eps]
    f, b = SIGN_FLIP
    # seeds 0 and 1 carry (1 -+ 0.5) times each amplitude: the seed mean is (A1, A2)
    share = 1.0 - 0.5 if seed == 0 else 1.0 + 0.5
    return (share * a1 * np.sin(2 * np.pi * x) + share * a2 * np.sin(2 * np.pi * x / eps)
            + (-1) ** seed * b * np.sin(2 * np.pi * f * x) + RAMP * x)


@pytest.fixture(scope="module")
def spectra_dir(tmp_path_factory: pytest.TempPathFactory):
    """darcy1d, balancer none / eps_rescale x eps 1/4, 1/8 x seeds 0, 1, errors above, on
    the 65-point grid of [0, 1] (so 64 samples after the end point: frequencies 0..32)."""
    root = tmp_path_factory.mktemp("spectra")
    jobs = root / "jobs"
    jobs.mkdir()
    x = np.linspace(0.0, 1.0, EVAL_POINTS)[:, None]
    terms = {"residual": np.linspace(0.0, 1.0, 6)[1:-1, None], "boundary": np.array([[0.0], [1.0]])}
    for balancer in AMPLITUDES:
        for eps in SPECTRA_EPS:
            for seed in (0, 1):
                write_job(jobs, f"{balancer}-{eps:g}-{seed}", problem="darcy1d", eps=eps, width=20,
                          seed=seed, balancer=balancer, normalization="none", terms=terms, eval_x=x,
                          error_fn=lambda xs, e=eps, b=balancer, s=seed: synthetic_error(xs, e, b, s))
    return root


def test_amplitude_spectrum_units_and_normalisation():
    # [0, 2] with 129 points: 128 samples, step 1/64, frequencies k / 2 cycles per unit length
    # (a frequency axis in bins would put sin(2 pi x) at 2, not 1)
    x = np.linspace(0.0, 2.0, 129)
    v = 0.7 + 0.3 * np.sin(2 * np.pi * x) + 0.05 * np.cos(2 * np.pi * 8 * x + 0.4) + 0.2 * np.cos(2 * np.pi * 32 * x)
    freq, amp = amplitude_spectrum(x, v)
    assert freq.shape == amp.shape == (65,)
    np.testing.assert_allclose(freq, np.arange(65) / 2.0)
    # 32 is the Nyquist frequency (bin 64 of 128): cos(2 pi 32 x) samples to +-1, amplitude 0.2
    expected = {0.0: 0.7, 1.0: 0.3, 8.0: 0.05, 32.0: 0.2}
    for f, a in expected.items():
        assert amp[freq == f][0] == pytest.approx(a, abs=TOL), f
    others = ~np.isin(freq, list(expected))
    assert np.abs(amp[others]).max() < TOL
    # a stack of rows is transformed row by row
    _, rows = amplitude_spectrum(x, np.stack([v, 2 * v]))
    np.testing.assert_allclose(rows, [amp, 2 * amp], atol=TOL)


def test_amplitude_spectrum_end_jump():
    # a ramp J x / L on [0, 2], J = 0.4: removed, it leaves its mean J / 2 = 0.2 at f = 0 and
    # nothing else; kept, the periodic extension jumps by J and every bin k > 0 gets the
    # discrete sawtooth J / (N sin(pi k / N)) (DFT of J j / N: |X_k| = J / (2 sin(pi k / N)),
    # times 2 / N), about J / (pi k) for small k
    x = np.linspace(0.0, 2.0, 129)
    v = 0.3 * np.sin(2 * np.pi * x) + 0.2 * x
    freq, amp = amplitude_spectrum(x, v)
    assert amp[0] == pytest.approx(0.2, abs=TOL) and amp[2] == pytest.approx(0.3, abs=TOL)
    assert np.abs(np.delete(amp, [0, 2])).max() < TOL
    _, kept = amplitude_spectrum(x, 0.2 * x, remove_jump=False)
    k = np.arange(1, 64)
    np.testing.assert_allclose(kept[1:64], 0.4 / (128 * np.sin(np.pi * k / 128)), rtol=1e-9)


def test_amplitude_spectrum_needs_an_equispaced_grid():
    with pytest.raises(ValueError, match="equispaced"):
        amplitude_spectrum(np.array([0.0, 0.1, 0.5, 1.0]), np.zeros(4))
    with pytest.raises(ValueError, match=">= 3 points"):
        amplitude_spectrum(np.array([0.0, 1.0]), np.zeros(2))


def test_error_spectra_peaks_at_one_and_one_over_eps(spectra_dir):
    spectra = error_spectra(spectra_dir)
    found = {(s.key["balancer"], s.eps) for s in spectra}
    assert found == {(b, e) for b in AMPLITUDES for e in SPECTRA_EPS}
    for s in spectra:
        a1, a2 = AMPLITUDES[s.key["balancer"]][s.eps]
        assert s.n == 2 and s.series == {k: v for k, v in s.key.items() if k != "eps"}
        assert s.frequency.shape == (EVAL_POINTS // 2 + 1,)
        np.testing.assert_allclose(s.frequency, np.arange(s.frequency.size))
        # the two peaks, at their frequency in cycles per unit length, with their amplitude
        assert s.low_peak() == (1.0, pytest.approx(a1, abs=TOL))
        assert s.eps_peak() == (1.0 / s.eps, pytest.approx(a2, abs=TOL))
        # the ramp: end jump c, mean c / 2 at f = 0, nothing leaked
        assert s.end_jump == pytest.approx(RAMP, abs=TOL)
        assert s.amplitude[0] == pytest.approx(RAMP / 2, abs=TOL)
        # the sign-flipping sine cancels in the seed mean but not in the per-seed spectra
        f, b = SIGN_FLIP
        i = int(np.flatnonzero(s.frequency == f)[0])
        assert s.amplitude[i] < TOL and s.trial_amplitude[i] == pytest.approx(b, abs=TOL)
        rest = np.ones(s.frequency.size, bool)
        rest[[0, 1, i, int(round(1 / s.eps))]] = False
        assert np.abs(s.amplitude[rest]).max() < TOL
        assert np.all(s.trial_amplitude >= s.amplitude - TOL)


def test_plot_error_spectra_and_the_plan(spectra_dir, tmp_path):
    out = tmp_path / "figs" / "error_spectra.png"
    assert plot_error_spectra(spectra_dir, out) == out
    assert_png(out)
    plan = {name: func for name, func, _ in figure_plan(load_results(spectra_dir))}
    assert plan["error_spectra__darcy1d.png"] is plot_error_spectra


def test_two_dimensional_problem_is_skipped(results, tmp_path):
    # wave1d is evaluated on (t, x): no spectrum is drawn, and the plan leaves it out
    with pytest.raises(NothingToPlot, match="1-D problems only"):
        plot_error_spectra(results, tmp_path / "wave.png", where={"problem": "wave1d"})
    assert not (tmp_path / "wave.png").exists()
    names = [name for name, _, _ in figure_plan(results)]
    assert "error_spectra__darcy1d.png" in names
    assert not any(n.startswith("error_spectra__wave1d") for n in names)
