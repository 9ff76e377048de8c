"""Helpers shared by command modules: progress bars and `key=value` parsing."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from probes.errors import UserError

# soft_wrap: messages such as "wrote PATH" are never broken across lines (logs and scripts grep for them)
console = Console(stderr=True, soft_wrap=True)


def stdout_console() -> Console:
    """The console for a command's tables (its output, on stdout). Piped output is not folded at 80 columns,
    so logs and CI keep every digit."""
    return Console(width=None if sys.stdout.isatty() else 200)


def progress_bar(*extra_fields: str) -> Progress:
    """A rich progress bar with ETA; ``extra_fields`` are task fields shown live (e.g. 'acc')."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    columns += [TextColumn(f"{{task.fields[{f}]}}") for f in extra_fields]
    return Progress(*columns, console=console, transient=False)


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["pairs=4", "name=x"]`` → ``{"pairs": 4, "name": "x"}`` (values parsed as JSON when they can be)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--param expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out
