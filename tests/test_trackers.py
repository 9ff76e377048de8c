"""Trackers mirror metrics.jsonl (the canonical record): CSV, TensorBoard (scalars + per-position image) and
W&B offline, from a real tiny training run; bad --report-to values are one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from probes.cli.app import main

from probes.errors import UserError
from probes.train.trackers import RunMirror, parse_report_to, per_position_image


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    with pytest.raises(SystemExit) as done:
        main(["synth", "--len", "4", "--max-steps", "20", "--eval-every", "5", "--eval-samples", "64",
              "--n-train", "1000", "--lr", "1e-3", "--device", "cpu", "--out", str(out),
              "--report-to", "csv,tensorboard"])
    assert done.value.code in (0, None)
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def _evals(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "eval"]


def test_csv_mirrors_every_eval(run_dir: Path) -> None:
    rows = list(csv.DictReader((run_dir / "tracking" / "metrics.csv").open()))
    acc = {int(r["step"]): float(r["value"]) for r in rows if r["key"] == "eval/acc"}
    evals = _evals(run_dir)
    assert acc == {e["step"]: pytest.approx(e["heldout_acc"]) for e in evals}
    per_pos = [r for r in rows if r["key"].startswith("per_position/") and int(r["step"]) == evals[-1]["step"]]
    assert len(per_pos) == 4
    assert any(r["key"] == "train/loss" for r in rows)


def test_tensorboard_has_scalars_and_the_per_position_image(run_dir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = [p for p in (run_dir / "tracking" / "tensorboard").glob("events.out.tfevents.*")]
    acc = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    steps = [e.step for e in acc.Scalars("eval/acc")]
    assert steps == [e["step"] for e in _evals(run_dir)]
    images = acc.Images("eval/per_position")
    assert [i.step for i in images] == steps and images[-1].width > 0


def test_per_position_image_layout() -> None:
    img = per_position_image([[1.0, 0.0, None], [1.0, 1.0, None]])
    scale = img.shape[0] // 3
    bottom, top = img[-1, 0], img[0, 0]  # position 1 at the bottom, position 3 (never measured) at the top
    assert img.shape == (3 * scale, 2 * scale, 3) and img.dtype == np.uint8
    assert tuple(top) == (153, 153, 153)  # grey: missing
    assert bottom[1] > 200  # viridis at 1.0 is yellow (high green)


def test_wandb_offline_without_network(run_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    import shutil

    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    mirror = RunMirror(copy, ["wandb"])
    assert mirror.sync() == len((copy / "metrics.jsonl").read_text().splitlines())
    mirror.finish()
    (offline,) = list((copy / "tracking" / "wandb").glob("offline-run-*"))
    assert list(offline.glob("run-*.wandb"))


def test_resume_cut_back_restarts_the_mirror(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "r"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "tracking")
    mirror = RunMirror(copy, ["csv"])
    n = mirror.sync()
    metrics = copy / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join(lines[:2]) + "\n" + '{"kind": "eval", "step"')  # cut back + a torn line
    assert mirror.sync() == 2 and n == len(lines)
    mirror.finish()


@pytest.mark.parametrize("text", ["tensorbord", "csv,mlflow"])
def test_unknown_tracker_is_an_error(text: str) -> None:
    with pytest.raises(UserError, match="unknown tracker"):
        parse_report_to(text)


def test_none_means_no_tracker() -> None:
    assert parse_report_to("none") == [] and parse_report_to("") == []
    assert parse_report_to("csv,csv") == ["csv"]


def test_vlm_train_reports_to_csv(tmp_path: Path) -> None:
    """`probes vlm train --report-to csv` mirrors the VLM run's metrics.jsonl like synth does."""
    from probes.vlm.data.world import write_world

    world = tmp_path / "world"
    write_world(world, 5, seed=0)
    out = tmp_path / "vl"
    with pytest.raises(SystemExit) as done:
        main(["vlm", "train", "--stage", "1", "--data", str(world), "--out", str(out), "--max-steps", "3",
              "--batch-size", "4", "--log-every", "1", "--report-to", "csv"])
    assert done.value.code in (0, None)
    rows = list(csv.DictReader((out / "tracking" / "metrics.csv").open()))
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [float(r["value"]) for r in rows if r["key"] == "train/loss"] == pytest.approx(losses)
