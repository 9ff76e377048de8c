"""Grounding-gap report from hand-made scores.json files."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from probes.analysis.vlm_gap import (
    build_gap_report,
    load_scores,
    report_csv,
    report_markdown,
    write_gap_report,
)
from probes.cli.app import main

from probes.errors import UserError

GROUPS = {"refcoco-val": "grounding", "refcoco-testA": "grounding", "textvqa": "reading", "coco": "captioning",
          "vqav2": "vqa"}  # fmt: skip
PYTHIA = {"refcoco-val": 80.0, "refcoco-testA": 84.0, "textvqa": 40.0, "coco": 120.0, "vqav2": 70.0}
MAMBA = {"refcoco-val": 60.0, "refcoco-testA": 61.0, "textvqa": 42.0, "coco": 118.0, "vqav2": 69.5}
PYTHIA_TA = {"refcoco-val": 88.0, "refcoco-testA": 84.0, "textvqa": 40.0, "coco": 120.0, "vqav2": 77.0}
MAMBA_TA = {"refcoco-val": 75.0, "refcoco-testA": 61.0, "textvqa": 42.0, "coco": 118.0, "vqav2": 69.5}


def _write(root: Path, backbone: str, family: str, task_aware: bool, scores: dict[str, float]) -> None:
    for bench, score in scores.items():
        d = root / f"{backbone}-{'ta' if task_aware else 'tag'}-{bench}"
        d.mkdir(parents=True)
        obj = {
            "schema_version": 1,
            "benchmark": bench,
            "task_group": GROUPS[bench],
            "metric": "cider" if bench == "coco" else "accuracy",
            "score": score,
            "n": 100,
            "model": {"backbone": backbone, "family": family, "encoder": "eva02-l14-336", "connector": "mlp",
                      "task_aware": task_aware, "checkpoint": f"/ckpt/{backbone}"},
            "resolution": 336,
        }  # fmt: skip
        (d / "scores.json").write_text(json.dumps(obj))


@pytest.fixture
def evals(tmp_path: Path) -> Path:
    root = tmp_path / "evals"
    _write(root, "pythia-1b", "gpt_neox", False, PYTHIA)
    _write(root, "mamba-790m", "mamba", False, MAMBA)
    _write(root, "pythia-1b", "gpt_neox", True, PYTHIA_TA)
    _write(root, "mamba-790m", "mamba", True, MAMBA_TA)
    return root


def test_group_sums_and_differences(evals: Path) -> None:
    report = build_gap_report(load_scores([evals]))
    assert len(report.models) == 4
    pythia = next(m for m in report.models if m.backbone == "pythia-1b" and not m.task_aware)
    assert report.group_sums[(pythia.identity, "grounding")] == (164.0, 2)
    diffs = {(d.task_group, d.pythia.task_aware): d.value for d in report.differences}
    assert diffs[("grounding", False)] == pytest.approx((80 - 60) + (84 - 61))
    assert diffs[("reading", False)] == pytest.approx(-2.0)
    assert diffs[("captioning", False)] == pytest.approx(2.0)
    assert diffs[("vqa", False)] == pytest.approx(0.5)
    assert diffs[("grounding", True)] == pytest.approx((88 - 75) + (84 - 61))
    assert len(report.differences) == 8


def test_task_aware_relative_gains(evals: Path) -> None:
    report = build_gap_report(load_scores([evals]))
    gains = {(g.model.backbone, g.benchmark): g.relative_gain for g in report.gains}
    assert gains[("pythia-1b", "refcoco-val")] == pytest.approx(10.0)  # 80 → 88
    assert gains[("mamba-790m", "refcoco-val")] == pytest.approx(25.0)  # 60 → 75
    assert gains[("pythia-1b", "vqav2")] == pytest.approx(10.0)  # 70 → 77
    assert gains[("pythia-1b", None)] is not None
    group = {(g.model.backbone, g.task_group): g.relative_gain for g in report.gains if g.benchmark is None}
    assert group[("mamba-790m", "grounding")] == pytest.approx(100 * (136 - 121) / 121)


def test_written_files_and_csv_numbers(evals: Path, tmp_path: Path) -> None:
    report = build_gap_report(load_scores([evals]))
    written = write_gap_report(report, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["gains.pdf", "gains.png", "report.csv", "report.md"]
    assert all(p.stat().st_size > 0 for p in written)
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    diff = [r for r in rows if r["kind"] == "difference" and r["task_group"] == "grounding" and r["task_aware"] == "False"]
    assert len(diff) == 1 and float(diff[0]["value"]) == pytest.approx(43.0)
    md = report_markdown(report)
    assert "Σ grounding" in md and "+43.00" in md


def test_duplicate_result_is_an_error(evals: Path, tmp_path: Path) -> None:
    dup = tmp_path / "dup"
    _write(dup, "pythia-1b", "gpt_neox", False, {"coco": 1.0})
    with pytest.raises(UserError, match="two results for pythia-1b on coco"):
        build_gap_report(load_scores([evals, dup]))


def test_ambiguous_pairing_needs_pair_option(evals: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    _write(extra, "pythia-410m", "gpt_neox", False, {"coco": 100.0})
    records = load_scores([evals, extra])
    with pytest.raises(UserError, match="--pair"):
        build_gap_report(records)
    report = build_gap_report(records, [("pythia-410m", "mamba-790m")])
    assert {(d.pythia.backbone, d.task_group) for d in report.differences} == {("pythia-410m", "captioning")}
    assert report.differences[0].value == pytest.approx(100.0 - 118.0)


def test_zero_agnostic_score_gives_nan_gain(tmp_path: Path) -> None:
    _write(tmp_path / "e", "pythia-1b", "gpt_neox", False, {"coco": 0.0})
    _write(tmp_path / "e", "pythia-1b", "gpt_neox", True, {"coco": 5.0})
    report = build_gap_report(load_scores([tmp_path / "e"]))
    assert math.isnan(report.gains[0].relative_gain)
    assert write_gap_report(report, tmp_path / "o")[-1].name == "report.csv"  # nothing to plot


@pytest.mark.parametrize(
    "content,match",
    [
        ("{", "not valid JSON"),
        ('{"schema_version": 2}', "schema_version"),
        ('{"schema_version": 1, "task_group": "fun"}', "task_group"),
    ],
)
def test_bad_scores_file(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "scores.json").write_text(content)
    with pytest.raises(UserError, match=match):
        load_scores([tmp_path])


@pytest.mark.slow
def test_cli_gap(evals: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["vlm", "gap", str(evals), "--out", str(tmp_path / "rep")])
    assert exc.value.code == 0
    assert (tmp_path / "rep" / "report.md").is_file()
    assert "Pythia − Mamba" in capsys.readouterr().out


def test_cli_gap_without_scores_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["vlm", "gap", str(tmp_path / "empty"), "--out", str(tmp_path / "rep")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no scores.json" in err and "\n" not in err
    assert not (tmp_path / "rep").exists()
