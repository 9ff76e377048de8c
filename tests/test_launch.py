"""Launchers: a local queue over device slots and submitit (local executor), shared re-launch rule, status."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from probes_cli import PROBES

from probes.errors import UserError
from probes.launch.jobs import (
    Action,
    RunBusy,
    decide,
    execute,
    is_running,
    mark_failed,
    run_lock,
    spec_path,
    write_spec,
)
from probes.launch.local import launch_local, parse_devices
from probes.launch.slurm import (
    SlurmOptions,
    executor_parameters,
    launch_slurm,
    parse_mem,
    parse_time,
    slurm_options,
)
from probes.launch.status import collect
from probes.train.config import TaskSpec, TrainConfig
from probes.train.grid import PlannedRun, plan
from probes.train.sweep import SweepSpec

TRAIN = dict(lr=3e-3, max_steps=10, eval_every=5, eval_samples=64, n_train=640, verify_disjoint=False)


def grid(out: Path, models=("pythia-tiny",), lrs=(3e-3, 1e-3), **train) -> list[PlannedRun]:
    init = SweepSpec.model_fields["init"].default  # the grid's default new-row init, as `probes synth` plans it
    return plan(list(models), TaskSpec("grounding", {"length": 4}), TrainConfig(**(TRAIN | train)), list(lrs), [0], init, out)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def status_output(runs_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*PROBES, "status", str(runs_dir)], capture_output=True, text=True, env=env)


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
    # rows of the table start with the run name (a wrapped error detail may name presets, never a run)
    lines = {ln.split()[0]: ln for ln in out.stdout.splitlines()
             if ln.split() and ln.split()[0].startswith(("pythia-tiny-grounding-", "no-such-model-grounding-"))}
    assert len(lines) == 3, out.stdout
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
    assert parse_mem("32") == parse_mem("32G") == parse_mem("32gb") == 32.0 and parse_mem("512M") == 0.5
    opts = slurm_options({"time": "2:00:00", "mem": "1T", "executor": "local", "partition": "a100"})
    assert (opts.time_min, opts.mem_gb, opts.cluster, opts.partition, opts.gpus_per_task) == (120, 1024.0, "local", "a100", 1)
    for bad in ({"executor": "pbs"}, {"mem": "-1G"}, {"time": "0"}, {"array_parallelism": 0}):
        with pytest.raises(UserError):
            slurm_options(bad)


def test_worker_lock_leaves_a_running_run_alone_and_systemexit_interrupts(tmp_path, monkeypatch):
    import probes.train.loop

    (planned,) = grid(tmp_path, lrs=(3e-3,))
    write_spec(planned)
    cfg = planned.config.to_dict()
    with run_lock(planned.run_dir):  # as a live worker in another process holds it
        assert is_running(planned.run_dir)
        with pytest.raises(RunBusy):
            execute(planned.run_dir, cfg, sigterm_interrupts=False)
        (result,) = launch_local([planned], ["cpu"])  # not started: no worker, nothing written
        assert result.status == "running" and not (planned.run_dir / "summary.json").exists()
    assert not is_running(planned.run_dir)

    def requeued(*args, **kwargs):  # submitit's requeue on time-out / preemption exits the task
        (planned.run_dir / "summary.json").write_text(json.dumps({"status": "running", "steps_done": 5, "error": None}))
        raise SystemExit(-1)

    monkeypatch.setattr(probes.train.loop, "run", requeued)
    with pytest.raises(SystemExit):
        execute(planned.run_dir, cfg, sigterm_interrupts=False)
    s = summary(planned.run_dir)
    assert s["status"] == "interrupted" and s["steps_done"] == 5 and "preempted or timed out" in s["error"]

    (planned.run_dir / "summary.json").write_text(json.dumps({"status": "finished", "error": None}))
    mark_failed(planned.run_dir, "worker killed by signal SIGKILL", status="interrupted")
    assert summary(planned.run_dir)["status"] == "finished"  # a run that ended well stays finished


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
    from probes.train.lock import writer_lock

    with writer_lock(running):  # "running" needs a live writer (README "Run-directory integrity"): its lock held
        states = {s.name: s for s in collect(tmp_path)}
    assert [states[d.name].state for d in (pending, running, finished, interrupted, failed)] == [
        "pending", "running", "finished", "interrupted", "failed"]
    assert states[running.name].steps_done == 3 and states[finished.name].steps_to_threshold == 5
    assert {s.name: s.state for s in collect(tmp_path)}[running.name] == "dead"  # its writer is gone
    out = status_output(tmp_path)
    assert out.returncode == 0, out.stderr
    assert "CUDA out of memory" in out.stdout and "reached 0.95 at step 5" in out.stdout
    assert "1 pending" in out.stdout and "1 failed" in out.stdout


def test_status_of_a_dir_without_runs_exits_2(tmp_path):
    out = status_output(tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == f"error: {tmp_path} has no run directories"
    out = status_output(tmp_path / "missing")
    assert out.returncode == 2 and out.stderr.count("\n") == 1


# ---------------------------------------------------------------- end to end: `probes synth --launcher …`

TINY = ["--models", "pythia-tiny", "--len", "4", "--max-steps", "10", "--eval-every", "5", "--eval-samples", "64",
        "--n-train", "640"]
GRID2 = [*TINY, "--lr", "3e-3,1e-3"]


def probes(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*PROBES, *args], capture_output=True, text=True, env=env, timeout=timeout)


def grid_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


def ended(stderr: str, status: str) -> list[str]:
    """The launcher's one line per run that ended (or was skipped) with ``status``."""
    return [ln for ln in stderr.splitlines() if ln.startswith(f"{status} pythia-tiny-")]


