"""Choose which selective-scan implementation a transformers SSM model runs, per model instance.

transformers' Mamba-1 mixers (`MambaMixer`, `FalconMambaMixer`, `JambaMambaMixer`, `ZambaMambaMixer`, found
by type in `probes.ssm.mixers`) run their scan through a kernel function, `mamba_selective_scan`: mamba-ssm's
CUDA kernel when that package imports, otherwise a per-time-step Python loop (about 100x slower than a
Transformer on a CPU). `enable_fast_path(model)` replaces that function, and the causal convolution, for each
mixer of `model` only, through the extension point the installed transformers offers:

* **kernelized functions** (transformers with the `kernels` package: every release that declares
  `use_kernelized_func` on its mixers and has `kernels` installed, which 5.25 requires). Each mixer instance
  owns private wrappers of its kernel functions (`mixer._kernel_funcs[name]`), and the module-level call is
  routed to the calling mixer's wrapper. We give those private wrappers a new `forward`, exactly what
  `kernels.kernelize` does when it installs a hub kernel.
* **module functions** (transformers without `kernels`): the mixer calls the module-level function by name.
  The mixer gets an instance-level `forward`: transformers' own forward code re-bound to a private copy of
  its module namespace in which the kernel names are ours (and the module's other plain functions are
  re-bound to that copy too, so nested helpers see the same names).

Either way the model's own code runs unchanged (cache handling, masks, norms, dtype casts), other model
instances are unaffected, and `enable_fast_path(model, enabled=False)` restores the original. If neither
extension point is there (a transformers release we have not seen), nothing is replaced and one warning line
names the transformers version and the path that will run (`mamba_path_note`, recorded in `env.json`).

Which scan a hooked mixer runs is decided per call from the input's device: CPU tensors go to the chunked
PyTorch scan and the shift-and-add convolution; CUDA tensors go to mamba-ssm's kernels when they import, else
to the path `probes.ssm.selfcheck.select_path` chose for that device (our Triton scan when it passes its
self-check, else a fallback) with cuDNN's depthwise convolution. `enable_fast_path(model, scan=...)` forces
one scan (tests run the Triton kernels on CPU through Triton's interpreter that way).

Path names (recorded in a run's `env.json` as `mamba_path`):
`"mamba-ssm"` (CUDA kernels), `"probes-triton"` (our Triton scan, CUDA without mamba-ssm),
`"probes-fast-scan"` (our chunked PyTorch scan), `"transformers-mambapy"` (transformers' `use_mambapy`
parallel scan), `"transformers-sequential"` (transformers' reference loop), `"transformers-torch-ssd"`
(Mamba-2's chunked PyTorch path, left as is).
"""

from __future__ import annotations

import functools
import sys
import types
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import mixers as found
from . import triton_scan
from ._kwargs import reject_packed_sequences
from .causal_conv import causal_conv1d
from .cudnn_conv import causal_conv1d_cudnn
from .selective_scan import selective_scan

MAMBA_SSM = "mamba-ssm"
TRITON_SCAN = "probes-triton"
FAST_SCAN = "probes-fast-scan"
MAMBAPY = "transformers-mambapy"
SEQUENTIAL = "transformers-sequential"
TORCH_SSD = "transformers-torch-ssd"
#: Scans our hooks can run (and `enable_fast_path(scan=...)` can force).
HOOKED_SCANS = (TRITON_SCAN, FAST_SCAN)

_SCAN = "mamba_selective_scan"  # transformers' name for a Mamba-1 mixer's scan function
_CONV = "causal_conv1d_fn"
_FUSED = "mamba_inner_fn"  # the fused training kernel (mamba-ssm only); disabled while our scan runs
_HOOK = "_probes_fast_path"  # mixer attribute: the `_Hook` record of what we replaced
_NOTE = "_probes_mamba_note"  # model attribute: why the recorded path is what it is, or None

#: How many times each scan implementation ran through a hooked mixer, process-wide (for tests and logs).
SCAN_CALLS: Counter[str] = Counter()


@dataclass
class _Hook:
    mechanism: str  # "kernelized" or "module-functions"
    scan: str | None  # the forced scan, or None (chosen per call)
    undo: list[tuple[Any, str, Any]] = field(default_factory=list)  # (object, __dict__ key, previous or _UNSET)


_UNSET = object()


def transformers_version() -> str:
    import transformers

    return transformers.__version__


