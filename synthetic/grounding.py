"""The synthetic grounding task (SPEC §1): find the query's position in a context of new tokens.

Sample ``i`` of a split draws ``L`` distinct context tokens from a pool of ``P`` new tokens, the target
position ``k = i mod L`` (exact balance for every prefix of the index range) and the query ``q = c_{k+1}``.
Layouts share the same samples: suffix ``c_1 … c_L <out> q`` and prefix ``<out> q c_1 … c_L``; the label,
predicted at the last input position, is the existing vocabulary id ``pos_offset + k``.

Train / held-out disjointness holds by construction: a context belongs to the held-out split iff a hash of
its *content* is 0 mod ``heldout_modulus`` (see :meth:`GroundingTask.split_windows`), so an identical
(context, query) pair can never appear in both splits, whatever their sizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from .bank import WindowBank, window_bank
from .base import Batch, Split, TaskConfigError
from .hashing import derive_key, mix32, uniform_int

Order = Literal["suffix", "prefix"]
ORDERS: tuple[str, ...] = ("suffix", "prefix")
GENERATOR_VERSION = 1
PYTHIA_TOKENIZER_SIZE = 50277  # len(tokenizer) of Pythia and state-spaces/mamba-*-hf: first id add_tokens gives


@dataclass(frozen=True)
class GroundingConfig:
    """Every parameter that determines the data; recorded in manifests and run directories."""

    length: int = 200
    pool: int | None = None  # None -> 2 * length
    order: Order = "suffix"
    seed: int = 0
    pos_offset: int = 2
    context_offset: int = PYTHIA_TOKENIZER_SIZE  # id of <s_0>; the trainer sets it to the model's vocab size
    out_id: int | None = None  # None -> context_offset + pool
    bank_size: int = 16384
    heldout_modulus: int = 8

    def __post_init__(self) -> None:
        if self.length < 2:
            raise TaskConfigError(f"--len must be at least 2 (got {self.length}): one position is no retrieval")
        if self.pool is not None and self.pool < self.length:
            raise TaskConfigError(f"--pool ({self.pool}) must be at least --len ({self.length}): contexts are distinct")
        if self.order not in ORDERS:
            raise TaskConfigError(f"unknown order {self.order!r}; choose one of {', '.join(ORDERS)}")
        if self.pos_offset < 0:
            raise TaskConfigError(f"pos_offset must be >= 0 (got {self.pos_offset})")
        if self.context_offset < self.pos_offset + self.length:
            raise TaskConfigError(
                f"context_offset {self.context_offset} collides with position tokens "
                f"{self.pos_offset}..{self.pos_offset + self.length - 1}: the base vocabulary is too small"
            )
        if self.bank_size < 1 or self.heldout_modulus < 2:
            raise TaskConfigError("bank_size must be >= 1 and heldout_modulus >= 2")

    @property
    def pool_size(self) -> int:
        return self.pool if self.pool is not None else 2 * self.length

    @property
    def out_token_id(self) -> int:
        return self.out_id if self.out_id is not None else self.context_offset + self.pool_size


class GroundingTask:
    """Vectorised, counter-based generator of the grounding task; see the module docstring."""

    name = "grounding"

    def __init__(self, config: GroundingConfig) -> None:
        self.config = config
        c = config
        self._key_t = derive_key("grounding.t", c.seed, c.pool_size, c.bank_size)
        self._split_cache: dict[tuple[str, str], torch.Tensor] = {}
        self._key_split = derive_key("grounding.split", c.seed)
        out = c.out_token_id
        if c.context_offset <= out < c.context_offset + c.pool_size:
            raise TaskConfigError(f"out_id {out} lies inside the context token range")

    # -- interface ---------------------------------------------------------------------------------------
    @property
    def seq_len(self) -> int:
        return self.config.length + 2

    @property
    def num_buckets(self) -> int:
        return self.config.length

    @property
    def new_tokens(self) -> list[str]:
        return [f"<s_{j}>" for j in range(self.config.pool_size)] + ["<out>"]

    @property
    def first_new_id(self) -> int:
        return self.config.context_offset

    @property
    def min_base_vocab(self) -> int:
        return self.config.pos_offset + self.config.length

    def bucket_name(self) -> str:
        return "target position"

    def _bank(self, device: torch.device) -> WindowBank:
        c = self.config
        return window_bank(c.seed, c.pool_size, c.length, c.bank_size, c.context_offset, str(device))

    def split_windows(self, split: Split, device: torch.device) -> torch.Tensor:
        """Flat starts (``row * row_len + offset``) of every bank window whose content belongs to ``split``.

        The split is a partition of window *contents* (hash of the context ≡ 0 mod ``heldout_modulus`` ⇒
        held-out), so two samples with the same context always share a split: train and held-out cannot hold
        the same (context, query) pair, or even the same context, whatever their sizes.
        """
        key = (split, str(device))
        if key not in self._split_cache:
            c = self.config
            bank = self._bank(device)
            fp = bank.fingerprints
            held = mix32(fp ^ (fp >> 32) ^ self._key_split) % c.heldout_modulus == 0
            mask = held if split == "heldout" else ~held
            t, o = torch.nonzero(mask, as_tuple=True)
            if t.numel() == 0:
                raise TaskConfigError(
                    f"the {split} split is empty at len={c.length}, pool={c.pool_size}: "
                    "the sample space is too small; raise --pool"
                )
            self._split_cache[key] = t * bank.rows.shape[1] + o
        return self._split_cache[key]

    def generate(self, split: Split, indices: torch.Tensor) -> Batch:
        c = self.config
        if split not in ("train", "heldout"):
            raise TaskConfigError(f"unknown split {split!r}; choose train or heldout")
        indices = indices.to(torch.int64)
        if indices.numel() and int(indices.min()) < 0:
            raise TaskConfigError("sample indices must be non-negative")
        bank = self._bank(indices.device)
        admissible = self.split_windows(split, indices.device)
        starts = admissible[uniform_int(indices, self._key_t, admissible.numel())]
        n, length = indices.shape[0], c.length
        k = indices % length
        # every window as a row of a strided view: index_select copies L contiguous ids per sample
        flat = bank.rows.view(-1)
        all_windows = flat.as_strided((flat.numel() - length + 1, length), (1, 1))
        context = torch.index_select(all_windows, 0, starts)
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

    def records(self, batch: Batch) -> Iterator[dict[str, Any]]:
        ctx = batch.extras["context"].cpu().numpy()
        ids = batch.input_ids.cpu().numpy()
        qs = batch.extras["query"].cpu().tolist()
        ks = batch.extras["target_position"].cpu().tolist()
        labels = batch.labels[:, 0].cpu().tolist()
        for j in range(len(qs)):
            yield {"context": ctx[j], "query": qs[j], "target_position": ks[j], "input_ids": ids[j], "label": labels[j]}

    def manifest(self) -> dict[str, Any]:
        c = self.config
        return {
            "task": self.name,
            "generator_version": GENERATOR_VERSION,
            "params": {**asdict(c), "pool": c.pool_size, "out_id": c.out_token_id},
            "layout": (
                "c_1 ... c_L <out> q -> label" if c.order == "suffix" else "<out> q c_1 ... c_L -> label"
            ),
            "vocabulary": {
                "context_tokens": {"first_id": c.context_offset, "count": c.pool_size, "format": "<s_{j}>"},
                "new_tokens": [
                    {"token": tok, "id": c.context_offset + j} for j, tok in enumerate(self.new_tokens[:-1])
                ]
                + [{"token": "<out>", "id": c.out_token_id}],
                "position_tokens": {
                    "rule": "position k (0-based) is existing id pos_offset + k",
                    "pos_offset": c.pos_offset,
                    "ids": [c.pos_offset, c.pos_offset + c.length - 1],
                },
            },
            "sampling": {
                "target_position": "k = i mod L (exactly balanced for any N)",
                "context": "a window of a bank of bank_size seeded pool permutations, picked by a counter hash of i",
                "split_rule": "held-out iff the content hash of the context = 0 mod heldout_modulus",
            },
        }
