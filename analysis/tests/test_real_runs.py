"""The analysis of real ntksweep runs: every problem kind, a learning-rate axis, two sweeps in
one folder - trained by the binary, reduced by it, then checked here against the job files.

Why this file exists: the synthetic folder of conftest.py pins the contract, but only real
runs show what a user gets. Three folders, from tiny sweeps under tests/sweeps/:

* ``every``: every problem kind (a ``problem`` axis, two seeds each; wave1d, klein_gordon1d
  and helmholtz2d have no eps);
* ``lr``: darcy1d with a ``training.lr`` axis (2 eps x 2 rates x 3 seeds);
* ``mixed``: the lr sweep at one rate plus a second sweep that differs only in depth.

``tests/analysis_runs.rs`` makes them and runs this file on them (``NTKSWEEP_REAL_RUNS``);
run alone, the fixture makes them with ``NTKSWEEP_BIN`` (default target/release/ntksweep).
Checked: the ``config`` attribute loads with PyYAML into exactly the resolved configuration
(its canonical JSON hashes to the job id); jobs.csv equals the job files (pandas, and polars
loads it); every compare/ number equals numpy/scipy (Welch via
``scipy.stats.ttest_ind(equal_var=False)``); groups are never pooled and match an independent
grouping (tests/check_reduce.py); every figure of every problem is drawn with data.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from scipy import stats

from analysis import figures
from analysis.groups import distinguishing, flatten, trial_groups
from analysis.load import load_results, to_dataframe

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "tests" / "sweeps"
#: folder -> `ntksweep run` argument lists, as tests/analysis_runs.rs makes them.
RUNS = {
    "every": [["every_problem.yaml"]],
    "lr": [["lr_axis.yaml"]],
    "mixed": [["lr_axis.yaml", "--set", "sweep.lr=[1e-3]"], ["other_depth.yaml"]],
}
PROBLEMS = ("darcy1d", "poisson1d", "regression1d", "wave1d", "klein_gordon1d", "helmholtz2d")
WITHOUT_EPS = ("wave1d", "klein_gordon1d", "helmholtz2d")
#: Settings that jobs.csv gives in fixed columns rather than by dotted path.
GIVEN = {"seed", "problem.eps", "problem.kind", "model.width", "model.depth", "model.normalization", "sweep"}


def make_runs(root: Path, binary: str) -> None:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "NTKSWEEP_PROGRESS_SECONDS": "0"}
    for folder, runs in RUNS.items():
        out = root / folder
        for args in runs:
            cmd = [binary, "run", str(SWEEPS / args[0]), "--out", str(out), "-q", *args[1:]]
            subprocess.run(cmd, check=True, env=env, capture_output=True)
        subprocess.run([binary, "reduce", str(out), "-q"], check=True, env=env, capture_output=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("NTKSWEEP_REAL_RUNS")
    if given:
        return Path(given)
    binary = os.environ.get("NTKSWEEP_BIN", str(REPO / "target" / "release" / "ntksweep"))
    if not Path(binary).is_file():
        pytest.fail(f"{binary} not found: build it with `cargo build --release` (or set NTKSWEEP_BIN)")
    root = tmp_path_factory.mktemp("real_runs")
    make_runs(root, binary)
    return root


def job_files(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "jobs").glob("*.h5") if not p.name.startswith("."))


def text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# --------------------------------------------------------------------------------------
# The config attribute
# --------------------------------------------------------------------------------------


def serde_json_float(x: float) -> str:
    """A finite float as serde_json (ryu) writes it: ``0.001``, ``1e-8``, ``2.0``, ``1e16``."""
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    mantissa, _, exp = repr(abs(x)).partition("e")  # Python's repr: shortest round-trip digits
    whole, _, frac = mantissa.partition(".")
    point = (len(whole) if whole != "0" else -(len(frac) - len(frac.lstrip("0")))) + int(exp or 0)
    digits = (whole + frac).lstrip("0").rstrip("0") or "0"
    k = point - len(digits)  # x = digits * 10^k
    if 0 <= k and point <= 16:
        out = digits + "0" * k + ".0"
    elif 0 < point <= 16:
        out = digits[:point] + "." + digits[point:]
    elif -5 < point <= 0:
        out = "0." + "0" * -point + digits
    elif len(digits) == 1:
        out = f"{digits}e{point - 1}"
    else:
        out = f"{digits[0]}.{digits[1:]}e{point - 1}"
    return ("-" if x < 0 else "") + out


def canonical_json(v) -> str:
    """serde_json's compact text of a value with sorted keys (how ntksweep hashes job ids)."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return serde_json_float(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(canonical_json(x) for x in v) + "]"
    return "{" + ",".join(json.dumps(k) + ":" + canonical_json(v[k]) for k in sorted(v)) + "}"