def enable_fast_path(model: nn.Module, *, enabled: bool = True, scan: str | None = None) -> str | None:
    """Hook (or, with `enabled=False`, unhook) every Mamba-1 mixer of `model`; return `detect_mamba_path`.

    `scan`: None picks per call (see the module docstring); `TRITON_SCAN` or `FAST_SCAN` forces one, even
    where mamba-ssm's kernels would run (Triton on CPU tensors needs `TRITON_INTERPRET=1`).
    Idempotent (re-hooking with another `scan` replaces the choice). Models without Mamba-1 mixers are left
    untouched (Mamba-2 keeps transformers' path). On a CUDA model with `scan=None`, the device's path is
    chosen (and self-checked) now, so a fallback is announced before training starts.
    """
    if scan not in (None, *HOOKED_SCANS):
        raise ValueError(f"scan must be None, {TRITON_SCAN!r} or {FAST_SCAN!r}, got {scan!r}")
    notes: list[str] = []
    mamba1 = found.mamba1_mixers(model)
    choice_path = None
    if enabled and scan is None and mamba1:
        from .selfcheck import select_path

        choice = select_path(_model_device(model))  # checks the device's path now, before any training
        choice_path = choice.path
        if choice.note:
            notes.append(choice.note)
    failed: set[str] = set()
    for mixer in mamba1:
        _uninstall(mixer)
        _set_mambapy(mixer, enabled and choice_path == MAMBAPY)
        if enabled and choice_path not in (MAMBAPY, SEQUENTIAL):  # those two are transformers' own paths
            why_not = _install(mixer, scan)
            if why_not:
                failed.add(why_not)
    if failed:
        notes.append(
            f"transformers {transformers_version()}: cannot install the fast Mamba scan "
            f"({'; '.join(sorted(failed))}); transformers' own path runs"
        )
    unknown = found.unrecognised_mixers(model)
    if unknown:
        notes.append(f"unrecognised SSM mixer(s) {', '.join(unknown)}: transformers' own path runs")
    model.__dict__[_NOTE] = "; ".join(notes) or None
    path = detect_mamba_path(model)
    for note in notes:
        warn_once(f"warning: {note} (mamba_path {path})")
    return path


def mamba_path_note(model: nn.Module) -> str | None:
    """Why `model` runs the path it runs, when that is not the expected fast one (for `env.json`)."""
    return model.__dict__.get(_NOTE)


def detect_mamba_path(model: nn.Module) -> str | None:
    """The scan path `model` runs on its current device, or None if it has no SSM layers."""
    device = _model_device(model)
    mamba1 = found.mamba1_mixers(model)
    if mamba1:
        hook: _Hook | None = mamba1[0].__dict__.get(_HOOK)
        if hook is not None and hook.scan is not None:  # a forced scan wins over mamba-ssm (used to compare)
            return hook.scan
        if hook is None and device.type == "cuda" and found.mamba_ssm_importable():
            return MAMBA_SSM
        if getattr(mamba1[0], "use_mambapy", False) and found.mambapy_importable():
            return MAMBAPY
        if hook is None:
            return SEQUENTIAL
        return _choose_scan(None, device)
    if found.mamba2_mixers(model):
        if device.type == "cuda" and found.mamba_ssm_importable():
            return MAMBA_SSM
        return TORCH_SSD
    return None


def warn_once(message: str) -> None:
    """Print a one-line warning on stderr once per process."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(message, file=sys.stderr, flush=True)


_WARNED: set[str] = set()


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _choose_scan(forced: str | None, device: torch.device) -> str:
    """The scan a hooked mixer runs for inputs on `device`; MAMBA_SSM means: defer to transformers' kernels."""
    if forced is not None:
        return forced
    from .selfcheck import select_path

    path = select_path(device).path
    return path if path in (*HOOKED_SCANS, MAMBA_SSM) else FAST_SCAN


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
    path: str,
    **kwargs: Any,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """`mamba_selective_scan`'s signature, served by the Triton scan or the chunked scan (`path`)."""
    reject_packed_sequences(kwargs)
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


