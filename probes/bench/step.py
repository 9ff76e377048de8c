"""Training-step cost of several backbones on the grounding probe, and the GPU targets of README "Performance".

On a CPU the models are stepped alternately (``A B C A B C …``) after one warm-up step each, so machine load
hits every model alike; the ratio of medians to the first model is the number to read. On CUDA the default
is one model at a time (built, warmed up, timed, freed): a dedicated GPU has no load to share out, and two
1.4B models with AdamW state do not fit one 80 GB card next to a step's activations. On CUDA the step runs
under bf16 autocast like the trainer, and model FLOP utilisation (MFU) is reported against the device's
dense bf16 peak (see :data:`probes.bench.timing.PEAK_BF16`). ``compile`` wraps the backbone in
``torch.compile`` (opt-in: compile time is excluded, it happens in the warm-up step).

``paper_targets`` adds the target rows of README "Performance" (one H100 80GB, B=64, L=200, bf16): Mamba-1.4B-shape
step ≤ 1.5x the Pythia-1.4B-shape step with peak ≤ 40 GB, mamba-small ≤ 2x pythia-small, Pythia-1.4B-shape
≥ 45% MFU; each row says what was measured and whether the target is met.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch

from probes.errors import UserError

from .probe import Stepper, build_probe, train_batch, train_flops
from .timing import cuda_total_peak_bytes, interleaved_medians, peak_bf16_flops

#: The models `paper_targets` times: (Mamba, Pythia) pairs of the same size class.
TARGET_PAIRS = (("mamba-small", "pythia-small"), ("mamba-1.4b-shape", "pythia-1.4b-shape"))
TARGET_MODELS = ["pythia-small", "mamba-small", "pythia-1.4b-shape", "mamba-1.4b-shape"]


def bench_step(
    models: list[str],
    batch_size: int = 64,
    length: int = 200,
    steps: int = 10,
    device: torch.device = torch.device("cpu"),
    on_sample: Callable[[str], None] | None = None,
    *,
    compile: bool = False,
    one_at_a_time: bool | None = None,
) -> dict[str, Any]:
    if not models:
        raise UserError("give at least one model")
    if len(set(models)) != len(models):
        raise UserError(f"models must be distinct, got {models}")
    if min(batch_size, steps) < 1 or length < 2:
        raise UserError("--batch and --steps must be >= 1 and --len >= 2")
    if one_at_a_time is None:
        one_at_a_time = device.type == "cuda"

    def make(name: str) -> Stepper:
        probe = build_probe(name, length, device)
        if compile:
            probe.model.base_model.compile()  # in place: target_logits calls base_model directly
        return Stepper(probe, train_batch(probe, length, batch_size))

    measured: dict[str, dict[str, Any]] = {}
    if one_at_a_time:
        for name in models:
            stepper = make(name)
            seconds = interleaved_medians({name: stepper.step}, device, steps, 1, on_sample)[name]
            measured[name] = _measure(stepper, seconds, batch_size, length, device)
            del stepper
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    else:
        steppers = {name: make(name) for name in models}
        seconds = interleaved_medians({n: s.step for n, s in steppers.items()}, device, steps, 1, on_sample)
        for name, stepper in steppers.items():
            measured[name] = _measure(stepper, seconds[name], batch_size, length, device)
    first = measured[models[0]]["ms_per_step"]
    rows = []
    for name in models:
        row = {"model": name, **measured[name]}
        row["ratio_to_first"] = row["ms_per_step"] / first
        rows.append(row)
    return {
        "config": {"models": models, "batch": batch_size, "len": length, "seq_len": length + 2, "steps": steps,
                   "compile": compile, "one_at_a_time": one_at_a_time},
        "rows": rows,
        "ratio": {r["model"]: r["ratio_to_first"] for r in rows},
        "targets": target_rows(rows),
    }


def _measure(stepper: Stepper, seconds: float, batch_size: int, length: int, device: torch.device) -> dict[str, Any]:
    probe = stepper.probe
    seq_len = length + 2
    flops = train_flops(probe, batch_size, seq_len)
    peak = peak_bf16_flops(device)
    row: dict[str, Any] = {
        "family": probe.family,
        "mamba_path": probe.mamba_path,
        "n_params": sum(p.numel() for p in probe.model.parameters()),
        "ms_per_step": 1000 * seconds,
        "tokens_per_s": batch_size * seq_len / seconds,
        "model_flops_per_step": flops,
        "achieved_flops": flops / seconds,
        "mfu": None if peak is None else flops / seconds / peak,
    }
    row["peak_step_memory_bytes"], row["memory_kind"] = stepper.step_memory()
    # Everything allocated at the step's peak (weights, AdamW state, activations): what must fit the card.
    row["peak_total_bytes"] = cuda_total_peak_bytes(stepper.step, device) if device.type == "cuda" else None
    return row


def target_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper-scale step targets (README "Performance") that the measured `rows` can answer (an empty list if none)."""
    by_model = {r["model"]: r for r in rows}
    out: list[dict[str, Any]] = []

    def add(what: str, value: float | None, limit: float, at_most: bool) -> None:
        met = None if value is None else (value <= limit if at_most else value >= limit)
        out.append({"target": what, "measured": value, "limit": ("<= " if at_most else ">= ") + f"{limit:g}",
                    "met": met})

    for mamba, pythia in TARGET_PAIRS:
        if mamba in by_model and pythia in by_model:
            limit = 1.5 if "1.4b" in mamba else 2.0
            add(f"{mamba} / {pythia} step time", by_model[mamba]["ms_per_step"] / by_model[pythia]["ms_per_step"],
                limit, True)
    if "mamba-1.4b-shape" in by_model:
        total = by_model["mamba-1.4b-shape"].get("peak_total_bytes")
        add("mamba-1.4b-shape peak memory (GB)", None if total is None else total / 1e9, 40.0, True)
    if "pythia-1.4b-shape" in by_model:
        add("pythia-1.4b-shape MFU", by_model["pythia-1.4b-shape"]["mfu"], 0.45, False)
    return out
