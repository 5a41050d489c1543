"""Read an ntksweep results folder: the job files, their attributes, the optional summary.

Why this module exists: every figure needs the same few things - which jobs finished, where
each sits on the sweep grid, and the arrays of the HDF5 contract (DESIGN.md, "HDF5
contract") - and the traps in reading them (attribute strings that come back as ``str`` or
``bytes``, failed jobs that have attributes but no datasets, files that are not finished
HDF5 files) belong in one place. Nothing here plots: ``figures.py`` builds on it, and so can
a notebook::

    from analysis.load import load_results, group_jobs, CONFIG_KEYS
    results = load_results("results/")
    print(results.describe())
    for key, jobs in group_jobs(results.done(), CONFIG_KEYS).items():
        ntk = jobs[0].read_ntk()          # NtkRecord: step [S], terms[T]["frobenius"] [S]

Only jobs whose ``status`` attribute is ``done`` enter statistics; ``Results.counts()`` and
``Results.describe()`` say how many were failed, diverged, unreadable or missing.

Each job's resolved configuration (the ``config`` attribute) is available flattened into
dotted paths as ``job.settings`` (``{"training.lr": 0.001, ...}``, plus ``sweep``; read with
PyYAML's safe loader, which also takes ``1e-8`` as a float as older files wrote it); grouping
by every setting, as the reducer does, is in ``analysis.groups``. ``to_dataframe(DIR)``
loads ``DIR/jobs.csv`` (written by ``ntksweep reduce``) with pandas.

Layout read here::

    DIR/jobs/<job_id>.h5    one per job (hidden files and other suffixes are ignored:
                            the writer renames a temporary file into place)
    DIR/summary.h5          optional, written by ``ntksweep reduce``

Keys of ``summary.h5`` groups (``scaling/<key>``, ``trials/<key>``): the contract names the
fields but not how they are spelled in the group name, so a key field is taken from the
group's attribute of the same name (``problem``, ``width``, ``balancer``,
``normalization``, ``term``, ``snapshot``; ``eps`` for trials) when present, and otherwise
parsed from the group path: nested groups in contract order (``scaling/darcy1d/100/...``)
or one name whose parts are in contract order and separated by ``__``, ``,``, ``;`` or
``|``, each part optionally ``field=value`` (``problem=darcy1d,width=100,...``).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import h5py
import numpy as np

from . import groups as _groups

#: Values of the ``status`` root attribute written by ntksweep.
STATUSES = ("done", "failed", "diverged")
#: A "config group": everything but eps and seed. NTK scaling, spectra, loss and weight
#: figures draw one line per eps inside such a group.
CONFIG_KEYS = ("problem", "width", "balancer", "normalization")
#: A "trial group" (``trials/<key>`` of summary.h5): the seeds of one grid point.
TRIAL_KEYS = ("problem", "eps", "width", "balancer", "normalization")
#: Key fields of ``scaling/<key>`` in summary.h5.
SCALING_KEYS = ("problem", "width", "balancer", "normalization", "term", "snapshot")
#: Axes crossed inside a config group to infer grid points that have no job file at all.
GRID_KEYS = ("eps", "seed")

_INT_ATTRS = ("width", "depth", "seed", "rank")
_FLOAT_ATTRS = ("eps", "wall_seconds")


# --------------------------------------------------------------------------------------
# Attributes
# --------------------------------------------------------------------------------------


def decode(value: Any) -> Any:
    """Turn an h5py attribute value into plain Python.

    h5py returns variable-length UTF-8 strings as ``str``, but fixed-length or ASCII
    strings as ``bytes``/``numpy.bytes_``, numbers as numpy scalars, and some writers store
    scalars as one-element arrays. All of those become ``str``, ``int``, ``float``,
    ``bool``; longer arrays become lists.
    """
    if isinstance(value, np.ndarray):
        if value.size == 1:
            value = value.reshape(-1)[0]
        else:
            return [decode(v) for v in value.reshape(-1)]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _coerce(name: str, value: Any) -> Any:
    """Give the numeric grid attributes one Python type whatever the writer used."""
    try:
        if name in _INT_ATTRS and not isinstance(value, bool):
            as_float = float(value)
            if as_float.is_integer():
                return int(as_float)
        elif name in _FLOAT_ATTRS:
            return float(value)
    except (TypeError, ValueError):
        pass
    return value


def read_attrs(path: str | Path) -> dict[str, Any]:
    """Root attributes of one job file, decoded (see :func:`decode`) and typed.

    ``eps`` and ``wall_seconds`` come back as ``float``; ``width``, ``depth``, ``seed`` and
    ``rank`` as ``int``; strings as ``str``. ``eps`` is ``None`` for problems without eps
    (wave1d, klein_gordon1d, helmholtz2d), whose files store NaN. Raises ``OSError`` if the
    file is not HDF5.
    """
    with h5py.File(path, "r") as f:
        attrs = {name: _coerce(name, decode(f.attrs[name])) for name in f.attrs}
    if isinstance(attrs.get("eps"), float) and math.isnan(attrs["eps"]):
        attrs["eps"] = None
    return attrs


_YAML_LOADER = None


def _yaml_loader():
    """PyYAML's SafeLoader, plus YAML 1.2's exponent floats without a dot (``1e-8``).

    ntksweep writes floats that YAML 1.1 reads as floats (``1.0e-8``); job files written
    before it did hold ``1e-8``, which plain ``yaml.safe_load`` returns as a string. Reading
    both as the same float keeps old and new files of one sweep in one group (the reducer,
    a YAML 1.2 reader, does the same)."""
    global _YAML_LOADER
    if _YAML_LOADER is None:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - setup.sh installs it
            raise ImportError(
                "reading the job files' `config` attribute needs PyYAML: pip install pyyaml"
            ) from exc

        class Loader(yaml.SafeLoader):
            pass

        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:float",
            re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
            list("-+0123456789."),
        )
        _YAML_LOADER = Loader
    return _YAML_LOADER


def config_settings(config: Any) -> dict[str, Any]:
    """The ``config`` attribute (YAML text) flattened into dotted paths
    (``analysis.groups.flatten``); ``{}`` when it is absent or not YAML. Needs PyYAML."""
    if not isinstance(config, str):
        return {}
    import yaml

    try:
        return _groups.flatten(yaml.load(config, Loader=_yaml_loader()))  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError:
        return {}


# --------------------------------------------------------------------------------------
# One job
# --------------------------------------------------------------------------------------


def _datasets(group: h5py.Group) -> dict[str, np.ndarray]:
    """Every dataset directly under ``group``, read into memory."""
    return {
        name: np.asarray(item[()])
        for name, item in group.items()
        if isinstance(item, h5py.Dataset)
    }


@dataclass
class NtkRecord:
    """The ``ntk/`` group of one job.

    ``step`` is [S]. ``terms`` maps a term name (``residual``, ``boundary``, ... and
    ``full`` for the whole kernel) to its datasets: ``frobenius`` [S], ``trace`` [S],
    ``eigenvalues`` [S, N_T] (descending), ``x`` [N_T, d]; ``full`` has only ``frobenius``.
    """

    step: np.ndarray
    terms: dict[str, dict[str, np.ndarray]]


@dataclass
class TrainRecord:
    """The ``train/`` group: ``step`` [L]; ``loss`` and ``weight`` map term -> [L];
    ``rel_l2`` [L] and ``lr`` [L] (``None`` when absent)."""

    step: np.ndarray
    loss: dict[str, np.ndarray]
    weight: dict[str, np.ndarray]
    rel_l2: np.ndarray | None
    lr: np.ndarray | None


@dataclass
class EvalRecord:
    """The ``eval/`` group: ``x`` [M, d] (always 2-D here, a 1-D file's [M] becomes
    [M, 1]), ``u_pred``, ``u_exact``, ``error`` [M], ``error_spectrum`` [K] (1-D problems
    only, else ``None``), and the group's attributes (``rel_l2``, ``max_abs_error``,
    ``boundary_error``)."""

    x: np.ndarray
    u_pred: np.ndarray | None
    u_exact: np.ndarray | None
    error: np.ndarray
    error_spectrum: np.ndarray | None
    attrs: dict[str, Any]

    @property
    def dim(self) -> int:
        """Number of coordinates per evaluation point (1 for darcy1d, 2 for wave1d)."""
        return int(self.x.shape[1])


@dataclass(frozen=True, eq=False)
class Job:
    """One job file: its path and root attributes. Arrays are read on demand
    (``read_ntk``, ``read_train``, ``read_eval``) so a large sweep is never held in memory
    at once; each returns ``None`` when the group is absent (failed jobs have none)."""

    path: Path
    attrs: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        # Grid coordinates read naturally: job.eps, job.width, job.status, ...
        if name.startswith("_") or name in ("path", "attrs"):
            raise AttributeError(name)
        attrs = object.__getattribute__(self, "attrs")
        if name in attrs:
            return attrs[name]
        raise AttributeError(f"job {self.path.name} has no attribute {name!r}")

    @property
    def job_id(self) -> str:
        return str(self.attrs.get("job_id", self.path.stem))

    @property
    def status(self) -> str:
        return str(self.attrs.get("status", "unknown"))

    @cached_property
    def settings(self) -> dict[str, Any]:
        """The resolved configuration by dotted path (``training.lr``,
        ``collocation.residual.points``, ...) plus ``sweep``; ``{}`` for a file without
        ``config``."""
        out = config_settings(self.attrs.get("config"))
        if "sweep" in self.attrs:
            out["sweep"] = self.attrs["sweep"]
        return out

    def key(self, keys: Sequence[str] = TRIAL_KEYS) -> tuple:
        """This job's values of ``keys`` (``None`` for an absent attribute)."""
        return tuple(self.attrs.get(k) for k in keys)

    def read_ntk(self) -> NtkRecord | None:
        with h5py.File(self.path, "r") as f:
            if "ntk" not in f or "step" not in f["ntk"]:
                return None
            g = f["ntk"]
            terms = {
                name: _datasets(item)
                for name, item in g.items()
                if isinstance(item, h5py.Group)
            }
            return NtkRecord(step=np.asarray(g["step"][()]).reshape(-1), terms=terms)

    def read_train(self) -> TrainRecord | None:
        with h5py.File(self.path, "r") as f:
            if "train" not in f or "step" not in f["train"]:
                return None
            g = f["train"]
            sub = lambda name: _datasets(g[name]) if name in g else {}  # noqa: E731
            top = _datasets(g)
            return TrainRecord(
                step=top["step"].reshape(-1),
                loss=sub("loss"),
                weight=sub("weight"),
                rel_l2=top.get("rel_l2"),
                lr=top.get("lr"),
            )

    def read_eval(self) -> EvalRecord | None:
        with h5py.File(self.path, "r") as f:
            if "eval" not in f or "x" not in f["eval"] or "error" not in f["eval"]:
                return None
            g = f["eval"]
            d = _datasets(g)
            x = d["x"]
            if x.ndim == 1:
                x = x[:, None]
            return EvalRecord(
                x=x,
                u_pred=d.get("u_pred"),
                u_exact=d.get("u_exact"),
                error=d["error"].reshape(-1),
                error_spectrum=d.get("error_spectrum"),
                attrs={k: decode(v) for k, v in g.attrs.items()},
            )


