"""SLURM launcher through submitit: one job array over the runs of a grid, one run per array task.

Same run directories and re-launch rule as the local launcher (:func:`probes.launch.jobs.decide`). The job
is :class:`submitit.helpers.Checkpointable`: when SLURM is about to hit the time limit or preempts a task,
submitit requeues it and the requeued task resumes the run from its last checkpoint. ``cluster="local"``
runs the same jobs as local processes (tests, a workstation); ``cluster="slurm"`` needs ``sbatch``/``srun``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.errors import UserError
from probes.train.grid import PlannedRun

from .jobs import LAUNCH_DIR, Action, RunResult, decide, execute, mark_failed, result_of, write_spec


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
    """One array task: run / resume / skip one run directory (requeued with the same arguments)."""

    def __call__(self, run_dir: str, config: dict[str, Any]) -> dict[str, Any]:
        return execute(run_dir, config, sigterm_interrupts=False)


def submit_slurm(runs: list[PlannedRun], opts: SlurmOptions, folder: Path | None = None) -> tuple[list[PlannedRun], list[Any]]:
    """Submit one array job over the runs that are not finished; return (submitted runs, submitit jobs).

    submitit logs and pickles go to ``folder`` (default ``RUNS_DIR/.launch/submitit``).
    """
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise UserError("the SLURM launcher needs submitit: pip install 'probes[cluster]'") from None
    for planned in runs:
        write_spec(planned)
    todo = [p for p in runs if decide(p.run_dir) is not Action.SKIP]
    if not todo:
        return [], []
    folder = folder or runs[0].run_dir.parent / LAUNCH_DIR / "submitit"
    executor = make_executor(opts, folder)
    jobs = executor.map_array(RunJob(), [str(p.run_dir) for p in todo], [p.config.to_dict() for p in todo])
    return todo, jobs


def wait_slurm(runs: list[PlannedRun], submitted: list[PlannedRun], jobs: list[Any]) -> list[RunResult]:
    """Block until the jobs end; one result per run (runs not submitted were already finished)."""
    by_dir: dict[Path, RunResult] = {}
    for planned, job in zip(submitted, jobs, strict=True):
        try:
            job.result()
        except Exception as exc:  # the run's summary already holds the reason when the trainer got that far
            mark_failed(planned.run_dir, str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc))
        by_dir[planned.run_dir] = result_of(planned.run_dir)
    return [by_dir.get(p.run_dir) or result_of(p.run_dir, skipped=True) for p in runs]


def launch_slurm(runs: list[PlannedRun], opts: SlurmOptions, *, wait: bool = False, folder: Path | None = None) -> tuple[list[Any], list[RunResult] | None]:
    """Submit the grid; with ``wait`` block until it is done and return the results as well."""
    submitted, jobs = submit_slurm(runs, opts, folder)
    return jobs, (wait_slurm(runs, submitted, jobs) if wait else None)
