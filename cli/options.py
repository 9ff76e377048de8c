"""Flags derived from a pydantic model: one declaration per option, reachable as a flag and as a file key.

``probes synth`` declares its experiment options once, as the fields of
:class:`probes.train.sweep.SweepSpec` (which itself takes every TrainConfig field). :func:`model_flags` adds a
typer option ``--field-name`` for each field the command function does not declare by hand, so a new
TrainConfig field is a flag without editing the command; :func:`given_values` turns the flags typed on the
command line back into field values (a config file fills the rest). Hand-declared parameters keep their
own help and spellings (``--len``, ``--models/--model``) and map to fields by name (``rename`` for the few
whose Python name differs).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel

from .common import given

F = TypeVar("F", bound=Callable[..., Any])


def _flag_type(annotation: Any) -> tuple[Any, bool]:
    """(the typer type of a field's flag, whether it is optional). Lists and tuples are comma-separated text."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1
    base = args[0] if optional else annotation
    if base in (bool, int, float, str):
        return base, optional
    return str, optional


def _shown(default: Any) -> Any:
    if isinstance(default, list | tuple):
        return ",".join(str(v) for v in default)
    return default


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def model_flags(model: type[BaseModel], *, rename: dict[str, str] | None = None,
                skip: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Decorator: give the command a keyword-only typer option for every field of ``model`` it does not
    declare itself (by parameter name, or ``rename[parameter] == field``). The function must take
    ``**kwargs`` to receive them. Booleans become ``--x/--no-x``; the help is the field's description."""
    rename = rename or {}

    def decorate(func: F) -> F:
        sig = inspect.signature(func, eval_str=True)
        declared = {rename.get(name, name) for name in sig.parameters}
        params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        for name, field in model.model_fields.items():
            if name in declared or name in skip:
                continue
            kind, optional = _flag_type(field.annotation)
            default = field.get_default(call_default_factory=True)
            names = [f"{flag_name(name)}/--no-{name.replace('_', '-')}"] if kind is bool else [flag_name(name)]
            option = typer.Option(*names, help=field.description or name, show_default=_shown(default) is not None)
            flag_default = _shown(default)
            annotation = Annotated[(kind | None) if optional or flag_default is None else kind, option]
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=flag_default,
                                            annotation=annotation))
        func.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return func

    return decorate


def given_values(ctx: typer.Context, model: type[BaseModel], *, rename: dict[str, str] | None = None,
                 skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The field values of the flags typed on the command line (a flag left at its default is absent, so a
    config file's value is never undone by a default)."""
    rename = rename or {}
    values: dict[str, Any] = {}
    for name, value in ctx.params.items():
        key = rename.get(name, name)
        if key in model.model_fields and key not in skip and given(ctx, name):
            values[key] = str(value) if isinstance(value, Path) else value
    return values


def command_flags(command: Any) -> dict[str, str]:
    """``{python name: first flag}`` of a click command's options (for tests and help checks)."""
    return {p.name: p.opts[0] for p in command.params if getattr(p, "opts", None) and p.opts[0].startswith("--")}


#: Above these a run is paper-scale: hours per run on a CPU (the paper's App. C.4 defaults: 78,000 steps, 100,000
#: held-out samples every 1 % of the budget).
CPU_STEPS, CPU_EVAL_SAMPLES = 10_000, 10_000


def warn_paper_scale_on_cpu(spec: Any, ctx: typer.Context, config: Path | None) -> None:
    """One ``warning:`` line when paper-scale settings are about to train on a CPU, with CPU-sized options.
    Only where the budget was not chosen (neither typed nor in a config file), once per command (not in
    the other processes of a multi-process run), and after every check, so an error stays the only line."""
    from .app import _secondary_rank

    chosen = config is not None or given(ctx, "max_steps") or given(ctx, "eval_samples")
    if chosen or _secondary_rank() or (spec.max_steps < CPU_STEPS and spec.eval_samples < CPU_EVAL_SAMPLES):
        return
    if spec.device not in ("auto", "cpu"):
        return
    if spec.device == "auto":
        import torch

        if torch.cuda.is_available():
            return
    from .common import console

    console.print(
        f"warning: no GPU, and the paper-scale defaults ({spec.max_steps:,} steps, {spec.eval_samples:,} held-out "
        "samples per evaluation) take hours per run on a CPU; for a CPU-sized run add e.g. --max-steps 3000 "
        "--eval-samples 1000 --len 10 --lr 1e-3 (the demo's settings, `probes demo`)"
    )
