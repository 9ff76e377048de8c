"""Clocks, memory meters and FLOP accounting shared by every benchmark.

Every ratio `probes bench` prints is measured side by side in one process: the candidates are stepped
alternately (after an untimed warm-up each), so load from other processes hits all of them alike, and the
median of the interleaved samples is compared.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

# dense bf16 tensor-core peak (no sparsity), FLOP/s; matched by substring of torch.cuda.get_device_name, first hit
PEAK_BF16: tuple[tuple[str, float], ...] = (
    ("H200", 989.4e12),
    ("H100 PCIe", 756.0e12),
    ("H100 NVL", 835.0e12),
    ("H100", 989.4e12),
    ("A100", 312.0e12),
    ("L40S", 362.1e12),
    ("A10", 125.0e12),
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of ``fn()``, with the device queue drained before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved_medians(
    runners: dict[str, Callable[[], Any]],
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    on_sample: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Median seconds per call of each runner, calls alternated ``A B C A B C …`` after ``warmup`` each."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            samples[name].append(timed(fn, device))
            if on_sample is not None:
                on_sample(name)
    return {name: statistics.median(values) for name, values in samples.items()}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def peak_bf16_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of a known CUDA device, None elsewhere (then no MFU is reported)."""
    if device.type != "cuda":
        return None
    name = device_name(device)
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


def environment(device: torch.device) -> dict[str, Any]:
    """The run directories' environment record (one definition: :func:`probes.train.engine.environment`)
    with the device's bf16 peak, against which MFU is reported."""
    from probes.train.engine import environment as run_environment

    return {**run_environment(device), "device_name": device_name(device), "peak_bf16_flops": peak_bf16_flops(device)}


@contextmanager
def saved_activation_bytes() -> Iterator[list[int]]:
    """Count the bytes of distinct tensor storages autograd saves for backward inside the block.

    On a CPU there is no allocator peak to read (torch allocates through malloc, invisible to tracemalloc),
    and what grows with sequence length in a training step is exactly this: the activations kept for the
    backward pass. The total is deterministic, so the CPU memory curve is not polluted by other processes.
    The result is in ``box[0]`` after the block.
    """
    seen: set[tuple[int, int]] = set()
    box = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in seen and storage.data_ptr() != 0:
            seen.add(key)
            box[0] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield box


def cuda_step_peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes allocated during ``fn()`` above what was resident before it (activations, gradients)."""
    sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


def cuda_total_peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes allocated during ``fn()`` in total (resident weights and optimizer state included)."""
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return int(torch.cuda.max_memory_allocated(device))
