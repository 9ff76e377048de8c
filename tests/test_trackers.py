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
    acc = {int(r["step"]): float(r["value"]) for r in rows if r["key"] == "heldout_acc"}
    evals = _evals(run_dir)
    assert acc == {e["step"]: pytest.approx(e["heldout_acc"]) for e in evals}
    per_pos = [r for r in rows if r["key"].startswith("per_position_acc/") and int(r["step"]) == evals[-1]["step"]]
    assert len(per_pos) == 4
    assert any(r["key"] == "train_loss" for r in rows)


def test_tensorboard_has_scalars_and_the_per_position_image(run_dir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = [p for p in (run_dir / "tracking" / "tensorboard").glob("events.out.tfevents.*")]
    acc = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    steps = [e.step for e in acc.Scalars("heldout_acc")]
    assert steps == [e["step"] for e in _evals(run_dir)]
    images = acc.Images("per_position_acc")
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
    assert [float(r["value"]) for r in rows if r["key"] == "train_loss"] == pytest.approx(losses)


def test_one_vocabulary_and_one_position_convention(run_dir: Path) -> None:
    """jsonl, trackers and the dataframe use the same metric names, and position P (1-based) is the same
    number everywhere: ``per_position_acc[P-1]`` of a metrics line = tag ``per_position_acc/P`` = dataframe
    row ``position == P``; the dataframe's held-out accuracy is the count-weighted mean of its positions."""
    from probes.analysis.rundir import load_run

    rows = list(csv.DictReader((run_dir / "tracking" / "metrics.csv").open()))
    last = _evals(run_dir)[-1]
    tags = {r["key"]: float(r["value"]) for r in rows if int(r["step"]) == last["step"]}
    df = load_run(run_dir).to_dataframe()
    at = df[df.step == last["step"]]
    for p in range(1, 5):
        jsonl = last["per_position_acc"][p - 1]
        assert tags[f"per_position_acc/{p}"] == pytest.approx(jsonl)
        assert at[at.position == p].per_position_acc.item() == pytest.approx(jsonl)
    assert {"heldout_acc", "heldout_loss", "train_loss", "lr"} <= {r["key"] for r in rows}
    assert at.heldout_acc.iloc[0] == pytest.approx(last["heldout_acc"])
    assert at.heldout_loss.iloc[0] == pytest.approx(last["heldout_loss"])
    weighted = (at.per_position_acc * at.per_position_count).sum() / at.per_position_count.sum()
    assert weighted == pytest.approx(last["heldout_acc"])
    train = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    before = [t["loss"] for t in train if t["kind"] == "train" and t["step"] <= last["step"]]
    assert at.train_loss.iloc[0] == pytest.approx(before[-1])


def test_tensorboard_is_one_run_with_hparams(run_dir: Path) -> None:
    """One TensorBoard run per probe run (no second run, no folder holding only hparams.yml), and the run
    config in the same event file as the scalars, so the HParams tab shows it beside heldout_acc."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = run_dir / "tracking" / "tensorboard"
    assert [p for p in tb.iterdir() if p.is_dir()] == []
    (events,) = list(tb.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(acc.PluginTagToContent("hparams"))
    assert "heldout_acc" in acc.Tags()["scalars"]
