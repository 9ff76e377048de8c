"""The paper's grid (App. C.4): learning rates × init seeds × models, one run directory each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import ModelSpec, RunConfig, TaskSpec, TrainConfig, replace


@dataclass(frozen=True)
class PlannedRun:
    config: RunConfig
    run_dir: Path


def run_name(model: str, task: TaskSpec, lr: float, strategy: str, init_seed: int) -> str:
    length = task.params.get("length", "x")
    order = task.params.get("order", "suffix")
    safe_model = model.replace("/", "_").strip("._") or "model"
    return f"{safe_model}-{task.name}-L{length}-{order}-lr{lr:g}-{strategy}{init_seed}"


def plan(
    models: list[str],
    task: TaskSpec,
    train: TrainConfig,
    lrs: list[float],
    init_seeds: list[int],
    strategy: str,
    out: Path,
) -> list[PlannedRun]:
    """Every (model, lr, init seed) combination, in a stable order; models share data and data order."""
    runs = []
    for model in models:
        for lr in lrs:
            for seed in init_seeds:
                name = run_name(model, task, lr, strategy, seed)
                cfg = RunConfig(ModelSpec(model, strategy, seed), task, replace(train, lr=lr), run_name=name)
                runs.append(PlannedRun(cfg, out / name))
    return runs
