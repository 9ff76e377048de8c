"""Fast state-space (Mamba) paths: a CPU selective scan, a Triton GPU scan and the dispatch between paths.

`enable_fast_path(model)` / `detect_mamba_path(model)` (in `patch`) are what trainers call; `selective_scan`
(chunked PyTorch, the CPU path), `triton_selective_scan` (Triton kernels, the CUDA path without mamba-ssm)
and `causal_conv1d` are drop-ins for transformers' kernel hooks. Their speed against GPT-NeoX and against
transformers' sequential loop is measured by `probes bench step` and `probes bench mamba-path` (probes/bench/).
"""

from .causal_conv import causal_conv1d
from .patch import (
    FAST_SCAN,
    MAMBA_SSM,
    MAMBAPY,
    SEQUENTIAL,
    TORCH_SSD,
    TRITON_SCAN,
    detect_mamba_path,
    enable_fast_path,
    mamba_path_note,
)
from .selective_scan import release_scratch, selective_scan
from .triton_scan import selective_scan as triton_selective_scan

__all__ = [
    "FAST_SCAN",
    "MAMBA_SSM",
    "MAMBAPY",
    "SEQUENTIAL",
    "TORCH_SSD",
    "TRITON_SCAN",
    "causal_conv1d",
    "detect_mamba_path",
    "enable_fast_path",
    "mamba_path_note",
    "release_scratch",
    "selective_scan",
    "triton_selective_scan",
]