def list_job_files(root: str | Path) -> list[Path]:
    """``root/jobs/*.h5`` sorted by name; hidden files (temporary names) are skipped."""
    jobs_dir = Path(root) / "jobs"
    if not jobs_dir.is_dir():
        return []
    return sorted(p for p in jobs_dir.glob("*.h5") if p.is_file() and not p.name.startswith("."))


def read_job(path: str | Path) -> Job:
    """A :class:`Job` for one file (attributes only). Raises ``OSError`` if unreadable."""
    path = Path(path)
    return Job(path=path, attrs=read_attrs(path))


# --------------------------------------------------------------------------------------
# Grouping
# --------------------------------------------------------------------------------------


def _sortable(value: Any) -> tuple:
    """Order mixed key values (None, numbers, strings) without TypeError."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value, "")
    return (2, 0, str(value))


def sort_key(key: Iterable[Any]) -> tuple:
    """Sort key for group keys mixing strings, numbers and ``None``."""
    return tuple(_sortable(v) for v in key)


def group_jobs(jobs: Iterable[Job], keys: Sequence[str] = TRIAL_KEYS) -> dict[tuple, list[Job]]:
    """Jobs grouped by their values of ``keys``; groups in sorted key order, jobs inside a
    group sorted by (eps, seed, job id)."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.key(keys), []).append(job)
    order = lambda j: sort_key((j.attrs.get("eps"), j.attrs.get("seed"), j.job_id))  # noqa: E731
    return {k: sorted(groups[k], key=order) for k in sorted(groups, key=sort_key)}


