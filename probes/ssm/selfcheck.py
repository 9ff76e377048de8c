"""Which Mamba-1 scan a device runs, after checking it there: a GPU path must prove itself before a run uses it.

Our Triton scan is tested through Triton's interpreter in CI, and the interpreter forgives what real hardware
does not (shapes, alignment, register pressure, older architectures). So before a process uses a compiled
scan on a device, `select_path` runs it once on small inputs chosen to hit the edge cases (a partial block of
channels, a length that is not a multiple of the time chunk, one step) and compares outputs, final states and
the gradients of every input with our chunked PyTorch scan (the reference: the exact sequential recurrence,
tested against transformers' loop). A path that fails to compile or run, or disagrees, is skipped: the
fastest path that passes is used, with one warning line naming the reason, and both are recorded in the
run's `env.json` (`mamba_path`, `mamba_path_note`). Results are cached per process and device.

A path can be forced with `probes --mamba-path NAME …` or the environment variable `PROBES_MAMBA_PATH`
(inherited by launcher workers and `accelerate` processes). A forced path that is unavailable or fails its
check is an error (`UserError`), never a silent fallback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from probes.errors import UserError

from . import mixers as found
from . import triton_scan
from .patch import FAST_SCAN, MAMBA_SSM, MAMBAPY, SEQUENTIAL, TRITON_SCAN
from .selective_scan import selective_scan

ENV_VAR = "PROBES_MAMBA_PATH"
#: Paths a user can force, fastest first on CUDA (the automatic order skips the unavailable ones).
SELECTABLE = (MAMBA_SSM, TRITON_SCAN, MAMBAPY, FAST_SCAN, SEQUENTIAL)
#: (batch, channels, state size, length, block_d, chunk): a partial channel block (12 = 8 + 4) with a length
#: that is not a multiple of the chunk (11 = 8 + 3) at Mamba's state size 16, and a single step with the
#: automatic launch configuration. Small, so the check costs little even through Triton's interpreter.
CHECK_SHAPES = ((2, 12, 16, 11, 8, 8), (1, 4, 4, 1, None, None))
RTOL, ATOL = 1e-3, 1e-4


@dataclass(frozen=True)
class PathCheck:
    path: str
    ok: bool
    reason: str | None  # why it failed (one line), or None
    seconds: float


@dataclass(frozen=True)
class PathChoice:
    path: str
    note: str | None  # why this is not the first choice (a fallback), or None
    checks: tuple[PathCheck, ...]


_CHECKS: dict[tuple[str, str], PathCheck] = {}
_CHOICES: dict[str, PathChoice] = {}


def forced_path() -> str | None:
    """The path `PROBES_MAMBA_PATH` forces, or None; an unknown name is a `UserError`."""
    name = os.environ.get(ENV_VAR, "").strip()
    if not name:
        return None
    if name not in SELECTABLE:
        raise UserError(f"{ENV_VAR}={name!r} is not a Mamba path; choose from {', '.join(SELECTABLE)}")
    return name


def unavailable(path: str, device: torch.device) -> str | None:
    """Why `path` cannot run on `device` (one line), or None if it can be tried there."""
    cuda = device.type == "cuda"
    if path == MAMBA_SSM:
        return None if cuda and found.mamba_ssm_importable() else (
            "needs CUDA" if not cuda else "mamba-ssm is not installed")
    if path == TRITON_SCAN:
        if not triton_scan.triton_available():
            return "triton is not installed"
        return None if cuda or triton_scan.interpreting() else (
            "needs CUDA (on a CPU only Triton's interpreter, TRITON_INTERPRET=1, runs it)")
    if path == MAMBAPY:
        return None if found.mambapy_importable() else "mambapy is not installed"
    return None


def automatic_candidates(device: torch.device) -> list[str]:
    """The paths tried in order when nothing is forced: the fastest that is available and passes."""
    if device.type != "cuda":
        return [FAST_SCAN]
    return [p for p in (MAMBA_SSM, TRITON_SCAN, MAMBAPY, FAST_SCAN) if unavailable(p, device) is None]


def select_path(device: torch.device, candidates: Sequence[str] | None = None) -> PathChoice:
    """The Mamba-1 path for `device`, checked there; cached per process and device (see the module doc)."""
    forced = forced_path()
    key = f"{device}|{forced}|{','.join(candidates or ())}"
    if key in _CHOICES:
        return _CHOICES[key]
    if forced is not None:
        why = unavailable(forced, device)
        if why:
            raise UserError(f"{ENV_VAR} / --mamba-path {forced}: unavailable on {device} ({why})")
        result = check_path(forced, device)
        if not result.ok:
            raise UserError(f"--mamba-path {forced} failed its self-check on {device_label(device)}: {result.reason}")
        choice = PathChoice(forced, None, (result,))
    else:
        order = list(candidates) if candidates is not None else automatic_candidates(device)
        checks: list[PathCheck] = []
        for path in order:
            checks.append(check_path(path, device))
            if checks[-1].ok:
                break
        else:  # nothing passed: the chunked PyTorch scan is the reference and always runs
            checks.append(PathCheck(FAST_SCAN, True, None, 0.0))
        failed = [c for c in checks if not c.ok]
        note = None
        if failed:
            reasons = "; ".join(f"{c.path}: {c.reason}" for c in failed)
            note = f"self-check failed on {device_label(device)} ({reasons}); using {checks[-1].path}"
        choice = PathChoice(checks[-1].path, note, tuple(checks))
    _CHOICES[key] = choice
    return choice


def check_path(path: str, device: torch.device) -> PathCheck:
    """Run `path` once on the check shapes on `device` and compare it with the chunked scan (cached)."""
    key = (path, str(device))
    if key not in _CHECKS:
        runner = _RUNNERS.get(path)
        start = time.perf_counter()
        if runner is None:  # the reference itself, or transformers' own loop / mamba-ssm's kernels
            result = PathCheck(path, True, None, 0.0)
        else:
            try:
                reason = _compare(runner, device)
            except Exception as exc:  # a compile or launch failure is a result here, not a crash
                reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            result = PathCheck(path, reason is None, reason, time.perf_counter() - start)
        _CHECKS[key] = result
    return _CHECKS[key]


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (sm_{major}{minor})"
    return str(device)


def clear_cache() -> None:
    """Forget checks and choices (tests; a process whose environment variable changed)."""
    _CHECKS.clear()
    _CHOICES.clear()


Scan = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _triton(u, delta, A, B, C, D, z, bias, block_d, chunk):  # noqa: ANN001, ANN202
    return triton_scan.selective_scan(u, delta, A, B, C, D, z, bias, True, True, block_d=block_d, chunk=chunk)


def _mambapy(u, delta, A, B, C, D, z, bias, block_d, chunk):  # noqa: ANN001, ANN202
    from transformers.models.mamba import modeling_mamba

    y = modeling_mamba.mamba_selective_scan(u, delta, A, B, C, D, z, bias, True, False, use_mambapy=True)
    return y, None


_RUNNERS: dict[str, Scan] = {TRITON_SCAN: _triton, MAMBAPY: _mambapy}


def _inputs(shape: tuple, device: torch.device, seed: int) -> list[torch.Tensor]:
    batch, dim, n, length = shape[:4]
    g = torch.Generator().manual_seed(seed)

    def r(*s: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*s, generator=g) * scale).to(device).requires_grad_(True)

    A = (-torch.rand(dim, n, generator=g) - 0.5).to(device).requires_grad_(True)
    return [r(batch, dim, length), r(batch, dim, length, scale=0.5), A, r(batch, n, length), r(batch, n, length),
            r(dim), r(batch, dim, length), r(dim, scale=0.1)]


def _compare(runner: Scan, device: torch.device) -> str | None:
    """None if `runner` matches the chunked scan on every check shape (values and gradients), else why not."""
    for index, shape in enumerate(CHECK_SHAPES):
        block_d, chunk = shape[4:]
        ours = _inputs(shape, device, index)
        ref = [t.detach().clone().requires_grad_(True) for t in ours]
        y, last = runner(*ours, block_d, chunk)
        y_ref, last_ref = selective_scan(*ref[:5], ref[5], ref[6], ref[7], True, True)
        weight = torch.linspace(-1.0, 1.0, y.numel(), device=device).reshape(y.shape)
        (y * weight).sum().backward()
        (y_ref * weight).sum().backward()
        pairs = [("output", y, y_ref)] + ([("last state", last, last_ref)] if last is not None else [])
        names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
        pairs += [(f"grad {n}", a.grad, b.grad) for n, a, b in zip(names, ours, ref, strict=True)]
        for name, got, want in pairs:
            if got is None or not torch.isfinite(got).all():
                return f"{name} is {'missing' if got is None else 'not finite'} at shape {shape[:4]}"
            err = (got.float() - want.float()).abs().max().item()
            tol = ATOL + RTOL * want.float().abs().max().item()
            if err > tol:
                return f"{name} differs by {err:.2e} (> {tol:.1e}) at shape {shape[:4]}"
    return None
