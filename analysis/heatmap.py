"""Fig. 7/12 style heatmaps: per-position held-out accuracy over training, one panel per run.

y = target position (1 at the bottom … L at the top), x = % of training steps, colour = accuracy on a fixed
0–1 scale (so panels and figures compare). Column e spans from the previous evaluation to evaluation e and
shows the accuracy measured at e, so the right edge of the last column is where the run stopped. Buckets with
no held-out sample are NaN and drawn in grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .figure import new_figure, paper_style, run_title
from .rundir import Run

CMAP = "viridis"


@dataclass(frozen=True)
class HeatmapPanel:
    """The data behind one panel: ``values[k, e]`` is position k+1's accuracy at eval e (row 0 at the bottom)."""

    run: Path
    title: str
    x_edges: np.ndarray  # [E+1] % of training steps: 0, 100·frac_1, …, 100·frac_E
    y_edges: np.ndarray  # [L+1] 0.5, 1.5, …, L+0.5 so position k is centred on k
    values: np.ndarray  # [L, E] = run.accuracy.T


def heatmap_panel(run: Run) -> HeatmapPanel:
    x = np.concatenate([[0.0], 100.0 * run.frac_steps])
    y = np.arange(run.num_positions + 1, dtype=np.float64) + 0.5
    return HeatmapPanel(run.path, run_title(run), x, y, run.accuracy.T.copy())


def plot_heatmaps(runs: Sequence[Run], ncols: int = 3) -> tuple[Figure, list[HeatmapPanel]]:
    """One heatmap per run with a shared 0–1 colour bar; returns the figure and the plotted data."""
    panels = [heatmap_panel(r) for r in runs]
    with paper_style():
        fig, axes = new_figure(len(panels), ncols, extra_width=0.6)
        cmap = sns.color_palette(CMAP, as_cmap=True).with_extremes(bad="0.8")
        mesh = None
        for ax, p in zip(axes, panels, strict=True):
            ax.set_title(p.title, fontsize="small")
            ax.set_xlabel("% of training steps")
            ax.set_ylabel("target position")
            if p.values.shape[1] == 0:
                ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ax.transAxes)
                ax.set_xlim(0, 100)
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
            ax.set_xlim(p.x_edges[0], p.x_edges[-1])
            ax.set_ylim(p.y_edges[0], p.y_edges[-1])
            ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True, min_n_ticks=2))
        if mesh is not None:
            fig.colorbar(mesh, ax=axes, label="held-out accuracy", shrink=0.9)
    return fig, panels
