"""What this machine will run: the report `probes doctor` prints, and what a user pastes into a bug report.

Versions (python, torch and its CUDA, Triton, transformers, accelerate, kernels, mamba-ssm), the device,
every Mamba-1 scan path with whether it is available and passes its self-check here
(`probes.ssm.selfcheck`), the path a run would use, and whether the fast paths the engine takes on a GPU
(bf16 autocast, fused AdamW, scaled-dot-product attention kernels) actually run on this device. Every
check runs a few tiny operations; nothing is downloaded.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

import torch

PACKAGES = ("torch", "triton", "transformers", "accelerate", "kernels", "mamba-ssm", "causal-conv1d", "mambapy")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_record(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"device": str(device), "name": platform.processor() or platform.machine(), "threads":
                torch.get_num_threads(), "cpu_count": os.cpu_count()}
    props = torch.cuda.get_device_properties(device)
    return {"device": str(device), "name": props.name, "capability": f"sm_{props.major}{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count,
            "cuda_runtime": torch.version.cuda, "device_count": torch.cuda.device_count()}


class _NotHere(Exception):
    """A fast path that does not apply to this device (its message is the whole note)."""


def _try(fn: Any) -> tuple[bool, str | None]:
    try:
        fn()
    except _NotHere as exc:
        return False, str(exc)
    except Exception as exc:  # each fast path is a yes/no with the reason: a failure is the answer
        return False, f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
    return True, None


def fast_paths(device: torch.device) -> dict[str, dict[str, Any]]:
    """bf16 autocast, fused AdamW and SDPA on `device`, each run once on tiny tensors."""
    cuda = device.type == "cuda"

    def bf16() -> None:
        if cuda and not torch.cuda.is_bf16_supported():
            raise RuntimeError("the device does not support bf16")
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = torch.ones(8, 8, device=device) @ torch.ones(8, 8, device=device)
        if out.dtype != torch.bfloat16:
            raise RuntimeError(f"autocast produced {out.dtype}")

    def fused_adamw() -> None:
        if not cuda:
            raise _NotHere("CUDA only (the engine uses plain AdamW on a CPU)")
        p = torch.nn.Parameter(torch.ones(4, device=device))
        opt = torch.optim.AdamW([p], lr=0.1, fused=True)
        p.grad = torch.ones_like(p)
        opt.step()

    def sdpa(backend: Any) -> Any:
        def run() -> None:
            if not cuda:
                raise _NotHere("CUDA only (a CPU runs SDPA math)")
            from torch.nn.attention import sdpa_kernel

            q = torch.randn(1, 2, 16, 64, device=device, dtype=torch.bfloat16)
            with sdpa_kernel([backend]):
                torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        return run

    checks: dict[str, Any] = {"bf16 autocast": bf16, "fused AdamW": fused_adamw}
    from torch.nn.attention import SDPBackend

    checks["SDPA math"] = lambda: torch.nn.functional.scaled_dot_product_attention(
        *(torch.randn(1, 2, 4, 8, device=device),) * 3, is_causal=True)
    checks["SDPA flash"] = sdpa(SDPBackend.FLASH_ATTENTION)
    checks["SDPA memory-efficient"] = sdpa(SDPBackend.EFFICIENT_ATTENTION)
    checks["SDPA cuDNN"] = sdpa(SDPBackend.CUDNN_ATTENTION)
    out = {}
    for name, fn in checks.items():
        ok, why = _try(fn)
        out[name] = {"ok": ok, "note": why}
    return out


def mamba_paths(device: torch.device) -> dict[str, Any]:
    """Every Mamba-1 path: available here, passes its self-check, and the one a run would use."""
    from probes.ssm import selfcheck

    rows = []
    for path in selfcheck.SELECTABLE:
        why = selfcheck.unavailable(path, device)
        row: dict[str, Any] = {"path": path, "available": why is None, "note": why}
        if why is None and path in selfcheck._RUNNERS and (device.type == "cuda" or path != selfcheck.TRITON_SCAN
                                                          or selfcheck.triton_scan.interpreting()):
            check = selfcheck.check_path(path, device)
            row.update(self_check="passed" if check.ok else "FAILED", check_seconds=round(check.seconds, 3),
                       note=check.reason)
        rows.append(row)
    try:
        choice = selfcheck.select_path(device)
        chosen: dict[str, Any] = {"path": choice.path, "note": choice.note, "forced": selfcheck.forced_path()}
    except Exception as exc:  # a forced path that fails: the doctor reports it rather than stopping
        chosen = {"path": None, "note": str(exc), "forced": os.environ.get(selfcheck.ENV_VAR)}
    return {"rows": rows, "run_would_use": chosen}


def diagnose(device: torch.device) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in PACKAGES},
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "transformers_mamba_hook": "kernelized functions" if _kernelized() else "module functions",
        "device": device_record(device),
        "mamba": mamba_paths(device),
        "fast_paths": fast_paths(device),
    }


def _kernelized() -> bool:
    """Whether this transformers routes Mamba kernels through `kernels`' kernelized functions."""
    from transformers.models.mamba import modeling_mamba

    return isinstance(getattr(modeling_mamba, "mamba_selective_scan", None), torch.nn.Module)
