"""pytest form of ``check_references.py`` plus smoke runs of every reference script.

Why this exists: CI (``cd /work/main && .venv/bin/python -m pytest analysis/reference -q``)
must catch a reference that drifts from what ``ntksweep bench`` compares it with.
The JAX tests are skipped when jax is not installed (``pytest.importorskip``).
Runtime on 2 CPU cores: well under a minute without jax, about a minute with it.
"""

from __future__ import annotations

import json

import pytest

if __package__:
    from . import check_references as cr
else:
    import check_references as cr

# torch.func.hessian (jacfwd) loads torch's forward-AD decompositions through torch.jit.script,
# which warns in torch 2.11; the warning is torch's own, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _assert_below(errs: dict[str, float], tol: float) -> None:
    bad = {k: e for k, e in errs.items() if not e <= tol}
    assert not bad, f"above {tol:g}: {bad}"


# --------------------------------------------------------------------------- correctness


def test_torch_ntk_matches_naive_loop():
    _assert_below(cr.check_torch_ntk_vs_loop(), cr.TOLERANCES["torch_ntk_vs_loop"])


def test_exact_solutions_satisfy_their_equations():
    _assert_below(cr.check_exact_solutions(), cr.TOLERANCES["exact_solutions"])


def test_jax_ntk_matches_torch():
    pytest.importorskip("jax")
    _assert_below(cr.check_jax_ntk_vs_torch(), cr.TOLERANCES["jax_ntk_vs_torch"])


def test_jax_wave_loss_matches_torch():
    pytest.importorskip("jax")
    _assert_below(cr.check_jax_wave_loss_vs_torch(), cr.TOLERANCES["jax_wave_loss_vs_torch"])


def test_jax_darcy_step_matches_torch():
    pytest.importorskip("jax")
    _assert_below(cr.check_jax_darcy_step_vs_torch(), cr.TOLERANCES["jax_darcy_step_vs_torch"])


# --------------------------------------------------------------------------- smoke runs

COMMON = ["--width", "8", "--steps", "2", "--warmup", "1"]
SMOKE = {
    # module name: (extra argv, impl, workload, keys the Rust side reads)
    "torch_step": (["--batch", "5", "--threads", "1"], "torch_eager", "wave_step", ["ms_per_step"]),
    "torch_ntk": (["--points", "5", "--threads", "1"], "torch_func", "ntk_traces", ["ms", "trace", "frobenius"]),
    "torch_darcy_batch": (["--jobs", "3", "--points", "7", "--threads", "1"], "torch_eager", "darcy_sweep",
                          ["job_steps_per_s", "ms_per_job_step"]),
    "jax_step": (["--batch", "5"], "jax_jit", "wave_step", ["ms_per_step", "compile_s"]),
    "jax_ntk": (["--points", "5"], "jax_jacrev", "ntk_traces", ["ms", "trace", "frobenius", "compile_s"]),
    "jax_darcy_batch": (["--jobs", "3", "--points", "7"], "jax_jit", "darcy_sweep",
                        ["job_steps_per_s", "ms_per_job_step", "compile_s"]),
}


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_script_prints_one_json_line(name, capsys):
    if name.startswith("jax"):
        pytest.importorskip("jax")
    import importlib

    mod = importlib.import_module(f"{__package__}.{name}" if __package__ else name)
    extra, impl, workload, keys = SMOKE[name]
    mod.main(COMMON + extra)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    rec = json.loads(lines[0])
    assert rec["impl"] == impl and rec["workload"] == workload
    assert rec["device"] == "cpu" and rec["width"] == 8
    for k in keys:
        assert rec[k] is not None, k
    for k in ("ms", "ms_per_step", "job_steps_per_s"):
        if k in rec:
            assert rec[k] > 0
