"""Aggregating the init seeds of one model x lr, and choosing the best lr: what grid figures draw.

The paper's grid trains every (model, length, order, lr) with three initialisations of the new embedding
rows (§5.3, App. C.4). Drawn one line per seed, a grid of 108 runs is unreadable and the three seeds of a
cell look like one line; these helpers reduce the seeds to a median and a min-max band, on a common axis.

Common axis (:func:`union_grid`): the union of the seeds' evaluation points, in % of training steps. A run
contributes at grid point x the value of its last evaluation at or before x (last observation carried
forward; nothing before its first evaluation). After its last evaluation a run contributes only if it
*finished*: the trainer stops a run early once it reaches the threshold, so its final accuracy stands for
the rest of the axis (otherwise the best seed would drop out of the median exactly when it wins). A run
still running, interrupted or failed contributes nothing after its last evaluation. The grid ends at the
last evaluation of the longest seed, so no figure draws beyond what was measured.

Best lr (:func:`best_lr`): the lr whose median steps to threshold over its seeds is smallest, a run that did
not reach counting as never reaching (``inf``, as in the report's bootstrap); ties (e.g. no lr reached) go to
the higher median best held-out accuracy, then to the smaller lr. It is the paper's Fig. 11 view (one lr per
model) chosen from the data instead of by hand.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import steps_to_threshold
from .rundir import Run

_DECIMALS = 9  # x values closer than 1e-9 % are one grid point (frac_steps is step / max_steps in float)


@dataclass(frozen=True)
class SeedBand:
    """Held-out accuracy of a group of runs on a common axis: median line, min-max band, contributors."""

    x: np.ndarray  # [G] % of training steps
    median: np.ndarray  # [G]
    lo: np.ndarray  # [G] minimum over contributing runs
    hi: np.ndarray  # [G] maximum
    n: np.ndarray  # [G] runs contributing at each point


def union_grid(runs: Sequence[Run]) -> np.ndarray:
    """Sorted union of the runs' evaluation points, ``100 · frac_steps`` (empty when none has evaluated)."""
    xs = [np.round(100.0 * r.frac_steps, _DECIMALS) for r in runs if r.evals]
    return np.unique(np.concatenate(xs)) if xs else np.zeros(0)


def on_grid(run: Run, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``values`` ([E] or [E, L], one row per eval of ``run``) carried forward onto ``grid`` (NaN = no value)."""
    x = np.round(100.0 * run.frac_steps[: len(values)], _DECIMALS)
    shape = (len(grid), *values.shape[1:])
    out = np.full(shape, np.nan)
    if len(x) == 0:
        return out
    idx = np.searchsorted(x, grid, side="right") - 1  # last eval at or before each grid point
    ok = idx >= 0
    if run.status != "finished":
        ok &= grid <= x[-1]
    out[ok] = values[idx[ok]]
    return out


def seed_band(runs: Sequence[Run]) -> SeedBand:
    """Median, min and max held-out accuracy over ``runs`` (typically the init seeds of one model x lr)."""
    grid = union_grid(runs)
    stack = np.stack([on_grid(r, r.heldout_acc, grid) for r in runs]) if runs else np.zeros((0, 0))
    n = (~np.isnan(stack)).sum(axis=0) if runs else np.zeros(0, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        median = np.nanmedian(stack, axis=0) if runs else grid.copy()
        lo = np.nanmin(stack, axis=0) if runs else grid.copy()
        hi = np.nanmax(stack, axis=0) if runs else grid.copy()
    return SeedBand(grid, median, lo, hi, n)


def median_matrix(runs: Sequence[Run]) -> tuple[np.ndarray, np.ndarray]:
    """``(grid [G], accuracy [G, L])``: per grid point and position, the median over ``runs`` that measured it.

    A position no run measured at a point (no held-out sample) stays NaN, drawn as missing.
    """
    grid = union_grid(runs)
    width = max((r.num_positions for r in runs), default=0)
    if len(grid) == 0:
        return grid, np.zeros((0, width))
    if any(r.num_positions != width for r in runs if r.evals):
        raise ValueError("median_matrix needs runs with the same number of positions")
    stack = np.stack([on_grid(r, r.accuracy, grid) for r in runs if r.evals])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return grid, np.nanmedian(stack, axis=0)


def best_lr(runs: Sequence[Run], threshold: float | None = None) -> float:
    """The lr of ``runs`` with the smallest median steps to threshold (see the module docstring)."""
    if not runs:
        raise ValueError("best_lr needs at least one run")
    by_lr: dict[float, list[Run]] = {}
    for r in runs:
        by_lr.setdefault(r.lr, []).append(r)

    def score(lr: float) -> tuple[float, float, float]:
        steps = [steps_to_threshold(r, threshold)[0] for r in by_lr[lr]]
        med = statistics.median(s.value if s.exact else math.inf for s in steps)
        best = [float(np.nanmax(r.heldout_acc)) for r in by_lr[lr] if r.evals]
        return (med, -statistics.median(best) if best else 0.0, lr)

    return min(by_lr, key=score)


def keep_best_lr(
    runs: Sequence[Run], cell: Callable[[Run], Hashable], threshold: float | None = None
) -> list[Run]:
    """Within each ``cell(run)`` group (e.g. model x task x length x order), keep only its best lr's runs."""
    groups: dict[Hashable, list[Run]] = {}
    for r in runs:
        groups.setdefault(cell(r), []).append(r)
    best = {key: best_lr(rs, threshold) for key, rs in groups.items()}
    return [r for r in runs if r.lr == best[cell(r)]]
