"""Each model at its best learning rate: per-lr medians of one cell, and the lr a report then keeps.

"Shaking Up VLMs" (§5.3, Fig. 6 and App. Fig. 11/12) trains every model at three learning rates and compares
the models as each does at its best one; a single shared lr instead measures how well that lr happens to suit
each architecture. A *cell* is (task, length, order, model); within it, each lr's runs (the seeds) give a
censored median of steps to threshold (:func:`probes.analysis.metrics.censored_median`).

Ranking rule, in order: an exact median beats a median that is only a lower bound (some runs did not reach);
lower exact medians win; among lower bounds, more runs reached wins; remaining ties go to the smaller lr.
Selecting the lr on the same seeds that are then reported favours every model alike (each gets its best of
three), so comparisons between models stay fair, though each cell's level is slightly optimistic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .metrics import GroupKey, RunMetrics, Value, censored_median, group_key


@dataclass(frozen=True)
class LrCell:
    """One lr of one cell: how many runs, how many reached, and their censored median steps."""

    key: GroupKey
    lr: float
    runs: int
    reached: int
    median: Value

    def rank(self) -> tuple[float, int, float]:
        """Smaller is better (see the module docstring)."""
        exact = self.median.exact and not math.isnan(self.median.value)
        return (self.median.value if exact else math.inf, -self.reached, self.lr)


def per_lr(metrics: Iterable[RunMetrics]) -> list[LrCell]:
    """Every (cell, lr) with its runs' censored median steps, sorted by cell then lr."""
    cells: dict[tuple[GroupKey, float], list[RunMetrics]] = {}
    for m in metrics:
        cells.setdefault((group_key(m.run), m.run.lr), []).append(m)
    return [
        LrCell(key, lr, len(ms), sum(m.reached for m in ms), censored_median([m.steps for m in ms]))
        for (key, lr), ms in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]


def best_lrs(cells: Sequence[LrCell]) -> dict[GroupKey, float]:
    """The winning lr of every cell under the ranking rule."""
    best: dict[GroupKey, LrCell] = {}
    for c in cells:
        if c.key not in best or c.rank() < best[c.key].rank():
            best[c.key] = c
    return {k: c.lr for k, c in best.items()}


def keep_best(metrics: Sequence[RunMetrics], best: dict[GroupKey, float]) -> list[RunMetrics]:
    """The runs of each cell at its best lr (all seeds of that lr)."""
    return [m for m in metrics if math.isclose(m.run.lr, best[group_key(m.run)], rel_tol=1e-9)]
