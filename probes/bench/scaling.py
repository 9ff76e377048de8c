"""Step time and memory against sequence length, and the log-log figure with reference slopes 1 and 2.

Each model is grown once for the longest length (so the same weights run at every length); at each length
the models are stepped alternately. Memory: on CUDA the allocator peak of one step above resident memory;
on a CPU the bytes autograd saves for backward (see :func:`probes.bench.timing.saved_activation_bytes`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from probes.errors import UserError

from .probe import Stepper, build_probe, train_batch
from .timing import interleaved_medians


def bench_scaling(
    models: list[str],
    lengths: list[int],
    batch_size: int = 4,
    steps: int = 2,
    device: torch.device = torch.device("cpu"),
    on_point: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    if not models or not lengths:
        raise UserError("give at least one model and one length")
    if min(lengths) < 2 or min(batch_size, steps) < 1:
        raise UserError("lengths must be >= 2, --batch and --steps >= 1")
    lengths = sorted(set(lengths))
    probes = {name: build_probe(name, max(lengths), device) for name in models}
    rows: list[dict[str, Any]] = []
    for length in lengths:
        steppers = {name: Stepper(p, train_batch(p, length, batch_size)) for name, p in probes.items()}
        seconds = interleaved_medians({n: s.step for n, s in steppers.items()}, device, steps, 1)
        for name, stepper in steppers.items():
            memory, kind = stepper.step_memory()
            rows.append({
                "model": name,
                "family": probes[name].family,
                "mamba_path": probes[name].mamba_path,
                "len": length,
                "seq_len": length + 2,
                "ms_per_step": 1000 * seconds[name],
                "memory_bytes": memory,
            })
            if on_point is not None:
                on_point(name)
        del steppers
    slopes = {name: _slopes([r for r in rows if r["model"] == name]) for name in models}
    return {
        "config": {"models": models, "lengths": lengths, "batch": batch_size, "steps": steps},
        "memory_kind": kind,
        "rows": rows,
        "loglog_slope": slopes,
    }


def _slopes(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Least-squares slope of log(time) and log(memory) on log(seq_len) over the upper half of the lengths."""
    rows = rows[len(rows) // 2 :] if len(rows) >= 4 else rows
    if len(rows) < 2:
        return {"time": None, "memory": None}
    x = torch.tensor([float(r["seq_len"]) for r in rows]).log()
    out: dict[str, float | None] = {}
    for key, field in (("time", "ms_per_step"), ("memory", "memory_bytes")):
        y = torch.tensor([max(float(r[field]), 1e-12) for r in rows]).log()
        xc = x - x.mean()
        out[key] = float((xc * (y - y.mean())).sum() / (xc * xc).sum())
    return out
