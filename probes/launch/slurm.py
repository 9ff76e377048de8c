"""SLURM launcher through submitit: one job array over the runs of a grid, one run per array task.

Same run directories and re-launch rule as the local launcher (:func:`probes.launch.jobs.decide`). The job
is :class:`submitit.helpers.Checkpointable`: when SLURM is about to hit the time limit or preempts a task,
submitit requeues it and the requeued task resumes the run from its last checkpoint. ``cluster="local"``
runs the same jobs as local processes (tests, a workstation); ``cluster="slurm"`` needs ``sbatch``/``srun``.
submitit's local executor starts every array task at once (it ignores the array limit) and gives each the
first ``gpus_per_task`` GPUs; use it to check a grid end to end, not to share GPUs (``--launcher local`` does).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.errors import UserError
from probes.train.grid import PlannedRun
from probes.train.progress import PlainLog

from .jobs import (
    LAUNCH_DIR,
    Action,
    RunBusy,
    RunResult,
    check_launchable,
    decide,
    execute,
    is_running,
    mark_failed,
    read_summary,
    result_of,
    write_spec,
)

CLUSTERS = ("slurm", "local")


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_min: int = 24 * 60
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem_gb: float | None = None
    array_parallelism: int = 32
    job_name: str = "probes"
    cluster: str = "slurm"  # "local": submitit's LocalExecutor, same jobs without SLURM

    def __post_init__(self) -> None:
        if self.time_min < 1:
            raise UserError(f"--time must be at least 1 minute (got {self.time_min})")
        if self.gpus_per_task < 0 or self.cpus_per_task < 1 or self.array_parallelism < 1:
            raise UserError("--gpus-per-task must be >= 0, --cpus-per-task and --array-parallelism >= 1")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise UserError(f"--mem must be positive (got {self.mem_gb} GB)")
        if self.cluster not in CLUSTERS:
            raise UserError(f"unknown submitit executor {self.cluster!r}: use {' or '.join(CLUSTERS)}")


def parse_time(text: str) -> int:
    """SLURM time ``MM``, ``HH:MM:SS`` or ``D-HH:MM`` → minutes (rounded up)."""
    try:
        days, _, rest = text.rpartition("-")
        parts = [int(x) for x in rest.split(":")]
        if len(parts) == 1:
            minutes = parts[0] if not days else parts[0] * 60
        elif len(parts) == 2:
            minutes = parts[0] * 60 + parts[1] if days else parts[0] + (parts[1] > 0)
        else:
            minutes = parts[0] * 60 + parts[1] + (parts[2] > 0)
        return int(days or 0) * 1440 + minutes
    except ValueError:
        raise UserError(f"--time expects minutes, HH:MM:SS or D-HH:MM, got {text!r}") from None


def parse_mem(text: str) -> float:
    """``--mem``: ``32``, ``32G``, ``500M`` or ``1T`` → GB (SLURM's default unit is MB; ours is GB, as
    submitit's ``mem_gb``, so a bare number means gigabytes)."""
    scale = {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}
    t = text.strip().upper().removesuffix("B")
    unit = t[-1:] if t[-1:] in scale else "G"
    try:
        value = float(t[:-1] if t[-1:] in scale else t) * scale[unit]
    except ValueError:
        raise UserError(f"--mem expects a size such as 32G or 500M, got {text!r}") from None
    if value <= 0:
        raise UserError(f"--mem must be positive, got {text!r}")
    return value


def slurm_options(given: dict[str, Any]) -> SlurmOptions:
    """:class:`SlurmOptions` from command-line values (``time`` and ``mem`` as typed; ``executor`` is
    ``cluster``); keys not given keep their defaults."""
    kwargs = dict(given)
    if "time" in kwargs:
        kwargs["time_min"] = parse_time(str(kwargs.pop("time")))
    if "mem" in kwargs:
        kwargs["mem_gb"] = parse_mem(str(kwargs.pop("mem")))
    if "executor" in kwargs:
        kwargs["cluster"] = kwargs.pop("executor")
    return SlurmOptions(**kwargs)


def check_submit(opts: SlurmOptions) -> None:
    """One-line errors before anything is written: submitit missing, or no SLURM for ``cluster="slurm"``."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise UserError("the SLURM launcher needs submitit: pip install -e '.[cluster]'") from None
    if opts.cluster == "slurm" and shutil.which("srun") is None:
        raise UserError("no SLURM here (srun not found); --slurm-executor local runs the same jobs on this machine")


def executor_parameters(opts: SlurmOptions) -> dict[str, Any]:
    """The ``AutoExecutor.update_parameters`` arguments of the array job (what would be submitted)."""
    params: dict[str, Any] = {
        "name": opts.job_name,
        "timeout_min": opts.time_min,
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": opts.gpus_per_task,
        "cpus_per_task": opts.cpus_per_task,
        "slurm_array_parallelism": opts.array_parallelism,
    }
    if opts.partition:
        params["slurm_partition"] = opts.partition
    if opts.mem_gb is not None:
        params["mem_gb"] = opts.mem_gb
    return params


def make_executor(opts: SlurmOptions, folder: Path) -> Any:
    import submitit

    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=opts.cluster)
    except RuntimeError as exc:  # e.g. 'Could not detect "srun"'
        raise UserError(f"cannot submit to {opts.cluster}: {exc}") from None
    executor.update_parameters(**executor_parameters(opts))
    return executor


try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # submitit is the optional [cluster] extra; only launch_slurm needs it
    _Checkpointable = object  # type: ignore[assignment,misc]


class RunJob(_Checkpointable):  # type: ignore[misc,valid-type]
    """One array task: run / resume / skip one run directory (requeued with the same arguments).

    ``threads`` caps torch's threads (the local executor does not confine a task to its CPUs)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def __call__(self, run_dir: str, config: dict[str, Any]) -> dict[str, Any]:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        try:
            log = PlainLog(Path(run_dir).name, int(config.get("train", {}).get("max_steps", 0)) or 1)
            return execute(run_dir, config, sigterm_interrupts=False, on_step=log.step)  # a line per evaluation
        except RunBusy as exc:  # another task or launcher is running it: leave its directory alone
            return {"status": "running", "error": str(exc)}


def submit_slurm(runs: list[PlannedRun], opts: SlurmOptions, folder: Path | None = None) -> tuple[list[PlannedRun], list[Any]]:
    """Submit one array job over the runs that are neither finished nor running; return (submitted runs,
    submitit jobs). submitit logs and pickles go to ``folder`` (default ``RUNS_DIR/.launch/submitit``).
    """
    check_submit(opts)
    check_launchable(runs)
    for planned in runs:
        write_spec(planned)
    todo = [p for p in runs if decide(p.run_dir) is not Action.SKIP and not is_running(p.run_dir)]
    if not todo:
        return [], []
    folder = folder or runs[0].run_dir.parent / LAUNCH_DIR / "submitit"
    executor = make_executor(opts, folder)
    threads = opts.cpus_per_task if opts.cluster == "local" else None
    jobs = executor.map_array(RunJob(threads), [str(p.run_dir) for p in todo], [p.config.to_dict() for p in todo])
    return todo, jobs


def wait_slurm(runs: list[PlannedRun], submitted: list[PlannedRun], jobs: list[Any]) -> list[RunResult]:
    """Block until the jobs end; one result per run (runs not submitted were finished or running elsewhere)."""
    by_dir: dict[Path, RunResult] = {}
    for planned, job in zip(submitted, jobs, strict=True):
        try:
            out = job.result()
        except Exception as exc:  # the run's summary already holds the reason when the trainer got that far
            text = str(exc).strip()
            mark_failed(planned.run_dir, text.splitlines()[-1] if text else repr(exc))
            out = None
        if isinstance(out, dict) and out.get("status") == "running" and "error" in out:
            by_dir[planned.run_dir] = _running(planned.run_dir, out["error"])
        else:
            by_dir[planned.run_dir] = result_of(planned.run_dir)
    return [by_dir.get(p.run_dir) or _not_submitted(p.run_dir) for p in runs]


def _running(run_dir: Path, why: str) -> RunResult:
    return RunResult(run_dir, "running", (read_summary(run_dir) or {}).get("steps_to_threshold"), why)


def _not_submitted(run_dir: Path) -> RunResult:
    if decide(run_dir) is not Action.SKIP:
        return _running(run_dir, "running in another process")
    return result_of(run_dir, skipped=True)


def launch_slurm(runs: list[PlannedRun], opts: SlurmOptions, *, wait: bool = False, folder: Path | None = None) -> tuple[list[Any], list[RunResult] | None]:
    """Submit the grid; with ``wait`` block until it is done and return the results as well."""
    submitted, jobs = submit_slurm(runs, opts, folder)
    return jobs, (wait_slurm(runs, submitted, jobs) if wait else None)
