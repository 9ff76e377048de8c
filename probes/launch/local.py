"""Local launcher: a queue of runs over a list of devices, one worker process per device at a time.

Each run executes in its own ``python -m probes.launch.worker`` process with ``CUDA_VISIBLE_DEVICES`` set to
its device (empty for ``"cpu"``), so runs never share a GPU and one failing run does not stop the others.
The worker's output is appended to ``RUNS_DIR/.launch/NAME.log`` (one header line per attempt); the tail of
the latest attempt is copied into the run directory as ``worker.log``.
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
from probes.io import atomic_write_text
from probes.train.checkpoint import resume_point
from probes.train.grid import PlannedRun

from .jobs import (
    BUSY_EXIT,
    WORKER_LOG,
    Action,
    RunResult,
    check_launchable,
    decide,
    is_running,
    last_error_line,
    mark_failed,
    read_summary,
    result_of,
    spec_path,
    tail,
    write_spec,
)

EventCallback = Callable[[RunResult], None]
STOP_GRACE_S = 60.0  # after SIGTERM, how long a worker may take to write its interrupted summary


@dataclass
class _Active:
    planned: PlannedRun
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    offset: int  # where this attempt's output starts in the log


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


def default_devices() -> str:
    """Every visible CUDA device (``"0,1,…"``), or one ``cpu`` slot without CUDA."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ",".join(str(i) for i in range(n)) if n else "cpu"


def default_threads(devices: list[str]) -> int | None:
    """Torch threads per worker: CPU slots share the cores evenly; GPU-only launches keep torch's default."""
    n_cpu = sum(d == "cpu" for d in devices)
    return max(1, (os.cpu_count() or 1) // n_cpu) if n_cpu else None


def launch_local(
    runs: list[PlannedRun],
    devices: list[str],
    *,
    threads: int | None = None,
    on_event: EventCallback | None = None,
    poll_s: float = 0.2,
) -> list[RunResult]:
    """Run every planned run, at most one per device slot at a time; return one result per run, in order.

    ``threads`` sets ``OMP_NUM_THREADS`` for each worker (default: the cores shared evenly between CPU
    slots). Finished runs are skipped, interrupted ones resumed, runs another live worker holds are left to
    it (status ``running``). Ctrl-C / SIGTERM stops the workers with SIGTERM, so their runs end
    ``interrupted`` and resume on the next launch.
    """
    if not devices:
        raise UserError("no device to launch on")
    visible = [_visible(d) for d in devices]
    check_launchable(runs)
    if threads is None:
        threads = default_threads(devices)
    results: dict[Path, RunResult] = {}
    queue: deque[PlannedRun] = deque()
    for planned in runs:
        write_spec(planned)
        if decide(planned.run_dir) is Action.SKIP or is_running(planned.run_dir):
            results[planned.run_dir] = _busy_or_skipped(planned.run_dir)
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
        _stop(list(active.values()))
        raise
    return [results[p.run_dir] for p in runs]


def _stop(jobs: list[_Active]) -> None:
    """SIGTERM every live worker, give them ``STOP_GRACE_S`` to write an interrupted summary, then kill."""
    for job in jobs:
        if job.process.poll() is None:
            job.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for job in jobs:
        try:
            job.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()
        _finish(job)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _busy_or_skipped(run_dir: Path) -> RunResult:
    if is_running(run_dir):
        summary = read_summary(run_dir) or {}
        return RunResult(run_dir, "running", summary.get("steps_to_threshold"), "running in another process")
    return result_of(run_dir, skipped=True)


def _start(planned: PlannedRun, visible: str, threads: int | None) -> _Active:
    spec = spec_path(planned.run_dir)
    log_path = spec.with_suffix(".log")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    log = log_path.open("ab")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    log.write(f"=== {stamp} worker on {'cpu' if not visible else 'cuda ' + visible}\n".encode())
    log.flush()
    offset = log.tell()
    process = subprocess.Popen(
        [sys.executable, "-m", "probes.launch.worker", str(spec)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )
    return _Active(planned, process, log_path, log, offset)


def _finish(job: _Active) -> RunResult:
    """Copy this attempt's log tail into the run dir; a worker killed by a signal gets a summary saying so."""
    job.log.close()
    with job.log_path.open("rb") as f:
        f.seek(job.offset)
        text = f.read().decode(errors="replace")
    run_dir = job.planned.run_dir
    rc = job.process.returncode
    if rc == BUSY_EXIT:  # another process runs it: its directory is not ours to touch
        return _busy_or_skipped(run_dir) if is_running(run_dir) else result_of(run_dir)
    if rc < 0:
        status = "interrupted" if resume_point(run_dir).resumable else "failed"
        mark_failed(run_dir, f"worker killed by signal {_signal_name(-rc)}", status=status)
    elif rc != 0:
        mark_failed(run_dir, (last_error_line(text) or f"worker exited with {rc}").removeprefix("error: "))
    if run_dir.is_dir():
        atomic_write_text(run_dir / WORKER_LOG, tail(text))
    return result_of(run_dir)