def select(jobs: Iterable[Job], where: Mapping[str, Any] | None = None) -> list[Job]:
    """Jobs that match every ``where`` item. A name is looked up among the root attributes
    (``problem``, ``eps``, ``job_id``, ...), then among the dotted settings
    (``training.lr``, ``sweep``); a list, tuple or set means "any of these"; floats are
    compared with a relative tolerance of 1e-9, so ``eps=0.1`` matches however it was
    stored."""
    if not where:
        return list(jobs)

    def value(job: Job, name: str) -> Any:
        return job.attrs[name] if name in job.attrs else job.settings.get(name)

    def matches(job: Job) -> bool:
        for name, wanted in where.items():
            got = value(job, name)
            if isinstance(wanted, (list, tuple, set, frozenset)):
                if got not in wanted:
                    return False
            elif isinstance(wanted, float) or isinstance(got, float):
                try:
                    if not math.isclose(float(got), float(wanted), rel_tol=1e-9):
                        return False
                except (TypeError, ValueError):
                    return False
            elif got != wanted:
                return False
        return True

    return [j for j in jobs if matches(j)]


# --------------------------------------------------------------------------------------
# summary.h5
# --------------------------------------------------------------------------------------

_SEPARATORS = ("__", ",", ";", "|")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _parse_number(name: str, text: Any) -> Any:
    """``100``, ``w100``, ``eps0.125``, ``2^-3``, ``1e-3`` -> number; else unchanged."""
    if not isinstance(text, str):
        return _coerce(name, text)
    power = re.fullmatch(r"\D*?(\d+(?:\.\d+)?)\^\(?([-+]?\d+(?:\.\d+)?)\)?", text.strip())
    if power:
        return _coerce(name, float(power.group(1)) ** float(power.group(2)))
    found = _NUMBER.search(text)
    return _coerce(name, float(found.group())) if found else text


