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
hash (:class:`.families.BankTask`), so identical samples always share a split. ``order`` accepts only
``"suffix"`` (queries after the pairs; a causal model cannot answer a query placed before its pair).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .bank import WindowBank, window_bank
from .base import Batch, Split, TaskConfigError, register_task
from .families import BankConfig, BankTask, take_windows
from .hashing import derive_key, uniform_int


@dataclass(frozen=True)
class MQARConfig(BankConfig):
    """Every parameter that determines the data; recorded in manifests and run directories.

    ``length`` is D, the number of key-value pairs; ``queries`` Q (None -> D, every key queried once); keys
    and values each come from ``pool`` new tokens (None -> 2 * D).
    """

    queries: int | None = None

    LENGTH_RULE: ClassVar[str] = "--len counts the key-value pairs"
    ORDER_RULE: ClassVar[str] = "queries follow the pairs: a causal model cannot answer one placed before"
    POOL_RULE: ClassVar[str] = "keys are distinct"

    def validate(self) -> None:
        super().validate()
        if self.queries is not None and not 1 <= self.queries <= self.length:
            raise TaskConfigError(f"queries must be in 1..{self.length} (distinct keys), got {self.queries}")

    @property
    def num_queries(self) -> int:
        return self.queries if self.queries is not None else self.length

    def manifest_params(self) -> dict[str, Any]:
        return {**super().manifest_params(), "queries": self.num_queries}


@register_task
class MQARTask(BankTask[MQARConfig]):
    """Vectorised, counter-based MQAR generator; see the module docstring."""

    name = "mqar"
    config_type = MQARConfig
    generator_version = 1
    token_blocks = (("key_tokens", "<k_{j}>"), ("value_tokens", "<v_{j}>"))
    bucket_meaning = "queried pair position"
    layout = "k_1 v_1 ... k_D v_D  k_q1 v_q1 ... k_qQ; the logit at each query key predicts its value"
    sampling = {
        "keys": "a window of a bank of seeded key-pool permutations (distinct keys)",
        "values": "a window of a second permutation bank (distinct values)",
        "queries": "a window of a bank of permutations of the D pair indices (distinct, random order)",
        "split_rule": "held-out iff the content hash of the key sequence = 0 mod heldout_modulus",
    }

    def __init__(self, config: MQARConfig) -> None:
        super().__init__(config)
        c = config
        self._key_pick = derive_key("mqar.pick.keys", c.seed, c.pool_size, c.bank_size)
        self._value_seed = derive_key("mqar.values", c.seed)
        self._query_seed = derive_key("mqar.queries", c.seed)

    @property
    def seq_len(self) -> int:
        return 2 * self.config.length + 2 * self.config.num_queries - 1

    @property
    def value_offset(self) -> int:
        return self.block_first_id(1)

    def _banks(self, device: torch.device) -> tuple[WindowBank, WindowBank, WindowBank]:
        c, dev = self.config, str(device)
        values = window_bank(self._value_seed, c.pool_size, c.length, c.bank_size, self.value_offset, dev)
        queries = window_bank(self._query_seed, c.length, c.num_queries, c.bank_size, 0, dev)
        return self._bank(device), values, queries

    def sample(self, split: Split, indices: torch.Tensor) -> Batch:
        c = self.config
        key_bank, value_bank, query_bank = self._banks(indices.device)
        admissible = self.split_windows(split, indices.device)
        picked = admissible[uniform_int(indices, self._key_pick, admissible.numel())]
        keys = take_windows(key_bank, picked, c.length)
        values = take_windows(value_bank, _any_start(value_bank, indices, self._value_seed), c.length)
        queried = take_windows(query_bank, _any_start(query_bank, indices, self._query_seed), c.num_queries)

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


def _any_start(bank: WindowBank, indices: torch.Tensor, seed: int) -> torch.Tensor:
    """A uniformly random window ``(row, offset)`` of ``bank`` per index, as a flat start."""
    rows, width = bank.fingerprints.shape[0], bank.rows.shape[1]
    offsets = bank.fingerprints.shape[1]
    row = uniform_int(indices, derive_key("mqar.row", seed), rows)
    return row * width + uniform_int(indices, derive_key("mqar.offset", seed), offsets)
