"""`probes status RUNS_DIR`: a table of every run of a grid, read from its run directories alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from probes.launch.status import collect, status_table

from .app import app
from .common import stdout_console


@app.command("status")
def status(
    runs_dir: Annotated[Path, typer.Argument(help="Directory holding the run directories of a grid.")],
) -> None:
    """Show pending / running / finished / interrupted / failed runs, steps to threshold and errors.

    Example: probes status runs/L200
    """
    states = collect(runs_dir)
    out = stdout_console()
    out.print(status_table(states, title=str(runs_dir), width=out.width))
