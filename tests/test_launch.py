"""Launchers: a local queue over device slots and submitit (local executor), shared re-launch rule, status."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probes.errors import UserError
from probes.launch.jobs import Action, decide, spec_path, write_spec
from probes.launch.local import launch_local, parse_devices
from probes.launch.slurm import SlurmOptions, executor_parameters, launch_slurm, parse_time
from probes.launch.status import collect
from probes.train.config import TaskSpec, TrainConfig
from probes.train.grid import PlannedRun, plan

PROBES = str(Path(sys.executable).with_name("probes"))
TRAIN = dict(lr=3e-3, max_steps=10, eval_every=5, eval_samples=64, n_train=640, verify_disjoint=False)


def grid(out: Path, models=("pythia-tiny",), lrs=(3e-3, 1e-3), **train) -> list[PlannedRun]:
    return plan(list(models), TaskSpec("grounding", {"length": 4}), TrainConfig(**(TRAIN | train)), list(lrs), [0], "mean", out)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def status_output(runs_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([PROBES, "status", str(runs_dir)], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_local_queue_runs_grid_reports_failure_and_skips_finished(tmp_path):
    runs = grid(tmp_path, models=("pythia-tiny", "no-such-model"), lrs=(3e-3,)) + grid(tmp_path, lrs=(1e-3,))
    events = []
    results = launch_local(runs, ["cpu", "cpu"], threads=1, on_event=events.append)
    assert [r.status for r in results] == ["finished", "failed", "finished"]
    assert len(events) == 3
    failed = results[1]
    assert "no-such-model" in failed.error and "\n" not in failed.error
    assert summary(failed.run_dir)["status"] == "failed"
    assert "no-such-model" in (failed.run_dir / "worker.log").read_text()
    for r in (results[0], results[2]):
        s = summary(r.run_dir)
        assert s["steps_done"] == s["max_steps"] or s["reached"]
        assert (spec_path(r.run_dir)).is_file() and (r.run_dir / "worker.log").is_file()

    before = {r.run_dir: (r.run_dir / "metrics.jsonl").read_text() for r in (results[0], results[2])}
    again = launch_local(runs, ["cpu"], threads=1)
    assert [r.status for r in again] == ["skipped", "failed", "skipped"]
    assert {d: (d / "metrics.jsonl").read_text() for d in before} == before

    out = status_output(tmp_path)
    assert out.returncode == 0, out.stderr
    lines = {ln.split()[1]: ln for ln in out.stdout.splitlines() if "pythia-tiny-" in ln or "no-such-model-" in ln}
    assert len(lines) == 3
    assert sum("finished" in ln for ln in lines.values()) == 2
    assert any("failed" in ln and "no-such-model" in ln for ln in lines.values())


@pytest.mark.slow
def test_sigterm_leaves_resumable_run_that_relaunch_completes(tmp_path):
    # lr 1e-5 does not reach the threshold: the run goes the whole budget, giving time to stop it mid-run
    (planned,) = grid(tmp_path, lrs=(1e-5,), max_steps=400, eval_every=5)
    spec = write_spec(planned)
    assert decide(planned.run_dir) is Action.FRESH
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen([sys.executable, "-m", "probes.launch.worker", str(spec)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (planned.run_dir / "checkpoint" / "state.json").is_file():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    s = summary(planned.run_dir)
    assert s["status"] == "interrupted" and 0 < s["steps_done"] < 400
    assert decide(planned.run_dir) is Action.RESUME
    assert "interrupted" in status_output(tmp_path).stdout

    (result,) = launch_local([planned], ["cpu"], threads=1)
    assert result.status == "finished"
    s = summary(planned.run_dir)
    assert s["steps_done"] == 400
    evals = [json.loads(x)["step"] for x in (planned.run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "eval"]
    assert evals == list(range(5, 401, 5))  # resumed exactly: no step evaluated twice, none missing


def test_submitit_local_executor_runs_array_and_relaunch_skips(tmp_path):
    runs = grid(tmp_path / "runs")
    opts = SlurmOptions(partition="gpu", time_min=30, gpus_per_task=0, cpus_per_task=1, array_parallelism=2,
                        cluster="local")
    params = executor_parameters(opts)
    assert params == {"name": "probes", "timeout_min": 30, "nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0,
                      "cpus_per_task": 1, "slurm_array_parallelism": 2, "slurm_partition": "gpu"}
    jobs, results = launch_slurm(runs, opts, wait=True, folder=tmp_path / "logs")
    assert len(jobs) == 2 and [r.status for r in results] == ["finished", "finished"]
    assert all(summary(p.run_dir)["status"] == "finished" for p in runs)
    jobs, results = launch_slurm(runs, opts, wait=True, folder=tmp_path / "logs")
    assert jobs == [] and [r.status for r in results] == ["skipped", "skipped"]


def test_slurm_options_and_time_parsing():
    assert parse_time("90") == 90 and parse_time("1:30:00") == 90 and parse_time("2-00:00") == 2880
    assert parse_time("10:30") == 11
    with pytest.raises(UserError):
        parse_time("soon")
    with pytest.raises(UserError):
        SlurmOptions(time_min=0)
    assert executor_parameters(SlurmOptions(gpus_per_task=2, mem_gb=32))["gpus_per_node"] == 2
    assert "slurm_partition" not in executor_parameters(SlurmOptions())
    assert parse_devices("0, cuda:1,cpu") == ["0", "cuda:1", "cpu"]
    with pytest.raises(UserError):
        parse_devices("gpu0")


def test_status_reads_states_from_run_dirs(tmp_path):
    runs = grid(tmp_path, lrs=(1e-3, 2e-3, 3e-3, 4e-3, 5e-3))
    for p in runs:
        write_spec(p)
    pending, running, finished, interrupted, failed = (p.run_dir for p in runs)
    (running / "config.json").write_text(json.dumps(runs[1].config.to_dict()))
    (running / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 3}) + "\n")
    base = {"reached": False, "threshold": 0.95, "steps_to_threshold": None, "final_acc": 0.5, "steps_done": 10,
            "max_steps": 10, "error": None}
    (finished / "summary.json").write_text(json.dumps(base | {"status": "finished", "reached": True,
                                                              "steps_to_threshold": 5, "final_acc": 0.97}))
    (interrupted / "summary.json").write_text(json.dumps(base | {"status": "interrupted", "steps_done": 4}))
    (failed / "summary.json").write_text(json.dumps(base | {"status": "failed", "error": "RuntimeError: CUDA out of memory"}))
    states = {s.name: s for s in collect(tmp_path)}
    assert [states[d.name].state for d in (pending, running, finished, interrupted, failed)] == [
        "pending", "running", "finished", "interrupted", "failed"]
    assert states[running.name].steps_done == 3 and states[finished.name].steps_to_threshold == 5
    out = status_output(tmp_path)
    assert out.returncode == 0, out.stderr
    assert "CUDA out of memory" in out.stdout and "reached 0.95 at step 5" in out.stdout
    assert "1 pending" in out.stdout and "1 failed" in out.stdout


def test_status_of_a_dir_without_runs_exits_2(tmp_path):
    out = status_output(tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == f"error: {tmp_path} has no run directories"
    out = status_output(tmp_path / "missing")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
