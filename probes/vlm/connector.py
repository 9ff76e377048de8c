"""Connectors map encoder patch features to the language model's embedding space.

``mlp`` is LLaVA-1.5's projector: Linear → GELU → Linear. Names starting with ``vss-`` (VL-Mamba's
visual selective-scan connectors) live in :mod:`probes.vlm.vss`, imported only when asked for.
"""

from __future__ import annotations

from torch import nn

from probes.errors import UserError

CONNECTORS = ("mlp", "vss-mlp-bsm", "vss-mlp-csm", "vss-l2-bsm", "vss-l2-csm")


class MLPConnector(nn.Sequential):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


def build_connector(name: str, in_dim: int, out_dim: int, grid: tuple[int, int]) -> nn.Module:
    """``[B, N, in_dim] -> [B, N, out_dim]``; ``grid`` = (rows, cols) of the N patches (for 2-D scans)."""
    if name == "mlp":
        return MLPConnector(in_dim, out_dim)
    if name.startswith("vss-"):
        try:
            from .vss import build_vss_connector
        except ImportError as exc:
            raise UserError(f"connector {name!r} is unavailable: {exc}") from None
        return build_vss_connector(name, in_dim, out_dim, grid)
    raise UserError(f"unknown connector {name!r}; choose one of {', '.join(CONNECTORS)}")
