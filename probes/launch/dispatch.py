"""What `probes synth --launcher local|slurm` does: check the launch options, launch the grid, report.

:func:`plan_launch` turns the command-line options into a :class:`LaunchPlan` and raises every mistake as
one :class:`UserError` line before anything is written; :func:`launch_grid` runs the plan. With a launcher,
re-launching a grid is always safe: finished runs are skipped, interrupted ones resumed from their
checkpoint, runs that started without a checkpoint restarted, runs a live worker holds left to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from probes.errors import UserError
from probes.train.grid import PlannedRun

from .jobs import RunResult
from .status import read_state, status_table

LAUNCHERS = ("none", "local", "slurm")
SLURM_FLAGS = {  # SlurmOptions field -> command-line flag (for "needs --launcher slurm" errors)
    "partition": "--partition", "time": "--time", "gpus_per_task": "--gpus-per-task",
    "cpus_per_task": "--cpus-per-task", "mem": "--mem", "array_parallelism": "--array-parallelism",
    "job_name": "--job-name", "executor": "--slurm-executor",
}


@dataclass(frozen=True)
class LaunchPlan:
    launcher: str  # local | slurm
    devices: list[str] = field(default_factory=list)  # local: one slot per entry
    threads: int | None = None  # local: torch threads per worker
    slurm: Any = None  # SlurmOptions (submitit is optional, imported lazily)
    wait: bool = False  # slurm: block until the jobs end


def plan_launch(
    launcher: str,
    *,
    gpus: str | None = None,
    threads: int | None = None,
    slurm: dict[str, Any] | None = None,
    wait: bool = False,
    resume: bool = False,
    overwrite: bool = False,
) -> LaunchPlan | None:
    """Validate the launch options; ``None`` for ``launcher="none"`` (the in-process loop).

    ``slurm`` holds only the SLURM options the user gave (``None`` values are dropped), keyed as
    :data:`SLURM_FLAGS`; ``time`` and ``mem`` are strings as typed (``4:00:00``, ``32G``).
    """
    given = {k: v for k, v in (slurm or {}).items() if v is not None}
    if launcher not in LAUNCHERS:
        raise UserError(f"unknown launcher {launcher!r}: use {', '.join(LAUNCHERS)}")
    if launcher != "local":
        for flag, value in (("--gpus", gpus), ("--threads", threads)):
            if value is not None:
                raise UserError(f"{flag} needs --launcher local" + (" (one in-process run: --device)" if flag == "--gpus" else ""))
    if launcher != "slurm":
        if given:
            raise UserError(f"{SLURM_FLAGS.get(next(iter(given)), '--slurm options')} needs --launcher slurm")
        if wait:
            raise UserError("--wait needs --launcher slurm")
    if launcher == "none":
        return None
    if overwrite:
        raise UserError(
            "--overwrite cannot be combined with --launcher: a launcher skips finished runs and resumes "
            "interrupted ones; delete a run directory to start it over"
        )
    del resume  # implied by a launcher
    if launcher == "local":
        from .local import default_devices, parse_devices

        if threads is not None and threads < 1:
            raise UserError(f"--threads must be >= 1 (got {threads})")
        return LaunchPlan("local", devices=parse_devices(gpus if gpus is not None else default_devices()),
                          threads=threads)
    from .slurm import check_submit, slurm_options

    opts = slurm_options(given)
    check_submit(opts)
    return LaunchPlan("slurm", slurm=opts, wait=wait)


def _plain_progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True))


def launch_grid(
    plan: LaunchPlan,
    runs: list[PlannedRun],
    *,
    console: Console | None = None,
    progress: Callable[[], Progress] | None = None,
    on_done: Callable[[RunResult], None] | None = None,
) -> list[RunResult] | None:
    """Run ``runs`` with the ``local`` queue or submit them to SLURM; print each ending and a status table.

    Local launches block until every run ended; SLURM launches return after submission (``None``) unless
    ``plan.wait``. Results come back in the order of ``runs``. ``progress`` makes the progress display (the
    CLI passes its own; the library never imports the CLI). ``on_done`` is called with each run that ended
    (local launcher, or SLURM with ``wait``), e.g. to mirror its metrics into trackers.
    """
    console = console or Console(stderr=True)
    if plan.launcher == "local":
        from .local import launch_local

        try:
            with (progress or _plain_progress)() as bar:
                task = bar.add_task(f"{len(runs)} run(s) on {len(plan.devices)} slot(s)", total=len(runs))

                def on_event(result: RunResult) -> None:
                    bar.console.print(describe(result))
                    bar.advance(task)
                    if on_done is not None:
                        on_done(result)

                results: list[RunResult] | None = launch_local(runs, plan.devices, threads=plan.threads,
                                                               on_event=on_event)
        except KeyboardInterrupt:  # the workers are stopped and their runs checkpointed by now
            console.print(status_table([read_state(p.run_dir) for p in runs], width=console.width))
            console.print("interrupted: run the same command again to resume the unfinished runs")
            raise
    elif plan.launcher == "slurm":
        from .slurm import submit_slurm, wait_slurm

        submitted, jobs = submit_slurm(runs, plan.slurm)
        ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
        where = runs[0].run_dir.parent if runs else Path(".")
        if jobs:
            console.print(f"submitted {len(jobs)} run(s) as job {', '.join(ids)}; follow with: probes status {where}")
        else:
            console.print(f"nothing to submit: every run is finished or running; see probes status {where}")
        try:
            results = wait_slurm(runs, submitted, jobs) if plan.wait else None
        except KeyboardInterrupt:
            console.print(f"stopped waiting; the jobs go on: probes status {where}")
            raise
        if results is not None:
            for r in results:
                console.print(describe(r))
                if on_done is not None:
                    on_done(r)
    else:
        raise UserError(f"unknown launcher {plan.launcher!r}: use local or slurm")
    if results is not None:
        console.print(status_table([read_state(p.run_dir) for p in runs], width=console.width))
    return results


def describe(result: RunResult) -> str:
    """One line of rich markup for a run that ended (or was skipped)."""
    name = escape(result.run_dir.name)
    if result.status in ("failed", "diverged"):
        return f"[red]{result.status}[/] {name}: {escape(result.error or '')}"
    if result.status in ("finished", "skipped"):
        outcome = ("threshold not reached" if result.steps_to_threshold is None
                   else f"threshold at step {result.steps_to_threshold}")
        return f"[green]{result.status}[/] {name}: {outcome}"
    return f"[yellow]{result.status}[/] {name}" + (f": {escape(result.error)}" if result.error else "")
