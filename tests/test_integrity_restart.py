"""A run stopped before its first checkpoint resumes from step 0 with the same config, by one rule
(``probes.train.checkpoint.resume_point``) for `probes synth --resume`, the local launcher, `probes vlm train`
and `probes status` (README "Run-directory integrity").

The faults are real signals in real processes: a ``sitecustomize`` module on ``PYTHONPATH`` (so it also reaches
the launcher's worker processes) SIGKILLs the process while it writes its first checkpoint (after the model
and optimizer files, before ``state.json``), or sends it SIGTERM just before its first training step.
"""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from probes_cli import PROBES

from probes.train.checkpoint import CONTINUE, FRESH, REFUSE, RESTART, resume_point

FAULTS = '''
import os, signal
mode = os.environ.get("PROBES_TEST_FAULT")
if mode == "kill-in-first-checkpoint":
    from probes.train import checkpoint
    _finish = checkpoint.finish
    def finish(run_dir, state, *args):
        if not (run_dir / "checkpoint").exists():  # the first checkpoint: files written, state.json not yet
            os.kill(os.getpid(), signal.SIGKILL)
        return _finish(run_dir, state, *args)
    checkpoint.finish = finish
elif mode == "term-before-first-step":
    from probes.train.order import DataOrder
    _indices = DataOrder.indices
    def indices(self, step):
        if step == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return _indices(self, step)
    DataOrder.indices = indices
'''

SYNTH = ["synth", "--len", "4", "--max-steps", "6", "--eval-every", "2", "--eval-samples", "32", "--n-train", "640",
         "--batch-size", "8", "--lr", "3e-3", "--no-early-stop", "--device", "cpu"]


@pytest.fixture(scope="module")
def fault_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    (folder / "sitecustomize.py").write_text(FAULTS)
    return folder


def probes(args: list[str], fault: str | None = None, fault_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PROBES_TEST_FAULT", None)
    if fault is not None:
        env["PROBES_TEST_FAULT"] = fault
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(fault_path), env.get("PYTHONPATH")]))
    return subprocess.run([*PROBES, *args], env=env, capture_output=True, text=True, timeout=300)


def metrics(run_dir: Path) -> list[dict]:
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        rec.pop("wall_time")
        out.append(rec)
    return out


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref")
    done = probes([*SYNTH, "--out", str(out)])
    assert done.returncode == 0, done.stderr
    return only_run(out)


def stopped_run(out: Path, fault: str, fault_path: Path) -> Path:
    """A `probes synth` run stopped by ``fault`` before its first checkpoint exists."""
    done = probes([*SYNTH, "--out", str(out)], fault, fault_path)
    run_dir = only_run(out)
    summary = json.loads((run_dir / "summary.json").read_text())
    if fault == "kill-in-first-checkpoint":
        assert done.returncode == -signal.SIGKILL
        assert (run_dir / "checkpoint.new" / "model.safetensors").is_file()  # torn in the middle of the write
        assert summary["status"] == "running" and metrics(run_dir)[-1]["step"] == 2  # the eval before the save
    else:
        assert done.returncode == 130, done.stderr
        assert summary["status"] == "interrupted" and summary["steps_done"] == 0
    assert not (run_dir / "checkpoint").exists()
    assert resume_point(run_dir).action == RESTART
    return run_dir


