"""Every Mamba-1 scan implementation present on this machine, timed side by side on the grounding step.

Paths (the names a run records as `mamba_path`):

* ``mamba-ssm``: transformers' kernel path; CUDA, and only when the `mamba_ssm` package imports.
* ``probes-triton``: our Triton kernels (`probes.ssm.triton_scan`); CUDA. On a CPU they would run only through
  Triton's interpreter, a correctness tool, so they are listed as absent there.
* ``probes-fast-scan``: our chunked PyTorch scan; any device.
* ``transformers-mambapy``: transformers' parallel scan from the `mambapy` package (`use_mambapy=True`), when
  that package is installed and mamba-ssm is not (transformers prefers the kernels).
* ``transformers-sequential``: transformers' per-time-step loop. Slow: timed for one step without warm-up, or
  skipped with ``skip_slow``.

Each path gets its own copy of the same seeded model, a fixed batch and AdamW; the steps are interleaved
(`A B C A B C …`) after a warm-up each, so machine load hits all of them alike. Peak memory is the CUDA
allocator's peak during one step (above what is resident), or on a CPU the bytes saved for backward.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from probes.errors import UserError
from probes.ssm.patch import (
    FAST_SCAN,
    MAMBA_SSM,
    MAMBAPY,
    SEQUENTIAL,
    TRITON_SCAN,
    enable_fast_path,
    mamba_path_note,
)
from probes.ssm.selfcheck import check_path, unavailable

from .probe import Probe, Stepper, build_probe, train_batch
from .timing import interleaved_medians, timed

ALL_PATHS = (MAMBA_SSM, TRITON_SCAN, FAST_SCAN, MAMBAPY, SEQUENTIAL)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def path_availability(device: torch.device) -> dict[str, str | None]:
    """For each path: None if it can run here, else why not (one line), the self-check's verdict included."""
    why_not = {path: unavailable(path, device) for path in ALL_PATHS}
    if why_not[TRITON_SCAN] and device.type != "cuda":
        why_not[TRITON_SCAN] = "needs CUDA (on a CPU only Triton's interpreter could run it)"
    if device.type == "cuda" and why_not[MAMBA_SSM] is None:  # transformers prefers the kernels there
        why_not[MAMBAPY] = why_not[MAMBAPY] or "mamba-ssm takes precedence on CUDA"
        why_not[SEQUENTIAL] = "mamba-ssm takes precedence on CUDA"
    for path in (TRITON_SCAN, MAMBAPY):
        if why_not[path] is None and device.type == "cuda":
            check = check_path(path, device)
            if not check.ok:
                why_not[path] = f"failed its self-check: {check.reason}"
    return why_not


def _probe_for(path: str, model: str, length: int, device: torch.device) -> Probe:
    """A probe whose Mamba mixers run `path` (same seed, so the same weights for every path)."""
    probe = build_probe(model, length, device, fast_path=False)
    if path in (TRITON_SCAN, FAST_SCAN):
        probe.mamba_path = enable_fast_path(probe.model, scan=path)
    elif path == MAMBAPY:
        for module in probe.model.modules():
            if hasattr(module, "use_mambapy"):
                module.use_mambapy = True
        probe.mamba_path = MAMBAPY
    if path != MAMBAPY and probe.mamba_path != path:
        raise UserError(f"{model}: asked for the {path} path, the model runs {probe.mamba_path}")
    return probe


def bench_mamba_path(
    model: str = "mamba-tiny",
    length: int = 200,
    batch_size: int = 64,
    steps: int = 3,
    skip_slow: bool = False,
    device: torch.device = torch.device("cpu"),
    paths: list[str] | None = None,
) -> dict[str, Any]:
    """Rows per path: ms/step (median of interleaved steps), peak step memory, ratio to the default path."""
    wanted = list(paths) if paths else list(ALL_PATHS)
    unknown = sorted(set(wanted) - set(ALL_PATHS))
    if unknown:
        raise UserError(f"unknown Mamba path(s) {unknown}; choose from {', '.join(ALL_PATHS)}")
    why_not = path_availability(device)
    default_probe = build_probe(model, length, device)  # what the trainer would run here
    if default_probe.mamba_path is None or default_probe.mamba_path not in ALL_PATHS:
        raise UserError(f"{model} has no Mamba-1 mixers (path {default_probe.mamba_path}); nothing to compare")
    default = default_probe.mamba_path
    default_note = mamba_path_note(default_probe.model)
    del default_probe

    fast_steppers: dict[str, Stepper] = {}
    rows: dict[str, dict[str, Any]] = {}
    for path in wanted:
        if why_not[path] is not None:
            rows[path] = {"path": path, "available": False, "note": why_not[path]}
        elif path == SEQUENTIAL and skip_slow:
            rows[path] = {"path": path, "available": True, "note": "skipped (--skip-slow)"}
        elif path != SEQUENTIAL:
            probe = _probe_for(path, model, length, device)
            fast_steppers[path] = Stepper(probe, train_batch(probe, length, batch_size))
    seconds = interleaved_medians({p: s.step for p, s in fast_steppers.items()}, device, steps, 1)
    for path, stepper in fast_steppers.items():
        memory, kind = stepper.step_memory()
        rows[path] = {"path": path, "available": True, "ms_per_step": 1000 * seconds[path], "steps_timed": steps,
                      "peak_step_memory_bytes": memory, "memory_kind": kind}
    fast_steppers.clear()
    if SEQUENTIAL in wanted and SEQUENTIAL not in rows:
        probe = _probe_for(SEQUENTIAL, model, length, device)
        stepper = Stepper(probe, train_batch(probe, length, batch_size))
        rows[SEQUENTIAL] = {"path": SEQUENTIAL, "available": True, "ms_per_step": 1000 * timed(stepper.step, device),
                            "steps_timed": 1, "note": "one step, no warm-up"}
        rows[SEQUENTIAL]["peak_step_memory_bytes"], rows[SEQUENTIAL]["memory_kind"] = stepper.step_memory()
    ordered = [rows[p] for p in ALL_PATHS if p in rows]
    base = rows.get(default, {}).get("ms_per_step")
    for row in ordered:
        row.setdefault("ms_per_step", None)
        row.setdefault("steps_timed", 0)
        row.setdefault("peak_step_memory_bytes", None)
        row["default"] = row["path"] == default
        ms = row["ms_per_step"]
        row["ratio_to_default"] = None if ms is None or base is None else ms / base
    return {
        "config": {"model": model, "len": length, "batch": batch_size, "steps": steps, "paths": wanted},
        "mamba_ssm_installed": _installed("mamba_ssm"),
        "mambapy_installed": _installed("mambapy"),
        "cuda": device.type == "cuda",
        "default_path": default,
        "default_path_note": default_note,
        "rows": ordered,
    }
