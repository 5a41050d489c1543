"""Synthetic ntksweep results folders for the analysis tests.

Why this file exists: the analysis package must work on files that follow the HDF5 contract
of DESIGN.md before (and independently of) the Rust writer, so the tests build a small
results folder with h5py, field by field from the contract, with every awkward case the
loader has to survive:

* darcy1d, width 20, balancer ntk, normalization none: eps 2^-1, 2^-2, 2^-3 x seeds 0-2,
  terms residual and boundary, NTK snapshots at steps [0, 100]. Of its nine grid points,
  (eps 0.125, seed 2) failed (attributes only, no datasets), (eps 0.5, seed 2) diverged
  (datasets full of huge numbers and NaN, which must not leak into statistics) and
  (eps 0.25, seed 2) has no file at all (missing). ||K_res||_F = c eps^-2 exactly (the
  seed factor averages to the same constant at every eps), so the fitted slope is -2.
* darcy1d, width 40, balancer none, normalization zscore: one eps, one seed, one NTK
  snapshot (no fit possible).
* wave1d, width 20, grad_stats, zscore: eps 0.5 and 0.25 x seeds 0-1, terms residual,
  initial_value and boundary (three of the four, to keep the suite fast), 2-D eval points
  (t, x) - a full tensor grid at eps 0.5, scattered points at eps 0.25 - and attribute
  strings stored as fixed-length bytes instead of variable-length UTF-8.
* a file that is not HDF5 (unreadable) and a hidden temporary file (ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

DARCY_EPS = (0.5, 0.25, 0.125)
WAVE_EPS = (0.5, 0.25)
NTK_STEPS = (0, 100)
TRAIN_STEPS = np.arange(0, 101, 10)
RES_POINTS = 16
EVAL_POINTS = 65

#: (problem, width, balancer, normalization) groups with done jobs.
CONFIG_GROUPS = {
    ("darcy1d", 20, "ntk", "none"),
    ("darcy1d", 40, "none", "zscore"),
    ("wave1d", 20, "grad_stats", "zscore"),
}
#: Done jobs per (problem, eps, width, balancer, normalization) group.
TRIAL_GROUPS = {
    ("darcy1d", 0.5, 20, "ntk", "none"): 2,
    ("darcy1d", 0.25, 20, "ntk", "none"): 2,
    ("darcy1d", 0.125, 20, "ntk", "none"): 2,
    ("darcy1d", 0.25, 40, "none", "zscore"): 1,
    ("wave1d", 0.5, 20, "grad_stats", "zscore"): 2,
    ("wave1d", 0.25, 20, "grad_stats", "zscore"): 2,
}
#: The PNGs drawn for a folder holding only the summary.h5 of ``write_summary``.
SUMMARY_FIGURES = ["error__darcy1d__eps0.125__w20__ntk__none.png", "ntk_scaling__darcy1d.png"]
#: Every PNG ``python -m analysis`` must write for this folder: per problem the scaling,
#: spectra, loss and weight figures; per trial group an error figure for the 1-D problem, one
#: error figure with a row per group for the 2-D one; error spectra for the 1-D problem only.
EXPECTED_FIGURES = sorted(
    [f"{kind}__{p}.png" for p in ("darcy1d", "wave1d") for kind in ("ntk_scaling", "ntk_spectra", "loss", "weights")]
    + [f"error__{p}__eps{e:g}__w{w}__{b}__{n}.png" for (p, e, w, b, n) in TRIAL_GROUPS if p == "darcy1d"]
    + ["error__wave1d.png", "error_spectra__darcy1d.png"]
)


def residual_frobenius(eps: float, seed: int, snapshot: int) -> float:
    """||K_res||_F of the synthetic jobs: 3 eps^-2 at init, 5 eps^-2 after training,
    times a seed factor whose mean over seeds {0, 1} is 0.99 at every eps."""
    return (3.0 if snapshot == 0 else 5.0) * eps**-2 * (1.0 + 0.02 * (seed - 1))


def eval_error(x: np.ndarray, eps: float, seed: int) -> np.ndarray:
    """eval/error of a synthetic 1-D job: the fast scale sin(2 pi x / eps) left over."""
    return 0.01 * (seed + 1) * np.sin(2 * np.pi * x / eps) + 0.001 * x


def _spectrum(frobenius: float, n: int) -> np.ndarray:
    """Descending positive eigenvalues whose 2-norm is ``frobenius`` (K is PSD)."""
    lam = 2.0 ** -np.arange(n, dtype=float)
    return frobenius * lam / np.linalg.norm(lam)


def write_job(
    jobs_dir: Path,
    job_id: str,
    *,
    problem: str,
    eps: float,
    width: int,
    seed: int,
    balancer: str,
    normalization: str,
    status: str = "done",
    message: str = "",
    terms: dict[str, np.ndarray] | None = None,
    eval_x: np.ndarray | None = None,
    spoil: bool = False,
    ntk_steps: tuple[int, ...] = NTK_STEPS,
    bytes_strings: bool = False,
    error_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Path:
    """One job file per the contract. ``terms`` maps term -> NTK points [N_T, d]; with
    ``terms=None`` only the root attributes are written (a failed job). ``spoil`` fills the
    numbers with huge values and NaN, as a diverged job might. ``error_fn`` (1-D only) gives
    eval/error from x instead of :func:`eval_error`."""
    path = jobs_dir / f"{job_id}.h5"
    text = (lambda s: np.bytes_(s.encode("utf-8"))) if bytes_strings else (lambda s: s)
    with h5py.File(path, "w") as f:
        a = f.attrs
        a["job_id"] = text(job_id)
        a["problem"] = text(problem)
        a["eps"] = np.float64(eps)
        a["width"] = np.int64(width)
        a["depth"] = np.int64(3)
        a["seed"] = np.int64(seed)
        a["balancer"] = text(balancer)
        a["normalization"] = text(normalization)
        a["status"] = text(status)
        a["message"] = text(message)
        a["config"] = (
            f"seed: {seed}\nproblem:\n  kind: {problem}\n  eps: {eps!r}\n"
            f"model: {{width: {width}, normalization: {normalization}}}\n"
            f"balancer: {{kind: {balancer}}}\n# ε = {eps}\n"
        )
        a["wall_seconds"] = np.float64(1.5)
        a["device"] = text("cpu")
        a["rank"] = np.int64(0)
        a["host"] = text("testhost")
        a["version"] = text("0.1.0")
        if terms is None:
            return path
        scale = 1e30 if spoil else 1.0

        steps = np.array(ntk_steps, dtype=np.int64)
        f["ntk/step"] = steps
        full = np.zeros(steps.size)
        for term, pts in terms.items():
            g = f.create_group(f"ntk/{term}")
            g["x"] = pts
            if term == "residual":
                frob = np.array([residual_frobenius(eps, seed, s) for s in range(steps.size)])
            else:
                frob = np.array([2.0 * (1.0 + 0.1 * s) for s in range(steps.size)])
            frob = frob * scale
            eig = np.stack([_spectrum(v, pts.shape[0]) for v in frob])
            g["frobenius"] = frob
            g["trace"] = eig.sum(axis=1)
            g["eigenvalues"] = eig
            full += frob**2
        f["ntk/full/frobenius"] = np.sqrt(full)

        t = TRAIN_STEPS.astype(np.int64)
        f["train/step"] = t
        for k, term in enumerate(terms):
            loss = (1.0 + 0.1 * seed) * 10.0 ** (-k) * np.exp(-t / 50.0)
            weight = np.ones(t.size) if term == "residual" else 1.0 + t / (100.0 * eps)
            if spoil:
                loss = loss.copy()
                loss[-3:] = np.nan
            f[f"train/loss/{term}"] = loss
            f[f"train/weight/{term}"] = weight
        f["train/rel_l2"] = 0.5 * np.exp(-t / 100.0) * (np.nan if spoil else 1.0)
        f["train/lr"] = 1e-3 * 0.9 ** (t / 1000.0)

        x = eval_x
        if x.shape[1] == 1:
            xs = x[:, 0]
            exact = np.sin(2 * np.pi * xs) + eps * np.sin(2 * np.pi * xs / eps)
            error = (error_fn(xs) if error_fn else eval_error(xs, eps, seed)) * scale
        else:
            exact = np.sin(np.pi * x[:, 1]) * np.cos(2 * np.pi * x[:, 0])
            error = 0.01 * (seed + 1) * np.sin(np.pi * x[:, 1]) * np.sin(3 * np.pi * x[:, 0])
        e = f.create_group("eval")
        e["x"] = x
        e["u_exact"] = exact
        e["u_pred"] = exact + error
        e["error"] = error
        e.attrs["rel_l2"] = float(np.linalg.norm(error) / np.linalg.norm(exact))
        e.attrs["max_abs_error"] = float(np.max(np.abs(error)))
        e.attrs["boundary_error"] = float(max(abs(error[0]), abs(error[-1])))
        if x.shape[1] == 1:
            e["error_spectrum"] = np.abs(np.fft.rfft(error))

        d_in = x.shape[1]
        rng = np.random.default_rng(seed)
        for stage in ("init", "final"):
            for layer, (n_out, n_in) in enumerate([(width, d_in), (width, width), (1, width)]):
                f[f"params/{stage}/{layer}/weight"] = rng.normal(size=(n_out, n_in))
                f[f"params/{stage}/{layer}/bias"] = np.zeros(n_out)
    return path


def build_results(root: Path) -> Path:
    """Write the synthetic results folder described in the module docstring."""
    jobs = root / "jobs"
    jobs.mkdir(parents=True)
    x1 = np.linspace(0.0, 1.0, EVAL_POINTS)[:, None]
    darcy_terms = {
        "residual": np.linspace(0.0, 1.0, RES_POINTS + 2)[1:-1, None],
        "boundary": np.array([[0.0], [1.0]]),
    }
    for eps in DARCY_EPS:
        for seed in (0, 1, 2):
            common = dict(problem="darcy1d", eps=eps, width=20, seed=seed, balancer="ntk",
                          normalization="none")
            job_id = f"darcy-{eps:g}-{seed}"
            if (eps, seed) == (0.125, 2):
                write_job(jobs, job_id, status="failed", message="NaN in residual at step 57\nbacktrace", **common)
            elif (eps, seed) == (0.5, 2):
                write_job(jobs, job_id, status="diverged", message="loss above 1e30", terms=darcy_terms,
                          eval_x=x1, spoil=True, **common)
            elif (eps, seed) == (0.25, 2):
                continue  # missing: never written
            else:
                write_job(jobs, job_id, terms=darcy_terms, eval_x=x1, **common)
    write_job(jobs, "darcy-single", problem="darcy1d", eps=0.25, width=40, seed=0, balancer="none",
              normalization="zscore", terms=darcy_terms, eval_x=x1, ntk_steps=(0,))

    rng = np.random.default_rng(7)
    t, xx = np.meshgrid(np.linspace(0, 1, 6), np.linspace(0, 1, 5), indexing="ij")
    grid = np.stack([t.ravel(), xx.ravel()], axis=1)
    scattered = rng.uniform(size=(40, 2))
    wave_terms = {
        "residual": rng.uniform(size=(12, 2)),
        "initial_value": np.stack([np.zeros(4), np.linspace(0, 1, 4)], axis=1),
        "boundary": np.array([[0.2, 0.0], [0.2, 1.0], [0.7, 0.0], [0.7, 1.0]]),
    }
    for eps, x in zip(WAVE_EPS, (grid, scattered)):
        for seed in (0, 1):
            write_job(jobs, f"wave-{eps:g}-{seed}", problem="wave1d", eps=eps, width=20, seed=seed,
                      balancer="grad_stats", normalization="zscore", terms=wave_terms, eval_x=x,
                      bytes_strings=True)

    (jobs / "corrupt.h5").write_bytes(b"this is not an HDF5 file\n")
    (jobs / ".darcy-tmp-123.h5").write_bytes(b"half written")
    return root


def write_summary(path: Path, *, eps: tuple[float, ...] = DARCY_EPS) -> Path:
    """A summary.h5 as ``ntksweep reduce`` might write it (key fields in the names)."""
    eps = np.array(eps)
    with h5py.File(path, "w") as f:
        for snap, c in (("init", 3.0), ("final", 5.0)):
            g = f.create_group(f"scaling/darcy1d__20__ntk__none__residual__{snap}")
            g["eps"] = eps
            g["frobenius_mean"] = 0.99 * c * eps**-2
            g["frobenius_std"] = 0.05 * c * eps**-2
            g.attrs["exponent"] = -2.0
            g.attrs["exponent_ci_low"] = -2.1
            g.attrs["exponent_ci_high"] = -1.9
            g.attrs["r_squared"] = 1.0
            g.attrs["n_trials"] = np.int64(2)
        x = np.linspace(0, 1, 33)
        t = f.create_group("trials/darcy1d__0.125__20__ntk__none")
        t["x"] = x[:, None]
        t["mean_error"] = 0.01 * np.sin(16 * np.pi * x)
        t["error_variance"] = np.full(33, 1e-6)
        t.attrs["rel_l2_mean"] = 0.02
        t.attrs["n_trials"] = np.int64(2)
    return path


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic results folder (shared: tests must not modify jobs/)."""
    return build_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="session")
def results(results_dir: Path):
    from analysis.load import load_results

    return load_results(results_dir)


def assert_png(path: Path) -> None:
    """The file exists, is non-empty and starts with the PNG signature."""
    path = Path(path)
    assert path.is_file(), f"{path} was not written"
    data = path.read_bytes()
    assert len(data) > len(PNG_SIGNATURE), f"{path} is empty"
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
