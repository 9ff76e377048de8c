"""Run-directory integrity (README): one writer per run directory, for every entry point (probe trainer, VLM trainer,
launcher workers). The holder is a real second process; a second writer gets one line naming it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from probes.cli.app import main
from probes_cli import cli_ok

from probes.errors import UserError
from probes.launch import worker
from probes.launch.jobs import write_spec
from probes.train.config import ModelSpec, RunConfig, TaskSpec, TrainConfig
from probes.train.grid import PlannedRun
from probes.train.lock import LOCK_FILE, RunLocked, lock_state, read_holder, writer_lock

HOLD = """
import sys, time
from pathlib import Path
from probes.train.lock import writer_lock
with writer_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""

@pytest.fixture
def held(tmp_path: Path):
    """A run directory whose writer lock another live process holds; yields (run_dir, pid)."""
    run_dir = tmp_path / "runs" / "r"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield run_dir, proc.pid
    finally:
        proc.kill()
        proc.wait()


def synth_args(out: Path, *extra: str) -> list[str]:
    return ["synth", "--len", "4", "--max-steps", "2", "--eval-every", "2", "--eval-samples", "16",
            "--n-train", "640", "--batch-size", "8", "--out", str(out), "--device", "cpu", *extra]


def one_error_line(capsys, exc) -> str:
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_lock_records_holder_and_refuses_a_second_writer(held) -> None:
    run_dir, pid = held
    assert lock_state(run_dir) == "held"
    assert read_holder(run_dir)["pid"] == pid
    with pytest.raises(RunLocked, match=f"being written by pid {pid} on "):
        with writer_lock(run_dir):
            pass


def test_lock_is_free_after_the_holder_is_killed(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    proc.kill()  # SIGKILL: no cleanup runs, the kernel drops the flock
    proc.wait()
    assert lock_state(run_dir) == "free"
    with writer_lock(run_dir):
        assert read_holder(run_dir)["pid"] == os.getpid()


NAME = "pythia-tiny-grounding-L4-suffix-lr0.0001-gaussian0"  # what `synth_args` names its run


def test_second_synth_into_a_live_run_is_refused(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / NAME
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        for flag in ((), ("--resume",), ("--overwrite",)):
            (run_dir / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')  # the live run's record
            with pytest.raises(SystemExit) as exc:
                main(synth_args(tmp_path, *flag))
            assert f"being written by pid {proc.pid}" in one_error_line(capsys, exc)
            assert (run_dir / "metrics.jsonl").read_text() == '{"kind": "train", "step": 1}\n'  # untouched
    finally:
        proc.kill()
        proc.wait()


def test_overwrite_keeps_the_lock_file_and_replaces_the_rest(tmp_path: Path, capsys) -> None:
    cli_ok(synth_args(tmp_path))
    run_dir = tmp_path / NAME
    (run_dir / "extra.txt").write_text("old")
    cli_ok(synth_args(tmp_path, "--overwrite"))
    assert (run_dir / LOCK_FILE).is_file() and not (run_dir / "extra.txt").exists()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"


def test_launcher_worker_leaves_a_run_another_writer_holds(tmp_path: Path, capsys) -> None:
    config = RunConfig(ModelSpec("pythia-tiny"), TaskSpec("grounding", {"length": 4}),
                       TrainConfig(max_steps=2, eval_every=2, eval_samples=16, n_train=640, batch_size=8,
                                   verify_disjoint=False), run_name="r")
    run_dir = tmp_path / "r"
    spec = write_spec(PlannedRun(config, run_dir))
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert worker.main([str(spec)]) == 3
        assert f"being written by pid {proc.pid}" in capsys.readouterr().err
        assert not (run_dir / "summary.json").exists()  # nothing marked failed
    finally:
        proc.kill()
        proc.wait()


def test_vlm_trainer_takes_the_same_lock(held, tmp_path: Path) -> None:
    from probes.vlm.train import train
    from probes.vlm.train_config import VLMTrainConfig

    run_dir, pid = held
    cfg = VLMTrainConfig.build(stage=1, data=str(tmp_path / "no-data"), out=str(run_dir), max_steps=1)
    with pytest.raises(RunLocked, match=f"pid {pid}"):
        train(cfg)


def test_bad_vlm_input_leaves_no_run_directory(tmp_path: Path) -> None:
    from probes.vlm.train import train
    from probes.vlm.train_config import VLMTrainConfig

    out = tmp_path / "vl"
    with pytest.raises(UserError):
        train(VLMTrainConfig.build(stage=1, data=str(tmp_path / "no-data"), out=str(out), max_steps=1))
    assert not out.exists()


def test_lock_state_without_a_lock_file_is_unknown(tmp_path: Path) -> None:
    assert lock_state(tmp_path) == "unknown"
    assert not (tmp_path / LOCK_FILE).exists()  # asking never creates it
