"""Fig. 7/12 style heatmaps: per-position held-out accuracy over training, in a model x order layout.

y = target position (1 at the bottom … L at the top), x = % of training steps on a fixed 0–100 axis in every
panel, colour = accuracy on a fixed 0–1 scale, so panels and figures compare at a glance (the paper's Fig. 7
draws each model only up to its own early stop, 10% vs 62%, which hides how different those are). Column e
spans from the previous evaluation to evaluation e and shows the accuracy measured at e; the axis right of a
panel's last column is left blank (the run stopped there). Positions with no held-out sample (NaN in the run
directory, ``null`` in ``metrics.jsonl``) are drawn in grey: unmeasured, not zero.

Layout: one row per model (and per length and task, when the runs mix them), Transformers first, then SSMs,
then hybrids, by name within a kind (:mod:`probes.families`); one column per layout, suffix then prefix.
A cell holding several runs shows, per evaluation and position, the median over its init seeds
(:func:`probes.analysis.aggregate.median_matrix`); when the cell holds several lrs, only the best lr's runs
(:func:`probes.analysis.aggregate.best_lr`), named in the panel title. ``--select`` picks any other slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .aggregate import best_lr, median_matrix
from .figure import model_key, new_figure, order_key, paper_style, run_title, selection_note
from .rundir import Run

CMAP = "viridis"
MISSING_COLOUR = "0.8"  # positions without a held-out sample

RowKey = tuple[tuple[int, str], str, int]  # (model sort key, task, length)


@dataclass(frozen=True)
class HeatmapPanel:
    """The data behind one panel: ``values[k, e]`` is position k+1's accuracy at grid point e (row 0 at bottom)."""

    row: int
    col: int
    title: str
    runs: tuple[Path, ...]
    lr: float | None  # the lr shown (None: the cell has no run)
    x_edges: np.ndarray  # [G+1] % of training steps: 0, x_1, …, x_G
    y_edges: np.ndarray  # [L+1] 0.5, 1.5, …, L+0.5 so position k is centred on k
    values: np.ndarray  # [L, G]
    note: str = ""  # what a cell with several lrs drew and left out, and why ("" when it drew every run)

    @property
    def run(self) -> Path | None:
        """The run directory when the panel shows exactly one run."""
        return self.runs[0] if len(self.runs) == 1 else None


def _cell_title(runs: Sequence[Run], lr: float, n_lrs: int) -> str:
    if len(runs) == 1:
        return run_title(runs[0]) + (" (best lr)" if n_lrs > 1 else "")
    r = runs[0]
    return (
        f"{r.model} · L={r.length} · {r.order}\n"
        f"lr={lr:g}{' (best)' if n_lrs > 1 else ''} · median of {len(runs)} seeds"
    )


def heatmap_cell(runs: Sequence[Run], row: int, col: int, threshold: float | None = None) -> HeatmapPanel:
    """The panel for the runs of one model x task x length x order (best lr, median over its seeds)."""
    lrs = {r.lr for r in runs}
    lr = best_lr(runs, threshold) if len(lrs) > 1 else runs[0].lr
    shown = sorted((r for r in runs if r.lr == lr), key=lambda r: (r.init_seed, r.name))
    if len(shown) == 1:
        grid, values = 100.0 * shown[0].frac_steps, shown[0].accuracy
    else:
        grid, values = median_matrix(shown)
    width = max(r.num_positions for r in shown)
    x = np.concatenate([[0.0], grid])
    y = np.arange(width + 1, dtype=np.float64) + 0.5
    return HeatmapPanel(
        row, col, _cell_title(shown, lr, len(lrs)), tuple(r.path for r in shown), lr, x, y, values.T.copy(),
        selection_note(runs, lr, threshold),
    )


def heatmap_layout(
    runs: Sequence[Run], threshold: float | None = None
) -> tuple[list[str], list[str], list[HeatmapPanel]]:
    """(row labels, column labels = orders, panels for the non-empty cells) of :func:`plot_heatmaps`."""
    cells: dict[tuple[RowKey, str], list[Run]] = {}
    for r in runs:
        cells.setdefault(((model_key(r), r.task, r.length), r.order), []).append(r)
    rows = sorted({k[0] for k in cells})
    cols = sorted({k[1] for k in cells}, key=order_key)
    tasks = {k[1] for k in rows}
    lengths = {k[2] for k in rows}
    labels = [
        m[1] + (f" · L={length}" if len(lengths) > 1 else "") + (f" · {task}" if len(tasks) > 1 else "")
        for m, task, length in rows
    ]
    panels = [
        heatmap_cell(cells[(row, col)], i, j, threshold)
        for i, row in enumerate(rows)
        for j, col in enumerate(cols)
        if (row, col) in cells
    ]
    return labels, cols, panels


def plot_heatmaps(runs: Sequence[Run], threshold: float | None = None) -> tuple[Figure, list[HeatmapPanel]]:
    """Model x order heatmaps with a shared 0–1 colour bar; returns the figure and the plotted data.

    ``threshold`` (default: each run's own) only decides the best lr of a cell with several lrs.
    """
    labels, cols, panels = heatmap_layout(runs, threshold)
    nrows, ncols = len(labels), len(cols)
    with paper_style():
        fig, axes = new_figure(nrows * ncols, ncols, extra_width=0.6)
        cmap = sns.color_palette(CMAP, as_cmap=True).with_extremes(bad=MISSING_COLOUR)
        by_cell = {(p.row, p.col): p for p in panels}
        mesh = None
        for index, ax in enumerate(axes):
            i, j = divmod(index, ncols)
            p = by_cell.get((i, j))
            ax.set_xlim(0, 100)
            ax.set_xlabel("% of training steps")
            ax.set_ylabel("target position")
            if p is None:
                ax.set_title(f"{labels[i]} · {cols[j]}", fontsize="small")
                ax.text(0.5, 0.5, "no run", ha="center", va="center", transform=ax.transAxes)
                ax.set_yticks([])
                continue
            ax.set_title(p.title, fontsize="small")
            if p.values.shape[1] == 0:
                ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ax.transAxes)
                continue
            mesh = ax.pcolormesh(
                p.x_edges,
                p.y_edges,
                np.ma.masked_invalid(p.values),
                cmap=cmap,
                vmin=0.0,
                vmax=1.0,
                shading="flat",
                rasterized=True,
            )
            ax.set_ylim(p.y_edges[0], p.y_edges[-1])
            ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True, min_n_ticks=2))
        if mesh is not None:
            fig.colorbar(mesh, ax=axes, label="held-out accuracy", shrink=0.9)
    return fig, panels
