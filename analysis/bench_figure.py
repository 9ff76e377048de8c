"""The length-scaling figure of `probes bench scaling`: time and memory per step against sequence length.

It draws from the result dictionary the bench returns (the same numbers as its ``--json`` file), so the bench
(library) measures and this module (analysis) draws: the library never imports analysis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .figure import new_figure, paper_style, save_figure


def plot_scaling(result: dict[str, Any], out: str | Path) -> list[Path]:
    """Two log-log panels (ms/step, memory vs sequence length) with dashed reference slopes 1 and 2."""
    with paper_style():
        fig, (ax_t, ax_m) = new_figure(2, 2, extra_width=0.8)
        for ax, field, label in ((ax_t, "ms_per_step", "ms / step"), (ax_m, "memory_bytes", "memory (MB)")):
            scale = 1e-6 if field == "memory_bytes" else 1.0
            lo_all = []
            for name in result["config"]["models"]:
                pts = [r for r in result["rows"] if r["model"] == name]
                xs = [r["seq_len"] for r in pts]
                ys = [r[field] * scale for r in pts]
                ax.plot(xs, ys, marker="o", markersize=3, label=name)
                lo_all.append((xs[0], min(ys)))
            x0, y0 = min(lo_all)
            xs_ref = [x0, max(r["seq_len"] for r in result["rows"])]
            for slope, style in ((1, ":"), (2, "--")):
                ax.plot(xs_ref, [y0 * (x / x0) ** slope for x in xs_ref], style, color="grey", linewidth=0.8,
                        label=f"slope {slope}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("sequence length")
            ax.set_ylabel(label)
        ax_m.set_title(result["memory_kind"], fontsize=6)
        ax_t.set_title(f"batch {result['config']['batch']}", fontsize=6)
        ax_m.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        return save_figure(fig, out)