def parse_key(path: str, attrs: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Key fields of a summary group: attributes first, then the group path (module doc).

    ``path`` is relative to ``scaling/`` or ``trials/``. Fields that cannot be found are
    ``None``. ``width`` and ``eps`` come back as numbers, ``snapshot`` as written.
    """
    found: dict[str, Any] = {f: attrs[f] for f in fields if f in attrs}
    parts = [p for p in path.split("/") if p]
    if len(parts) != len(fields) and len(parts) == 1:
        for sep in _SEPARATORS:
            if len(parts[0].split(sep)) == len(fields):
                parts = parts[0].split(sep)
                break
    if len(parts) == len(fields):
        for name, part in zip(fields, parts):
            if "=" in part:
                name, part = part.split("=", 1)
            if name in fields and name not in found:
                found[name] = part
    key = {f: found.get(f) for f in fields}
    for numeric in ("width", "eps"):
        if numeric in key and key[numeric] is not None:
            key[numeric] = _parse_number(numeric, key[numeric])
    return key


def snapshot_role(snapshot: Any) -> str | int | None:
    """``"first"`` or ``"last"`` for named snapshots (init/initial/first/start,
    final/last/end/trained), an ``int`` step for numeric ones, else ``None``."""
    if snapshot is None:
        return None
    text = str(snapshot).strip().lower()
    if text in ("init", "initial", "initialisation", "initialization", "first", "start"):
        return "first"
    if text in ("final", "last", "end", "trained", "after"):
        return "last"
    digits = re.search(r"\d+", text)
    return int(digits.group()) if digits else None


@dataclass
class ScalingEntry:
    """One ``scaling/<key>`` group: ``eps``, ``frobenius_mean``, ``frobenius_std`` [E];
    ``attrs`` holds ``exponent``, ``exponent_ci_low``, ``exponent_ci_high``,
    ``r_squared``, ``n_trials``."""

    name: str
    key: dict[str, Any]
    eps: np.ndarray
    frobenius_mean: np.ndarray
    frobenius_std: np.ndarray
    attrs: dict[str, Any]


@dataclass
class TrialEntry:
    """One ``trials/<key>`` group: ``x`` [M, d], ``mean_error``, ``error_variance`` [M];
    ``attrs`` holds ``l2_mean_error``, ``max_boundary_error``, ``l2_variance``,
    ``rel_l2_mean``, ``rel_l2_ci_low``, ``rel_l2_ci_high``, ``n_trials``."""

    name: str
    key: dict[str, Any]
    x: np.ndarray
    mean_error: np.ndarray
    error_variance: np.ndarray
    attrs: dict[str, Any]


@dataclass
class CompareEntry:
    """One ``compare/<axis>/<setting>`` group: the values of one sweep axis side by side at
    one setting of the other axes. ``columns`` maps ``value``, ``trial_key`` (str lists) and
    ``n``, ``rel_l2_mean``, ``rel_l2_ci_low``, ``rel_l2_ci_high``, ``max_abs_error_mean``,
    ``rel_l2_change``, ``max_abs_error_change``, ``welch_t``, ``welch_dof``, ``p_value``
    (arrays [V], first value first) ; ``attrs`` holds ``axis``, ``baseline``, ``name`` and
    the other axes' values."""

    name: str
    axis: str
    columns: dict[str, Any]
    attrs: dict[str, Any]


@dataclass
class Summary:
    """Contents of ``DIR/summary.h5``."""

    path: Path
    scaling: list[ScalingEntry]
    trials: list[TrialEntry]
    comparisons: list[CompareEntry] = field(default_factory=list)


def _leaf_groups(root: h5py.Group, marker: str) -> list[tuple[str, h5py.Group]]:
    """Groups under ``root`` (any depth) that hold a dataset called ``marker``."""
    found: list[tuple[str, h5py.Group]] = []

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Group) and isinstance(item.get(marker), h5py.Dataset):
            found.append((name, item))

    root.visititems(visit)
    return sorted(found, key=lambda t: t[0])


