"""Logits only where the task supervises: hidden states → gather at label positions → output head.

A full-vocabulary head over every position costs ``T · V`` per sample (at L=200 and Pythia's 50K vocabulary
that dwarfs the rest of a small model); the probe needs ``Q · V`` (Q = 1 for grounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from probes.synthetic.base import Batch


def target_logits(model: PreTrainedModel, input_ids: torch.Tensor, label_positions: torch.Tensor) -> torch.Tensor:
    """``[N, Q, V]`` logits at ``label_positions`` (``[N, Q]``), from the base model's last hidden state."""
    hidden = model.base_model(input_ids=input_ids).last_hidden_state  # [N, T, H], final norm applied
    index = label_positions[:, :, None].expand(-1, -1, hidden.shape[-1])
    picked = hidden.gather(1, index)
    return model.get_output_embeddings()(picked)


def full_logits_at_targets(model: PreTrainedModel, input_ids: torch.Tensor, label_positions: torch.Tensor) -> torch.Tensor:
    """The naive reference: every position's logits, then pick. Used by tests and ``probes bench eval``."""
    logits = model(input_ids=input_ids).logits
    index = label_positions[:, :, None].expand(-1, -1, logits.shape[-1])
    return logits.gather(1, index)


def loss_and_correct(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over supervised positions, and a ``[N, Q]`` bool tensor of argmax hits."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    loss = F.cross_entropy(flat, batch.labels.reshape(-1))
    correct = logits.argmax(dim=-1) == batch.labels
    return loss, correct


class TargetLogits(torch.nn.Module):
    """``model`` as a module whose forward is :func:`target_logits`: what the engine prepares (DDP, FSDP).

    Distributed wrappers synchronise gradients and gather shards around their own ``forward``; calling
    ``model.base_model`` directly would bypass them, so the probe's forward must be the wrapped module's."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model
        # FSDP's transformer auto-wrap policy reads the block classes from the prepared (outer) module
        self._no_split_modules = list(getattr(model, "_no_split_modules", None) or [])

    def forward(self, input_ids: torch.Tensor, label_positions: torch.Tensor) -> torch.Tensor:
        return target_logits(self.model, input_ids, label_positions)


def probe_loss(module: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The training loss of a batch through a (possibly wrapped) :class:`TargetLogits`: the one loss the
    trainer and ``probes bench step`` both take."""
    return loss_and_correct(module(batch.input_ids, batch.label_positions), batch)[0]
