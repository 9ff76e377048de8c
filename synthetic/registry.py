"""Task names → constructors, so the CLI and the trainer build any task from a name and parameters.

The table is not written here: each task class registers itself with ``@register_task``
(:mod:`.base`), so a new task is its module; importing it is all the registry needs.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from . import copying, grounding, induction, mqar  # noqa: F401  (their @register_task fills TASKS)
from .base import TASK_TYPES, ProbeTask, TaskBase, TaskConfigError

# name -> task class (its config dataclass is ``cls.config_type``); the same dict @register_task fills
TASKS: dict[str, type[TaskBase[Any]]] = TASK_TYPES


def task_names() -> list[str]:
    return sorted(TASKS)


def config_class(name: str) -> type:
    if name not in TASKS:
        raise TaskConfigError(f"unknown task {name!r}; choose one of {', '.join(task_names())}")
    return TASKS[name].config_type


def make_config(name: str, params: dict[str, Any]) -> Any:
    """The task's config dataclass from ``params``; unknown keys are an error, not silently dropped."""
    cls = config_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise TaskConfigError(
            f"task {name!r} has no parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    hints = typing.get_type_hints(cls)
    for key, value in params.items():
        check_type(name, key, value, hints[key])
    return cls(**params)


def _accepts(value: Any, annotation: Any) -> bool:
    if annotation is Any:
        return True
    args = typing.get_args(annotation)
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts(value, a) for a in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    origin = typing.get_origin(annotation) or annotation
    return isinstance(value, origin) if isinstance(origin, type) else True


def check_type(task: str, key: str, value: Any, annotation: Any) -> None:
    """A task parameter of the wrong type (``--param length=abc``, ``10.5``, ``[1,2]``) is a one-line
    :class:`TaskConfigError` here, at validation, not a traceback deep inside the generator."""
    if not _accepts(value, annotation):
        expected = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        raise TaskConfigError(f"task {task!r} parameter {key} must be {expected}, got {value!r}")


def build_task(name: str, params: dict[str, Any] | None = None) -> ProbeTask:
    config = make_config(name, params or {})
    return TASKS[name](config)


def task_from_config(name: str, config: Any) -> ProbeTask:
    config_class(name)
    return TASKS[name](config)