def test_serde_json_float_spelling():
    for x, want in [(1e-8, "1e-8"), (0.001, "0.001"), (2.0, "2.0"), (1e15, "1000000000000000.0"),
                    (1e16, "1e16"), (1.5e-7, "1.5e-7"), (1e-5, "0.00001"), (123.456, "123.456"),
                    (1.5e20, "1.5e20"), (-0.25, "-0.25")]:
        assert serde_json_float(x) == want


def test_config_attribute_is_the_resolved_configuration_for_pyyaml(runs):
    # A job id is the SHA-256 of the resolved configuration's canonical JSON: if what PyYAML
    # (YAML 1.1) loads from the attribute hashes to the id, it *is* that configuration, with
    # every float a float and every int an int.
    checked = 0
    for folder in RUNS:
        for path in job_files(runs / folder):
            with h5py.File(path, "r") as f:
                config, job_id = text(f.attrs["config"]), text(f.attrs["job_id"])
            data = yaml.safe_load(config)
            assert type(data["training"]["adam_eps"]) is float and data["training"]["adam_eps"] == 1e-8
            assert type(data["training"]["lr"]) is float and type(data["model"]["width"]) is int
            assert hashlib.sha256(canonical_json(data).encode()).hexdigest()[:16] == job_id, path
            checked += 1
    assert checked == 36


# --------------------------------------------------------------------------------------
# jobs.csv
# --------------------------------------------------------------------------------------


def _same(cell, expected) -> bool:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return cell is None or (isinstance(cell, float) and math.isnan(cell))
    if isinstance(expected, float):
        return math.isclose(float(cell), expected, rel_tol=1e-15, abs_tol=0.0)
    return cell == expected


def test_jobs_csv_matches_the_job_files(runs):
    import polars

    for folder in RUNS:
        df = to_dataframe(runs / folder)
        assert len(polars.read_csv(runs / folder / "jobs.csv")) == len(df)
        files = job_files(runs / folder)
        assert list(df["job_id"]) == [p.stem for p in files]
        settings = {}
        for p in files:
            with h5py.File(p, "r") as f:
                settings[p.stem] = {**flatten(yaml.safe_load(text(f.attrs["config"]))), "sweep": text(f.attrs["sweep"])}
        # dotted columns: exactly the settings that differ between the files
        varying = {k for k in set().union(*settings.values())
                   if len({repr(s.get(k)) for s in settings.values()}) > 1} - GIVEN
        assert {c for c in df.columns if "." in c} == varying, folder
        for row in df.to_dict("records"):
            with h5py.File(runs / folder / "jobs" / f"{row['job_id']}.h5", "r") as f:
                a, ev = f.attrs, f["eval"].attrs
                eps = float(a["eps"])
                expected = {
                    "status": text(a["status"]), "problem": text(a["problem"]), "eps": eps,
                    "width": int(a["width"]), "depth": int(a["depth"]), "seed": int(a["seed"]),
                    "balancer": text(a["balancer"]), "normalization": text(a["normalization"]),
                    "rel_l2": float(ev["rel_l2"]), "max_abs_error": float(ev["max_abs_error"]),
                    "boundary_error": float(ev["boundary_error"]), "wall_seconds": float(a["wall_seconds"]),
                    "diverged_step": int(a["diverged_step"]), "sweep": text(a["sweep"]),
                    "ntk_step_first": int(f["ntk/step"][0]), "ntk_step_last": int(f["ntk/step"][-1]),
                }
                for term in f["ntk"]:
                    if term == "step":
                        continue
                    for q in ("frobenius", "trace"):
                        if q in f["ntk"][term]:
                            v = f["ntk"][term][q][()]
                            expected[f"ntk_{term}_{q}_first"] = float(v[0])
                            expected[f"ntk_{term}_{q}_last"] = float(v[-1])
                for k in varying:
                    expected[k] = settings[row["job_id"]].get(k)
            for k, v in expected.items():
                assert _same(row[k], v), (folder, row["job_id"], k, row[k], v)


