"""Fast state-space (Mamba) paths: a CPU selective scan and the dispatch between kernel paths.

`enable_fast_path(model)` / `detect_mamba_path(model)` (in `patch`) are what trainers call; `selective_scan`
and `causal_conv1d` are drop-ins for transformers' kernel hooks. Their speed against GPT-NeoX and against
transformers' sequential loop is measured by `probes bench step` and `probes bench mamba-path` (probes/bench/).
"""

from .causal_conv import causal_conv1d
from .patch import FAST_SCAN, MAMBA_SSM, SEQUENTIAL, TORCH_SSD, detect_mamba_path, enable_fast_path
from .selective_scan import release_scratch, selective_scan

__all__ = [
    "FAST_SCAN",
    "MAMBA_SSM",
    "SEQUENTIAL",
    "TORCH_SSD",
    "causal_conv1d",
    "detect_mamba_path",
    "enable_fast_path",
    "release_scratch",
    "selective_scan",
]
