"""What every figure shares: paper-sized style, panel titles, and saving PNG + PDF atomically.

Figures are built on :class:`matplotlib.figure.Figure` directly (the Agg canvas, no pyplot): no global figure
registry, no display backend, so the same run directories give the same files on any machine.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path

import seaborn as sns
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from probes.errors import UserError
from probes.families import model_sort_key
from probes.io import atomic_path

from .metrics import steps_to_threshold
from .rundir import Run

FORMATS = ("png", "pdf")
ORDERS = ("suffix", "prefix")  # the paper's main layout first (§5.3), then App. C.4.1's prefix variant
PANEL_WIDTH, PANEL_HEIGHT = 2.6, 2.1  # inches: three panels span a two-column paper's text width
DPI = 200


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Seaborn's ``paper`` context and ``ticks`` style, scoped to the block (no global rcParams change)."""
    with (
        sns.plotting_context("paper"),
        sns.axes_style("ticks"),
        rc_context({"pdf.fonttype": 42, "svg.fonttype": "none"}),
    ):
        yield


def new_figure(n_panels: int, ncols: int, extra_width: float = 0.0) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure with ``n_panels`` axes in rows of ``ncols`` (unused cells hidden)."""
    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    fig = Figure(figsize=(PANEL_WIDTH * ncols + extra_width, PANEL_HEIGHT * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def model_key(run: Run) -> tuple[int, str]:
    """Figures list models Transformer, SSM, hybrid, then unknown families, by name within a kind
    (:mod:`probes.families`): Pythia sits beside Pythia in every figure of a grid, never wherever the
    alphabet puts it."""
    return model_sort_key(run.family, run.model)


def order_key(order: str) -> tuple[int, str]:
    """suffix, prefix, then any other layout by name."""
    return (ORDERS.index(order) if order in ORDERS else len(ORDERS), order)


def run_title(run: Run) -> str:
    """``model · L=… · order`` over ``lr=… · init …``: what tells the panels of a grid apart."""
    return f"{run.model} · L={run.length} · {run.order}\nlr={run.lr:g} · {run.config['model']['init_strategy']} init {run.init_seed}"


def output_paths(out: str | Path) -> list[Path]:
    """``figures/x.png`` (or ``.pdf``, or no suffix) → ``[figures/x.png, figures/x.pdf]``."""
    out = Path(out)
    if out.suffix and out.suffix.lower().lstrip(".") not in FORMATS:
        raise UserError(f"--out {out}: use a .png or .pdf name (both are written)")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as {out / 'figure.png'}")
    stem = out.with_suffix("") if out.suffix else out
    return [stem.with_name(f"{stem.name}.{fmt}") for fmt in FORMATS]


def save_figure(fig: Figure, out: str | Path) -> list[Path]:
    """Write the PNG and the PDF; both appear only once both rendered (no partial output on error)."""
    png, pdf = output_paths(out)
    with atomic_path(png) as tmp_png, atomic_path(pdf) as tmp_pdf:
        fig.savefig(tmp_png, format="png", dpi=DPI)
        fig.savefig(tmp_pdf, format="pdf", metadata={"CreationDate": None})
    return [png, pdf]


def _median_steps_text(runs: Sequence[Run], threshold: float | None) -> str:
    """Median steps to threshold of ``runs``, a run that did not reach counting as never (``not reached``)."""
    steps = [steps_to_threshold(r, threshold)[0] for r in runs]
    med = statistics.median(s.value if s.exact else math.inf for s in steps)
    return "not reached" if math.isinf(med) else f"{med:g}"


def selection_note(runs: Sequence[Run], lr: float, threshold: float | None = None) -> str:
    """One line saying which lr a cell drew, which it left out and why (``probes heatmap`` and ``probes
    curves --best-lr`` print it; a figure must not drop runs silently)."""
    lrs = sorted({r.lr for r in runs})
    if len(lrs) < 2:
        return ""
    r = runs[0]
    t = r.threshold if threshold is None else threshold
    shown = [x for x in runs if x.lr == lr]
    others = ", ".join(f"{x:g} ({_median_steps_text([y for y in runs if y.lr == x], threshold)})" for x in lrs if x != lr)
    return (
        f"{r.model} L={r.length} {r.order}: drew lr {lr:g} ({len(shown)} run(s), median steps to {t:g}: "
        f"{_median_steps_text(shown, threshold)}); left out lr {others}, {len(runs) - len(shown)} run(s): "
        "the best lr is the one with the fewest median steps to threshold"
    )
