"""``--select key=value``: pick the runs of a grid that a figure or report shows.

A paper grid (3 lengths x 2 orders x models x 3 lrs x 3 init seeds) is one directory; figures usually show
a slice of it. Each selector names a run field and the values it may take: values of one key are
alternatives (``model=pythia-tiny,mamba-tiny``, or the key repeated), different keys must all match. Numbers
compare as numbers (``lr=1e-4`` matches a run whose lr is ``0.0001``). A key that does not exist, or a
selection that leaves no run, is a :class:`~probes.errors.UserError` that lists what exists, so a typo never
produces an empty or silently unfiltered figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from probes.errors import UserError
from probes.families import kind_of

from .rundir import Run


@dataclass(frozen=True)
class _Field:
    get: Callable[[Run], object]
    parse: Callable[[str], object]


def _float(text: str) -> float:
    return float(text)


FIELDS: dict[str, _Field] = {
    "model": _Field(lambda r: r.model, str),
    "family": _Field(lambda r: r.family, str),
    "kind": _Field(lambda r: kind_of(r.family) or "unknown", str),
    "task": _Field(lambda r: r.task, str),
    "length": _Field(lambda r: r.length, int),
    "order": _Field(lambda r: r.order, str),
    "lr": _Field(lambda r: r.lr, _float),
    "init_strategy": _Field(lambda r: str(r.config["model"]["init_strategy"]), str),
    "init_seed": _Field(lambda r: r.init_seed, int),
    "status": _Field(lambda r: r.status, str),
    "run": _Field(lambda r: r.name, str),
}
ALIASES = {"L": "length", "len": "length", "seed": "init_seed", "init": "init_strategy", "name": "run"}

Selection = dict[str, tuple[object, ...]]


def parse_selectors(items: Sequence[str]) -> Selection:
    """``["model=a,b", "lr=1e-4"]`` → ``{"model": ("a", "b"), "lr": (0.0001,)}``; bad items are UserErrors."""
    out: dict[str, list[object]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if not sep or not raw.strip():
            raise UserError(f"--select {item!r}: expected key=value (keys: {', '.join(FIELDS)})")
        if key not in FIELDS:
            raise UserError(f"--select {item!r}: unknown key {key!r} (keys: {', '.join(FIELDS)})")
        for text in raw.split(","):
            try:
                value = FIELDS[key].parse(text.strip())
            except ValueError:
                raise UserError(f"--select {item!r}: {text.strip()!r} is not a valid {key}") from None
            out.setdefault(key, []).append(value)
    return {k: tuple(v) for k, v in out.items()}


def _equal(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def matches(run: Run, selection: Selection) -> bool:
    return all(any(_equal(FIELDS[k].get(run), v) for v in values) for k, values in selection.items())


def select_runs(runs: Sequence[Run], selection: Selection) -> list[Run]:
    """The runs matching every key of ``selection`` (order kept); an empty result is a UserError."""
    if not selection:
        return list(runs)
    kept = [r for r in runs if matches(r, selection)]
    if not kept:
        seen = "; ".join(
            f"{k}: {', '.join(sorted({_show(FIELDS[k].get(r)) for r in runs}))}" for k in selection
        )
        wanted = " ".join(f"{k}={','.join(_show(v) for v in vs)}" for k, vs in selection.items())
        raise UserError(f"--select {wanted} matches none of the {len(runs)} runs (present: {seen})")
    return kept


def _show(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
