"""Saliency top-k visual token pruning: keep the ``k`` most salient patches, in their original raster order.

Why: the LM's cost grows with the number of visual tokens (quadratically for attention, linearly for Mamba);
a small learned scorer on the encoder outputs decides which patches the LM gets to see.

Order: kept patches stay in raster order (``kept_index`` is sorted ascending), so the sequence builder can
still recover each token's image row (``kept_index // grid_width``) and place ``&&`` row separators.

Gradients (straight-through gate): the hard top-k selection has no gradient, so each kept feature is
multiplied by ``1 + s - stop_grad(s)`` where ``s`` is its score. The forward value is exactly the original
feature (the multiplier is 1), and the backward pass gives the scorer ``∂L/∂s_j = ⟨∂L/∂kept_j, patch_j⟩``:
a score rises when scaling its patch up would lower the loss. Dropped patches get no gradient, as with any
hard top-k.
"""

from __future__ import annotations

import torch
from torch import nn


class SaliencyPruner(nn.Module):
    """``forward(patches [B, N, D]) -> (kept [B, k, D], kept_index [B, k])``; scorer = Linear → GELU → Linear."""

    def __init__(self, dim: int, k: int, hidden: int | None = None) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        hidden = hidden or max(dim // 4, 16)
        self.scorer = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def scores(self, patches: torch.Tensor) -> torch.Tensor:
        """Saliency logits ``[B, N]``."""
        return self.scorer(patches).squeeze(-1)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if patches.dim() != 3:
            raise ValueError(f"expected patches [B, N, D], got shape {tuple(patches.shape)}")
        n = patches.shape[1]
        if self.k > n:
            raise ValueError(f"cannot keep {self.k} of {n} patches")
        scores = self.scores(patches)
        top = scores.topk(self.k, dim=1, sorted=False).indices
        kept_index = top.sort(dim=1).values
        kept = patches.gather(1, kept_index.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        kept_scores = scores.gather(1, kept_index)
        gate = 1.0 + kept_scores - kept_scores.detach()
        return kept * gate.unsqueeze(-1).to(kept.dtype), kept_index


def patch_rows(kept_index: torch.Tensor, grid_width: int) -> torch.Tensor:
    """Image row of each kept patch (``index // grid_width``), for placing ``&&`` separators."""
    return torch.div(kept_index, grid_width, rounding_mode="floor")