def status_rows(out: Path) -> dict[str, str]:
    proc = status_output(out)
    assert proc.returncode == 0, proc.stderr
    return {ln.split()[0]: ln for ln in proc.stdout.splitlines() if ln.split() and ln.split()[0].startswith("pythia-tiny-")}


@pytest.mark.slow
def test_cli_local_launcher_completes_grid_then_skips_it(tmp_path):
    out = tmp_path / "runs"
    cmd = ["synth", *GRID2, "--launcher", "local", "--gpus", "cpu,cpu", "--threads", "1", "--out", str(out)]
    first = probes(*cmd)
    assert first.returncode == 0, first.stderr
    dirs = grid_dirs(out)
    assert [d.name.split("-lr")[1] for d in dirs] == ["0.001-gaussian0", "0.003-gaussian0"]
    for d in dirs:
        assert summary(d)["status"] == "finished"
        assert (d / "worker.log").is_file() and spec_path(d).is_file()
        assert json.loads(spec_path(d).read_text())["config"]["run_name"] == d.name
    assert len(ended(first.stderr, "finished")) == 2

    metrics = {d: (d / "metrics.jsonl").read_text() for d in dirs}
    again = probes(*cmd, "--resume")  # --resume is implied by a launcher and accepted
    assert again.returncode == 0, again.stderr
    assert len(ended(again.stderr, "skipped")) == 2 and not ended(again.stderr, "finished")
    assert {d: (d / "metrics.jsonl").read_text() for d in dirs} == metrics

    rows = status_rows(out)
    assert sorted(rows) == [d.name for d in dirs] and all(" finished " in r for r in rows.values())


@pytest.mark.slow
def test_cli_local_launcher_sigterm_interrupts_then_relaunch_resumes(tmp_path):
    # lr 1e-5 does not reach the threshold in 200 steps: time to stop the launcher mid-run
    out = tmp_path / "runs"
    cmd = [*PROBES, "synth", *TINY, "--lr", "1e-5", "--max-steps", "200", "--launcher", "local",
           "--gpus", "cpu", "--threads", "1", "--out", str(out)]
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = out / "pythia-tiny-grounding-L4-suffix-lr1e-05-gaussian0"
    deadline = time.time() + 90
    while not (run_dir / "checkpoint" / "state.json").is_file():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # the launcher forwards it to its worker, which checkpoints and stops
    assert proc.wait(timeout=60) == 130
    assert "interrupted: run the same command again to resume" in proc.stderr.read()
    s = summary(run_dir)
    assert s["status"] == "interrupted" and 0 < s["steps_done"] < 200
    assert [(st.name, st.state) for st in collect(out)] == [(run_dir.name, "interrupted")]  # as probes status

    again = probes(*cmd[len(PROBES):])
    assert again.returncode == 0, again.stderr
    assert summary(run_dir)["status"] == "finished" and summary(run_dir)["steps_done"] == 200
    evals = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "eval"]
    assert evals == list(range(5, 201, 5))  # resumed exactly
    log = (spec_path(run_dir).with_suffix(".log")).read_text()
    assert log.count("=== ") == 2  # one header per attempt; worker.log holds the latest attempt only
    assert "error: interrupted" not in (run_dir / "worker.log").read_text()


@pytest.mark.slow
def test_cli_slurm_launcher_with_local_executor_completes_then_skips(tmp_path):
    out = tmp_path / "runs"
    cmd = ["synth", *GRID2, "--launcher", "slurm", "--slurm-executor", "local", "--gpus-per-task", "0",
           "--cpus-per-task", "1", "--time", "10", "--wait", "--out", str(out)]
    first = probes(*cmd)
    assert first.returncode == 0, first.stderr
    assert "submitted 2 run(s) as job" in first.stderr
    dirs = grid_dirs(out)
    assert len(dirs) == 2 and all(summary(d)["status"] == "finished" for d in dirs)
    assert (out / ".launch" / "submitit").is_dir()
    metrics = {d: (d / "metrics.jsonl").read_text() for d in dirs}

    again = probes(*cmd)
    assert again.returncode == 0, again.stderr
    assert "nothing to submit" in again.stderr and len(ended(again.stderr, "skipped")) == 2
    assert {d: (d / "metrics.jsonl").read_text() for d in dirs} == metrics
    assert all(" finished " in r for r in status_rows(out).values())