def test_to_dataframe_says_what_to_run_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="ntksweep reduce"):
        to_dataframe(tmp_path)


# --------------------------------------------------------------------------------------
# Groups and comparisons
# --------------------------------------------------------------------------------------


def test_groups_are_never_pooled_and_match_an_independent_grouping(runs):
    expected_axes = {"every": {"problem"}, "lr": {"eps", "training.lr"}, "mixed": {"eps", "model.depth"}}
    for folder in RUNS:
        d = runs / folder
        check = subprocess.run([sys.executable, str(REPO / "tests" / "check_reduce.py"), str(d)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        with h5py.File(d / "summary.h5", "r") as f:
            assert len(f["warnings"]) == 0, [text(w) for w in f["warnings"][()]]
            assert set(text(f.attrs["trial_axes"]).split()) == expected_axes[folder]
            summary_groups = {frozenset(text(i) for i in g["job_ids"][()]) for g in f["trials"].values()}
            for g in f["trials"].values():
                assert len(set(g["seeds"][()])) == len(g["seeds"]), "one seed per trial"
        # analysis.groups forms the same groups as the reducer
        python_groups = {frozenset(g.job_ids) for g in trial_groups(load_results(d).done())}
        assert python_groups == summary_groups, folder
    with h5py.File(runs / "lr" / "summary.h5", "r") as f:
        assert sorted(f["trials"]) == sorted(
            f"darcy1d_eps{e}_w8_none_none_training.lr={lr}" for e in ("0.5", "0.25") for lr in ("0.001", "0.01")
        )
    with h5py.File(runs / "every" / "summary.h5", "r") as f:
        assert sorted(text(g.attrs["problem"]) for g in f["trials"].values()) == sorted(PROBLEMS)
        assert sorted(text(f.attrs["problems_without_eps"]).split()) == sorted(WITHOUT_EPS)
        assert {text(g.attrs["problem"]) for g in f["scaling"].values()} == set(PROBLEMS) - set(WITHOUT_EPS)
    report = (runs / "every" / "report.md").read_text()
    assert "No scaling table for `helmholtz2d`, `klein_gordon1d`, `wave1d`" in report


def test_comparisons_match_numpy_and_scipy(runs):
    expected = {"every": {"problem": 1}, "lr": {"training.lr": 2}, "mixed": {"model.depth": 2}}
    for folder in RUNS:
        d = runs / folder
        with h5py.File(d / "summary.h5", "r") as f:
            found = {axis: len(f["compare"][axis]) for axis in f["compare"]}
            assert found == expected[folder]
            for axis in f["compare"]:
                for g in f["compare"][axis].values():
                    rows = []
                    for key in g["trial_key"][()]:
                        ids = [text(i) for i in f["trials"][text(key)]["job_ids"][()]]
                        rel, mx = [], []
                        for i in ids:
                            with h5py.File(d / "jobs" / f"{i}.h5", "r") as job:
                                rel.append(float(job["eval"].attrs["rel_l2"]))
                                mx.append(float(job["eval"].attrs["max_abs_error"]))
                        rows.append((np.array(rel), np.array(mx)))
                    check_comparison(g, rows)
        # analysis.load reads the same tables
        entries = load_results(d).summary.comparisons
        assert sorted(e.axis for e in entries) == sorted(a for a, n in expected[folder].items() for _ in range(n))
        for e in entries:
            assert len(e.columns["value"]) == len(e.columns["p_value"]) >= 2 and e.attrs["axis"] == e.axis


def check_comparison(g: h5py.Group, rows: list[tuple[np.ndarray, np.ndarray]]) -> None:
    close = lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)  # noqa: E731
    base_rel, base_max = rows[0][0], rows[0][1]
    for i, (rel, mx) in enumerate(rows):
        n = rel.size
        assert g["n"][i] == n
        close(g["rel_l2_mean"][i], rel.mean())
        close(g["max_abs_error_mean"][i], mx.mean())
        half = stats.t.ppf(0.975, n - 1) * rel.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
        close(g["rel_l2_ci_low"][i], rel.mean() - half)
        close(g["rel_l2_ci_high"][i], rel.mean() + half)
        close(g["rel_l2_change"][i], (rel.mean() - base_rel.mean()) / base_rel.mean())
        close(g["max_abs_error_change"][i], (mx.mean() - base_max.mean()) / base_max.mean())
        if i == 0:
            assert np.isnan(g["p_value"][0])
            continue
        welch = stats.ttest_ind(rel, base_rel, equal_var=False)
        close(g["welch_t"][i], welch.statistic)
        close(g["welch_dof"][i], welch.df)
        close(g["p_value"][i], welch.pvalue)


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drawn(runs, tmp_path_factory):
    """make_all_figures on the every-problem folder and the loss figure of the lr folder,
    recording the panels drawn as "no data"."""
    empty: list[str] = []
    original = figures._no_data
    figures._no_data = lambda ax, text="no data": (empty.append(ax.get_title()), original(ax, text))
    try:
        out = tmp_path_factory.mktemp("figures")
        every = figures.make_all_figures(runs / "every", out / "every")
        lr = figures.plot_loss_curves(runs / "lr", out / "lr" / "loss.png", where={"problem": "darcy1d"})
    finally:
        figures._no_data = original
    return every, lr, empty


def test_every_problem_gets_every_figure_with_data(drawn):
    run, lr, empty = drawn
    assert not run.errors and not run.skipped, run.errors + run.skipped
    assert empty == [], f"panels drawn as 'no data': {empty}"
    names = {p.name for p in run.written}
    for problem in PROBLEMS:
        for kind in ("loss", "weights", "ntk_spectra"):
            assert f"{kind}__{problem}.png" in names
        assert (f"ntk_scaling__{problem}.png" in names) == (problem not in WITHOUT_EPS)
        # error spectra for the 1-D problems only (the three without eps are evaluated in 2-D)
        assert (f"error_spectra__{problem}.png" in names) == (problem not in WITHOUT_EPS)
    for problem in ("wave1d", "klein_gordon1d", "helmholtz2d"):
        assert f"error__{problem}.png" in names  # 2-D: one image per trial group, shared scale
    for problem, eps in (("darcy1d", "0.5"), ("poisson1d", "0.5"), ("regression1d", "0.25")):
        assert f"error__{problem}__eps{eps}__w8__none__none.png" in names
    for p in run.written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lr_axis_lines_are_named_by_their_rate(drawn, runs):
    _, lr, empty = drawn
    assert lr.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not empty
    groups = trial_groups(load_results(runs / "lr").done())
    assert distinguishing([g.key for g in groups], exclude=("problem",)) == ["eps", "training.lr"]
    labels = {figures.group_label(g.key, ["eps", "training.lr"]) for g in groups}
    assert len(labels) == 4 and all("training.lr=0.0" in label for label in labels), labels
