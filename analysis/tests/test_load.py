"""Tests of analysis.load: reading attributes, status accounting, grouping, summary keys.

Why this file exists: every figure trusts the loader to say which jobs count; a failed or
diverged job that slipped into a mean, or an attribute read back as bytes that split a
group in two, would silently change the published numbers.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from analysis.load import (
    CONFIG_KEYS,
    TRIAL_KEYS,
    decode,
    group_jobs,
    load_results,
    parse_key,
    read_attrs,
    read_summary,
    select,
    snapshot_role,
)

from .conftest import CONFIG_GROUPS, TRIAL_GROUPS


def test_attributes_are_plain_python_whatever_the_string_storage(results_dir):
    darcy = read_attrs(results_dir / "jobs" / "darcy-0.5-0.h5")  # variable-length UTF-8
    wave = read_attrs(results_dir / "jobs" / "wave-0.5-0.h5")  # fixed-length bytes
    for attrs, problem in ((darcy, "darcy1d"), (wave, "wave1d")):
        assert attrs["problem"] == problem and type(attrs["problem"]) is str
        assert type(attrs["status"]) is str and attrs["status"] == "done"
        assert type(attrs["eps"]) is float and type(attrs["width"]) is int
        assert type(attrs["seed"]) is int and type(attrs["rank"]) is int
    assert "ε" in darcy["config"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"ntk", "ntk"),
        (np.bytes_(b"zscore"), "zscore"),
        (np.str_("none"), "none"),
        (np.array([b"done"]), "done"),
        (np.array(3, dtype=np.int64), 3),
        (np.float32(0.5), 0.5),
        ("ε=0.5".encode(), "ε=0.5"),
    ],
)
def test_decode(raw, expected):
    got = decode(raw)
    assert got == expected and type(got) is type(expected)


def test_status_counts_and_failed_jobs_are_excluded(results):
    counts = results.counts()
    assert counts == {
        "done": 11,
        "failed": 1,
        "diverged": 1,
        "other": 0,
        "unreadable": 1,
        "missing": 1,
    }
    done_ids = {j.job_id for j in results.done()}
    assert "darcy-0.125-2" not in done_ids and "darcy-0.5-2" not in done_ids
    assert all(j.status == "done" for j in results.done())
    assert [p.name for p, _ in results.unreadable] == ["corrupt.h5"]
    assert results.missing() == [
        {"problem": "darcy1d", "width": 20, "balancer": "ntk", "normalization": "none",
         "eps": 0.25, "seed": 2}
    ]
    # a failed job has attributes only; readers say so instead of raising
    failed = results.by_status("failed")[0]
    assert failed.read_ntk() is None and failed.read_train() is None and failed.read_eval() is None


def test_describe_reports_what_was_left_out(results):
    text = results.describe()
    for piece in ("done 11", "failed 1", "diverged 1", "unreadable 1", "missing 1",
                  "darcy-0.125-2", "NaN in residual at step 57", "darcy-0.5-2",
                  "corrupt.h5", "summary.h5: absent"):
        assert piece in text, piece
    assert "backtrace" not in text  # first line of the message only
    assert ".darcy-tmp-123" not in text  # hidden temporary files are not jobs


def test_grouping(results):
    done = results.done()
    configs = group_jobs(done, CONFIG_KEYS)
    assert set(configs) == CONFIG_GROUPS
    trials = group_jobs(done, TRIAL_KEYS)
    assert {k: len(v) for k, v in trials.items()} == TRIAL_GROUPS
    # jobs inside a group come sorted by eps then seed
    members = configs[("darcy1d", 20, "ntk", "none")]
    assert [(j.eps, j.seed) for j in members] == [
        (0.125, 0), (0.125, 1), (0.25, 0), (0.25, 1), (0.5, 0), (0.5, 1)
    ]
    assert len(select(done, {"problem": "wave1d", "eps": 0.25})) == 2


def test_job_records_follow_the_contract(results):
    job = select(results.done(), {"problem": "darcy1d", "eps": 0.25, "width": 20, "seed": 0})[0]
    ntk = job.read_ntk()
    assert ntk.step.tolist() == [0, 100]
    assert set(ntk.terms) == {"residual", "boundary", "full"}
    assert ntk.terms["residual"]["eigenvalues"].shape == (2, 16)
    train = job.read_train()
    assert set(train.loss) == set(train.weight) == {"residual", "boundary"}
    assert train.rel_l2.shape == train.step.shape
    ev = job.read_eval()
    assert ev.dim == 1 and ev.error_spectrum is not None and "rel_l2" in ev.attrs
    wave = select(results.done(), {"problem": "wave1d"})[0].read_eval()
    assert wave.dim == 2 and wave.error_spectrum is None


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_results(tmp_path / "nope")


def test_empty_folder_loads(tmp_path):
    r = load_results(tmp_path)
    assert r.jobs == [] and r.done() == [] and r.counts()["done"] == 0


@pytest.mark.parametrize(
    "name, attrs",
    [
        ("darcy1d/100/ntk/none/residual/init", {}),
        ("darcy1d__100__ntk__none__residual__init", {}),
        ("problem=darcy1d,width=w100,balancer=ntk,normalization=none,term=residual,snapshot=init", {}),
        ("anything", {"problem": "darcy1d", "width": np.int64(100), "balancer": "ntk",
                      "normalization": "none", "term": "residual", "snapshot": "init"}),
    ],
)
def test_summary_key_spellings(name, attrs):
    from analysis.load import SCALING_KEYS

    key = parse_key(name, {k: decode(v) for k, v in attrs.items()}, SCALING_KEYS)
    assert key == {"problem": "darcy1d", "width": 100, "balancer": "ntk",
                   "normalization": "none", "term": "residual", "snapshot": "init"}


def test_snapshot_roles():
    assert snapshot_role("init") == "first" and snapshot_role("final") == "last"
    assert snapshot_role("step_100") == 100 and snapshot_role(0) == 0
    assert snapshot_role("whatever") is None


def test_read_summary(tmp_path):
    path = tmp_path / "summary.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("scaling/darcy1d__20__ntk__none__residual__init")
        g["eps"] = [0.5, 0.25]
        g["frobenius_mean"] = [12.0, 48.0]
        g["frobenius_std"] = [0.1, 0.2]
        g.attrs["exponent"] = -2.0
        t = f.create_group("trials/darcy1d__0.25__20__ntk__none")
        t["x"] = np.linspace(0, 1, 5)
        t["mean_error"] = np.zeros(5)
        t["error_variance"] = np.ones(5)
        t.attrs["n_trials"] = np.int64(2)
    s = read_summary(path)
    assert len(s.scaling) == 1 and len(s.trials) == 1
    assert s.scaling[0].key["width"] == 20 and s.scaling[0].attrs["exponent"] == -2.0
    assert s.trials[0].key == {"problem": "darcy1d", "eps": 0.25, "width": 20,
                               "balancer": "ntk", "normalization": "none"}
    assert s.trials[0].x.shape == (5, 1)


def test_settings_flatten_the_config_attribute_and_select_by_dotted_path(results):
    job = select(results.done(), {"problem": "darcy1d", "eps": 0.25, "width": 20, "seed": 0})[0]
    assert job.settings["problem.kind"] == "darcy1d" and job.settings["model.width"] == 20
    assert job.settings["balancer.kind"] == "ntk" and job.settings["seed"] == 0
    assert "sweep" not in job.settings  # the synthetic files have no sweep attribute
    # dotted settings select like attributes; a tuple means "any of"
    assert len(select(results.done(), {"balancer.kind": "ntk"})) == 6
    ids = tuple(j.job_id for j in results.done()[:2])
    assert [j.job_id for j in select(results.done(), {"job_id": ids})] == list(ids)


def test_to_dataframe_without_pandas_says_what_to_install(tmp_path, monkeypatch):
    import sys

    from analysis.load import to_dataframe

    (tmp_path / "jobs.csv").write_text("job_id,status\nabc,done\n")
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match="pip install pandas"):
        to_dataframe(tmp_path)


def test_to_dataframe_keeps_job_ids_as_strings(tmp_path):
    from analysis.load import to_dataframe

    (tmp_path / "jobs.csv").write_text("job_id,status,training.lr\n0123456789012345,done,1e-8\n")
    df = to_dataframe(tmp_path)
    assert df["job_id"][0] == "0123456789012345" and df["training.lr"][0] == 1e-8


def test_config_settings_read_old_and_new_float_spellings_alike():
    from analysis.load import config_settings

    old = config_settings("training: {adam_eps: 1e-8, lr: 0.001, steps: 10}\nname: '1e-8'\n")
    new = config_settings("training: {adam_eps: 1.0e-8, lr: 0.001, steps: 10}\nname: '1e-8'\n")
    assert old == new and old["training.adam_eps"] == 1e-8 and type(old["training.adam_eps"]) is float
    assert old["name"] == "1e-8" and type(old["training.steps"]) is int  # quoted stays a string
