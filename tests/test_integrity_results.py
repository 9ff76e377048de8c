"""Run-directory integrity (README): unmeasured positions are NaN/null end to end, a non-finite loss stops the
run as `diverged` (summary, status, exit code), a disk that fills up during a checkpoint fails the run with
one line, and every file of a run directory honours the umask."""

import json
import math
import os
import resource
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
from probes.analysis.rundir import load_run
from probes.cli.app import main
from probes_cli import cli_ok
from safetensors.torch import load_file

from probes.launch.status import read_state
from probes.train.config import ModelSpec, RunConfig, TaskSpec, TrainConfig
from probes.train.loop import run

ARGS = ["synth", "--len", "4", "--max-steps", "4", "--eval-every", "2", "--eval-samples", "16",
        "--n-train", "640", "--batch-size", "8", "--device", "cpu"]

@pytest.fixture(scope="module")
def nan_run(tmp_path_factory) -> Path:
    """L=8 with 4 held-out samples: targets 0-3 are measured, 4-7 never (sample i targets i mod L). Written
    under umask 022."""
    rd = tmp_path_factory.mktemp("nan") / "r"
    cfg = RunConfig(ModelSpec("pythia-tiny"), TaskSpec("grounding", {"length": 8}),
                    TrainConfig(lr=1e-3, batch_size=8, max_steps=2, eval_every=2, eval_samples=4, n_train=640,
                                verify_disjoint=False))
    old = os.umask(0o022)
    try:
        run(cfg, rd)
    finally:
        os.umask(old)
    return rd


def test_unmeasured_positions_are_null_and_nan(nan_run: Path) -> None:
    evals = [json.loads(x) for x in (nan_run / "metrics.jsonl").read_text().splitlines()]
    ev = [e for e in evals if e["kind"] == "eval"][-1]
    assert ev["per_position_count"] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert all(v is not None for v in ev["per_position_acc"][:4]) and ev["per_position_acc"][4:] == [None] * 4
    mat = load_file(str(nan_run / "per_position.safetensors"))["accuracy"][-1]
    assert not mat[:4].isnan().any() and mat[4:].isnan().all()
    loaded = load_run(nan_run)
    assert np.isnan(loaded.accuracy[-1, 4:]).all() and np.isfinite(loaded.accuracy[-1, :4]).all()


def test_run_files_honour_the_umask(nan_run: Path) -> None:
    for rel in ("per_position.safetensors", "checkpoint/model.safetensors", "checkpoint/optimizer.bin",
                "checkpoint/state.json", "summary.json", "metrics.jsonl", "config.json"):
        assert stat.S_IMODE((nan_run / rel).stat().st_mode) == 0o644, rel


def test_infinite_lr_is_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*ARGS, "--out", str(tmp_path), "--lr", "inf"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ") and "inf" in err


def test_exploding_lr_stops_the_run_as_diverged(tmp_path: Path, capsys) -> None:
    """lr 1e30: the first update makes the weights huge, the second step's loss is NaN."""
    with pytest.raises(SystemExit) as exc:
        main([*ARGS, "--out", str(tmp_path), "--lr", "1e30"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    assert err[-1].startswith("error: ") and "diverged: the training loss became nan at step 2" in err[-1]
    run_dir = next(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["steps_done"] == 1 and "diverged" in summary["error"]
    assert not (run_dir / "checkpoint").exists()  # no checkpoint of NaN weights
    assert read_state(run_dir).state == "diverged"
    cli_ok(["status", str(tmp_path)])
    assert "diverged" in capsys.readouterr().out
    assert load_run(run_dir).status == "diverged"


def test_disk_full_during_a_checkpoint_fails_the_run_with_one_line(tmp_path: Path, capsys) -> None:
    """A real write error: the file size limit (RLIMIT_FSIZE) makes the checkpoint's weights fail with
    EFBIG while the small JSON files still fit, as on a disk that is almost full."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, hard))
    try:
        with pytest.raises(SystemExit) as exc:
            main([*ARGS, "--out", str(tmp_path), "--lr", "1e-3"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err[-1].startswith("error: cannot write a checkpoint into ")
    assert "File too large" in err[-1]
    run_dir = next(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "File too large" in summary["error"]
    assert not (run_dir / "checkpoint.new").exists() and not (run_dir / "checkpoint").exists()
    assert math.isfinite(summary["wall_time"])
