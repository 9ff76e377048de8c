"""Synthetic run directories for the analysis tests, written straight to the schema in docs/CONTRACTS.md.

The trainer is not used on purpose: these files are what the schema says a run directory holds, so the
analysis is tested against the contract, and every number in them is chosen by the test.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def write_run(
    root: Path,
    name: str,
    accuracy: Sequence[Sequence[float]] | np.ndarray,
    *,
    steps: Sequence[int] | None = None,
    heldout_acc: Sequence[float] | None = None,
    model: str = "pythia-tiny",
    family: str = "gpt_neox",
    task: str = "grounding",
    order: str = "suffix",
    length: int | None = None,
    lr: float = 1e-4,
    init_seed: int = 0,
    max_steps: int | None = None,
    eval_every: int | None = None,
    threshold: float = 0.95,
    batch_size: int = 64,
    status: str | None = "finished",
) -> Path:
    """Write a run directory whose e-th eval has per-position accuracy ``accuracy[e]``.

    ``steps`` default to ``eval_every · (e+1)`` (``eval_every`` defaults to 10); ``max_steps`` to the last
    step; ``heldout_acc`` to the row means (positions are balanced). ``status=None`` writes no summary.json
    (a run still being written).
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    n_evals, n_pos = acc.shape
    every = eval_every if eval_every is not None else 10
    step_list = list(steps) if steps is not None else [every * (e + 1) for e in range(n_evals)]
    max_steps = max_steps if max_steps is not None else (step_list[-1] if step_list else 100)
    overall = list(heldout_acc) if heldout_acc is not None else [float(np.nanmean(r)) for r in acc]
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    config = {
        "schema_version": 1,
        "run_name": name,
        "model": {
            "name": model,
            "family": family,
            "init_strategy": "mean",
            "init_seed": init_seed,
            "n_params": 1000,
        },
        "task": {"name": task, "params": {"length": length or n_pos, "order": order, "seed": 0}},
        "train": {
            "lr": lr,
            "batch_size": batch_size,
            "max_steps": max_steps,
            "eval_every": eval_every,
            "eval_samples": 100 * n_pos,
            "threshold": threshold,
            "seed": 0,
            "weight_decay": 0.0,
            "betas": [0.9, 0.999],
            "warmup_steps": 0,
        },
    }
    _json(run / "config.json", config)
    _json(
        run / "manifest.json",
        {"task": task, "params": config["task"]["params"], "disjoint_check": {"ok": True}},
    )
    _json(
        run / "env.json",
        {
            "python": "3.11",
            "torch": "x",
            "transformers": "x",
            "device_name": "cpu",
            "dtype": "float32",
            "threads": 1,
            "mamba_path": None,
        },
    )
    lines = []
    prev = 0
    for e, step in enumerate(step_list):
        lines.append(
            {
                "kind": "train",
                "step": prev + 1,
                "samples_seen": (prev + 1) * batch_size,
                "wall_time": 0.1 * e,
                "loss": 1.0 / (e + 1),
                "lr": lr,
            }
        )
        lines.append(
            {
                "kind": "eval",
                "step": step,
                "samples_seen": step * batch_size,
                "frac_steps": step / max_steps,
                "wall_time": 0.1 * e + 0.05,
                "heldout_loss": 1.0 - overall[e],
                "heldout_acc": overall[e],
                "per_position_acc": [None if np.isnan(v) else round(float(v), 6) for v in acc[e]],
            }
        )
        prev = step
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if n_evals:
        save_file(
            {
                "accuracy": acc.astype(np.float32),
                "step": np.asarray(step_list, dtype=np.int64),
                "count": np.full(acc.shape, 100, dtype=np.int64),
            },
            str(run / "per_position.safetensors"),
        )
    if status is not None:
        hit = next((s for s, a in zip(step_list, overall, strict=True) if a >= threshold), None)
        _json(
            run / "summary.json",
            {
                "status": status,
                "reached": hit is not None,
                "threshold": threshold,
                "steps_to_threshold": hit,
                "samples_to_threshold": None if hit is None else hit * batch_size,
                "final_acc": overall[-1] if overall else None,
                "best_acc": max(overall) if overall else None,
                "steps_done": step_list[-1] if step_list else 0,
                "max_steps": max_steps,
                "wall_time": 1.0,
                "error": None,
            },
        )
    return run


def ramp(n_evals: int, n_pos: int, reach_eval: Sequence[int] | np.ndarray) -> np.ndarray:
    """[E, L] accuracy where position k is 0.5 before eval ``reach_eval[k]`` and 1.0 from it on."""
    reach = np.asarray(reach_eval)
    assert reach.shape == (n_pos,)
    e = np.arange(n_evals)[:, None]
    return np.where(e >= reach[None, :], 1.0, 0.5)


def _json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2))