def read_summary(path: str | Path) -> Summary:
    """Read ``summary.h5``; groups missing a contract dataset are skipped."""
    path = Path(path)
    scaling: list[ScalingEntry] = []
    trials: list[TrialEntry] = []
    with h5py.File(path, "r") as f:
        if "scaling" in f:
            for name, g in _leaf_groups(f["scaling"], "eps"):
                if "frobenius_mean" not in g:
                    continue
                attrs = {k: decode(v) for k, v in g.attrs.items()}
                mean = np.asarray(g["frobenius_mean"][()], dtype=float).reshape(-1)
                std = (
                    np.asarray(g["frobenius_std"][()], dtype=float).reshape(-1)
                    if "frobenius_std" in g
                    else np.zeros_like(mean)
                )
                scaling.append(
                    ScalingEntry(
                        name=name,
                        key=parse_key(name, attrs, SCALING_KEYS),
                        eps=np.asarray(g["eps"][()], dtype=float).reshape(-1),
                        frobenius_mean=mean,
                        frobenius_std=std,
                        attrs=attrs,
                    )
                )
        if "trials" in f:
            for name, g in _leaf_groups(f["trials"], "x"):
                if "mean_error" not in g:
                    continue
                attrs = {k: decode(v) for k, v in g.attrs.items()}
                x = np.asarray(g["x"][()], dtype=float)
                mean = np.asarray(g["mean_error"][()], dtype=float).reshape(-1)
                var = (
                    np.asarray(g["error_variance"][()], dtype=float).reshape(-1)
                    if "error_variance" in g
                    else np.zeros_like(mean)
                )
                trials.append(
                    TrialEntry(
                        name=name,
                        key=parse_key(name, attrs, TRIAL_KEYS),
                        x=x[:, None] if x.ndim == 1 else x,
                        mean_error=mean,
                        error_variance=var,
                        attrs=attrs,
                    )
                )
        comparisons = [
            CompareEntry(
                name=name,
                axis=str(decode(g.attrs.get("axis", name.split("/")[0]))),
                columns={k: decode(v) if v.dtype.kind in "OSU" else v for k, v in _datasets(g).items()},
                attrs={k: decode(v) for k, v in g.attrs.items()},
            )
            for name, g in (_leaf_groups(f["compare"], "value") if "compare" in f else [])
        ]
    return Summary(path=path, scaling=scaling, trials=trials, comparisons=comparisons)


