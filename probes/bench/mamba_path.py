"""Which Mamba implementation runs, and what a grounding training step costs on each available one.

Paths: ``mamba-ssm`` (CUDA kernels, only when the package imports and the model is on CUDA),
``probes-fast-scan`` (our chunked PyTorch scan), ``transformers-sequential`` (the per-time-step reference
loop, slow: timed for one step only, or skipped).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from probes.ssm.patch import FAST_SCAN, MAMBA_SSM, SEQUENTIAL

from .probe import Stepper, build_probe, train_batch
from .timing import interleaved_medians, timed


def bench_mamba_path(
    model: str = "mamba-tiny",
    length: int = 200,
    batch_size: int = 64,
    steps: int = 3,
    skip_slow: bool = False,
    device: torch.device = torch.device("cpu"),
) -> dict[str, Any]:
    kernels_installed = importlib.util.find_spec("mamba_ssm") is not None
    default = build_probe(model, length, device)  # what the trainer would run here
    rows: list[dict[str, Any]] = []
    batch = train_batch(default, length, batch_size)
    runners = {default.mamba_path or "none": Stepper(default, batch)}
    ms = interleaved_medians({k: s.step for k, s in runners.items()}, device, steps, 1)
    for path, seconds in ms.items():
        rows.append({"path": path, "available": True, "ms_per_step": 1000 * seconds, "steps_timed": steps})
    if default.mamba_path == MAMBA_SSM:
        rows.append({"path": FAST_SCAN, "available": False, "ms_per_step": None, "steps_timed": 0,
                     "note": "the fast path defers to mamba-ssm on CUDA when its kernels import"})
    if skip_slow:
        rows.append({"path": SEQUENTIAL, "available": True, "ms_per_step": None, "steps_timed": 0, "note": "skipped (--skip-slow)"})
    else:
        slow = build_probe(model, length, device, fast_path=False)
        stepper = Stepper(slow, train_batch(slow, length, batch_size))
        rows.append({"path": slow.mamba_path, "available": True, "ms_per_step": 1000 * timed(stepper.step, device),
                     "steps_timed": 1, "note": "one step, no warm-up"})
    base = rows[0]["ms_per_step"]
    for row in rows:
        row["ratio_to_default"] = None if row["ms_per_step"] is None else row["ms_per_step"] / base
    return {
        "config": {"model": model, "len": length, "batch": batch_size, "steps": steps},
        "mamba_ssm_installed": kernels_installed,
        "cuda": device.type == "cuda",
        "default_path": default.mamba_path,
        "rows": rows,
    }
