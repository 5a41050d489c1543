"""Groups of jobs by their settings, formed as ``ntksweep reduce`` forms them.

Why this module exists: a results folder may hold a sweep over any setting (``training.lr``,
``model.depth``, ``problem.kind``, a ``--set`` value) or several sweeps at once. Grouping by a
fixed list of attributes pools such jobs; instead every job's resolved configuration (the
``config`` attribute, YAML) is flattened into dotted paths (:func:`flatten`) and, with the
``sweep`` attribute and the identifying root attributes, makes the job's *identity*:

* a **trial group** is every job with the same identity but the seed
  (:func:`trial_groups`: one line of a loss figure, one error field);
* a **scaling series** is every job with the same identity but seed and eps
  (:func:`series_groups`: one curve of the NTK scaling figure).

:func:`distinguishing` picks the few settings that tell groups apart (a ``balancer`` axis also
changes ``balancer.every``, ...; only the first is kept), in the same order of preference as
the reducer (``src/reduce/settings.rs``): the identifying attributes ``problem``, ``eps``,
``width``, ``balancer``, ``normalization``; then ``*.kind`` paths; then other paths, shallow
first; ``sweep`` last. Legends and figure names use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .load import Job

#: Root attributes that identify a group in the original summary keys, in key order.
KEY_ATTRS = ("problem", "eps", "width", "balancer", "normalization")
#: Settings that never separate trial groups (eps is the ``eps`` attribute instead).
NOT_IDENTITY = ("seed", "problem.eps")


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a loaded configuration by dotted path (``training.lr``,
    ``collocation.residual.points``, ``training.stages.0.lr``); an empty list or mapping is
    a leaf ``"[]"`` / ``"{}"``. A non-mapping top level gives ``{}``."""
    out: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, (list, tuple)) and value:
            for i, v in enumerate(value):
                walk(v, f"{path}.{i}" if path else str(i))
        elif isinstance(value, Mapping):
            out[path] = "{}"
        elif isinstance(value, (list, tuple)):
            out[path] = "[]"
        else:
            out[path] = value

    if isinstance(config, Mapping):
        walk(config, prefix)
    return out


def _clean_eps(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def identity(job: "Job", *, with_eps: bool = True) -> dict[str, Any]:
    """Settings of ``job`` except the seed (and eps unless ``with_eps``): its dotted
    configuration paths, ``sweep``, and the identifying attributes under their own names
    (``problem``, ``width``, ``balancer``, ``normalization``, ``eps``; eps only when the
    problem has one)."""
    key = {k: v for k, v in job.settings.items() if k not in NOT_IDENTITY}
    for name in KEY_ATTRS:
        if name == "eps":
            continue
        if name in job.attrs:
            key[name] = job.attrs[name]
    eps = _clean_eps(job.attrs.get("eps"))
    if with_eps and eps is not None:
        key["eps"] = eps
    return key


def freeze(settings: Mapping[str, Any]) -> tuple:
    """A hashable, order-independent form of a settings dict."""
    return tuple(sorted((k, repr(v)) for k, v in settings.items()))


def _sortable(value: Any) -> tuple:
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if isinstance(value, (int, float)):
        return (2, value, "")
    return (3, 0, str(value))


def _preference(path: str) -> tuple:
    if path in KEY_ATTRS:
        return (0, KEY_ATTRS.index(path), "")
    rank = 3 if path == "sweep" else 1 if path.endswith(".kind") else 2
    return (rank, len(path.split(".")), path)


_ABSENT = object()


def varying(settings: Sequence[Mapping[str, Any]], exclude: Iterable[str] = ()) -> list[str]:
    """Paths whose value differs between ``settings`` (absence counts as a value), minus
    ``exclude``, in order of preference."""
    exclude = set(exclude)
    paths = {p for s in settings for p in s if p not in exclude}
    out = []
    for p in paths:
        values = {repr(s.get(p, _ABSENT)) for s in settings}
        if len(values) > 1:
            out.append(p)
    return sorted(out, key=_preference)


def distinguishing(settings: Sequence[Mapping[str, Any]], exclude: Iterable[str] = ()) -> list[str]:
    """The varying paths that separate ``settings``: a path is kept when two entries agree on
    every path kept before it but differ on it (so any two different entries differ on a
    kept path)."""
    kept: list[str] = []
    for path in varying(settings, exclude):
        seen: dict[tuple, str] = {}
        for s in settings:
            key = tuple(repr(s.get(k, _ABSENT)) for k in kept)
            value = repr(s.get(path, _ABSENT))
            if seen.setdefault(key, value) != value:
                kept.append(path)
                break
    return kept


@dataclass
class Group:
    """Jobs sharing one identity (``key``): a trial group or a scaling series."""

    key: dict[str, Any]
    jobs: list["Job"] = field(default_factory=list)

    @property
    def eps(self) -> Any:
        """The group's eps (``None`` for a problem without eps or a scaling series)."""
        return self.key.get("eps")

    @property
    def job_ids(self) -> tuple[str, ...]:
        return tuple(j.job_id for j in self.jobs)


def _group_order(key: Mapping[str, Any]) -> tuple:
    head = tuple(_sortable(key.get(k)) for k in ("problem", "width", "balancer", "normalization"))
    rest = tuple((k, _sortable(v)) for k, v in sorted(key.items()) if k not in KEY_ATTRS)
    eps = key.get("eps")
    return head + (rest, -eps if isinstance(eps, (int, float)) else 0.0)


def _groups(jobs: Iterable["Job"], with_eps: bool) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for job in jobs:
        key = identity(job, with_eps=with_eps)
        groups.setdefault(freeze(key), Group(key=key)).jobs.append(job)
    for g in groups.values():
        g.jobs.sort(key=lambda j: (_sortable(_clean_eps(j.attrs.get("eps"))), _sortable(j.attrs.get("seed")), j.job_id))
    return sorted(groups.values(), key=lambda g: _group_order(g.key))


def trial_groups(jobs: Iterable["Job"]) -> list[Group]:
    """Trial groups (all settings equal but the seed), ordered as the reducer orders them:
    problem, width, balancer, normalization, other settings, eps descending."""
    return _groups(jobs, with_eps=True)


def series_groups(jobs: Iterable["Job"]) -> list[Group]:
    """Scaling series (all settings equal but seed and eps), in the reducer's order."""
    return _groups(jobs, with_eps=False)


def value_text(value: Any) -> str:
    """``0.001``, ``1e-08``, ``grad_stats``, ``unset`` for ``None``."""
    if value is None:
        return "unset"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 1e-4 or value == 0 else repr(value)
    return str(value)


def describe(key: Mapping[str, Any], axes: Sequence[str], *, eps_text=None) -> str:
    """``eps=0.5, training.lr=0.001``: ``key``'s values of ``axes`` (``eps_text`` formats
    eps, e.g. as ``ε = 2^-1``)."""
    parts = []
    for a in axes:
        v = key.get(a)
        if a == "eps" and eps_text is not None:
            parts.append(eps_text(v))
        else:
            parts.append(f"{a}={value_text(v)}")
    return ", ".join(parts)
