"""The one call `probes synth --launcher local|slurm` makes: launch a planned grid, show its progress."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from probes.errors import UserError
from probes.train.grid import PlannedRun

from .jobs import RunResult
from .status import read_state, status_table


def launch_grid(
    runs: list[PlannedRun],
    launcher: str,
    *,
    gpus: str = "0",
    threads: int | None = None,
    slurm: SlurmOptions | None = None,  # noqa: F821 (imported lazily: submitit is optional)
    wait: bool = False,
    console: Console | None = None,
) -> list[RunResult] | None:
    """Run ``runs`` with the ``local`` queue over ``gpus`` or submit them to SLURM; print a status table.

    Local launches block until every run ended; SLURM launches return after submission unless ``wait``.
    """
    console = console or Console(stderr=True)
    if launcher == "local":
        from .local import launch_local, parse_devices

        devices = parse_devices(gpus)
        from probes.cli.common import progress_bar

        with progress_bar() as bar:
            task = bar.add_task(f"{len(runs)} runs on {len(devices)} device(s)", total=len(runs))
            results = launch_local(runs, devices, threads=threads, on_event=lambda r: bar.advance(task))
    elif launcher == "slurm":
        from .slurm import SlurmOptions, launch_slurm

        jobs, results = launch_slurm(runs, slurm or SlurmOptions(), wait=wait)
        ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
        console.print(f"submitted {len(jobs)} run(s) as job(s) {', '.join(ids) or '-'}; follow with: probes status "
                      f"{runs[0].run_dir.parent if runs else Path('.')}")
    else:
        raise UserError(f"unknown launcher {launcher!r}: use local or slurm")
    if results is not None:
        console.print(status_table([read_state(p.run_dir) for p in runs]))
    return results
