"""`probes status RUNS...`: a table of every run of one or more grids, read from their run directories alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probes.launch.status import collect, status_table

from .app import app
from .common import stdout_console


@app.command("status")
def status(
    runs_dirs: Annotated[list[Path], typer.Argument(
        help="Directories holding the run directories of a grid (one or more, like report/heatmap/curves).",
        metavar="RUNS...")],
) -> None:
    """Show pending / running / finished / interrupted / failed runs, steps to threshold and errors.

    Example: probes status runs/L50 runs/L200
    """
    out = stdout_console()
    tables = [status_table(collect(d), title=str(d), width=out.width) for d in runs_dirs]  # every directory checked first
    for table in tables:
        out.print(table)
