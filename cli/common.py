"""Helpers shared by command modules: progress bars and `key=value` parsing."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column

from probes.errors import UserError

# soft_wrap: messages such as "wrote PATH" are never broken across lines (logs and scripts grep for them)
console = Console(stderr=True, soft_wrap=True)


def stdout_console() -> Console:
    """The console for a command's tables (its output, on stdout). Piped output is not folded at 80 columns,
    so logs and CI keep every digit."""
    return Console(width=None if sys.stdout.isatty() else 200)


def progress_bar() -> Progress:
    """A rich progress bar with ETA that reads well at 80 columns.

    The description column takes the width left over and is cut with an ellipsis when the terminal is
    narrow; the live metric (the ``metrics`` task field, e.g. "acc 0.953 loss 0.124") is never wrapped or
    cut, so numbers stay whole."""
    columns = [
        TextColumn("[bold]{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
        BarColumn(bar_width=10),
        MofNCompleteColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(compact=True),
        TextColumn("{task.fields[metrics]}", table_column=Column(no_wrap=True)),
    ]
    return _Progress(*columns, console=console, transient=False, expand=True)


class _Progress(Progress):
    """Tasks get an empty ``metrics`` field unless given one, so every caller can use the same columns."""

    def add_task(self, description: str, *args: Any, **fields: Any) -> Any:  # type: ignore[override]
        fields.setdefault("metrics", "")
        return super().add_task(description, *args, **fields)


def step_metrics(info: dict[str, Any]) -> str:
    """The live metric of a training progress row: ``acc 0.953 loss 0.124`` (acc once an eval has run)."""
    acc = "" if info["acc"] is None else f"acc {info['acc']:.3f} "
    return f"{acc}loss {info['loss']:.3f}"


def run_label(i: int, n: int, config: Any) -> str:
    """Short progress label of a probe run: ``[3/108] mamba-tiny L200 pre 5e-05 s2`` (the run directory name
    is longer; it is printed when the run ends)."""
    params = config.task.params
    model = config.model.name.rstrip("/").split("/")[-1]
    order = str(params.get("order", ""))[:3]
    length = params.get("length")
    where = f" L{length}" if length is not None else ""
    return f"[{i}/{n}] {model}{where} {order} {config.train.lr:g} s{config.model.init_seed}".replace("  ", " ")


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


def sigterm_as_interrupt() -> None:
    """SIGTERM (a scheduler, `kill`) ends a run like Ctrl-C: the trainers checkpoint and exit 130."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def validate_runs(models: list[str], run_dirs: list[Path], resume: bool, overwrite: bool) -> None:
    """Fail with one line before any progress output: unknown models, run dirs that exist without a flag."""
    from probes.models.registry import load_config

    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    for name in models:
        load_config(name)
    from probes.train.layout import has_content
    from probes.train.lock import check_unlocked

    for run_dir in run_dirs:
        check_unlocked(run_dir)  # a live writer owns it (issue 14): one line naming the holder
        if has_content(run_dir) and not (resume or overwrite):  # the writer lock file alone is no run
            raise UserError(f"run directory {run_dir} exists; pass --resume to continue it or --overwrite to replace it")


def given(ctx: Any, name: str) -> bool:
    """Was option ``name`` typed on the command line (rather than left at its default)? Config files fill
    only what was not typed (``synth --config``, ``vlm train --config``)."""
    source = ctx.get_parameter_source(name)  # typer may bring its own click: compare the enum by name
    return getattr(source, "name", None) in ("COMMANDLINE", "ENVIRONMENT")
