"""The synthetic grounding task (Shaking Up VLMs §5.3.2, Fig. 5; App. C.4): find the query's position in a context of new tokens.

Sample ``i`` of a split draws ``L`` distinct context tokens from a pool of ``P`` new tokens, the target
position ``k = i mod L`` (exact balance for every prefix of the index range) and the query ``q = c_{k+1}``.
Layouts share the same samples: suffix ``c_1 … c_L <out> q`` and prefix ``<out> q c_1 … c_L``; the label,
predicted at the last input position, is the existing vocabulary id ``pos_offset + k``.

Train / held-out disjointness holds by construction: a context belongs to the held-out split iff a hash of
its *content* is 0 mod ``heldout_modulus`` (see :meth:`.families.BankTask.split_windows`), so an identical
(context, query) pair can never appear in both splits, whatever their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from .base import PYTHIA_TOKENIZER_SIZE, Batch, Split, TaskConfigError, register_task
from .families import BankConfig, BankTask, take_windows
from .hashing import derive_key, uniform_int

Order = Literal["suffix", "prefix"]
ORDERS: tuple[str, ...] = ("suffix", "prefix")
__all__ = ["ORDERS", "PYTHIA_TOKENIZER_SIZE", "GroundingConfig", "GroundingTask", "Order"]


@dataclass(frozen=True)
class GroundingConfig(BankConfig):
    """Every parameter that determines the data; recorded in manifests and run directories.

    ``length`` is L, the context length; ``pos_offset`` the existing vocabulary id of position 0 (labels are
    existing ids ``pos_offset + k``); ``out_id`` the id of ``<out>`` (None -> context_offset + pool).
    """

    length: int = 200
    order: Order = "suffix"
    pos_offset: int = 2
    out_id: int | None = None

    LENGTH_RULE: ClassVar[str] = "one position is no retrieval"
    ORDERS: ClassVar[tuple[str, ...]] = ORDERS
    POOL_RULE: ClassVar[str] = "contexts are distinct"

    def validate(self) -> None:
        super().validate()
        if self.pos_offset < 0:
            raise TaskConfigError(f"pos_offset must be >= 0 (got {self.pos_offset})")
        if self.context_offset < self.pos_offset + self.length:
            raise TaskConfigError(
                f"context_offset {self.context_offset} collides with position tokens "
                f"{self.pos_offset}..{self.pos_offset + self.length - 1}: the base vocabulary is too small"
            )
        out = self.out_token_id
        if self.context_offset <= out < self.context_offset + self.pool_size:
            raise TaskConfigError(f"out_id {out} lies inside the context token range")

    @property
    def out_token_id(self) -> int:
        return self.out_id if self.out_id is not None else self.context_offset + self.pool_size

    def manifest_params(self) -> dict[str, Any]:
        return {**super().manifest_params(), "out_id": self.out_token_id}


@register_task
class GroundingTask(BankTask[GroundingConfig]):
    """Vectorised, counter-based generator of the grounding task; see the module docstring."""

    name = "grounding"
    config_type = GroundingConfig
    generator_version = 1
    token_blocks = (("context_tokens", "<s_{j}>"),)
    special_tokens = ((None, "<out>"),)
    bucket_meaning = "target position"
    one_label = True
    manifest_shape = False  # version 1 manifests predate seq_len / buckets; run directories keep their keys
    sampling = {
        "target_position": "k = i mod L (exactly balanced for any N)",
        "context": "a window of a bank of bank_size seeded pool permutations, picked by a counter hash of i",
        "split_rule": "held-out iff the content hash of the context = 0 mod heldout_modulus",
    }

    def __init__(self, config: GroundingConfig) -> None:
        super().__init__(config)
        self._key_t = derive_key("grounding.t", config.seed, config.pool_size, config.bank_size)

    @property
    def seq_len(self) -> int:
        return self.config.length + 2

    @property
    def min_base_vocab(self) -> int:
        return self.config.pos_offset + self.config.length

    def special_id(self, index: int) -> int:
        return self.config.out_token_id  # <out> may be placed anywhere outside the context range

    def layout_text(self) -> str:
        suffix = self.config.order == "suffix"
        return "c_1 ... c_L <out> q -> label" if suffix else "<out> q c_1 ... c_L -> label"

    def vocabulary(self) -> dict[str, Any]:
        c = self.config
        return {
            **super().vocabulary(),
            "position_tokens": {
                "rule": "position k (0-based) is existing id pos_offset + k",
                "pos_offset": c.pos_offset,
                "ids": [c.pos_offset, c.pos_offset + c.length - 1],
            },
        }

    def sample(self, split: Split, indices: torch.Tensor) -> Batch:
        c = self.config
        bank = self._bank(indices.device)
        admissible = self.split_windows(split, indices.device)
        starts = admissible[uniform_int(indices, self._key_t, admissible.numel())]
        n, length = indices.shape[0], c.length
        k = indices % length
        context = take_windows(bank, starts, length)
        query = context.gather(1, k[:, None])[:, 0]
        input_ids = torch.empty(n, length + 2, dtype=torch.int64, device=indices.device)
        ctx_slice, q_col, out_col = (
            (slice(0, length), length + 1, length) if c.order == "suffix" else (slice(2, length + 2), 1, 0)
        )
        input_ids[:, ctx_slice] = context
        input_ids[:, out_col] = c.out_token_id
        input_ids[:, q_col] = query
        return Batch(
            input_ids=input_ids,
            label_positions=torch.full((n, 1), length + 1, dtype=torch.int64, device=indices.device),
            labels=(k + c.pos_offset)[:, None],
            metric_positions=k[:, None],
            extras={"context": input_ids[:, ctx_slice], "query": query, "target_position": k},
        )