def _replacements(scan: str | None, reference: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Our kernel functions for one mixer. Each defers to transformers' (`reference[name]`) when mamba-ssm's
    kernels should run (CUDA input, nothing forced): there transformers' own path is the fast one."""

    def defer(x: torch.Tensor) -> bool:
        return scan is None and x.is_cuda and _choose_scan(None, x.device) == MAMBA_SSM

    def scan_fn(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if defer(hidden_states):
            return reference[_SCAN](hidden_states, *args, **kwargs)
        path = _choose_scan(scan, hidden_states.device)
        return _fast_selective_scan(hidden_states, *args, path=path, **kwargs)

    def conv_fn(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if defer(hidden_states):
            return reference[_CONV](hidden_states, *args, **kwargs)
        return _causal_conv(hidden_states, *args, **kwargs)

    def fused_fn(projected: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        # None tells the mixer to take its unfused path, which calls the scan and convolution above.
        return reference[_FUSED](projected, *args, **kwargs) if defer(projected) else None

    return {_SCAN: scan_fn, _CONV: conv_fn, _FUSED: fused_fn}


def _install(mixer: nn.Module, scan: str | None) -> str | None:
    """Hook one mixer through the extension point its transformers offers; the reason it cannot be, or None."""
    owner = next((c for c in type(mixer).__mro__ if "forward" in c.__dict__), type(mixer))
    module = sys.modules.get(owner.__module__)
    if module is None or not callable(getattr(module, _SCAN, None)):
        return f"{type(mixer).__name__}'s module has no {_SCAN}"
    kernel_funcs = mixer.__dict__.get("_kernel_funcs")
    if isinstance(kernel_funcs, dict):  # kernelized: calls are routed to this mixer's private wrappers
        wrappers = {}  # the private wrapper of a kernel function has the module-level instance's own class
        for name in (_SCAN, _CONV, _FUSED):
            kind = type(getattr(module, name, None))
            match = [w for w in kernel_funcs.values() if type(w) is kind and isinstance(w, nn.Module)]
            if match:
                wrappers[name] = match[0]
        if _SCAN not in wrappers:
            return f"{type(mixer).__name__} has kernelized functions but no private wrapper of {_SCAN}"
        _install_kernelized(mixer, wrappers, scan)
        return None
    if isinstance(owner.forward, types.FunctionType):
        _install_module_functions(mixer, module, owner.forward, scan)
        return None
    return f"{type(mixer).__name__} exposes neither kernelized functions nor a plain forward"


def _install_kernelized(mixer: nn.Module, wrappers: dict[str, nn.Module], scan: str | None) -> None:
    """Give this mixer's private kernel wrappers our `forward` (what `kernels.kernelize` does for hub kernels)."""
    hook = _Hook("kernelized", scan)
    # transformers' own behaviour, for deferring: the wrapper class's forward (it calls transformers' function)
    reference = {name: functools.partial(type(w).forward, w) for name, w in wrappers.items()}
    ours = _replacements(scan, reference)
    for name, wrapper in wrappers.items():
        impl = ours[name]

        @torch.compiler.disable  # a hand-written kernel; the rest of the model still compiles
        def forward(self: nn.Module, *args: Any, _impl: Callable[..., Any] = impl, **kwargs: Any) -> Any:
            return _impl(*args, **kwargs)

        hook.undo.append((wrapper, "forward", wrapper.__dict__.get("forward", _UNSET)))
        wrapper.forward = types.MethodType(forward, wrapper)  # a bound method, as kernels expects
    mixer.__dict__[_HOOK] = hook


def _install_module_functions(
    mixer: nn.Module, module: types.ModuleType, original: Callable[..., Any], scan: str | None
) -> None:
    """An instance-level `forward`: the class's forward re-bound to a private copy of its module namespace."""
    reference = {name: getattr(module, name) for name in (_SCAN, _CONV, _FUSED) if callable(getattr(module, name, None))}
    overrides: dict[str, Any] = {name: fn for name, fn in _replacements(scan, reference).items() if name in reference}
    namespace = _private_namespace(module, overrides)
    fast = _rebind(original, namespace, module.__dict__)

    @torch.compiler.disable  # dynamo cannot trace into a function whose globals are a private copy
    def forward(self: nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        deferring = scan is None and hidden_states.is_cuda and _choose_scan(None, hidden_states.device) == MAMBA_SSM
        return (original if deferring else fast)(self, hidden_states, *args, **kwargs)

    bound = types.MethodType(forward, mixer)
    hook = _Hook("module-functions", scan)
    if hasattr(mixer, "_hf_hook") and hasattr(mixer, "_old_forward"):  # accelerate wraps `forward` itself
        hook.undo.append((mixer, "_old_forward", mixer.__dict__.get("_old_forward", _UNSET)))
        mixer._old_forward = bound
    else:
        hook.undo.append((mixer, "forward", mixer.__dict__.get("forward", _UNSET)))
        mixer.forward = bound
    mixer.__dict__[_HOOK] = hook


def _uninstall(mixer: nn.Module) -> None:
    hook: _Hook | None = mixer.__dict__.pop(_HOOK, None)
    if hook is None:
        return
    for obj, attr, previous in reversed(hook.undo):
        if previous is _UNSET:
            obj.__dict__.pop(attr, None)
        else:
            setattr(obj, attr, previous)


def _set_mambapy(mixer: nn.Module, on: bool) -> None:
    if hasattr(mixer, "use_mambapy"):
        mixer.use_mambapy = on and found.mambapy_importable()


def _private_namespace(module: types.ModuleType, overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of `module`'s globals with `overrides`, in which the module's own plain functions are re-bound
    to the copy (so a helper such as a scan wrapper that calls `mamba_selective_scan` sees ours too)."""
    namespace = {**module.__dict__, **overrides}
    for name, value in module.__dict__.items():
        if name not in overrides and isinstance(value, types.FunctionType) and value.__globals__ is module.__dict__:
            namespace[name] = _rebind(value, namespace, module.__dict__)
    return namespace


def _rebind(fn: Any, namespace: dict[str, Any], home: dict[str, Any]) -> Any:
    """A copy of `fn` whose globals are `namespace`, if `fn` was defined in the module whose globals are
    `home`. Follows `__wrapped__` so that decorators from elsewhere (transformers wraps mixer forwards with
    hook helpers) are kept and only the functions of the mixer's module see the new names."""
    if not isinstance(fn, types.FunctionType):
        return fn
    inner = getattr(fn, "__wrapped__", None)
    new_inner = _rebind(inner, namespace, home) if inner is not None else None
    own = fn.__globals__ is home
    if not own and new_inner is inner:
        return fn
    closure = fn.__closure__
    if closure is not None and new_inner is not inner:
        closure = tuple(types.CellType(new_inner) if _cell_is(c, inner) else c for c in closure)
    copy = types.FunctionType(fn.__code__, namespace if own else fn.__globals__, fn.__name__, fn.__defaults__, closure)
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
