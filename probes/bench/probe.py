"""A backbone set up for the grounding probe exactly as the trainer does, and one timed training step.

The trainer's step is the engine's (:mod:`probes.train.engine`): fwd + bwd + AdamW with logits only at the
target position (`TargetLogits`), under bf16 autocast on CUDA; :class:`Stepper` takes that very step on a
fixed batch outside a run directory so it can be timed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from transformers import PreTrainedModel

from probes.models.registry import load_backbone
from probes.models.resize import add_tokens
from probes.ssm.patch import enable_fast_path
from probes.synthetic.base import Batch
from probes.synthetic.grounding import GroundingConfig, GroundingTask
from probes.train.engine import Engine
from probes.train.forward import TargetLogits, probe_loss

from .timing import cuda_step_peak_bytes, saved_activation_bytes


@dataclass
class Probe:
    """A model grown for grounding tasks of length up to ``max_length``; ``base_vocab`` is the first new id."""

    name: str
    family: str
    model: PreTrainedModel
    base_vocab: int
    max_length: int
    mamba_path: str | None
    device: torch.device

    def task(self, length: int, seed: int = 0, bank_size: int = 16384) -> GroundingTask:
        return GroundingTask(
            GroundingConfig(length=length, context_offset=self.base_vocab, seed=seed, bank_size=bank_size)
        )

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.device.type == "cuda" else None


def build_probe(
    name: str,
    max_length: int,
    device: torch.device,
    *,
    base_vocab: int | None = None,
    seed: int = 0,
    fast_path: bool = True,
) -> Probe:
    """Load ``name``, grow its base vocabulary to ``base_vocab`` (or to what position labels need), add the
    task's new tokens (a pool of ``2 · max_length`` plus ``<out>``), move it to ``device`` and pick the Mamba
    path (mamba-ssm kernels on CUDA when installed, else our fast scan; the reference loop if ``fast_path``
    is False)."""
    bb = load_backbone(name, seed=seed)
    model = bb.model
    need = max(base_vocab or 0, 2 + max_length)  # position labels are existing ids pos_offset + k
    if bb.vocab_size < need:
        add_tokens(model, need - bb.vocab_size, "normal", seed)
    base = int(model.get_input_embeddings().weight.shape[0])
    add_tokens(model, 2 * max_length + 1, "mean", seed)
    model.to(device).train()
    path = enable_fast_path(model, enabled=fast_path)
    return Probe(name, bb.family, model, base, max_length, path, device)


def train_batch(probe: Probe, length: int, batch_size: int) -> Batch:
    """A real grounding batch; a small window bank (the content does not change a step's cost) keeps the
    setup cheap at long lengths, where the default bank would hold ``16384 · 3L`` ids."""
    task = probe.task(length, bank_size=256)
    batch = task.generate("train", torch.arange(batch_size))
    return Batch(*(t.to(probe.device) for t in (batch.input_ids, batch.label_positions, batch.labels, batch.metric_positions)), {})


class Stepper:
    """One probe, its optimizer and a fixed batch: ``step()`` is the trainer's step, the engine's
    :class:`~probes.train.engine.TrainStep` (autocast, loss check, backward, fused AdamW on CUDA).

    Each stepper has its own engine, so deleting it frees the model (an engine's accelerator keeps references
    to what it prepared); the engines of one process share accelerate's device and precision state."""

    def __init__(self, probe: Probe, batch: Batch) -> None:
        self.probe = probe
        self.batch = batch
        self.engine = Engine(str(probe.device))
        optimizer = self.engine.optimizer(probe.model.parameters(), lr=1e-4)
        self.train_step = self.engine.step(TargetLogits(probe.model), optimizer)
        self._loss = partial(probe_loss, self.train_step.module, batch)

    def forward_backward(self) -> None:
        self.train_step.forward_backward(self._loss)

    def step(self) -> None:
        self.train_step(self._loss)

    def step_memory(self) -> tuple[int, str]:
        """Memory one step needs beyond what is resident, and what that number is: on CUDA the allocator peak
        of a whole step; on a CPU the bytes autograd saves for backward (no allocator peak to read there)."""
        device = self.probe.device
        if device.type == "cuda":
            return cuda_step_peak_bytes(self.step, device), "cuda max_memory_allocated during one step, above resident"
        with saved_activation_bytes() as box:
            self.forward_backward()
        self.train_step.optimizer.zero_grad(set_to_none=True)
        return box[0], "bytes saved for backward (CPU)"


def train_flops(probe: Probe, batch_size: int, seq_len: int, n_targets: int = 1) -> float:
    """Model FLOPs of one training step: ``6 · N_body · tokens`` + head ``6 · H · V · targets`` + attention.

    ``N_body`` excludes the input embedding (a lookup) and the output head (applied only at the ``n_targets``
    supervised positions). Attention adds ``12 · layers · H · T`` per token (PaLM's convention, no causal
    discount) for attention layers. The selective scan's elementwise work is not counted.
    """
    model = probe.model
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    head_params = 0 if head is None or head.weight is emb else head.weight.numel()
    n_body = sum(p.numel() for p in model.parameters()) - emb.numel() - head_params
    hidden, vocab = int(emb.shape[1]), int(emb.shape[0])
    tokens = batch_size * seq_len
    flops = 6.0 * n_body * tokens + 6.0 * hidden * vocab * batch_size * n_targets
    flops += 12.0 * attention_layers(model) * hidden * seq_len * tokens
    return flops


def attention_layers(model: PreTrainedModel) -> int:
    """Number of self-attention layers (all of them for GPT-NeoX; Jamba's attention layers for hybrids)."""
    config = model.config
    if config.model_type == "gpt_neox":
        return int(config.num_hidden_layers)
    layers_block_type = getattr(config, "layers_block_type", None)
    if layers_block_type is not None:
        return sum(1 for t in layers_block_type if t == "attention")
    return 0