def test_cli_slurm_launcher_submits_the_expected_sbatch_array(tmp_path):
    """What would reach SLURM: a fake sbatch/srun on PATH records the submission file submitit writes."""
    bin_dir, out = tmp_path / "bin", tmp_path / "runs"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submission.sh\necho "Submitted batch job 4242"\n')
    for exe in ("srun", "sbatch"):
        (bin_dir / exe).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    argv = [*PROBES, "synth", *GRID2, "--launcher", "slurm", "--partition", "gpu", "--time", "1:30:00",
            "--gpus-per-task", "2", "--cpus-per-task", "6", "--mem", "16G", "--array-parallelism", "1",
            "--job-name", "sweep", "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "submitted 2 run(s) as job 4242" in proc.stderr
    sbatch = {ln.split()[1] for ln in (tmp_path / "submission.sh").read_text().splitlines()
              if ln.startswith("#SBATCH")}
    assert {"--partition=gpu", "--time=90", "--gpus-per-node=2", "--cpus-per-task=6", "--mem=16GB",
            "--array=0-1%1", "--job-name=sweep", "--nodes=1", "--ntasks-per-node=1"} <= sbatch
    assert len(list((out / ".launch" / "submitit").glob("4242_*_submitted.pkl"))) == 2
    rows = status_rows(out)  # submitted, not started: planned run dirs are pending
    assert len(rows) == 2 and all(" pending " in r for r in rows.values())


@pytest.mark.parametrize("args, message", [
    (["--launcher", "local", "--gpus", "x"], "error: unknown device 'x': use a GPU index (0, cuda:1) or cpu"),
    (["--launcher", "nope"], "error: unknown launcher 'nope': use none, local, slurm"),
    (["--gpus", "0,1"], "error: --gpus needs --launcher local (one in-process run: --device)"),
    (["--partition", "gpu"], "error: --partition needs --launcher slurm"),
    (["--launcher", "local", "--overwrite"], "error: --overwrite cannot be combined with --launcher"),
    (["--launcher", "slurm", "--slurm-executor", "local", "--time", "soon"],
     "error: --time expects minutes, HH:MM:SS or D-HH:MM, got 'soon'"),
    (["--launcher", "slurm", "--slurm-executor", "local", "--mem", "lots"], "error: --mem expects a size"),
    (["--launcher", "local", "--gpus", "cpu", "--device", "cuda:1"], "with a launcher use --device auto"),
])
def test_cli_launch_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    from probes.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(["synth", *GRID2, "--out", str(tmp_path / "runs"), *args])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert message in captured.err
    assert not (tmp_path / "runs").exists()


def test_cli_launch_refuses_a_run_dir_holding_another_config(tmp_path, capsys):
    from probes.cli.app import main

    (planned,) = grid(tmp_path, lrs=(3e-3,))
    planned.run_dir.mkdir()
    (planned.run_dir / "config.json").write_text(json.dumps(planned.config.to_dict()))
    with pytest.raises(SystemExit) as exc:  # same run name, other training options
        main(["synth", *TINY, "--lr", "3e-3", "--max-steps", "20", "--launcher", "local", "--gpus", "cpu",
              "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a run with a different configuration" in err
    assert not spec_path(planned.run_dir).exists()


def test_status_table_at_80_columns_keeps_whole_run_names():
    """The launcher's final table and `probes status` at 80 columns: a long run name is wrapped after a `-`,
    never cut, so its lr and init seed stay visible, and no line is wider than 80."""
    from rich.console import Console

    from probes.launch.status import RunState, status_table

    names = ["EleutherAI_pythia-1.4b-grounding-L200-prefix-lr1e-05-normal1",
             "state-spaces_mamba-1.4b-hf-grounding-L50-suffix-lr0.0001-mean2"]
    states = [RunState(names[0], "interrupted", 780, 78000, None, 0.31, "--resume continues from step 780"),
              RunState(names[1], "finished", 78000, 78000, 4680, 0.953, "reached 0.95 at step 4680")]
    console = Console(width=80, record=True)
    with console.capture() as cap:
        console.print(status_table(states, width=console.width))
    lines = cap.get().splitlines()
    assert max(len(ln.rstrip()) for ln in lines) <= 80
    name_column = "".join(ln[: ln.index("interrupted")] if "interrupted" in ln else ln.split("  ")[0]
                          for ln in lines[3:]).replace(" ", "")
    assert all(n in name_column for n in names), name_column
    assert "78000/78000" in cap.get() and "0.953" in cap.get()
