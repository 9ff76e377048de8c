"""Multi-query associative recall (Zoology's MQAR, Arora et al. 2023) behind the probe-task interface.

A sample holds ``D`` key-value pairs, then ``Q`` queries of distinct keys, each followed by its answer
(teacher forcing, as in language modelling)::

    k_1 v_1 k_2 v_2 … k_D v_D   k_{π1} v_{π1} k_{π2} v_{π2} … k_{πQ}

The logit at each query key must predict the value paired with it; the per-position bucket is the index
(0-based) of the queried pair in the context. Keys come from a pool of ``P`` new tokens ``<k_j>`` and values
from ``P`` new tokens ``<v_j>``; keys are distinct and values are distinct within a sample (as in Zoology's
generator). Differences from Zoology, on purpose: the query section is contiguous (no power-law gaps of
random filler), and ``--len`` is the number of pairs ``D`` so that the buckets are the ``D`` context pairs.
With ``Q = D`` (default) every pair is queried once per sample, so the buckets are exactly balanced; with
``Q < D`` the queried pairs are a uniform random subset (balanced in expectation only).

Sampling: keys, values and the query order are windows of three permutation banks (:mod:`.bank`) picked by
counter hashes of the sample index. Disjointness: the split is a partition of *key sequences* by a content
hash (:func:`.disjoint.bank_split_starts`), so identical samples always share a split. ``order`` accepts only
``"suffix"`` (queries after the pairs; a causal model cannot answer a query placed before its pair).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .bank import WindowBank, window_bank
from .base import Batch, Split, TaskConfigError
from .disjoint import bank_split_starts
from .grounding import PYTHIA_TOKENIZER_SIZE
from .hashing import derive_key, uniform_int

GENERATOR_VERSION = 1
ORDERS: tuple[str, ...] = ("suffix",)


@dataclass(frozen=True)
class MQARConfig:
    """Every parameter that determines the data; recorded in manifests and run directories."""

    length: int = 64  # number of key-value pairs D
    queries: int | None = None  # None -> D (every key queried once)
    pool: int | None = None  # keys and values each from P new tokens; None -> 2 * D
    order: str = "suffix"
    seed: int = 0
    context_offset: int = PYTHIA_TOKENIZER_SIZE  # id of <k_0>; the trainer sets it to the model's vocab size
    bank_size: int = 16384
    heldout_modulus: int = 8

    def __post_init__(self) -> None:
        if self.length < 2:
            raise TaskConfigError(f"--len (key-value pairs) must be at least 2 (got {self.length})")
        if self.queries is not None and not 1 <= self.queries <= self.length:
            raise TaskConfigError(f"queries must be in 1..{self.length} (distinct keys), got {self.queries}")
        if self.pool is not None and self.pool < self.length:
            raise TaskConfigError(
                f"--pool ({self.pool}) must be at least --len ({self.length}): keys are distinct"
            )
        if self.order not in ORDERS:
            raise TaskConfigError(
                f"unknown order {self.order!r} for mqar; only 'suffix' (queries after pairs)"
            )
        if self.context_offset < 0:
            raise TaskConfigError(f"context_offset must be >= 0 (got {self.context_offset})")
        if self.bank_size < 1 or self.heldout_modulus < 2:
            raise TaskConfigError("bank_size must be >= 1 and heldout_modulus >= 2")

    @property
    def pool_size(self) -> int:
        return self.pool if self.pool is not None else 2 * self.length

    @property
    def num_queries(self) -> int:
        return self.queries if self.queries is not None else self.length


class MQARTask:
    """Vectorised, counter-based MQAR generator; see the module docstring."""

    name = "mqar"

    def __init__(self, config: MQARConfig) -> None:
        self.config = c = config
        self._key_pick = derive_key("mqar.pick.keys", c.seed, c.pool_size, c.bank_size)
        self._key_split = derive_key("mqar.split", c.seed)
        self._value_seed = derive_key("mqar.values", c.seed)
        self._query_seed = derive_key("mqar.queries", c.seed)
        self._split_cache: dict[tuple[str, str], torch.Tensor] = {}

    # -- interface ---------------------------------------------------------------------------------------
    @property
    def seq_len(self) -> int:
        return 2 * self.config.length + 2 * self.config.num_queries - 1

    @property
    def num_buckets(self) -> int:
        return self.config.length

    @property
    def new_tokens(self) -> list[str]:
        p = self.config.pool_size
        return [f"<k_{j}>" for j in range(p)] + [f"<v_{j}>" for j in range(p)]

    @property
    def first_new_id(self) -> int:
        return self.config.context_offset

    @property
    def min_base_vocab(self) -> int:
        return 0  # every token is new

    def bucket_name(self) -> str:
        return "queried pair position"

    @property
    def value_offset(self) -> int:
        return self.config.context_offset + self.config.pool_size

    def _banks(self, device: torch.device) -> tuple[WindowBank, WindowBank, WindowBank]:
        c, dev = self.config, str(device)
        keys = window_bank(c.seed, c.pool_size, c.length, c.bank_size, c.context_offset, dev)
        values = window_bank(self._value_seed, c.pool_size, c.length, c.bank_size, self.value_offset, dev)
        queries = window_bank(self._query_seed, c.length, c.num_queries, c.bank_size, 0, dev)
        return keys, values, queries

    def split_windows(self, split: Split, device: torch.device) -> torch.Tensor:
        """Flat starts of the key windows whose content belongs to ``split`` (see :mod:`.disjoint`)."""
        cache_key = (split, str(device))
        if cache_key not in self._split_cache:
            c = self.config
            starts = bank_split_starts(self._banks(device)[0], split, self._key_split, c.heldout_modulus)
            if starts.numel() == 0:
                raise TaskConfigError(
                    f"the {split} split is empty at len={c.length}, pool={c.pool_size}: raise --pool"
                )
            self._split_cache[cache_key] = starts
        return self._split_cache[cache_key]

    def generate(self, split: Split, indices: torch.Tensor) -> Batch:
        c = self.config
        if split not in ("train", "heldout"):
            raise TaskConfigError(f"unknown split {split!r}; choose train or heldout")
        indices = indices.to(torch.int64)
        if indices.numel() and int(indices.min()) < 0:
            raise TaskConfigError("sample indices must be non-negative")
        key_bank, value_bank, query_bank = self._banks(indices.device)
        admissible = self.split_windows(split, indices.device)
        keys = _take(key_bank, admissible[uniform_int(indices, self._key_pick, admissible.numel())], c.length)
        values = _take(value_bank, _any_start(value_bank, indices, self._value_seed), c.length)
        queried = _take(query_bank, _any_start(query_bank, indices, self._query_seed), c.num_queries)

        n, d, q = indices.shape[0], c.length, c.num_queries
        input_ids = torch.empty(n, self.seq_len, dtype=torch.int64, device=indices.device)
        input_ids[:, 0 : 2 * d : 2] = keys
        input_ids[:, 1 : 2 * d : 2] = values
        answers = values.gather(1, queried)
        input_ids[:, 2 * d :: 2] = keys.gather(1, queried)
        input_ids[:, 2 * d + 1 :: 2] = answers[:, :-1]
        label_positions = (2 * d + 2 * torch.arange(q, device=indices.device)).expand(n, q)
        return Batch(
            input_ids=input_ids,
            label_positions=label_positions,
            labels=answers,
            metric_positions=queried,
            extras={"keys": keys, "values": values, "query_pairs": queried},
        )

    def records(self, batch: Batch) -> Iterator[dict[str, Any]]:
        keys, values = batch.extras["keys"].cpu().numpy(), batch.extras["values"].cpu().numpy()
        pairs, ids = batch.extras["query_pairs"].cpu().numpy(), batch.input_ids.cpu().numpy()
        positions, labels = batch.label_positions.cpu().numpy(), batch.labels.cpu().numpy()
        for j in range(len(batch)):
            yield {
                "keys": keys[j],
                "values": values[j],
                "query_pairs": pairs[j],
                "input_ids": ids[j],
                "label_positions": positions[j],
                "labels": labels[j],
            }

    def manifest(self) -> dict[str, Any]:
        c = self.config
        p = c.pool_size
        return {
            "task": self.name,
            "generator_version": GENERATOR_VERSION,
            "params": {**asdict(c), "pool": p, "queries": c.num_queries},
            "layout": "k_1 v_1 ... k_D v_D  k_q1 v_q1 ... k_qQ; the logit at each query key predicts its value",
            "seq_len": self.seq_len,
            "buckets": {"count": self.num_buckets, "meaning": self.bucket_name()},
            "vocabulary": {
                "key_tokens": {"first_id": c.context_offset, "count": p, "format": "<k_{j}>"},
                "value_tokens": {"first_id": self.value_offset, "count": p, "format": "<v_{j}>"},
                "new_tokens": [
                    {"token": tok, "id": c.context_offset + j} for j, tok in enumerate(self.new_tokens)
                ],
            },
            "sampling": {
                "keys": "a window of a bank of seeded key-pool permutations (distinct keys)",
                "values": "a window of a second permutation bank (distinct values)",
                "queries": "a window of a bank of permutations of the D pair indices (distinct, random order)",
                "split_rule": "held-out iff the content hash of the key sequence = 0 mod heldout_modulus",
            },
        }


def _any_start(bank: WindowBank, indices: torch.Tensor, seed: int) -> torch.Tensor:
    """A uniformly random window ``(row, offset)`` of ``bank`` per index, as a flat start."""
    rows, width = bank.fingerprints.shape[0], bank.rows.shape[1]
    offsets = bank.fingerprints.shape[1]
    row = uniform_int(indices, derive_key("mqar.row", seed), rows)
    return row * width + uniform_int(indices, derive_key("mqar.offset", seed), offsets)


def _take(bank: WindowBank, starts: torch.Tensor, length: int) -> torch.Tensor:
    """The windows starting at flat positions ``starts``: one strided copy of ``length`` ids per sample."""
    flat = bank.rows.view(-1)
    every_window = flat.as_strided((flat.numel() - length + 1, length), (1, 1))
    return torch.index_select(every_window, 0, starts)
