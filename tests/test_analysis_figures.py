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


def _visible_panels(fig) -> list:  # noqa: ANN001
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def test_heatmap_image_is_accuracy_transposed_position_one_at_bottom(tmp_path: Path) -> None:
    acc = _acc(5, 7)
    acc[2, 3] = np.nan  # a bucket with no held-out sample
    run = load_run(
        write_run(tmp_path, "r", acc, steps=[10, 20, 30, 40, 50], max_steps=200, lr=5e-5, init_seed=1)
    )
    fig, (panel,) = plot_heatmaps([run])
    assert panel.run == run.path and panel.lr == 5e-5
    np.testing.assert_allclose(panel.values, acc.T, atol=1e-6)
    np.testing.assert_allclose(panel.x_edges, [0, 5, 10, 15, 20, 25])
    np.testing.assert_allclose(panel.y_edges, np.arange(8) + 0.5)
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    image = mesh.get_array()
    assert image.shape == (7, 5)
    # row 0 of the image is position 1 (drawn at the bottom), column e is eval e
    np.testing.assert_allclose(image.filled(-1), np.nan_to_num(acc.T, nan=-1), atol=1e-6)
    assert image.mask[3, 2] and image.mask.sum() == 1  # unmeasured: drawn as missing, not as 0
    assert mesh.norm.vmin == 0.0 and mesh.norm.vmax == 1.0
    assert ax.get_ylim() == (0.5, 7.5)  # increasing: position 1 at the bottom
    assert ax.get_xlim() == (0.0, 100.0)  # fixed axis although the run stopped at 25%
    assert "lr=5e-05" in ax.get_title() and "init 1" in ax.get_title() and "L=7" in ax.get_title()
    assert len(fig.axes) == 2  # the panel and its colour bar


def test_heatmap_null_positions_from_metrics_jsonl_are_missing(tmp_path: Path) -> None:
    """A run directory that stores NaN in the matrix and null in metrics.jsonl (no held-out sample)."""
    acc = np.full((3, 4), 0.5)
    acc[:, 2] = np.nan
    run = load_run(write_run(tmp_path, "r", acc))
    assert run.evals[0]["per_position_acc"][2] is None and np.isnan(run.accuracy[:, 2]).all()
    fig, (panel,) = plot_heatmaps([run])
    (mesh,) = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)]
    assert mesh.get_array().mask[2].all() and not mesh.get_array().mask[[0, 1, 3]].any()


def _cell(root: Path, name: str, model: str, family: str, order: str, **kw: object) -> object:
    return load_run(
        write_run(root, name, _acc(4, 5, len(name)), model=model, family=family, order=order, **kw)
    )


def test_heatmap_model_by_order_layout_is_kind_then_name_and_axes_are_0_to_100(tmp_path: Path) -> None:
    # names chosen so that alphabetical order would be wrong: a-hybrid < b-mamba < y-pythia < z-llama
    cells = [
        ("a-hybrid", "hybrid", "prefix"),
        ("b-mamba", "mamba", "suffix"),
        ("b-mamba", "mamba", "prefix"),
        ("z-llama", "llama", "suffix"),
        ("y-pythia", "gpt_neox", "suffix"),
        ("y-pythia", "gpt_neox", "prefix"),
    ]
    runs = [
        _cell(tmp_path, f"{m}-{o}", m, f, o, steps=[10 * (i + 1) * k for k in range(1, 5)], max_steps=400)
        for i, (m, f, o) in enumerate(cells)
    ]
    fig, panels = plot_heatmaps(runs)
    assert [(p.row, p.col, p.title.split(" · ")[0], p.title.split(" · ")[2].split()[0]) for p in panels] == [
        (0, 0, "y-pythia", "suffix"),
        (0, 1, "y-pythia", "prefix"),
        (1, 0, "z-llama", "suffix"),
        (2, 0, "b-mamba", "suffix"),
        (2, 1, "b-mamba", "prefix"),
        (3, 1, "a-hybrid", "prefix"),
    ]
    axes = _visible_panels(fig)
    assert len(axes) == 8  # 4 models x 2 orders; two cells have no run
    assert all(ax.get_xlim() == (0.0, 100.0) for ax in axes)  # runs stopped at 10%..60%: same axis
    empty = [ax for ax in axes if not any(isinstance(c, QuadMesh) for c in ax.collections)]
    assert [ax.get_title() for ax in empty] == ["z-llama · prefix", "a-hybrid · suffix"]
    assert all(t.get_text() == "no run" for ax in empty for t in ax.texts)


def test_heatmap_cell_is_median_of_seeds_at_the_best_lr(tmp_path: Path) -> None:
    seeds = [np.full((3, 4), v) for v in (0.2, 0.6, 0.4)]
    seeds[1][:, 0] = np.nan  # seed 1 did not measure position 1: the median of the other two is used
    runs = [
        load_run(write_run(tmp_path, f"good{s}", a, lr=1e-4, init_seed=s, max_steps=100))
        for s, a in enumerate(seeds)
    ]
    # neither lr reaches 0.95: the higher median best accuracy (1e-4: 0.4 vs 0.1) decides
    runs += [
        load_run(write_run(tmp_path, f"bad{s}", np.full((3, 4), 0.1), lr=1e-5, init_seed=s, max_steps=100))
        for s in range(3)
    ]
    _, (panel,) = plot_heatmaps(runs)
    assert panel.lr == 1e-4 and len(panel.runs) == 3 and "median of 3 seeds" in panel.title
    assert "(best)" in panel.title
    np.testing.assert_allclose(panel.values[1:], 0.4)
    np.testing.assert_allclose(panel.values[0], 0.3)


