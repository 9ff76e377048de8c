"""Fig. 6/11 style learning curves: held-out accuracy vs % of training steps, seeds aggregated.

One panel per context length (a row per layout, suffix then prefix, and per task when runs mix them);
colour = model, line style = learning rate, dashed grey line = the threshold. The init seeds of one model x
lr are one line, their median, with a shaded min-max band (:mod:`probes.analysis.aggregate`: the paper
trains three seeds per lr, §5.3, and drawn one by one they look like one line). ``best_lr=True`` keeps, per
model and panel, only the lr that reached the threshold soonest (the paper's Fig. 11 shows one lr per model).
x = 100 · frac_steps of each eval line, so runs with different step budgets share the axis as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .aggregate import SeedBand, keep_best_lr, seed_band
from .figure import model_key, new_figure, order_key, paper_style
from .rundir import Run

LR_STYLES: tuple[object, ...] = ("-", "-.", ":", (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)))
THRESHOLD_STYLE = "--"  # reserved for the threshold line, never used for a learning rate
BAND_ALPHA = 0.2

PanelKey = tuple[str, str, int]  # (task, order, length)


@dataclass(frozen=True)
class CurveLine:
    """The data behind one line and its band: the seeds of one model x lr in one panel."""

    runs: tuple[Path, ...]
    panel: PanelKey
    model: str
    lr: float
    band: SeedBand

    @property
    def x(self) -> np.ndarray:
        return self.band.x

    @property
    def y(self) -> np.ndarray:
        """The median line."""
        return self.band.median


@dataclass(frozen=True)
class CurvePanel:
    key: PanelKey
    title: str
    thresholds: tuple[float, ...]
    lines: list[CurveLine]


def _panel_sort(key: PanelKey) -> tuple[str, tuple[int, str], int]:
    task, order, length = key
    return (task, order_key(order), length)


def curve_panels(
    runs: Sequence[Run], threshold: float | None = None, best_lr: bool = False
) -> list[CurvePanel]:
    """Panels by (task, order, length), each with one :class:`CurveLine` per model x lr (models in kind order).

    ``threshold`` overrides the runs' own (for the line drawn and for choosing the best lr).
    """
    if best_lr:
        runs = keep_best_lr(runs, lambda r: (r.task, r.order, r.length, r.model), threshold)
    by_key: dict[PanelKey, list[Run]] = {}
    for r in runs:
        by_key.setdefault((r.task, r.order, r.length), []).append(r)
    tasks = {k[0] for k in by_key}
    panels = []
    for key in sorted(by_key, key=_panel_sort):
        task, order, length = key
        rs = by_key[key]
        title = f"L = {length} · {order}" + (f" · {task}" if len(tasks) > 1 else "")
        ts = (threshold,) if threshold is not None else tuple(sorted({r.threshold for r in rs}))
        cells: dict[tuple[tuple[int, str], float], list[Run]] = {}
        for r in rs:
            cells.setdefault((model_key(r), r.lr), []).append(r)
        lines = [
            CurveLine(tuple(r.path for r in cell), key, cell[0].model, lr, seed_band(cell))
            for (_, lr), cell in sorted(cells.items(), key=lambda kv: kv[0])
        ]
        panels.append(CurvePanel(key, title, ts, lines))
    return panels


def plot_curves(
    runs: Sequence[Run], threshold: float | None = None, ncols: int | None = None, best_lr: bool = False
) -> tuple[Figure, list[CurvePanel]]:
    """Draw :func:`curve_panels`; one row per (task, order) with one column per length unless ``ncols``."""
    panels = curve_panels(runs, threshold, best_lr)
    models = [m for _, m in sorted({(model_key(r), r.model) for r in runs})]
    lrs = sorted({line.lr for p in panels for line in p.lines})
    colours = dict(zip(models, sns.color_palette("colorblind", len(models)), strict=True))
    styles = {lr: LR_STYLES[i % len(LR_STYLES)] for i, lr in enumerate(lrs)}
    if ncols is None:
        ncols = len({p.key[2] for p in panels})
    with paper_style():
        fig, axes = new_figure(len(panels), ncols, extra_width=1.6)
        for ax, p in zip(axes, panels, strict=True):
            for t in p.thresholds:
                ax.axhline(t, color="0.4", linestyle=THRESHOLD_STYLE, linewidth=0.9, zorder=1)
            for line in p.lines:
                b = line.band
                if len(line.runs) > 1:
                    ax.fill_between(
                        b.x, b.lo, b.hi, color=colours[line.model], alpha=BAND_ALPHA, linewidth=0, zorder=1.5
                    )
                ax.plot(
                    b.x,
                    b.median,
                    color=colours[line.model],
                    linestyle=styles[line.lr],
                    linewidth=1.1,
                    marker="." if len(b.x) == 1 else None,
                    zorder=2,
                )
            ax.set_title(p.title, fontsize="small")
            ax.set_xlim(0, 100)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("% of training steps")
            ax.set_ylabel("held-out accuracy")
        thresholds = sorted({t for p in panels for t in p.thresholds})
        handles: list[object] = [Line2D([], [], color=colours[m], label=m) for m in models]
        handles += [Line2D([], [], color="0.2", linestyle=styles[lr], label=f"lr {lr:g}") for lr in lrs]
        handles += [
            Line2D([], [], color="0.4", linestyle=THRESHOLD_STYLE, label=f"{t:.0%} threshold")
            for t in thresholds
        ]
        multi = any(len(line.runs) > 1 for p in panels for line in p.lines)
        if multi:
            handles.append(Patch(color="0.5", alpha=BAND_ALPHA, label="min–max over seeds"))
        parts = (["median over init seeds"] if multi else []) + (["best lr per model"] if best_lr else [])
        fig.legend(
            handles=handles,
            loc="outside right center",
            fontsize="small",
            frameon=False,
            title="\n".join(parts) or None,
            title_fontsize="small",
        )
    return fig, panels
