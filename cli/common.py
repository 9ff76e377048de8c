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
        BarColumn(bar_width=6),
        MofNCompleteColumn(),
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


#: Columns a training progress row needs besides its label at 78,000 steps (bar, 12345/78000, time left,
#: ``acc 0.953 loss 0.124`` and the gaps); the label gets the rest of the terminal.
PROGRESS_FIXED = 48


def short_lr(lr: float) -> str:
    """``1e-4``, ``5e-5``, ``2.5e-4``, ``0.01``: an lr in at most a few characters (``f"{1e-4:g}"`` is
    ``0.0001``, which an 80-column progress row cut to ``0.00…``)."""
    if lr >= 1e-2:
        return f"{lr:g}"
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def run_label(i: int, n: int, config: Any, width: int | None = None) -> str:
    """Short progress label of a probe run: ``[3/108] mamba-tiny L200 pre 5e-5 s2`` (the run directory name
    is longer; it is printed when the run ends). With ``width``, the model name is shortened (``pythia-1…``)
    so that the lr and the seed always fit."""
    params = config.task.params
    model = config.model.name.rstrip("/").split("/")[-1]
    order = str(params.get("order", ""))[:3]
    length = params.get("length")
    where = f" L{length}" if length is not None else ""
    head = f"[{i}/{n}] "
    tail = f"{where} {order} {short_lr(config.train.lr)} s{config.model.init_seed}".replace("  ", " ")
    if width is not None and len(head) + len(model) + len(tail) > width:
        room = max(1, width - len(head) - len(tail) - 1)
        model = model[:room] + "…"
    return head + model + tail


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
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    for name in models:
        check_model_name(name)
    from probes.train.layout import has_content
    from probes.train.lock import check_unlocked

    for run_dir in run_dirs:
        check_unlocked(run_dir)  # a live writer owns it (README "Run-directory integrity"): one line naming the holder
        if has_content(run_dir) and not (resume or overwrite):  # the writer lock file alone is no run
            raise UserError(f"run directory {run_dir} exists; pass --resume to continue it or --overwrite to replace it")


def check_model_name(name: str) -> None:
    """Load a model's config (presets offline, local directories, hub ids); an unknown name that is close to
    a preset fails with ``did you mean 'pythia-tiny'?`` before the hub is asked (``pythia-tyny``)."""
    import difflib

    from probes.models.presets import PRESETS
    from probes.models.registry import load_config

    if name not in PRESETS and "/" not in name and not Path(name).exists():
        close = difflib.get_close_matches(name, list(PRESETS), n=1, cutoff=0.8)
        if close:
            raise UserError(f"unknown model {name!r}; did you mean the preset {close[0]!r}?")
    load_config(name)


def given(ctx: Any, name: str) -> bool:
    """Was option ``name`` typed on the command line (rather than left at its default)? Config files fill
    only what was not typed (``synth --config``, ``vlm train --config``)."""
    source = ctx.get_parameter_source(name)  # typer may bring its own click: compare the enum by name
    return getattr(source, "name", None) in ("COMMANDLINE", "ENVIRONMENT")
