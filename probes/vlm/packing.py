"""Packing examples into sequences, and the per-example loss (SPEC §4).

Packing: all turns that share an image, a task and an instruction are packed, in order, into as few
sequences as fit ``max_length`` (the image block is counted at its upper bound). Captions are never
packed: each caption is its own sequence (several captions of one image would otherwise teach the model
to continue one caption with another). A single turn longer than the budget is dropped and counted.

Loss normalisation (decided here, tested against a hand computation): the cross-entropy is averaged over
the target tokens of each *example* (one prompt/response turn), then averaged over the examples of the
batch. A packed sequence with three turns therefore contributes three equally weighted examples, exactly
as if they had been three separate sequences; a long response does not outweigh a short one. Under data
parallelism each process averages over its own examples and the gradients are averaged across processes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .sequence import IGNORE, TextParts, Turn

UNPACKED_TASKS = frozenset({"caption"})


@dataclass(frozen=True)
class TokenisedConversation:
    """One image's turns for one task, already tokenised."""

    image: str
    task: str
    instruction_ids: tuple[int, ...]
    turns: tuple[Turn, ...]


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
    conversations: Iterable[TokenisedConversation], *, image_tokens: int, max_length: int
) -> tuple[list[PackedItem], PackStats]:
    """Group by (image, task, instruction) in first-seen order and fill sequences greedily."""
    groups: dict[tuple[str, str, tuple[int, ...]], list[Turn]] = {}
    for conv in conversations:
        groups.setdefault((conv.image, conv.task, conv.instruction_ids), []).extend(conv.turns)
    items: list[PackedItem] = []
    stats = PackStats()

    def flush(key: tuple[str, str, tuple[int, ...]], turns: list[Turn]) -> None:
        if turns:
            items.append(PackedItem(key[0], key[1], TextParts(key[2], tuple(turns))))
            stats.sequences += 1
            stats.examples += len(turns)

    for key, turns in groups.items():
        base = image_tokens + len(key[2])
        current: list[Turn] = []
        length = base
        for turn in turns:
            need = len(turn.prompt_ids) + len(turn.response_ids) + 1  # + EOS
            if base + need > max_length:
                stats.dropped_too_long += 1
                continue
            if current and (key[1] in UNPACKED_TASKS or length + need > max_length):
                flush(key, current)
                current, length = [], base
            current.append(turn)
            length += need
        flush(key, current)
    return items, stats


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, example_index: torch.Tensor) -> torch.Tensor:
    """Mean over examples of (mean cross-entropy over the example's target tokens).

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
