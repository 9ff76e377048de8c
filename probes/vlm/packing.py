"""Packing examples into sequences, and the per-example loss (README "VLM module").

Packing: all turns that share an image, a task and an instruction are packed, in order, into as few
sequences as fit ``max_length`` (the image block is counted at its upper bound). Captions are never
packed: each caption is its own sequence (several captions of one image would otherwise teach the model
to continue one caption with another). A single turn longer than the budget is dropped and counted.

Per-dataset caps (Shaking Up VLMs, App. A.3): a packed sequence holds at most ``DATASET_CAPS[dataset]``
turns — VQAv2 20 QA pairs, Visual7W telling 10 and pointing 5, Visual Genome 10 — on top of the length
budget; a conversation without a dataset name (or one not listed) is capped only by length.

Loss normalisation (:func:`sequence_loss`, tested against hand computations), one of ``LOSS_NORMS``:

- ``sequence`` (**default**, the paper's App. B: "we normalize the cross-entropy loss over the target tokens
  per sequence first and then average over all the sequences in the batch"): mean over one row's target
  tokens, then mean over the rows that have targets. A packed row of three turns is one sample.
- ``turn``: mean over each packed turn's tokens, then over all turns of the batch (a row of three turns
  weighs three times as much as a row of one; the toolkit's earlier default).
- ``token``: one mean over every target token of the batch (long responses weigh more).

Under data parallelism each process averages over its own rows and the gradients are averaged across
processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .sequence import IGNORE, TextParts, Turn

UNPACKED_TASKS = frozenset({"caption"})
DATASET_CAPS: dict[str, int] = {
    "vqav2": 20,
    "visual7w-telling": 10,
    "visual7w-pointing": 5,
    "visual-genome": 10,
    "vg": 10,
}
LOSS_NORMS = ("sequence", "turn", "token")


@dataclass(frozen=True)
class TokenisedConversation:
    """One image's turns for one task, already tokenised."""

    image: str
    task: str
    instruction_ids: tuple[int, ...]
    turns: tuple[Turn, ...]
    dataset: str = ""  # selects the per-dataset turn cap (DATASET_CAPS)


@dataclass(frozen=True)
class PackedItem:
    image: str
    task: str
    parts: TextParts


@dataclass
class PackStats:
    sequences: int = 0
    examples: int = 0
    dropped_too_long: int = 0


def pack(
    conversations: Iterable[TokenisedConversation],
    *,
    image_tokens: int,
    max_length: int,
    caps: Mapping[str, int] | None = None,
) -> tuple[list[PackedItem], PackStats]:
    """Group by (image, task, instruction) in first-seen order and fill sequences greedily.

    ``caps``: most turns per sequence by dataset name (default :data:`DATASET_CAPS`)."""
    caps = DATASET_CAPS if caps is None else caps
    groups: dict[tuple[str, str, tuple[int, ...]], list[Turn]] = {}
    cap_of: dict[tuple[str, str, tuple[int, ...]], int | None] = {}
    for conv in conversations:
        key = (conv.image, conv.task, conv.instruction_ids)
        groups.setdefault(key, []).extend(conv.turns)
        cap_of.setdefault(key, caps.get(conv.dataset))
    items: list[PackedItem] = []
    stats = PackStats()

    def flush(key: tuple[str, str, tuple[int, ...]], turns: list[Turn]) -> None:
        if turns:
            items.append(PackedItem(key[0], key[1], TextParts(key[2], tuple(turns))))
            stats.sequences += 1
            stats.examples += len(turns)

    for key, turns in groups.items():
        cap = cap_of[key]
        base = image_tokens + len(key[2])
        current: list[Turn] = []
        length = base
        for turn in turns:
            need = len(turn.prompt_ids) + len(turn.response_ids) + 1  # + EOS
            if base + need > max_length:
                stats.dropped_too_long += 1
                continue
            full = cap is not None and len(current) >= cap
            if current and (key[1] in UNPACKED_TASKS or length + need > max_length or full):
                flush(key, current)
                current, length = [], base
            current.append(turn)
            length += need
        flush(key, current)
    return items, stats


def sequence_loss(
    logits: torch.Tensor, labels: torch.Tensor, example_index: torch.Tensor, norm: str = "sequence"
) -> torch.Tensor:
    """The batch loss under normalisation ``norm`` (see module docstring).

    ``labels[b, t]`` is the token at position ``t`` (IGNORE where not a target); it is predicted by
    ``logits[b, t - 1]``."""
    if norm == "turn":
        return per_example_loss(logits, labels, example_index)
    if norm not in LOSS_NORMS:
        raise ValueError(f"unknown loss normalisation {norm!r}; choose from {', '.join(LOSS_NORMS)}")
    logits = logits[:, :-1].float()
    labels = labels[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="none")
    ce = ce.view(labels.shape)
    valid = labels != IGNORE
    if not bool(valid.any()):
        return logits.sum() * 0.0  # keeps the graph (and DDP hooks) alive for an all-masked batch
    if norm == "token":
        return ce[valid].mean()
    per_row_count = valid.sum(dim=1)
    rows = per_row_count > 0
    per_row = (ce * valid).sum(dim=1)[rows] / per_row_count[rows]
    return per_row.mean()


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, example_index: torch.Tensor) -> torch.Tensor:
    """``turn`` normalisation: mean over turns of (mean cross-entropy over the turn's target tokens).

    ``labels[b, t]`` is the token at position ``t`` (IGNORE where not a target); it is predicted by
    ``logits[b, t - 1]``. ``example_index[b, t]`` numbers the turns within row ``b`` (-1 where not a target).
    """
    logits = logits[:, :-1].float()
    labels = labels[:, 1:]
    ex = example_index[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="none")
    ce = ce.view(labels.shape)
    valid = labels != IGNORE
    n_slots = int(ex.max().item()) + 1 if valid.any() else 1
    gid = (torch.arange(labels.shape[0], device=labels.device).unsqueeze(1) * n_slots + ex.clamp(min=0))[valid]
    total = torch.zeros(labels.shape[0] * n_slots, device=ce.device).index_add(0, gid, ce[valid])
    count = torch.zeros_like(total).index_add(0, gid, torch.ones_like(ce[valid]))
    present = count > 0
    if not bool(present.any()):
        return logits.sum() * 0.0  # keeps the graph (and DDP hooks) alive for an all-masked batch
    return (total[present] / count[present]).mean()
