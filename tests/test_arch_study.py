"""The architecture study: its plan, seeded model checkpoints, resume rule, and the command end to end."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import torch
from probes_cli import PROBES
from safetensors.torch import load_file

from probes.errors import UserError
from probes.models.registry import load_backbone
from probes.studies.arch import (
    StudyConfig,
    check_study_file,
    ensure_model,
    model_dir,
    plan_study,
    run_name,
    run_study,
)

TINY = ["--models", "pythia-tiny,mamba-tiny", "--lengths", "4", "--orders", "suffix", "--seeds", "0,1",
        "--lrs", "1e-3,3e-3", "--max-steps", "10", "--eval-every", "5", "--eval-samples", "64", "--n-train", "640", "--workers", "0"]


def test_plan_covers_the_grid_and_seeds_the_model_and_the_new_rows(tmp_path: Path) -> None:
    cfg = StudyConfig(models=("pythia-tiny", "hybrid-tiny"), lengths=(4, 6), seeds=(0, 1, 2), lrs=(1e-3, 3e-3))
    runs = plan_study(cfg, tmp_path / "runs")
    assert len(runs) == 2 * 2 * 2 * 3 * 2
    names = {r.planned.config.run_name for r in runs}
    assert len(names) == len(runs) and run_name("hybrid-tiny", 6, "prefix", 3e-3, 2) in names
    for r in runs:
        c = r.planned.config
        assert c.model.init_seed == r.seed
        assert Path(c.model.name) == model_dir(tmp_path / "runs", r.preset, r.seed)
        assert c.task.params == {"length": r.length, "order": r.order, "seed": 0}  # same data for every seed
        assert c.train.seed == 0 and c.train.lr == r.lr and c.train.stop_after_bands
    assert not model_dir(tmp_path / "runs", "pythia-tiny", 0).is_relative_to(tmp_path / "runs")


def test_seeded_checkpoints_differ_by_seed_and_seed_matches_the_preset(tmp_path: Path) -> None:
    p0 = ensure_model(tmp_path / "runs", "mamba-tiny", 0)
    p1 = ensure_model(tmp_path / "runs", "mamba-tiny", 1)
    w0, w1 = load_file(p0 / "model.safetensors"), load_file(p1 / "model.safetensors")
    preset = load_backbone("mamba-tiny", seed=0).model.state_dict()
    assert all(torch.equal(w0[k], preset[k]) for k in w0)
    assert not all(torch.equal(w0[k], w1[k]) for k in w0)
    assert ensure_model(tmp_path / "runs", "mamba-tiny", 0) == p0  # written once


@pytest.mark.parametrize(
    ("changes", "needle"),
    [({"models": ()}, "at least one"), ({"seeds": (0, 0)}, "repeated"), ({"orders": ("middle",)}, "unknown order"),
     ({"models": ("/some/dir",)}, "not a preset"), ({"lengths": (1,)}, "lengths"), ({"lrs": ()}, "at least one"),
     ({"lrs": (0.0,)}, "learning rates")],
)
def test_bad_study_options_are_user_errors(changes: dict, needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        StudyConfig(**changes)


def test_a_second_study_with_other_options_is_refused(tmp_path: Path) -> None:
    from probes.studies.arch import write_study_file

    cfg = StudyConfig(models=("pythia-tiny",), lengths=(4,), seeds=(0,))
    write_study_file(cfg, tmp_path, plan_study(cfg, tmp_path))
    check_study_file(cfg, tmp_path)
    with pytest.raises(UserError, match="max_steps"):
        check_study_file(StudyConfig(models=("pythia-tiny",), lengths=(4,), seeds=(0,), max_steps=7), tmp_path)
    # growing the grid is allowed (the runs already there keep their names); dropping a value is not
    check_study_file(StudyConfig(models=("pythia-tiny",), lengths=(4,), seeds=(0, 1), orders=("suffix", "prefix")), tmp_path)
    with pytest.raises(UserError, match=r"lengths \(drops 4\)"):
        check_study_file(StudyConfig(models=("pythia-tiny",), lengths=(6,), seeds=(0,)), tmp_path)


@pytest.mark.slow
def test_arch_study_command_end_to_end(tmp_path: Path) -> None:
    out, runs = tmp_path / "fig", tmp_path / "runs"
    cmd = [*PROBES, "arch-study", *TINY, "--out", str(out), "--runs", str(runs)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    names = sorted(run_name(m, 4, "suffix", lr, s) for m in ("pythia-tiny", "mamba-tiny") for s in (0, 1)
                   for lr in (1e-3, 3e-3))
    assert sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")) == names
    groups = list(csv.DictReader((out / "report_groups.csv").open()))
    assert sorted(g["model"] for g in groups) == ["mamba-tiny", "pythia-tiny"]  # seeds grouped under the preset
    assert all(g["runs"] == "2" for g in groups)  # the two seeds of the best lr
    rows = {r["run"]: r for r in csv.DictReader((out / "report.csv").open())}
    assert len(rows) == 4 and set(rows) <= set(names)  # each cell at its best lr
    assert "Steps to threshold per learning rate" in (out / "report.md").read_text()
    assert "interval n/a" in (out / "report.md").read_text() or "%, n=2)" in (out / "report.md").read_text()
    for name in rows:
        summary = json.loads((runs / name / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["steps_done"] >= 5
        expected = "" if summary["steps_to_threshold"] is None else str(summary["steps_to_threshold"])
        assert rows[name]["steps_to_threshold"] == expected
    record = json.loads((out / "study.json").read_text())
    assert record["command"].startswith("probes arch-study") and set(record["runs"]) == set(names)
    assert {r["model_seed"] for r in record["runs"].values()} == {0, 1}
    for stem in ("heatmaps_L4", "curves"):
        assert (out / f"{stem}.pdf").read_bytes().startswith(b"%PDF") and (out / f"{stem}.png").stat().st_size > 0
    # --report-only redraws the outputs and keeps the training command and wall time of the study it reports
    again = subprocess.run([*cmd, "--report-only"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    redrawn = json.loads((out / "study.json").read_text())
    assert redrawn["command"] == record["command"] and redrawn["wall_time_s"] == record["wall_time_s"] is not None
    assert redrawn["report_command"].endswith("--report-only") and redrawn["runs"] == record["runs"]


def test_rerun_skips_finished_runs_and_resumes_interrupted_ones(tmp_path: Path) -> None:
    """In process (``workers=0``): the same skip / resume rule as the launcher, without process start-up."""
    cfg = StudyConfig(models=("pythia-tiny",), lengths=(4,), orders=("suffix",), seeds=(0,), lrs=(1e-3,),
                      max_steps=10, eval_every=5, eval_samples=64, n_train=640)
    runs = tmp_path / "runs"
    (first,) = run_study(cfg, runs, workers=0)
    assert first.status == "finished"
    run_dir = first.run_dir
    metrics = (run_dir / "metrics.jsonl").read_text()
    (again,) = run_study(cfg, runs, workers=0)
    assert again.status == "skipped" and (run_dir / "metrics.jsonl").read_text() == metrics
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))  # as after Ctrl-C
    (resumed,) = run_study(cfg, runs, workers=0)
    assert resumed.status == "finished"
    assert (run_dir / "metrics.jsonl").read_text() == metrics  # resumed from step 10: nothing new to train


def test_arch_study_unknown_model_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = subprocess.run([*PROBES, "arch-study", "--models", "no-such-model", "--out", str(tmp_path / "f"),
                          "--runs", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists() and not (tmp_path / "f").exists()


def test_report_only_without_a_study_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = subprocess.run([*PROBES, "arch-study", "--report-only", "--out", str(tmp_path / "f"),
                          "--runs", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: ") and "no study" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "f").exists()
