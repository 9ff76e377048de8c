"""The offline demo as a library function: tiny Pythia vs Mamba vs hybrid on the grounding task, both layouts.

Sizing (README "Offline demo"): tiny models trained from scratch do not learn L=50 within CPU minutes, while
a 2-layer d=64 GPT-NeoX learns L=10 in a few thousand steps; the demo therefore uses L=10, lr 1e-3 (from
scratch, not the paper's fine-tuning lrs), batch 64, at most 3000 steps, 1000 held-out samples per eval.

This module trains and records; the figures and report are drawn from the run directories by
``probes.analysis`` (the CLI calls both), so data flows one way: engine → run directory → analysis.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.errors import UserError

from .synthetic.grounding import ORDERS as GROUNDING_ORDERS
from .train.config import TaskSpec, TrainConfig
from .train.grid import PlannedRun, plan

DEMO_MODELS = ("pythia-tiny", "mamba-tiny", "hybrid-tiny")
DEMO_ORDERS = GROUNDING_ORDERS  # both of the grounding task's (its config owns them)
SUMMARY_KEYS = ("reached", "steps_to_threshold", "final_acc", "steps_done", "wall_time", "mamba_path")

StepCallback = Callable[[int, dict[str, Any]], None]


@dataclass(frozen=True)
class DemoSpec:
    runs_dir: Path
    models: tuple[str, ...] = DEMO_MODELS
    orders: tuple[str, ...] = DEMO_ORDERS
    length: int = 10
    max_steps: int = 3000
    lr: float = 1e-3
    eval_samples: int = 1000

    def plan(self) -> list[PlannedRun]:
        if not self.models or not self.orders:
            raise UserError("--models and --orders must each name at least one value")
        train = TrainConfig(lr=self.lr, max_steps=self.max_steps, eval_samples=self.eval_samples,
                            n_train=1_000_000)
        planned: list[PlannedRun] = []
        for order in self.orders:
            task = TaskSpec("grounding", {"length": self.length, "order": order, "seed": 0})
            planned += plan(list(self.models), task, train, [self.lr], [0], "mean", self.runs_dir)
        return planned


def run_demo(
    planned: list[PlannedRun],
    *,
    resume: bool = False,
    on_run: Callable[[int, PlannedRun], StepCallback | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every planned run; return each run's summary by run name. ``resume``: through the launchers'
    resumable runner (:func:`probes.launch.jobs.execute`: finished runs skipped, interrupted ones continued
    exactly); else every run is replaced. ``on_run(i, run)`` may return a per-step callback (progress)."""
    from .launch.jobs import execute
    from .train.loop import run

    summaries: dict[str, dict[str, Any]] = {}
    for i, p in enumerate(planned, 1):
        on_step = on_run(i, p) if on_run is not None else None
        if resume:
            summaries[p.config.run_name] = execute(p.run_dir, p.config.to_dict(), sigterm_interrupts=False,
                                                   on_step=on_step)
        else:
            summaries[p.config.run_name] = run(p.config, p.run_dir, overwrite=True, on_step=on_step)
    return summaries


def demo_record(command: str, wall: float, summaries: dict[str, dict[str, Any]], env: dict[str, Any]) -> dict[str, Any]:
    """What produced a demo's figures: the exact command, the machine and every run's outcome, so a committed
    reference set says how to reproduce it and how long it took."""
    return {
        "command": command,
        "wall_time_s": round(wall, 1),
        "cpu_count": os.cpu_count(),
        "env": env,
        "runs": {name: {k: s.get(k) for k in SUMMARY_KEYS} for name, s in summaries.items()},
    }