@pytest.mark.parametrize("fault", ["kill-in-first-checkpoint", "term-before-first-step"])
def test_synth_resume_restarts_from_step_0_and_status_says_so(
    tmp_path: Path, fault_path: Path, reference: Path, fault: str
) -> None:
    run_dir = stopped_run(tmp_path, fault, fault_path)
    status = probes(["status", str(tmp_path)])
    assert status.returncode == 0, status.stderr
    row = " ".join(status.stdout.split())
    assert ("dead" if fault.startswith("kill") else "interrupted") in row
    assert "--resume restarts it from step 0" in row
    resumed = probes([*SYNTH, "--out", str(tmp_path), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert "no complete checkpoint" in resumed.stderr and "restarting it from step 0" in resumed.stderr
    assert metrics(run_dir) == metrics(reference)  # the metrics written before the stop are not kept twice
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert not (run_dir / "checkpoint.new").exists()
    assert json.loads((run_dir / "config.json").read_text()) == json.loads((reference / "config.json").read_text())


def test_synth_resume_of_a_restartable_run_still_refuses_other_options(tmp_path: Path, fault_path: Path) -> None:
    run_dir = stopped_run(tmp_path, "term-before-first-step", fault_path)
    args = [*SYNTH, "--out", str(tmp_path), "--resume", "--threshold", "0.9"]
    done = probes(args)
    err = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and err.startswith("error: ") and "Traceback" not in done.stderr
    assert "train.threshold: 0.95 in the run, 0.9 now" in err
    assert (run_dir / "config.json").is_file()  # nothing was removed


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill-in-first-checkpoint", "term-before-first-step"])
def test_local_launcher_restarts_a_run_without_checkpoint(
    tmp_path: Path, fault_path: Path, reference: Path, fault: str
) -> None:
    launch = [*SYNTH, "--out", str(tmp_path), "--launcher", "local", "--gpus", "cpu", "--threads", "1"]
    first = probes(launch, fault, fault_path)  # the fault hits the worker process
    run_dir = only_run(tmp_path)
    assert first.returncode == 0, first.stderr  # an interrupted run is not a failed grid
    assert "interrupted" in first.stderr
    assert resume_point(run_dir).action == RESTART
    status = probes(["status", str(tmp_path)])
    assert "interrupted" in status.stdout and "--resume restarts it from step 0" in " ".join(status.stdout.split())
    second = probes(launch)
    assert second.returncode == 0, second.stderr
    assert metrics(run_dir) == metrics(reference)
    log = (run_dir / "worker.log").read_text()  # the worker's plain progress: one line per evaluation
    assert [ln.split("  ")[1] for ln in log.splitlines() if " eta " in ln] == ["2/6 33%", "4/6 67%", "6/6 100%"]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"


VLM = ["vlm", "train", "--stage", "1", "--max-steps", "3", "--batch-size", "2", "--log-every", "1", "--save-every", "1",
       "--lr", "3e-3"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from probes.vlm.data.world import write_world

    out = tmp_path_factory.mktemp("world")
    write_world(out, 5, seed=0)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill-in-first-checkpoint", "term-before-first-step"])
def test_vlm_train_restarts_a_run_without_checkpoint(tmp_path: Path, fault_path: Path, world: Path, fault: str) -> None:
    args = [*VLM, "--data", str(world)]
    ref = probes([*args, "--out", str(tmp_path / "ref")])
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "part"
    first = probes([*args, "--out", str(out)], fault, fault_path)
    assert first.returncode != 0 and not (out / "checkpoint").exists()
    if fault == "kill-in-first-checkpoint":  # killed in the middle of the write, not failed before it
        assert first.returncode == -signal.SIGKILL and (out / "checkpoint.new" / "model.safetensors").is_file()
    assert (out / "config.json").is_file() and resume_point(out).action == RESTART
    again = probes([*args, "--out", str(out)])
    assert again.returncode == 0, again.stderr
    assert "restarting it from step 0" in again.stderr
    assert metrics(out) == metrics(tmp_path / "ref")
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


def test_resume_point_rule(tmp_path: Path) -> None:
    """The rule itself: fresh, restart, continue from the newest verified checkpoint, refuse when none verifies."""
    run_dir = tmp_path / "r"
    assert resume_point(run_dir).action == FRESH
    run_dir.mkdir()
    (run_dir / ".writer.lock").write_text("{}")  # the lock file alone is no run
    assert resume_point(run_dir).action == FRESH
    (run_dir / "summary.json").write_text("{}")
    (run_dir / "checkpoint.new").mkdir()  # a torn first checkpoint is no checkpoint
    assert resume_point(run_dir).action == RESTART
    for name, step in (("checkpoint.old", 2), ("checkpoint", 4)):
        (run_dir / name).mkdir()
        (run_dir / name / "a.bin").write_bytes(b"12345")
        (run_dir / name / "state.json").write_text(json.dumps({"step": step, "files": {"a.bin": 5}}))
    point = resume_point(run_dir)
    assert (point.action, point.step, point.source) == (CONTINUE, 4, "checkpoint")
    (run_dir / "checkpoint" / "a.bin").write_bytes(b"12")  # truncated newest: the older one
    assert (resume_point(run_dir).action, resume_point(run_dir).step) == (CONTINUE, 2)
    (run_dir / "checkpoint.old" / "state.json").unlink()
    point = resume_point(run_dir)
    assert point.action == REFUSE and "a.bin is 2 bytes, 5 were written" in point.why
    assert "--overwrite" in point.hint()
