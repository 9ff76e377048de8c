"""`probes demo` end to end on a tiny budget: runs, figures and report agree with the run directories."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from probes_cli import PROBES

TINY = ["--len", "4", "--models", "pythia-tiny,mamba-tiny", "--orders", "suffix,prefix", "--max-steps", "20",
        "--eval-samples", "64"]


@pytest.mark.slow
def test_demo_writes_figures_and_report_from_its_runs(tmp_path: Path) -> None:
    out, runs = tmp_path / "fig", tmp_path / "runs"
    done = subprocess.run([*PROBES, "demo", *TINY, "--out", str(out), "--runs", str(runs)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in runs.iterdir())
    assert names == sorted(f"{m}-grounding-L4-{o}-lr0.001-mean0" for m in ("pythia-tiny", "mamba-tiny")
                           for o in ("suffix", "prefix"))
    for stem in ("curves", "heatmaps"):
        assert (out / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
        with Image.open(out / f"{stem}.png") as img:
            assert img.width > 400 and img.height > 300
            assert len(img.convert("L").getcolors(256)) > 16  # drawn content, not a blank canvas

    rows = {r["run"]: r for r in csv.DictReader((out / "report.csv").open())}
    assert sorted(rows) == names
    for name in names:
        summary = json.loads((runs / name / "summary.json").read_text())
        expected = "" if summary["steps_to_threshold"] is None else str(summary["steps_to_threshold"])
        assert rows[name]["steps_to_threshold"] == expected
        assert rows[name]["reached"] == str(summary["reached"])
    record = json.loads((out / "demo.json").read_text())
    assert record["command"].startswith("probes demo --len 4")
    assert sorted(record["runs"]) == names and record["wall_time_s"] > 0
    assert record["runs"][names[0]]["steps_done"] == json.loads((runs / names[0] / "summary.json").read_text())["steps_done"]
    assert "wrote" in done.stderr and str(out / "report.md") in done.stderr
    assert "Mamba / Pythia" in done.stdout  # the report tables are the command's output


def test_demo_rejects_unknown_model_before_any_run(tmp_path: Path) -> None:
    bad = subprocess.run([*PROBES, "demo", "--models", "no-such-model", "--out", str(tmp_path / "f"),
                          "--runs", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("error:")
    assert "no-such-model" in bad.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "f").exists()
