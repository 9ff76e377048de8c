"""The Triton selective scan's launch configurations, timed side by side at one layer shape.

`probes.ssm.triton_scan` picks `(BLOCK_D, CHUNK)` from `TILE_ELEMENTS` and the backward's programs per sequence
from the device's multiprocessor count; those defaults were set without a GPU. This benchmark runs the scan
(forward, and forward + backward) at a real layer shape for each candidate configuration, interleaved after a
warm-up like every `probes bench`, and checks each configuration's output and gradients against the default
configuration's, so a faster configuration is only reported together with its agreement. A configuration that
fails to compile or launch (too many registers, shared memory) becomes a row with the error, not a crash.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from probes.errors import UserError
from probes.ssm import triton_scan

from .timing import interleaved_medians

Config = tuple[int, int, int | None, int, int]  # (block_d, chunk, backward groups or None = auto, warps fwd, bwd)


def _inputs(batch: int, dim: int, n: int, length: int, device: torch.device) -> list[torch.Tensor]:
    """bf16 activations and float32 parameters, as a Mamba mixer under bf16 autocast passes them."""
    g = torch.Generator(device=device).manual_seed(0)

    def r(*shape: int, scale: float = 1.0, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return (torch.randn(*shape, device=device, generator=g) * scale).to(dtype).requires_grad_(True)

    A = (-torch.rand(dim, n, device=device, generator=g) * 4 - 0.1).requires_grad_(True)
    return [r(batch, dim, length), r(batch, dim, length, scale=0.5), A, r(batch, n, length), r(batch, n, length),
            r(dim, dtype=torch.float32), r(batch, dim, length), r(dim, scale=0.3, dtype=torch.float32)]


def _run(inputs: list[torch.Tensor], config: Config, backward: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    block_d, chunk, groups, fwd_warps, bwd_warps = config
    for t in inputs:
        t.grad = None
    y = triton_scan.selective_scan(*inputs, True, False, block_d=block_d, chunk=chunk, groups=groups,
                                   warps=(fwd_warps, bwd_warps))
    if not backward:
        return y.detach(), []
    y.backward(torch.ones_like(y))
    return y.detach(), [t.grad.detach().clone() for t in inputs]


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want.float()).abs().max() / (want.float().abs().max() + 1e-12))


def bench_scan(
    batch: int = 64,
    dim: int = 1536,
    n_state: int = 16,
    length: int = 200,
    block_ds: Sequence[int] = (1, 2, 4, 8, 16),
    chunks: Sequence[int] = (16, 32, 64),
    groups: Sequence[int | None] = (None,),
    warps: Sequence[tuple[int, int]] = ((triton_scan.FWD_WARPS, triton_scan.BWD_WARPS),),
    steps: int = 5,
    device: torch.device = torch.device("cuda"),
) -> dict[str, Any]:
    """Rows per configuration: forward and forward+backward ms (medians), ratio to the default, agreement."""
    if device.type != "cuda" and not triton_scan.interpreting():
        raise UserError("bench scan times the compiled Triton scan: it needs a CUDA device")
    if not triton_scan.triton_available():
        raise UserError("bench scan needs triton")
    default_block, default_chunk = triton_scan.launch_config(length, dim, n_state)
    default: Config = (default_block, default_chunk, None, triton_scan.FWD_WARPS, triton_scan.BWD_WARPS)
    configs = list(dict.fromkeys([default, *((b, c, g, *w) for b, c, g, w in
                                             itertools.product(block_ds, chunks, groups, warps))]))
    inputs = _inputs(batch, dim, n_state, length, device)
    y_ref, grads_ref = _run(inputs, default, backward=True)
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    rows: dict[Config, dict[str, Any]] = {}
    runners: dict[str, Callable[[], Any]] = {}
    for config in configs:
        row: dict[str, Any] = {"block_d": config[0], "chunk": config[1], "groups": config[2] or "auto",
                               "warps": f"{config[3]}/{config[4]}", "default": config == default}
        try:
            y, grads = _run(inputs, config, backward=True)
        except Exception as exc:  # a configuration the compiler or the device refuses: a row, not a crash
            row["error"] = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:120]}"
            rows[config] = row
            continue
        errors = [_relative_error(y, y_ref)] + [_relative_error(a, b) for a, b in zip(grads, grads_ref, strict=True)]
        row["max_rel_error"] = max(errors)
        row["worst"] = (("y",) + names)[max(range(len(errors)), key=errors.__getitem__)]
        rows[config] = row
        key = f"{config}"
        runners[key + " fwd"] = lambda c=config: _run(inputs, c, backward=False)
        runners[key + " fwd+bwd"] = lambda c=config: _run(inputs, c, backward=True)
    seconds = interleaved_medians(runners, device, steps, 1)
    base = seconds.get(f"{default} fwd+bwd")
    for config, row in rows.items():
        if "error" in row:
            row.update(fwd_ms=None, fwd_bwd_ms=None, ratio_to_default=None)
            continue
        row["fwd_ms"] = 1000 * seconds[f"{config} fwd"]
        row["fwd_bwd_ms"] = 1000 * seconds[f"{config} fwd+bwd"]
        row["ratio_to_default"] = seconds[f"{config} fwd+bwd"] / base if base else None
    ordered = sorted(rows.values(), key=lambda r: (r["fwd_bwd_ms"] is None, r["fwd_bwd_ms"] or 0.0))
    return {
        "config": {"batch": batch, "d_inner": dim, "state": n_state, "len": length, "steps": steps,
                   "dtype": "bf16 activations, float32 A/D/delta_bias"},
        "default": {"block_d": default_block, "chunk": default_chunk, "tile_elements": triton_scan.TILE_ELEMENTS,
                    "fwd_warps": triton_scan.FWD_WARPS, "bwd_warps": triton_scan.BWD_WARPS},
        "rows": ordered,
    }
