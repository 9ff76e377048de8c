"""The one model-family table: which family label is a Transformer, a state-space model or a hybrid.

A run records its backbone's family label (``config.json`` ``model.family``; ``probes.models.registry``
derives it from the transformers ``model_type``). Everything that groups runs by architecture (the report's
Mamba/Pythia ratios and paper expectations, the VLM gap report, the figures' panel order, the VLM decoder's
batching) asks this module, so a family added here is grouped the same way everywhere. Before this table
the sets were repeated with different members and, for instance, a Llama run silently dropped out of the
report's ratios.

Kinds (the paper compares Transformers with structured state space models, "Shaking Up VLMs" §1, §3):

- ``transformer``: attention only (GPT-NeoX/Pythia, Llama, GPT-2, ...);
- ``ssm``: state-space layers only (Mamba-1, Mamba-2, Falcon-Mamba);
- ``hybrid``: both (Jamba, Zamba, Falcon-H1, ...). A hybrid is an SSM-family model for the report's
  SSM / Transformer ratio (it has Mamba layers), but figures list it after the pure SSMs.

Pure Python, no torch or transformers: analysis and ``import probes`` read it without loading a model stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

Kind = Literal["transformer", "ssm", "hybrid"]
KINDS: tuple[Kind, ...] = ("transformer", "ssm", "hybrid")

FAMILIES: Mapping[str, Kind] = MappingProxyType(
    {
        # attention-only
        "gpt_neox": "transformer",
        "llama": "transformer",
        "gpt2": "transformer",
        "mistral": "transformer",
        "qwen2": "transformer",
        "qwen3": "transformer",
        "gemma": "transformer",
        "gemma2": "transformer",
        "phi": "transformer",
        "phi3": "transformer",
        "opt": "transformer",
        # state-space only
        "mamba": "ssm",
        "mamba2": "ssm",
        "falcon_mamba": "ssm",
        # both (labels as the registry records them: "hybrid", or a hybrid's own model_type)
        "hybrid": "hybrid",
        "jamba": "hybrid",
        "zamba": "hybrid",
        "zamba2": "hybrid",
        "falcon_h1": "hybrid",
        "bamba": "hybrid",
        "nemotron_h": "hybrid",
        "granitemoehybrid": "hybrid",
    }
)


def kind_of(family: str) -> Kind | None:
    """The family's kind, or None for a label this table does not know (it then joins no SSM/Transformer pair)."""
    return FAMILIES.get(family)


def families_of(*kinds: Kind) -> frozenset[str]:
    """Every family label of the given kinds, e.g. ``families_of("ssm", "hybrid")``."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kind(s) {sorted(unknown)}; expected {', '.join(KINDS)}")
    return frozenset(f for f, k in FAMILIES.items() if k in kinds)


def is_transformer(family: str) -> bool:
    """Attention only: the Transformer side of an SSM / Transformer comparison."""
    return kind_of(family) == "transformer"


def has_ssm_layers(family: str) -> bool:
    """A pure SSM or a hybrid: the SSM side of the report's ratio, and the backbones with a Mamba scan."""
    return kind_of(family) in ("ssm", "hybrid")


def kind_rank(family: str) -> int:
    """0 transformer, 1 ssm, 2 hybrid, 3 unknown: the stable order of rows and legends in figures."""
    kind = kind_of(family)
    return KINDS.index(kind) if kind is not None else len(KINDS)


def model_sort_key(family: str, model: str) -> tuple[int, str]:
    """Sort models by kind (transformer, ssm, hybrid, unknown), then by name: never alphabetical alone."""
    return (kind_rank(family), model)
