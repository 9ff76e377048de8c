"""Fig. 6/11 style learning curves: held-out accuracy vs % of training steps, one line per run.

One panel per context length (a row per layout, and per task, when runs mix them); colour = model, line
style = learning rate, dashed grey line = the threshold. x = 100 · frac_steps of each eval line, so runs with
different step budgets share the axis as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .figure import new_figure, paper_style
from .rundir import Run

LR_STYLES: tuple[object, ...] = ("-", "-.", ":", (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)))
THRESHOLD_STYLE = "--"  # reserved for the threshold line, never used for a learning rate


@dataclass(frozen=True)
class CurveLine:
    """The data behind one line."""

    run: Path
    panel: tuple[str, str, int]  # (task, order, length)
    model: str
    lr: float
    x: np.ndarray  # 100 · frac_steps
    y: np.ndarray  # held-out accuracy


@dataclass(frozen=True)
class CurvePanel:
    key: tuple[str, str, int]
    title: str
    thresholds: tuple[float, ...]
    lines: list[CurveLine]


def curve_panels(runs: Sequence[Run], threshold: float | None = None) -> list[CurvePanel]:
    """Group runs into panels by (task, order, length), sorted; ``threshold`` overrides the runs' own."""
    by_key: dict[tuple[str, str, int], list[Run]] = {}
    for r in runs:
        by_key.setdefault((r.task, r.order, r.length), []).append(r)
    tasks = {k[0] for k in by_key}
    panels = []
    for key in sorted(by_key):
        task, order, length = key
        rs = by_key[key]
        title = f"L = {length} · {order}" + (f" · {task}" if len(tasks) > 1 else "")
        ts = (threshold,) if threshold is not None else tuple(sorted({r.threshold for r in rs}))
        lines = [CurveLine(r.path, key, r.model, r.lr, 100.0 * r.frac_steps, r.heldout_acc) for r in rs]
        panels.append(CurvePanel(key, title, ts, lines))
    return panels


def plot_curves(
    runs: Sequence[Run], threshold: float | None = None, ncols: int | None = None
) -> tuple[Figure, list[CurvePanel]]:
    """Draw :func:`curve_panels`; one row per (task, order) with one column per length unless ``ncols``."""
    panels = curve_panels(runs, threshold)
    models = sorted({r.model for r in runs})
    lrs = sorted({r.lr for r in runs})
    colours = dict(zip(models, sns.color_palette("colorblind", len(models)), strict=True))
    styles = {lr: LR_STYLES[i % len(LR_STYLES)] for i, lr in enumerate(lrs)}
    if ncols is None:
        ncols = len({p.key[2] for p in panels})
    with paper_style():
        fig, axes = new_figure(len(panels), ncols, extra_width=1.4)
        for ax, p in zip(axes, panels, strict=True):
            for t in p.thresholds:
                ax.axhline(t, color="0.4", linestyle=THRESHOLD_STYLE, linewidth=0.9, zorder=1)
            for line in p.lines:
                ax.plot(
                    line.x,
                    line.y,
                    color=colours[line.model],
                    linestyle=styles[line.lr],
                    linewidth=1.1,
                    marker="." if len(line.x) == 1 else None,
                    zorder=2,
                )
            ax.set_title(p.title, fontsize="small")
            ax.set_xlim(0, 100)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("% of training steps")
            ax.set_ylabel("held-out accuracy")
        thresholds = sorted({t for p in panels for t in p.thresholds})
        handles = [Line2D([], [], color=colours[m], label=m) for m in models]
        handles += [Line2D([], [], color="0.2", linestyle=styles[lr], label=f"lr {lr:g}") for lr in lrs]
        handles += [
            Line2D([], [], color="0.4", linestyle=THRESHOLD_STYLE, label=f"{t:.0%} threshold")
            for t in thresholds
        ]
        fig.legend(handles=handles, loc="outside right center", fontsize="small", frameon=False)
    return fig, panels