def to_dataframe(root: str | Path):
    """``DIR/jobs.csv`` (one row per job file, written by ``ntksweep reduce DIR``) as a
    pandas DataFrame: one column per swept setting by dotted path, the identifying
    attributes, ``rel_l2``, ``max_abs_error``, NTK norms, ``status`` and ``message``.

    Raises ``ImportError`` with what to install when pandas is missing, and
    ``FileNotFoundError`` when the folder has not been reduced yet."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(
            "analysis.load.to_dataframe needs pandas (pip install pandas); without it read "
            "DIR/jobs.csv with polars.read_csv or the csv module"
        ) from exc
    path = Path(root) / "jobs.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `ntksweep reduce {root}` first")
    # job ids are hex digits: keep them strings even when one happens to look like a number
    return pd.read_csv(path, dtype={"job_id": str})


# --------------------------------------------------------------------------------------
# A whole results folder
# --------------------------------------------------------------------------------------


@dataclass
class Results:
    """A results folder: every readable job file, the unreadable ones with the reason,
    and ``summary.h5`` if present (``summary_error`` says why it could not be read)."""

    root: Path
    jobs: list[Job]
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    summary: Summary | None = None
    summary_error: str | None = None

    def done(self) -> list[Job]:
        """Jobs with status ``done``: the only ones that enter statistics."""
        return [j for j in self.jobs if j.status == "done"]

    def by_status(self, status: str) -> list[Job]:
        return [j for j in self.jobs if j.status == status]

    def missing(self) -> list[dict[str, Any]]:
        """Grid points with no job file, inferred per scaling series (all settings equal but
        seed and eps, ``analysis.groups.series_groups``) as every (eps, seed) pair of the eps
        and seed values seen in that series, minus the pairs present; each point names the
        series by ``CONFIG_KEYS``. Only an inference: the sweep file itself is not read, so a
        whole series or eps value without any file goes unnoticed (``ntksweep reduce``
        compares with ``plan.tsv`` instead)."""
        out: list[dict[str, Any]] = []
        for series in _groups.series_groups(self.jobs):
            present = {j.key(GRID_KEYS) for j in series.jobs}
            axes = [sorted({j.attrs.get(k) for j in series.jobs}, key=_sortable) for k in GRID_KEYS]
            for point in itertools.product(*axes):
                if point not in present:
                    name = {k: series.key.get(k) for k in CONFIG_KEYS}
                    out.append({**name, **dict(zip(GRID_KEYS, point))})
        return out

    def counts(self) -> dict[str, int]:
        """Number of jobs per status plus ``other`` (unknown status), ``unreadable``
        (not an HDF5 file) and ``missing`` (see :meth:`missing`)."""
        counts = {s: len(self.by_status(s)) for s in STATUSES}
        counts["other"] = sum(1 for j in self.jobs if j.status not in STATUSES)
        counts["unreadable"] = len(self.unreadable)
        counts["missing"] = len(self.missing())
        return counts

    def describe(self, max_listed: int = 10) -> str:
        """A few lines for a person: counts, and which jobs were left out and why."""
        c = self.counts()
        lines = [
            f"{self.root}: {len(self.jobs) + len(self.unreadable)} job files; "
            + ", ".join(f"{k} {v}" for k, v in c.items())
            + " (only 'done' jobs enter the statistics)"
        ]
        left_out = [j for j in self.jobs if j.status != "done"]
        for job in left_out[:max_listed]:
            message = str(job.attrs.get("message", "")).strip().splitlines()
            lines.append(
                f"  {job.status}: {job.job_id} ({job.attrs.get('problem')}, "
                f"eps={job.attrs.get('eps')}, width={job.attrs.get('width')}, "
                f"seed={job.attrs.get('seed')})" + (f": {message[0]}" if message else "")
            )
        for path, reason in self.unreadable[:max_listed]:
            lines.append(f"  unreadable: {path.name}: {reason}")
        not_listed = max(0, len(left_out) - max_listed) + max(0, len(self.unreadable) - max_listed)
        if not_listed:
            lines.append(f"  ... {not_listed} more not listed")
        missing = self.missing()
        for point in missing[:max_listed]:
            lines.append(
                "  missing (inferred from the grid): "
                + ", ".join(f"{k}={v}" for k, v in point.items())
            )
        if len(missing) > max_listed:
            lines.append(f"  ... {len(missing) - max_listed} more missing")
        if self.summary is not None:
            lines.append(
                f"summary.h5: {len(self.summary.scaling)} scaling and "
                f"{len(self.summary.trials)} trial groups"
            )
        elif self.summary_error:
            lines.append(f"summary.h5 unreadable: {self.summary_error}")
        else:
            lines.append("summary.h5: absent (statistics computed from the job files)")
        return "\n".join(lines)


def load_results(root: str | Path) -> Results:
    """Read the attributes of every job file under ``root/jobs`` and ``root/summary.h5``.

    Raises ``FileNotFoundError`` if ``root`` is not a folder. Unreadable job files are
    recorded in ``Results.unreadable`` rather than raised.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist")
    jobs: list[Job] = []
    unreadable: list[tuple[Path, str]] = []
    for path in list_job_files(root):
        try:
            jobs.append(read_job(path))
        except OSError as exc:
            unreadable.append((path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    summary, summary_error = None, None
    summary_path = root / "summary.h5"
    if summary_path.is_file():
        try:
            summary = read_summary(summary_path)
        except (OSError, KeyError, ValueError) as exc:
            summary_error = str(exc)
    return Results(
        root=root, jobs=jobs, unreadable=unreadable, summary=summary, summary_error=summary_error
    )
