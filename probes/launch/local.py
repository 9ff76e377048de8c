"""Local launcher: a queue of runs over a list of devices, one worker process per device at a time.

Each run executes in its own ``python -m probes.launch.worker`` process with ``CUDA_VISIBLE_DEVICES`` set to
its device (empty for ``"cpu"``), so runs never share a GPU and one failing run does not stop the others.
The worker's full output goes to ``RUNS_DIR/.launch/NAME.log``; its tail is copied into the run directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from probes.errors import UserError
from probes.train.grid import PlannedRun

from .jobs import (
    WORKER_LOG,
    Action,
    RunResult,
    decide,
    last_error_line,
    mark_failed,
    result_of,
    spec_path,
    tail,
    write_spec,
)

EventCallback = Callable[[RunResult], None]


@dataclass
class _Active:
    planned: PlannedRun
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]


def parse_devices(text: str) -> list[str]:
    """``"0,1,2"`` or ``"cuda:0,cuda:1"`` or ``"cpu,cpu"`` → device slots (a device may repeat)."""
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices:
        raise UserError("--gpus needs at least one device (e.g. 0,1 or cpu)")
    for d in devices:
        _visible(d)
    return devices


def _visible(device: str) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value for a device slot."""
    if device == "cpu":
        return ""
    index = device.removeprefix("cuda:")
    if not index.isdigit():
        raise UserError(f"unknown device {device!r}: use a GPU index (0, cuda:1) or cpu")
    return index


def _check_device_option(runs: list[PlannedRun]) -> None:
    for p in runs:
        if p.config.train.device not in ("auto", "cuda", "cpu"):
            raise UserError(
                f"run {p.config.run_name} asks for device {p.config.train.device!r}; with a launcher use "
                "--device auto and pick GPUs with --gpus"
            )


def launch_local(
    runs: list[PlannedRun],
    devices: list[str],
    *,
    threads: int | None = None,
    on_event: EventCallback | None = None,
    poll_s: float = 0.2,
) -> list[RunResult]:
    """Run every planned run, at most one per device slot at a time; return one result per run, in order.

    ``threads`` sets ``OMP_NUM_THREADS`` for each worker (CPU slots). Ctrl-C / SIGTERM stops the workers
    with SIGTERM, so their runs end ``interrupted`` and resume on the next launch.
    """
    if not devices:
        raise UserError("no device to launch on")
    visible = [_visible(d) for d in devices]
    _check_device_option(runs)
    results: dict[Path, RunResult] = {}
    queue: deque[PlannedRun] = deque()
    for planned in runs:
        write_spec(planned)
        if decide(planned.run_dir) is Action.SKIP:
            results[planned.run_dir] = result_of(planned.run_dir, skipped=True)
            if on_event:
                on_event(results[planned.run_dir])
        else:
            queue.append(planned)
    active: dict[int, _Active] = {}
    try:
        while queue or active:
            for slot in range(len(devices)):
                if slot not in active and queue:
                    active[slot] = _start(queue.popleft(), visible[slot], threads)
            time.sleep(poll_s)
            for slot, job in list(active.items()):
                if job.process.poll() is not None:
                    del active[slot]
                    results[job.planned.run_dir] = _finish(job)
                    if on_event:
                        on_event(results[job.planned.run_dir])
    except KeyboardInterrupt:
        for job in active.values():
            job.process.send_signal(signal.SIGTERM)
        for job in active.values():
            job.process.wait()
            _finish(job)
        raise
    return [results[p.run_dir] for p in runs]


def _start(planned: PlannedRun, visible: str, threads: int | None) -> _Active:
    spec = spec_path(planned.run_dir)
    log_path = spec.with_suffix(".log")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible}
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "probes.launch.worker", str(spec)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )
    return _Active(planned, process, log_path, log)


def _finish(job: _Active) -> RunResult:
    """Copy the log tail into the run dir; a worker killed by a signal gets a summary that says so."""
    job.log.close()
    text = job.log_path.read_text(errors="replace")
    run_dir = job.planned.run_dir
    rc = job.process.returncode
    if rc < 0:
        status = "interrupted" if decide(run_dir) is Action.RESUME else "failed"
        mark_failed(run_dir, f"worker killed by signal {signal.Signals(-rc).name}", status=status)
    elif rc != 0:
        mark_failed(run_dir, (last_error_line(text) or f"worker exited with {rc}").removeprefix("error: "))
    if run_dir.is_dir():
        (run_dir / WORKER_LOG).write_text(tail(text))
    return result_of(run_dir)
