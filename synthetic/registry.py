"""Task names → constructors, so the CLI and the trainer build any task from a name and parameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .base import ProbeTask, TaskConfigError
from .copying import CopyingConfig, CopyingTask
from .grounding import GroundingConfig, GroundingTask
from .induction import InductionConfig, InductionTask
from .mqar import MQARConfig, MQARTask

# name -> (config dataclass, task class). Other tasks register here next to their module.
TASKS: dict[str, tuple[type, Callable[[Any], ProbeTask]]] = {
    "grounding": (GroundingConfig, GroundingTask),
    "mqar": (MQARConfig, MQARTask),
    "copying": (CopyingConfig, CopyingTask),
    "induction": (InductionConfig, InductionTask),
}


def task_names() -> list[str]:
    return sorted(TASKS)


def config_class(name: str) -> type:
    if name not in TASKS:
        raise TaskConfigError(f"unknown task {name!r}; choose one of {', '.join(task_names())}")
    return TASKS[name][0]


def make_config(name: str, params: dict[str, Any]) -> Any:
    """The task's config dataclass from ``params``; unknown keys are an error, not silently dropped."""
    cls = config_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise TaskConfigError(f"task {name!r} has no parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**params)


def build_task(name: str, params: dict[str, Any] | None = None) -> ProbeTask:
    config = make_config(name, params or {})
    return TASKS[name][1](config)


def task_from_config(name: str, config: Any) -> ProbeTask:
    config_class(name)
    return TASKS[name][1](config)
