"""Figures render, and the data behind the axes is the run data (not just "a file appeared")."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import QuadMesh

sys.path.insert(0, str(Path(__file__).parent))
from analysis_fixtures import write_run  # noqa: E402
from probes.analysis.curves import THRESHOLD_STYLE, plot_curves  # noqa: E402
from probes.analysis.figure import output_paths, save_figure  # noqa: E402
from probes.analysis.heatmap import plot_heatmaps  # noqa: E402
from probes.analysis.rundir import load_run  # noqa: E402

from probes.errors import UserError  # noqa: E402


def _acc(n_evals: int, n_pos: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n_evals, n_pos)).round(4)


def test_heatmap_image_is_accuracy_transposed_position_one_at_bottom(tmp_path: Path) -> None:
    acc = _acc(5, 7)
    acc[2, 3] = np.nan  # a bucket with no held-out sample
    run = load_run(
        write_run(tmp_path, "r", acc, steps=[10, 20, 30, 40, 50], max_steps=200, lr=5e-5, init_seed=1)
    )
    fig, (panel,) = plot_heatmaps([run])
    np.testing.assert_allclose(panel.values, acc.T, atol=1e-6)
    np.testing.assert_allclose(panel.x_edges, [0, 5, 10, 15, 20, 25])
    np.testing.assert_allclose(panel.y_edges, np.arange(8) + 0.5)
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    image = mesh.get_array()
    assert image.shape == (7, 5)
    # row 0 of the image is position 1 (drawn at the bottom), column e is eval e
    np.testing.assert_allclose(image.filled(-1), np.nan_to_num(acc.T, nan=-1), atol=1e-6)
    assert image.mask[3, 2] and image.mask.sum() == 1
    assert mesh.norm.vmin == 0.0 and mesh.norm.vmax == 1.0
    assert ax.get_ylim() == (0.5, 7.5)  # increasing: position 1 at the bottom
    assert "lr=5e-05" in ax.get_title() and "init 1" in ax.get_title() and "L=7" in ax.get_title()
    assert len(fig.axes) == 2  # the panel and its colour bar


def test_heatmap_one_panel_per_run_and_empty_run(tmp_path: Path) -> None:
    runs = [load_run(write_run(tmp_path, f"r{i}", _acc(3, 4, i), init_seed=i)) for i in range(4)]
    empty = write_run(tmp_path, "empty", np.zeros((0, 4)), status="running")
    runs.append(load_run(empty))
    fig, panels = plot_heatmaps(runs, ncols=2)
    assert len(panels) == 5 and panels[-1].values.shape == (0, 0)
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert len(visible) == 5
    paths = save_figure(fig, tmp_path / "figs" / "heat.png")
    assert [p.name for p in paths] == ["heat.png", "heat.pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["heat.pdf", "heat.png"]  # no temp left


def test_curves_data_behind_axes(tmp_path: Path) -> None:
    runs = []
    for model, family in (("pythia-tiny", "gpt_neox"), ("mamba-tiny", "mamba")):
        for lr in (1e-5, 1e-4):
            for length in (6, 9):
                acc = _acc(4, length, seed=int(lr * 1e5) + length)
                runs.append(
                    load_run(
                        write_run(
                            tmp_path / model,
                            f"{lr}-{length}",
                            acc,
                            model=model,
                            family=family,
                            lr=lr,
                            steps=[25, 50, 75, 100],
                            max_steps=400,
                        )
                    )
                )
    fig, panels = plot_curves(runs)
    assert [p.key for p in panels] == [("grounding", "suffix", 6), ("grounding", "suffix", 9)]
    assert all(len(p.lines) == 4 for p in panels)
    for p in panels:
        for line in p.lines:
            run = next(r for r in runs if r.path == line.run)
            np.testing.assert_allclose(line.x, [6.25, 12.5, 18.75, 25.0])  # 100 * frac_steps
            np.testing.assert_allclose(line.y, run.heldout_acc)
            assert run.length == p.key[2]
    ax = fig.axes[0]
    drawn = [ln for ln in ax.get_lines() if ln.get_linestyle() != THRESHOLD_STYLE]
    assert len(drawn) == 4
    np.testing.assert_allclose(drawn[0].get_xdata(), panels[0].lines[0].x)
    np.testing.assert_allclose(drawn[0].get_ydata(), panels[0].lines[0].y)
    colours = {ln.get_color() if isinstance(ln.get_color(), str) else tuple(ln.get_color()) for ln in drawn}
    styles = {ln.get_linestyle() for ln in drawn}
    assert len(colours) == 2 and len(styles) == 2  # colour by model, style by lr
    (thr,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == THRESHOLD_STYLE]
    assert list(thr.get_ydata()) == [0.95, 0.95]
    assert ax.get_xlim() == (0.0, 100.0)


def test_curves_threshold_override(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path, "r", _acc(3, 4)))
    fig, (panel,) = plot_curves([run], threshold=0.9)
    assert panel.thresholds == (0.9,)


def test_output_paths() -> None:
    assert output_paths("figs/x.png") == [Path("figs/x.png"), Path("figs/x.pdf")]
    assert output_paths("figs/x.pdf") == [Path("figs/x.png"), Path("figs/x.pdf")]
    assert output_paths("figs/x") == [Path("figs/x.png"), Path("figs/x.pdf")]
    with pytest.raises(UserError, match="use a .png or .pdf name"):
        output_paths("figs/x.svg")


def test_failed_save_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PNG renders, the PDF fails (disk full, say): neither file appears, no temp file stays."""
    run = load_run(write_run(tmp_path, "r", _acc(3, 4)))
    fig, _ = plot_heatmaps([run])
    real = fig.savefig

    def failing(path: Path, **kw: object) -> None:
        if kw.get("format") == "pdf":
            raise OSError("disk full")
        real(path, **kw)

    monkeypatch.setattr(fig, "savefig", failing)
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, tmp_path / "out" / "h.png")
    assert list((tmp_path / "out").iterdir()) == []
