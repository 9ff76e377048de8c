"""Training-step cost of several backbones on the grounding probe, measured side by side.

Models are stepped alternately (``A B C A B C …``) after one warm-up step each, so machine load hits every
model alike; the ratio of medians to the first model is the number to read. On CUDA the step runs under
bf16 autocast like the trainer, and model FLOP utilisation (MFU) is reported against the device's dense
bf16 peak (see :data:`probes.bench.timing.PEAK_BF16`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from probes.errors import UserError

from .probe import Stepper, build_probe, train_batch, train_flops
from .timing import interleaved_medians, peak_bf16_flops


def bench_step(
    models: list[str],
    batch_size: int = 64,
    length: int = 200,
    steps: int = 10,
    device: torch.device = torch.device("cpu"),
    on_sample: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    if not models:
        raise UserError("give at least one model")
    if len(set(models)) != len(models):
        raise UserError(f"models must be distinct, got {models}")
    if min(batch_size, steps) < 1 or length < 2:
        raise UserError("--batch and --steps must be >= 1 and --len >= 2")
    steppers: dict[str, Stepper] = {}
    for name in models:
        probe = build_probe(name, length, device)
        steppers[name] = Stepper(probe, train_batch(probe, length, batch_size))
    seconds = interleaved_medians({n: s.step for n, s in steppers.items()}, device, steps, 1, on_sample)
    peak = peak_bf16_flops(device)
    seq_len = length + 2
    tokens = batch_size * seq_len
    first = seconds[models[0]]
    rows = []
    for name, stepper in steppers.items():
        probe = stepper.probe
        flops = train_flops(probe, batch_size, seq_len)
        row: dict[str, Any] = {
            "model": name,
            "family": probe.family,
            "mamba_path": probe.mamba_path,
            "n_params": sum(p.numel() for p in probe.model.parameters()),
            "ms_per_step": 1000 * seconds[name],
            "tokens_per_s": tokens / seconds[name],
            "ratio_to_first": seconds[name] / first,
            "model_flops_per_step": flops,
            "achieved_flops": flops / seconds[name],
            "mfu": None if peak is None else flops / seconds[name] / peak,
        }
        row["peak_step_memory_bytes"], row["memory_kind"] = stepper.step_memory()
        rows.append(row)
    return {
        "config": {"models": models, "batch": batch_size, "len": length, "seq_len": seq_len, "steps": steps},
        "rows": rows,
        "ratio": {r["model"]: r["ratio_to_first"] for r in rows},
    }
