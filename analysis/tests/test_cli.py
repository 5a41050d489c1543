"""Tests of ``python -m analysis DIR``: the command a person runs after a sweep.

Why this file exists: the command line is the package's main entry point; it must draw
every figure of a folder with failed, diverged, missing and unreadable jobs in it, print
each path and the job accounting, and exit non-zero only when something went wrong. The
full folder is rendered once, by a real subprocess; the error exits are checked by calling
``main`` in-process (starting Python and matplotlib costs seconds).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analysis.__main__ import main

from .conftest import EXPECTED_FIGURES, SUMMARY_FIGURES, assert_png, write_summary

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m analysis ARGS`` from the repository root, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "analysis", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def cli_run(results_dir):
    return run_cli(str(results_dir))


def test_cli_writes_every_figure(cli_run, results_dir):
    assert cli_run.returncode == 0, cli_run.stdout + cli_run.stderr
    figdir = results_dir / "figures"
    assert sorted(p.name for p in figdir.iterdir()) == EXPECTED_FIGURES
    printed = [line for line in cli_run.stdout.splitlines() if line.endswith(".png")]
    assert sorted(Path(line).name for line in printed) == EXPECTED_FIGURES
    for line in printed:
        assert Path(line).parent == figdir
        assert_png(Path(line))


def test_cli_reports_jobs_left_out(cli_run):
    for piece in ("done 11", "failed 1", "diverged 1", "unreadable 1", "missing 1",
                  "darcy-0.125-2", "NaN in residual at step 57", "corrupt.h5",
                  f"{len(EXPECTED_FIGURES)} figures in", "0 skipped, 0 failed"):
        assert piece in cli_run.stdout, piece
    assert "error:" not in cli_run.stderr


def test_cli_out_option_on_a_summary_only_folder(tmp_path):
    write_summary(tmp_path / "summary.h5")
    out = tmp_path / "elsewhere"
    proc = run_cli(str(tmp_path), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == SUMMARY_FIGURES
    for p in out.iterdir():
        assert_png(p)
    assert not (tmp_path / "figures").exists()


def test_missing_folder_exits_2(tmp_path, capsys):
    assert main([str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_nothing_to_draw_exits_1(tmp_path, capsys):
    (tmp_path / "jobs").mkdir()
    assert main([str(tmp_path)]) == 1
    assert "0 figures" in capsys.readouterr().out
