"""Each model at its best learning rate: per-lr medians of one cell, and the lr a report then keeps.

"Shaking Up VLMs" (§5.3, Fig. 6 and App. Fig. 11/12) trains every model at three learning rates and compares
the models as each does at its best one; a single shared lr instead measures how well that lr happens to suit
each architecture. A *cell* is (task, length, order, model); within it, each lr's runs (the seeds) give a
censored median of steps to threshold (:func:`probes.analysis.metrics.censored_median`).

The choice is :func:`probes.analysis.aggregate.best_lr` (the rule the figures' ``--best-lr`` uses: smallest
median steps with not-reached runs as never reaching, then the higher median best accuracy, then the smaller
lr); this module adds the per-lr table a report prints beside it. Selecting the lr on the same seeds that are
then reported favours every model alike (each gets its best of three), so comparisons between models stay
fair, though each cell's level is slightly optimistic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .aggregate import best_lr
from .metrics import GroupKey, RunMetrics, Value, censored_median, group_key


@dataclass(frozen=True)
class LrCell:
    """One lr of one cell: how many runs, how many reached, and their censored median steps."""

    key: GroupKey
    lr: float
    runs: int
    reached: int
    median: Value


def per_lr(metrics: Iterable[RunMetrics]) -> list[LrCell]:
    """Every (cell, lr) with its runs' censored median steps, sorted by cell then lr."""
    cells: dict[tuple[GroupKey, float], list[RunMetrics]] = {}
    for m in metrics:
        cells.setdefault((group_key(m.run), m.run.lr), []).append(m)
    return [
        LrCell(key, lr, len(ms), sum(m.reached for m in ms), censored_median([m.steps for m in ms]))
        for (key, lr), ms in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]


def best_lrs(metrics: Sequence[RunMetrics]) -> dict[GroupKey, float]:
    """The best lr of every cell (:func:`probes.analysis.aggregate.best_lr`), at each run's own threshold."""
    cells: dict[GroupKey, list[RunMetrics]] = {}
    for m in metrics:
        cells.setdefault(group_key(m.run), []).append(m)
    return {key: best_lr([m.run for m in ms], ms[0].threshold) for key, ms in cells.items()}


def keep_best(metrics: Sequence[RunMetrics], best: dict[GroupKey, float]) -> list[RunMetrics]:
    """The runs of each cell at its best lr (all seeds of that lr)."""
    return [m for m in metrics if math.isclose(m.run.lr, best[group_key(m.run)], rel_tol=1e-9)]
