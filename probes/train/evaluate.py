"""Held-out evaluation: overall accuracy, loss and per-position (per-bucket) accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from probes.synthetic.base import ProbeTask

from .forward import target_logits


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    per_position_acc: list[float | None]  # None: no held-out sample had this target position (not 0.0)
    per_position_count: list[int]


@torch.inference_mode()
def evaluate(
    model: PreTrainedModel,
    task: ProbeTask,
    n_samples: int,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> EvalResult:
    """Evaluate on held-out samples ``0 … n_samples-1`` (the same set at every evaluation)."""
    was_training = model.training
    model.eval()
    buckets = task.num_buckets
    hits = torch.zeros(buckets, dtype=torch.float64, device=device)
    counts = torch.zeros(buckets, dtype=torch.float64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for lo in range(0, n_samples, batch_size):
        idx = torch.arange(lo, min(lo + batch_size, n_samples), device=device)
        batch = task.generate("heldout", idx)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = target_logits(model, batch.input_ids, batch.label_positions)
        logits = logits.float()
        loss_sum += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch.labels.reshape(-1), reduction="sum"
        ).double()
        correct = (logits.argmax(-1) == batch.labels).double().reshape(-1)
        pos = batch.metric_positions.reshape(-1)
        hits += torch.bincount(pos, weights=correct, minlength=buckets)
        counts += torch.bincount(pos, minlength=buckets).double()
    model.train(was_training)
    total = float(counts.sum())
    per = (hits / counts.clamp(min=1)).tolist()
    measured = (counts > 0).tolist()
    return EvalResult(
        loss=float(loss_sum) / total,
        accuracy=float(hits.sum()) / total,
        per_position_acc=[round(p, 6) if m else None for p, m in zip(per, measured, strict=True)],
        per_position_count=[int(c) for c in counts.tolist()],
    )