def test_heatmap_empty_run_and_saving(tmp_path: Path) -> None:
    runs = [load_run(write_run(tmp_path, "r", _acc(3, 4), order="suffix"))]
    runs.append(load_run(write_run(tmp_path, "empty", np.zeros((0, 4)), order="prefix", status="running")))
    fig, panels = plot_heatmaps(runs)
    assert len(panels) == 2 and panels[-1].values.shape[1] == 0
    assert [t.get_text() for t in fig.axes[1].texts] == ["no evaluation yet"]
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
    # Transformer before SSM although "mamba" < "pythia" alphabetically
    assert [line.model for line in panels[0].lines] == [
        "pythia-tiny",
        "pythia-tiny",
        "mamba-tiny",
        "mamba-tiny",
    ]
    for p in panels:
        for line in p.lines:
            (path,) = line.runs
            run = next(r for r in runs if r.path == path)
            np.testing.assert_allclose(line.x, [6.25, 12.5, 18.75, 25.0])  # 100 * frac_steps
            np.testing.assert_allclose(line.y, run.heldout_acc)  # one seed: the median is the run
            assert run.length == p.key[2]
    ax = fig.axes[0]
    assert not ax.collections  # one seed per line: no band
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


def _seed(root: Path, name: str, overall: list[float], seed: int, **kw: object) -> object:
    acc = np.repeat(np.asarray(overall)[:, None], 3, axis=1)
    steps = [10 * (e + 1) for e in range(len(overall))]
    return load_run(write_run(root, name, acc, steps=steps, max_steps=100, init_seed=seed, **kw))


def test_curves_aggregate_seeds_median_and_min_max_band(tmp_path: Path) -> None:
    runs = [
        _seed(tmp_path, "s0", [0.2, 0.5, 0.96], 0),  # finished: early stop at 30%, carried forward
        _seed(tmp_path, "s1", [0.1, 0.3, 0.5, 0.7, 0.9], 1),
        _seed(tmp_path, "s2", [0.3, 0.4, 0.6, 0.8], 2, status="running"),  # not carried past 40%
    ]
    fig, (panel,) = plot_curves(runs)
    (line,) = panel.lines
    assert len(line.runs) == 3
    b = line.band
    np.testing.assert_allclose(b.x, [10, 20, 30, 40, 50])
    np.testing.assert_allclose(b.median, [0.2, 0.4, 0.6, 0.8, (0.96 + 0.9) / 2])
    np.testing.assert_allclose(b.lo, [0.1, 0.3, 0.5, 0.7, 0.9])
    np.testing.assert_allclose(b.hi, [0.3, 0.5, 0.96, 0.96, 0.96])
    np.testing.assert_array_equal(b.n, [3, 3, 3, 3, 2])
    ax = fig.axes[0]
    (band,) = ax.collections  # the fill_between of the min-max band
    verts = band.get_paths()[0].vertices
    assert verts[:, 1].min() == pytest.approx(0.1) and verts[:, 1].max() == pytest.approx(0.96)
    (median,) = [ln for ln in ax.get_lines() if ln.get_linestyle() != THRESHOLD_STYLE]
    np.testing.assert_allclose(median.get_ydata(), b.median)


def test_curves_best_lr_keeps_the_fastest_lr_per_model(tmp_path: Path) -> None:
    runs = []
    for s in range(3):
        runs.append(_seed(tmp_path / "slow", f"slow{s}", [0.2, 0.5, 0.7, 0.96], s, lr=1e-5))
        runs.append(_seed(tmp_path / "fast", f"fast{s}", [0.5, 0.96], s, lr=1e-4))
        runs.append(_seed(tmp_path / "never", f"never{s}", [0.1, 0.2, 0.3, 0.4, 0.5], s, lr=5e-5))
        runs.append(
            _seed(tmp_path / "m", f"m{s}", [0.1, 0.2, 0.3 + 0.1 * s], s, lr=1e-5, model="m", family="mamba")
        )
        runs.append(_seed(tmp_path / "m", f"mb{s}", [0.1, 0.1, 0.2], s, lr=1e-4, model="m", family="mamba"))
    _, (panel,) = plot_curves(runs)
    assert sorted((line.model, line.lr) for line in panel.lines) == [
        ("m", 1e-5), ("m", 1e-4), ("pythia-tiny", 1e-5), ("pythia-tiny", 5e-5), ("pythia-tiny", 1e-4)
    ]  # fmt: skip
    fig, (panel,) = plot_curves(runs, best_lr=True)
    # pythia: 1e-4 reaches at step 20 (median); mamba never reaches: higher median best accuracy (1e-5) wins
    assert [(line.model, line.lr) for line in panel.lines] == [("pythia-tiny", 1e-4), ("m", 1e-5)]
    assert "best lr per model" in fig.legends[0].get_title().get_text()


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
    with pytest.raises(
        UserError, match="cannot write .*h.pdf: disk full"
    ):  # probes.io turns OSError into one line
        save_figure(fig, tmp_path / "out" / "h.png")
    assert list((tmp_path / "out").iterdir()) == []
