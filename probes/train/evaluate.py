"""Held-out evaluation: overall accuracy, loss and per-position (per-bucket) accuracy.

With several processes each takes every W-th sample of each held-out batch and the sums (hits, counts, loss)
are added up over processes, so every process gets the same result as one process would: the counts and
hits are exact integers, only the loss sum's rounding depends on the split. Every process runs the same
number of forwards (a process with no sample in a batch repeats one with weight 0): FSDP gathers each
layer's shards inside the forward, on all processes at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from probes.synthetic.base import ProbeTask

from .forward import target_logits

if TYPE_CHECKING:
    from .engine import Engine


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    per_position_acc: list[float | None]  # None: no held-out sample had this target position (not 0.0)
    per_position_count: list[int]


def _logits(model: torch.nn.Module, input_ids: torch.Tensor, label_positions: torch.Tensor) -> torch.Tensor:
    if isinstance(model, PreTrainedModel):
        return target_logits(model, input_ids, label_positions)
    return model(input_ids, label_positions)  # a TargetLogits module, possibly wrapped (DDP, FSDP)


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    task: ProbeTask,
    n_samples: int,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    *,
    engine: Engine | None = None,
) -> EvalResult:
    """Evaluate on held-out samples ``0 … n_samples-1`` (the same set at every evaluation).

    ``model``: a causal LM, or a module mapping ``(input_ids, label_positions)`` to logits; ``engine``: shard
    the samples over its processes (and use its autocast)."""
    rank, world = (engine.rank, engine.world) if engine is not None else (0, 1)
    was_training = model.training
    model.eval()
    buckets = task.num_buckets
    hits = torch.zeros(buckets, dtype=torch.float64, device=device)
    counts = torch.zeros(buckets, dtype=torch.float64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for lo in range(0, n_samples, batch_size):
        idx = torch.arange(lo, min(lo + batch_size, n_samples), device=device)[rank::world]
        weight = 1.0
        if idx.numel() == 0:  # fewer samples than processes in this batch: take part, count nothing
            idx, weight = torch.arange(lo, lo + 1, device=device), 0.0
        batch = task.generate("heldout", idx)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = _logits(model, batch.input_ids, batch.label_positions)
        logits = logits.float()
        loss_sum += weight * F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1), reduction="sum"
        ).double()
        correct = (logits.argmax(-1) == batch.labels).double().reshape(-1) * weight
        pos = batch.metric_positions.reshape(-1)
        hits += torch.bincount(pos, weights=correct, minlength=buckets)
        counts += torch.bincount(pos, minlength=buckets).double() * weight
    model.train(was_training)
    if engine is not None and world > 1:
        hits, counts, loss_sum = engine.sum(hits), engine.sum(counts), engine.sum(loss_sum)
    total = float(counts.sum())
    per = (hits / counts.clamp(min=1)).tolist()
    measured = (counts > 0).tolist()
    return EvalResult(
        loss=float(loss_sum) / total,
        accuracy=float(hits.sum()) / total,
        per_position_acc=[round(p, 6) if m else None for p, m in zip(per, measured, strict=True)],
        per_position_count=[int(c) for c in counts.tolist()],
    )
