"""Quality of a pruned VLM as a function of ``k``, the number of visual tokens kept.

The cost side (:mod:`.pruning_bench`) says how much a smaller ``k`` saves; this says what it costs in the
benchmark score, on the same checkpoint and benchmark: for every ``k`` the checkpoint is evaluated twice,

- ``saliency``: its own trained scorer keeps the top ``k`` patches (the scorer is independent of ``k``, so
  one checkpoint trained at any ``--prune-k`` can be run at every ``k``);
- ``random``: ``k`` patches drawn uniformly, a fresh subset for every image, the baseline a learned
  saliency score must beat. One generator, seeded once per evaluation, advances image by image: the
  result is deterministic, and no image position in a batch is tied to one subset (a generator reseeded
  on every call would give slot ``i`` of every batch the same patches, a fixed mask rather than a random
  baseline).

Both keep patches in raster order, exactly as :class:`probes.vlm.pruning.SaliencyPruner` does, so the
sequence layout (``&&`` at row changes) is the one the model was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probes.errors import UserError

from .datasets import EvalSet
from .runner import evaluate

METHODS = ("saliency", "random")


class RandomPruner(nn.Module):
    """``k`` uniformly drawn patches per image, in raster order, a fresh draw per image from one generator
    seeded at construction: a new pruner with the same seed replays the same sequence of subsets."""

    def __init__(self, k: int, seed: int = 0) -> None:
        super().__init__()
        self.k, self.seed = k, seed
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, d = patches.shape
        if self.k > n:
            raise ValueError(f"cannot keep {self.k} of {n} patches")
        idx = torch.stack([torch.randperm(n, generator=self.generator)[: self.k] for _ in range(b)]).sort(dim=1).values
        idx = idx.to(patches.device)
        return patches.gather(1, idx.unsqueeze(-1).expand(-1, -1, d)), idx


def pruning_quality(
    vlm: Any,
    eval_set: EvalSet,
    k_values: Sequence[int],
    out: str | Path,
    *,
    checkpoint: str | Path,
    methods: Sequence[str] = METHODS,
    batch_size: int = 16,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Evaluate ``vlm`` at every ``k`` × method into ``out/<method>-k<k>/``; one row per evaluation."""
    n = vlm.encoder.n_patches
    bad = [k for k in k_values if not 1 <= k <= n]
    if not k_values or bad:
        raise UserError(f"k must be in 1..{n} for this checkpoint's {n} patches, got {list(k_values) or 'none'}")
    for m in methods:
        if m not in METHODS:
            raise UserError(f"unknown pruning method {m!r}; choose from {', '.join(METHODS)}")
    trained = vlm.pruner
    if "saliency" in methods and trained is None:
        raise UserError("this checkpoint has no saliency scorer (train it with --prune-k); use --methods random")
    if vlm.config.connector.startswith("vss-"):
        raise UserError("token pruning breaks the patch grid that the vss-* connectors scan")
    rows = []
    try:
        for k in k_values:
            for m in methods:
                if m == "saliency":
                    trained.k = int(k)
                    vlm.pruner = trained
                else:
                    vlm.pruner = RandomPruner(int(k), seed)
                scores = evaluate(vlm, eval_set, Path(out) / f"{m}-k{k}", checkpoint=checkpoint, batch_size=batch_size,
                                  tags={"prune_method": m, "k": int(k)})  # fmt: skip
                rows.append({"k": int(k), "method": m, "benchmark": scores["benchmark"], "metric": scores["metric"],
                             "score": scores["score"], "n": scores["n"], "n_patches": n})  # fmt: skip
    finally:
        vlm.pruner = trained
        if trained is not None:
            trained.k = vlm.config.prune_k
    return rows
