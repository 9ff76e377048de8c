"""The VLM token sequence (README "VLM module"), built per sample once the visual tokens are known.

Task-agnostic (image first)::

    ## p11 … p1W && p21 … p2W && … pH1 … pHW ## <instruction> <prompt_1> <response_1> EOS <prompt_2> …

Task-aware (Shaking Up VLMs §5.3.1 and its released code: only the task *instruction* moves before the
image, so a recurrent model can condition its scan of the visual tokens on the task)::

    <instruction> ## p11 … ## <prompt_1> <response_1> EOS <prompt_2> <response_2> EOS …

Query-first (the paper's untested follow-up, our own named variant): the instruction *and* the first prompt
(e.g. the referring expression) are read before the image::

    <instruction> <prompt_1> ## p11 … ## <response_1> EOS <prompt_2> <response_2> EOS …

Distance-matched task-agnostic (``matched``, our control for recency): as task-aware, but the instruction's
tokens before the image are replaced by as many neutral filler tokens (the pad id), and the instruction
itself is not given. The image sits at the same position and at the same distance from every answer as in
the task-aware layout, yet nothing before the image names the task, so task-aware − matched isolates
task-awareness while matched − agnostic isolates the shorter image-to-answer distance (for a 2-layer SSM
the distance alone can matter, §5.3.1 reads the task-aware gain as conditioning on the task)::

    <filler × len(instruction)> ## p11 … ## <prompt_1> <response_1> EOS <prompt_2> …

The paper applies task-aware encoding in instruction tuning only; stage 1 (captioning pretraining) is
task-agnostic whatever the order asked for (:func:`probes.vlm.train.train` enforces it).

``##`` opens and closes the image; ``&&`` ends every patch row except the last. After token pruning
only the kept patches appear (in raster order) and ``&&`` is placed between two consecutive kept patches
whose original rows differ (row of patch ``j`` = ``j // grid_width``), so separators keep meaning "new
row". Visual positions hold the pad id in ``input_ids``; the model overwrites their embeddings with the
connector outputs in order.

Labels are -100 everywhere except response tokens and the EOS after each response. ``example_index``
tells which packed turn a target token belongs to (-1 elsewhere), so every loss normalisation of
:mod:`probes.vlm.packing` can be computed from the built sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

IGNORE = -100
Order = Literal["agnostic", "aware", "query-first", "matched"]
ORDERS: tuple[Order, ...] = ("agnostic", "aware", "query-first", "matched")


def as_order(order: bool | str) -> Order:
    """``False``/``"agnostic"``, ``True``/``"aware"`` or ``"query-first"`` → the order name (bools: old configs)."""
    if isinstance(order, bool):
        return "aware" if order else "agnostic"
    if order not in ORDERS:
        raise ValueError(f"unknown sequence order {order!r}; choose from {', '.join(ORDERS)}")
    return order  # type: ignore[return-value]


@dataclass(frozen=True)
class SpecialIds:
    image_open: int  # "##"
    row_sep: int  # "&&"
    eos: int
    pad: int


@dataclass(frozen=True)
class Turn:
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...] = ()  # empty: a generation prompt (no response, no EOS)


@dataclass(frozen=True)
class TextParts:
    """Tokenised text of one (packed) sequence: one instruction, then prompt/response turns."""

    instruction_ids: tuple[int, ...]
    turns: tuple[Turn, ...]


@dataclass
class BuiltSequence:
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    image_mask: list[bool] = field(default_factory=list)
    example_index: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    def _add(self, ids: Sequence[int], *, target: int = -1, image: bool = False) -> None:
        self.input_ids.extend(ids)
        self.labels.extend(ids if target >= 0 else [IGNORE] * len(ids))
        self.image_mask.extend([image] * len(ids))
        self.example_index.extend([target] * len(ids))


def image_block(
    grid_w: int, n_patches: int, special: SpecialIds, kept_index: Sequence[int] | None = None
) -> tuple[list[int], list[bool]]:
    """``## … ##`` with ``&&`` at row changes: (ids, is_visual). Visual slots hold ``special.pad``."""
    patches = list(range(n_patches)) if kept_index is None else [int(j) for j in kept_index]
    ids, visual = [special.image_open], [False]
    prev_row = None
    for j in patches:
        row = j // grid_w
        if prev_row is not None and row != prev_row:
            ids.append(special.row_sep)
            visual.append(False)
        ids.append(special.pad)
        visual.append(True)
        prev_row = row
    ids.append(special.image_open)
    visual.append(False)
    return ids, visual


def image_block_len_bound(grid_h: int, n_visual: int) -> int:
    """Upper bound of the image block length (used to budget packing): visual + separators + 2."""
    return n_visual + max(grid_h - 1, 0) + 2


def build_sequence(
    parts: TextParts,
    special: SpecialIds,
    *,
    grid_w: int,
    n_patches: int,
    task_aware: bool | str,
    kept_index: Sequence[int] | None = None,
) -> BuiltSequence:
    """Lay out one sample (see module docstring); ``task_aware`` is an order name or a bool (see :func:`as_order`)."""
    order = as_order(task_aware)
    seq = BuiltSequence()
    block_ids, block_visual = image_block(grid_w, n_patches, special, kept_index)

    def add_image() -> None:
        seq.input_ids.extend(block_ids)
        seq.labels.extend([IGNORE] * len(block_ids))
        seq.image_mask.extend(block_visual)
        seq.example_index.extend([-1] * len(block_ids))

    if not parts.turns:
        raise ValueError("a sequence needs at least one turn")
    if order == "agnostic":
        add_image()
        seq._add(parts.instruction_ids)
    elif order == "matched":
        seq._add([special.pad] * len(parts.instruction_ids))
        add_image()
    else:
        seq._add(parts.instruction_ids)
        if order == "query-first":
            seq._add(parts.turns[0].prompt_ids)
        add_image()
    if order != "query-first":
        seq._add(parts.turns[0].prompt_ids)
    for i, turn in enumerate(parts.turns):
        if i > 0:
            seq._add(turn.prompt_ids)
        if turn.response_ids:
            seq._add([*turn.response_ids, special.eos], target=i)
    return seq
