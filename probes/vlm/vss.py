"""VL-Mamba connectors (Qiao et al. 2024, §3.2): a Vision Selective Scan (VSS) module inside the connector.

Why: a Mamba LM reads visual tokens causally, but patches of an image have no causal order. VL-Mamba's
multimodal connector first mixes the patch grid with selective scans in several directions, so every output
token has seen the whole image, then projects to the LM width.

Scan mechanisms (VL-Mamba §3.2: "the VSS module consists of a 2D vision scan mechanism and one mamba
layer"): every direction is read by the *same* Mamba layer; outputs are put back into raster order and
summed, as VMamba's SS2D merges its routes:

- **BSM** (bidirectional scan): forward and backward over the raster-flattened patch sequence.
- **CSM** (cross scan): row-major, column-major and both reversed.

``VSS(x) = Σ_d unscan_d(Mamba(scan_d(x)))`` with transformers' ``MambaMixer`` (in_proj → causal depthwise
conv → selective scan → gated out_proj) as the Mamba layer. The skip connection and the norm sit in the
connector, after the scan (Eqs. 5-6):

- ``vss-mlp-{bsm,csm}`` (Eq. 5): ``MLP(Norm(VSS(x) + x))`` with the LLaVA-1.5 MLP (Linear → GELU → Linear);
  VSS at ``in_dim``.
- ``vss-l2-{bsm,csm}`` (Eq. 6): ``V' = Linear(x)``; ``Linear(Norm(VSS(GELU(V')) + V'))``; VSS at ``out_dim``.

``legacy=True`` (Python API only) keeps this toolkit's earlier variant, a deliberate deviation kept for
comparison: pre-norm residual ``x + Σ_d unscan_d(Mamba_d(scan_d(LN x)))`` with one Mamba per direction,
``MLP(VSS(x))`` and ``Linear(VSS(GELU(Linear(x))))``.

Pruned inputs: BSM works on any token count (it never needs the grid); CSM's column-major route needs the
full ``height × width`` grid and refuses anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from transformers import MambaConfig
from transformers.models.mamba.modeling_mamba import MambaMixer

ScanOrder = Literal["row", "row_rev", "col", "col_rev"]
BSM_ORDERS: tuple[ScanOrder, ...] = ("row", "row_rev")
CSM_ORDERS: tuple[ScanOrder, ...] = ("row", "row_rev", "col", "col_rev")
VSS_CONNECTORS = ("vss-mlp-bsm", "vss-mlp-csm", "vss-l2-bsm", "vss-l2-csm")

Grid = int | tuple[int, int]


def grid_shape(grid: Grid) -> tuple[int, int]:
    """``24`` → ``(24, 24)``; ``(h, w)`` unchanged. Rows first: patch ``j`` sits at ``(j // w, j % w)``."""
    if isinstance(grid, int):
        return grid, grid
    height, width = grid
    return int(height), int(width)


def scan_permutation(order: ScanOrder, height: int, width: int) -> torch.Tensor:
    """Indices ``perm`` such that ``x[:, perm]`` is the raster sequence read in scan ``order``."""
    raster = torch.arange(height * width)
    if order in ("row", "row_rev"):
        perm = raster
    elif order in ("col", "col_rev"):
        perm = raster.view(height, width).t().reshape(-1)
    else:
        raise ValueError(f"unknown scan order {order!r}")
    return perm.flip(0) if order.endswith("_rev") else perm


def _mamba_mixer(dim: int, d_state: int, expand: int, conv_kernel: int) -> MambaMixer:
    config = MambaConfig(
        hidden_size=dim,
        state_size=d_state,
        expand=expand,
        conv_kernel=conv_kernel,
        num_hidden_layers=1,
        use_mambapy=False,
    )
    mixer = MambaMixer(config, layer_idx=0)
    from probes.ssm.patch import enable_fast_path  # the toolkit's fast scan for this mixer alone

    enable_fast_path(mixer)
    return mixer


class MultiScanMamba(nn.Module):
    """Reads ``[B, N, D]`` tokens along several orders and sums the results, back in raster order.

    ``shared=True`` (the paper's VSS): one Mamba layer for every direction, no norm, no residual (the
    connector adds them). ``shared=False``: the legacy pre-norm residual block with a Mamba per direction.
    ``perms`` are token permutations of length N (``None`` = use the sequence as is / reversed for the
    ``*_rev`` orders of a block built without a grid).
    """

    def __init__(
        self,
        dim: int,
        orders: Sequence[ScanOrder],
        grid: Grid | None = None,
        *,
        d_state: int = 16,
        expand: int = 2,
        conv_kernel: int = 4,
        shared: bool = False,
    ) -> None:
        super().__init__()
        if not orders:
            raise ValueError("at least one scan order is needed")
        needs_grid = any(o.startswith("col") for o in orders)
        if needs_grid and grid is None:
            raise ValueError("column-major scans need the patch grid")
        self.orders = tuple(orders)
        self.grid = grid_shape(grid) if grid is not None else None
        self.shared = shared
        self.norm = None if shared else nn.LayerNorm(dim)
        n_mixers = 1 if shared else len(self.orders)
        self.mixers = nn.ModuleList(_mamba_mixer(dim, d_state, expand, conv_kernel) for _ in range(n_mixers))
        if self.grid is not None:
            h, w = self.grid
            perms = torch.stack([scan_permutation(o, h, w) for o in self.orders])
            self.register_buffer("perms", perms, persistent=False)
            self.register_buffer("inverse", perms.argsort(dim=1), persistent=False)
        else:
            self.perms = None
            self.inverse = None

    def _scan(self, h: torch.Tensor, i: int, mixer: nn.Module) -> torch.Tensor:
        order = self.orders[i]
        n = h.shape[1]
        if self.perms is not None and n == self.perms.shape[1]:
            return mixer(h[:, self.perms[i]])[:, self.inverse[i]]
        if order.startswith("col"):
            h_, w_ = self.grid or (0, 0)
            raise ValueError(f"cross scan needs the full {h_}x{w_} grid, got {n} tokens")
        if order == "row_rev":
            return mixer(h.flip(1)).flip(1)
        return mixer(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.norm is None else self.norm(x)
        out = self._scan(h, 0, self.mixers[0])
        for i in range(1, len(self.orders)):
            out = out + self._scan(h, i, self.mixers[0 if self.shared else i])
        return out if self.shared else x + out


class BidirectionalMambaBlock(MultiScanMamba):
    """Non-causal token mixing for any length: ``Mamba(x) + flip(Mamba(flip(x)))`` with one shared layer
    (``shared=True``), or the legacy ``x + Mamba_fwd(LN x) + flip(Mamba_bwd(flip(LN x)))``.

    Reusable wherever a bidirectional SSM layer is wanted (BSM connectors, pruned token sets, encoders).
    """

    def __init__(
        self, dim: int, *, d_state: int = 16, expand: int = 2, conv_kernel: int = 4, shared: bool = False
    ) -> None:
        super().__init__(dim, BSM_ORDERS, None, d_state=d_state, expand=expand, conv_kernel=conv_kernel, shared=shared)


class CrossScanMambaBlock(MultiScanMamba):
    """Four-route cross scan (row, row reversed, column, column reversed) over a ``height × width`` grid."""

    def __init__(
        self, dim: int, grid: Grid, *, d_state: int = 16, expand: int = 2, conv_kernel: int = 4, shared: bool = False
    ) -> None:
        super().__init__(dim, CSM_ORDERS, grid, d_state=d_state, expand=expand, conv_kernel=conv_kernel, shared=shared)


def _vss(dim: int, scan: str, grid: Grid, shared: bool, **kw: int) -> MultiScanMamba:
    if scan == "bsm":
        return BidirectionalMambaBlock(dim, shared=shared, **kw)
    if scan == "csm":
        return CrossScanMambaBlock(dim, grid, shared=shared, **kw)
    raise ValueError(f"unknown scan mechanism {scan!r} (bsm or csm)")


class VSSMLPConnector(nn.Module):
    """VSS-MLP (Eq. 5): ``MLP(Norm(VSS(x) + x))``, the VSS module at the encoder width; legacy ``MLP(VSS(x))``."""

    def __init__(self, in_dim: int, out_dim: int, grid: Grid, scan: str, *, legacy: bool = False, **kw: int) -> None:
        super().__init__()
        self.legacy = legacy
        self.vss = _vss(in_dim, scan, grid, not legacy, **kw)
        self.norm = None if legacy else nn.LayerNorm(in_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is None:
            return self.mlp(self.vss(x))
        return self.mlp(self.norm(self.vss(x) + x))


class VSSL2Connector(nn.Module):
    """VSS-L2 (Eq. 6): ``V' = Linear₁(x)``; ``Linear₂(Norm(VSS(GELU(V')) + V'))``, the VSS at the LM width.

    Legacy: ``Linear₂(VSS(GELU(Linear₁(x))))`` with the residual inside the VSS block (it adds GELU(V')).
    """

    def __init__(self, in_dim: int, out_dim: int, grid: Grid, scan: str, *, legacy: bool = False, **kw: int) -> None:
        super().__init__()
        self.proj_in = nn.Linear(in_dim, out_dim)
        self.act = nn.GELU()
        self.vss = _vss(out_dim, scan, grid, not legacy, **kw)
        self.norm = None if legacy else nn.LayerNorm(out_dim)
        self.proj_out = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.proj_in(x)
        if self.norm is None:
            return self.proj_out(self.vss(self.act(v)))
        return self.proj_out(self.norm(self.vss(self.act(v)) + v))


def build_vss_connector(
    name: str, in_dim: int, out_dim: int, grid: Grid, *, legacy: bool = False, **kw: int
) -> nn.Module:
    """``vss-mlp-bsm`` | ``vss-mlp-csm`` | ``vss-l2-bsm`` | ``vss-l2-csm`` → a module ``[B,N,in] → [B,N,out]``.

    ``kw`` passes Mamba sizes through (``d_state``, ``expand``, ``conv_kernel``); defaults are Mamba's 16, 2, 4.
    ``legacy=True`` builds the earlier non-paper variant (see module docstring).
    """
    if name not in VSS_CONNECTORS:
        raise ValueError(f"unknown VSS connector {name!r}; choose from {', '.join(VSS_CONNECTORS)}")
    _, variant, scan = name.split("-")
    cls = VSSMLPConnector if variant == "mlp" else VSSL2Connector
    return cls(in_dim, out_dim, grid, scan, legacy=legacy, **kw)
