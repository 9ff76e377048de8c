"""Choose which selective-scan implementation a transformers SSM model runs, per model instance.

transformers' Mamba-1 style mixers (`MambaMixer`, `FalconMambaMixer`, `JambaMambaMixer`, `ZambaMambaMixer`)
call the module-level function `mamba_selective_scan`, which is mamba-ssm's CUDA kernel when that package
imports and otherwise a per-time-step Python loop (about 100x slower than a Transformer on a CPU).

`enable_fast_path(model)` gives each such mixer an instance-level `forward`: transformers' own forward code,
re-bound to a copy of its module namespace in which `mamba_selective_scan` is `probes.ssm.selective_scan`,
`causal_conv1d_fn` is `probes.ssm.causal_conv.causal_conv1d` and the other kernel hooks are their PyTorch
fallbacks. So the model's own code runs unchanged (cache handling, masks, norms, dtype casts); nothing in
transformers is mutated, other model instances are unaffected and `enable_fast_path(model, enabled=False)`
restores the original. At call time the hook still defers to
transformers when the input is on CUDA and mamba-ssm's kernels are importable.

Which scan a hooked mixer runs is decided per call from the input's device: CUDA tensors go to the Triton
kernels (`probes.ssm.triton_scan`, no compiled extension needed) and the causal convolution to cuDNN
(`probes.ssm.cudnn_conv`); CPU tensors go to the chunked PyTorch scan and the shift-and-add convolution.
`enable_fast_path(model, scan=...)` can force one scan (tests run the Triton kernels on CPU through Triton's
interpreter that way).

Path names (recorded in a run's `env.json` as `mamba_path`):
`"mamba-ssm"` (CUDA kernels), `"probes-triton"` (our Triton scan, CUDA without mamba-ssm),
`"probes-fast-scan"` (our chunked PyTorch scan, the CPU path), `"transformers-sequential"` (reference loop, only
when the fast path is disabled), `"transformers-torch-ssd"` (Mamba-2's chunked PyTorch path, left as is).
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from . import triton_scan
from ._kwargs import reject_packed_sequences
from .causal_conv import causal_conv1d
from .cudnn_conv import causal_conv1d_cudnn
from .selective_scan import selective_scan

MAMBA_SSM = "mamba-ssm"
TRITON_SCAN = "probes-triton"
FAST_SCAN = "probes-fast-scan"
SEQUENTIAL = "transformers-sequential"
TORCH_SSD = "transformers-torch-ssd"

_SCAN = "mamba_selective_scan"  # the global a Mamba-1 mixer's forward calls
_MAMBA2_SCAN = "mamba2_chunk_scan"  # the global a Mamba-2 mixer's forward calls
# Other kernel hooks the mixer forward calls: replaced by their PyTorch fallbacks (mamba-ssm's are CUDA-only).
_KERNEL_HOOKS = ("mamba_inner_fn", "causal_conv1d_update", "mamba_selective_state_update")
_ORIGINAL = "_probes_original_forward"  # instance attribute: what `forward` was before we hooked it
_FORCED = "_probes_forced_scan"  # instance attribute: the scan `enable_fast_path(scan=...)` asked for, or None

#: How many times each scan implementation ran through a hooked mixer, process-wide (for tests and logs).
SCAN_CALLS: Counter[str] = Counter()


def enable_fast_path(model: nn.Module, *, enabled: bool = True, scan: str | None = None) -> str | None:
    """Hook (or, with `enabled=False`, unhook) every Mamba-1 mixer of `model`; return `detect_mamba_path`.

    `scan`: None picks per call (`TRITON_SCAN` for CUDA inputs when triton imports, else `FAST_SCAN`);
    `TRITON_SCAN` or `FAST_SCAN` forces one, even where mamba-ssm's kernels would run (Triton on CPU tensors
    needs `TRITON_INTERPRET=1`).
    Idempotent (re-hooking with another `scan` replaces the choice). Models without Mamba-1 mixers are left
    untouched (Mamba-2 keeps transformers' path).
    """
    if scan not in (None, TRITON_SCAN, FAST_SCAN):
        raise ValueError(f"scan must be None, {TRITON_SCAN!r} or {FAST_SCAN!r}, got {scan!r}")
    for mixer in _mamba1_mixers(model):
        if enabled:
            if mixer.__dict__.get(_FORCED, scan) != scan:
                _uninstall(mixer)
            _install(mixer, scan)
        else:
            _uninstall(mixer)
    return detect_mamba_path(model)


def detect_mamba_path(model: nn.Module) -> str | None:
    """The scan path `model` runs on its current device, or None if it has no SSM layers."""
    device = _model_device(model)
    mamba1 = _mamba1_mixers(model)
    if mamba1:
        hooked = all(_ORIGINAL in m.__dict__ for m in mamba1)
        forced = mamba1[0].__dict__.get(_FORCED) if hooked else None
        if forced is not None:  # a forced scan wins over mamba-ssm's kernels (used to compare paths)
            return forced
        if device.type == "cuda" and _kernel_importable(mamba1[0], _SCAN):
            return MAMBA_SSM
        return _choose_scan(None, device.type == "cuda") if hooked else SEQUENTIAL
    mamba2 = [m for m in model.modules() if _calls_global(type(m), _MAMBA2_SCAN)]
    if mamba2:
        if device.type == "cuda" and _kernel_importable(mamba2[0], _MAMBA2_SCAN):
            return MAMBA_SSM
        return TORCH_SSD
    return None


def _mamba1_mixers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if _calls_global(type(m), _SCAN)]


@functools.cache
def _calls_global(cls: type, name: str) -> bool:
    """Whether `cls.forward` (under its decorators) calls the module-level function `name` of its module."""
    module = sys.modules.get(cls.__module__)
    forward = inspect.unwrap(getattr(cls, "forward", None) or (lambda: None))
    code = getattr(forward, "__code__", None)
    return (
        module is not None
        and callable(getattr(module, name, None))
        and code is not None
        and name in code.co_names
    )


def _kernel_importable(mixer: nn.Module, name: str) -> bool:
    """Whether transformers resolved `name` to the mamba-ssm package (its fallback decorator records it)."""
    wrapper = getattr(sys.modules[type(mixer).__module__], name)
    try:
        return bool(inspect.getclosurevars(wrapper).nonlocals.get("is_new_implementation", False))
    except TypeError:  # not a plain function: transformers changed its decorator; assume no kernel
        return False


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _choose_scan(forced: str | None, on_cuda: bool) -> str:
    if forced is not None:
        return forced
    return TRITON_SCAN if on_cuda and triton_scan.triton_available() else FAST_SCAN


def _fast_selective_scan(
    hidden_states: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    use_mambapy: bool = False,  # transformers' own alternatives, meaningless here
    use_associative_scan: bool = False,
    *,
    scan: str | None = None,
    **kwargs: Any,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """`mamba_selective_scan`'s signature, served by the Triton scan (CUDA) or the chunked scan (CPU)."""
    reject_packed_sequences(kwargs)
    path = _choose_scan(scan, hidden_states.is_cuda)
    SCAN_CALLS[path] += 1
    impl = triton_scan.selective_scan if path == TRITON_SCAN else selective_scan
    return impl(hidden_states, dt, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def _causal_conv(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """`causal_conv1d_fn`'s signature: cuDNN's depthwise convolution on CUDA, shift-and-add on CPU."""
    impl = causal_conv1d_cudnn if hidden_states.is_cuda else causal_conv1d
    return impl(hidden_states, weight, bias, activation, **kwargs)


def _install(mixer: nn.Module, scan: str | None = None) -> None:
    if _ORIGINAL in mixer.__dict__:
        return
    cls = type(mixer)
    module = sys.modules[cls.__module__]
    overrides: dict[str, Callable[..., Any]] = {
        _SCAN: functools.partial(_fast_selective_scan, scan=scan),
        "causal_conv1d_fn": _causal_conv,
    }
    for name in _KERNEL_HOOKS:
        if callable(getattr(module, name, None)):
            overrides[name] = inspect.unwrap(getattr(module, name))
    fast = _rebind(cls.forward, overrides)
    reference = cls.forward
    kernels = _kernel_importable(mixer, _SCAN)

    # Kept out of torch.compile graphs: dynamo stores its compiled pieces in the globals of the function it
    # traces, and the re-bound forward's globals are a private copy, so tracing into it fails (NameError on
    # `__compiled_fn_*`). The scan is a hand-written kernel anyway; the rest of the model still compiles.
    @torch.compiler.disable
    def forward(self: nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        impl = reference if kernels and scan is None and hidden_states.is_cuda else fast
        return impl(self, hidden_states, *args, **kwargs)

    bound = types.MethodType(forward, mixer)
    if hasattr(mixer, "_hf_hook") and hasattr(mixer, "_old_forward"):  # accelerate wraps `forward` itself
        mixer.__dict__[_ORIGINAL] = ("_old_forward", mixer._old_forward)
        mixer._old_forward = bound
    else:
        mixer.__dict__[_ORIGINAL] = ("forward", mixer.__dict__.get("forward"))
        mixer.forward = bound
    mixer.__dict__[_FORCED] = scan


def _uninstall(mixer: nn.Module) -> None:
    saved = mixer.__dict__.pop(_ORIGINAL, None)
    mixer.__dict__.pop(_FORCED, None)
    if saved is None:
        return
    attr, previous = saved
    if previous is None:
        mixer.__dict__.pop(attr, None)
    else:
        setattr(mixer, attr, previous)


def _rebind(fn: Callable[..., Any], overrides: dict[str, Any]) -> Callable[..., Any]:
    """A copy of `fn` whose global names in `overrides` resolve to the given objects.

    Follows `__wrapped__` so that decorators (transformers wraps mixer forwards with accelerate hook
    helpers) are kept and only the innermost function sees the new names. Functions that use none of the
    names are returned as they are.
    """
    if not isinstance(fn, types.FunctionType):
        return fn
    inner = getattr(fn, "__wrapped__", None)
    new_inner = _rebind(inner, overrides) if inner is not None else None
    used = {k: v for k, v in overrides.items() if k in fn.__code__.co_names}
    if not used and new_inner is inner:
        return fn
    namespace = {**fn.__globals__, **used} if used else fn.__globals__
    closure = fn.__closure__
    if closure is not None and new_inner is not inner:
        closure = tuple(types.CellType(new_inner) if _cell_is(c, inner) else c for c in closure)
    copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, closure)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__dict__.update(fn.__dict__)
    copy.__qualname__ = fn.__qualname__
    if new_inner is not None:
        copy.__wrapped__ = new_inner
    return copy


def _cell_is(cell: types.CellType, obj: object) -> bool:
    try:
        return cell.cell_contents is obj
    except ValueError:  # empty cell
        return False
