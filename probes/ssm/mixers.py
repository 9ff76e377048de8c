"""Which modules of a model are state-space mixers, found by type, and which kernel packages are importable.

Mixers are recognised by their transformers class (or a subclass of one), never by reading their code: the
class names below are the public model classes of each family, stable across releases, whereas how a
mixer's `forward` reaches its scan changed between releases (a module-level call before transformers 5.25,
a kernelized function routed through `kernels` from 5.25 on). A module that looks like a selective-SSM
mixer (it has an `A_log` parameter) but is in neither table is reported as unrecognised, so a new family
is never run on a slow path silently.
"""

from __future__ import annotations

import functools
import importlib

from torch import nn

#: Mamba-1 mixers (selective scan `mamba_selective_scan`): our scans replace theirs.
MAMBA1_MIXERS = frozenset({"MambaMixer", "FalconMambaMixer", "JambaMambaMixer", "ZambaMambaMixer"})
#: Mamba-2 / SSD mixers: transformers' chunked PyTorch path (or mamba-ssm's kernels) runs them as they are.
MAMBA2_MIXERS = frozenset({
    "Mamba2Mixer", "Zamba2MambaMixer", "BambaMixer", "FalconH1Mixer", "NemotronHMamba2Mixer",
    "GraniteMoeHybridMambaLayer",
})


def _transformers_class(module: nn.Module, names: frozenset[str]) -> bool:
    return any(
        cls.__name__ in names and cls.__module__.startswith("transformers.") for cls in type(module).__mro__
    )


def mamba1_mixers(model: nn.Module) -> list[nn.Module]:
    """The Mamba-1 mixers of `model` (instances of transformers' mixer classes or their subclasses)."""
    return [m for m in model.modules() if _transformers_class(m, MAMBA1_MIXERS)]


def mamba2_mixers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if _transformers_class(m, MAMBA2_MIXERS)]


def unrecognised_mixers(model: nn.Module) -> list[str]:
    """Class names of modules that own a selective-SSM `A_log` parameter but are in neither table."""
    known = MAMBA1_MIXERS | MAMBA2_MIXERS
    return sorted({
        type(m).__name__ for m in model.modules()
        if isinstance(getattr(m, "A_log", None), nn.Parameter) and not _transformers_class(m, known)
    })


@functools.cache
def mamba_ssm_importable() -> bool:
    """Whether mamba-ssm's selective-scan kernel imports (transformers then prefers it for CUDA inputs)."""
    try:
        module = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    except Exception:  # absent, or built against another torch/CUDA: transformers falls back the same way
        return False
    return callable(getattr(module, "selective_scan_fn", None))


@functools.cache
def mambapy_importable() -> bool:
    """Whether the `mambapy` parallel scan imports (transformers' `use_mambapy=True` path)."""
    try:
        module = importlib.import_module("mambapy.pscan")
    except Exception:
        return False
    return callable(getattr(module, "pscan", None))
