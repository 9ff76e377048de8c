"""The copying task: read a random sequence, then reproduce it after a separator, token by token.

A sample of length ``L`` is ``x_0 … x_{L-1} <copy> x_0 … x_{L-2}`` (``2L`` input tokens): the input holds the
copy shifted by one, as in language modelling (teacher forcing). The logit at ``<copy>`` predicts ``x_0`` and
the logit at the copy of ``x_{j-1}`` predicts ``x_j``; the per-position bucket is ``j``, the position in the
copied sequence, so every sample fills each bucket once (exactly balanced). Tokens are i.i.d. uniform over a
pool of ``P`` new tokens ``<c_j>`` (repetitions allowed, as in copying benchmarks); ``<copy>`` is one more
new token.

Sampling: :func:`.iid.iid_tokens` draws ``x`` from a counter hash of the sample index. Disjointness: the last
token is a *check digit* (:func:`.disjoint.check_digit`) that makes the content hash of the whole sequence
decide the split, so identical sequences always share a split. ``order`` accepts only ``"suffix"`` (the copy
follows the sequence).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .base import Batch, Split, TaskConfigError
from .disjoint import check_digit, content_hash
from .grounding import PYTHIA_TOKENIZER_SIZE
from .hashing import derive_key
from .iid import iid_tokens

GENERATOR_VERSION = 1
ORDERS: tuple[str, ...] = ("suffix",)
MIN_DEFAULT_POOL = 16


@dataclass(frozen=True)
class CopyingConfig:
    """Every parameter that determines the data; recorded in manifests and run directories."""

    length: int = 64  # tokens to copy
    pool: int | None = None  # alphabet of new tokens; None -> max(2 * length, 16)
    order: str = "suffix"
    seed: int = 0
    context_offset: int = PYTHIA_TOKENIZER_SIZE  # id of <c_0>; the trainer sets it to the model's vocab size
    heldout_modulus: int = 8

    def __post_init__(self) -> None:
        if self.length < 2:
            raise TaskConfigError(
                f"--len must be at least 2 (got {self.length}): copying one token is no sequence"
            )
        if self.heldout_modulus < 2:
            raise TaskConfigError(f"heldout_modulus must be >= 2 (got {self.heldout_modulus})")
        if self.pool is not None and not self.heldout_modulus <= self.pool <= 2**31:
            raise TaskConfigError(
                f"--pool must be in {self.heldout_modulus}..2**31 (>= heldout_modulus, got {self.pool})"
            )
        if self.order not in ORDERS:
            raise TaskConfigError(
                f"unknown order {self.order!r} for copying; only 'suffix' (copy after sequence)"
            )
        if self.context_offset < 0:
            raise TaskConfigError(f"context_offset must be >= 0 (got {self.context_offset})")

    @property
    def pool_size(self) -> int:
        return self.pool if self.pool is not None else max(2 * self.length, MIN_DEFAULT_POOL)


class CopyingTask:
    """Vectorised, counter-based copying generator; see the module docstring."""

    name = "copying"

    def __init__(self, config: CopyingConfig) -> None:
        self.config = c = config
        self._seed = derive_key("copying.tokens", c.seed)
        self._key_hash = derive_key("copying.content", c.seed)
        self._key_digit = derive_key("copying.digit", c.seed)

    @property
    def seq_len(self) -> int:
        return 2 * self.config.length

    @property
    def num_buckets(self) -> int:
        return self.config.length

    @property
    def new_tokens(self) -> list[str]:
        return [f"<c_{j}>" for j in range(self.config.pool_size)] + ["<copy>"]

    @property
    def first_new_id(self) -> int:
        return self.config.context_offset

    @property
    def min_base_vocab(self) -> int:
        return 0  # every token is new

    @property
    def separator_id(self) -> int:
        return self.config.context_offset + self.config.pool_size

    def bucket_name(self) -> str:
        return "position in the copied sequence"

    def sequences(self, split: Split, indices: torch.Tensor) -> torch.Tensor:
        """The sequences to copy, ``[N, L]`` in ``[0, P)`` (pool-relative), last token the check digit."""
        c = self.config
        x = iid_tokens(indices, self._seed, c.pool_size, c.length)
        rest = content_hash(x, self._key_hash, skip=self._last(indices))
        x[:, -1] = check_digit(rest, indices, self._key_digit, c.pool_size, c.heldout_modulus, split)
        return x

    def split_of(self, sequences: torch.Tensor) -> torch.Tensor:
        """True where a pool-relative sequence belongs to the held-out split (the rule, for verification)."""
        rest = content_hash(sequences, self._key_hash, skip=self._last(sequences[:, 0]))
        return (rest + sequences[:, -1]) % self.config.heldout_modulus == 0

    def _last(self, like: torch.Tensor) -> torch.Tensor:
        return torch.full_like(like, self.config.length - 1, dtype=torch.int64)

    def generate(self, split: Split, indices: torch.Tensor) -> Batch:
        c = self.config
        if split not in ("train", "heldout"):
            raise TaskConfigError(f"unknown split {split!r}; choose train or heldout")
        indices = indices.to(torch.int64)
        if indices.numel() and int(indices.min()) < 0:
            raise TaskConfigError("sample indices must be non-negative")
        n, length, device = indices.shape[0], c.length, indices.device
        seq = self.sequences(split, indices).add_(c.context_offset)
        input_ids = torch.empty(n, 2 * length, dtype=torch.int64, device=device)
        input_ids[:, :length] = seq
        input_ids[:, length] = self.separator_id
        input_ids[:, length + 1 :] = seq[:, :-1]
        positions = torch.arange(length, device=device)  # the same for every sample: expanded views, no copy
        return Batch(
            input_ids=input_ids,
            label_positions=(positions + length).expand(n, length),
            labels=seq,
            metric_positions=positions.expand(n, length),
            extras={"sequence": seq},
        )

    def records(self, batch: Batch) -> Iterator[dict[str, Any]]:
        seq, ids = batch.extras["sequence"].cpu().numpy(), batch.input_ids.cpu().numpy()
        positions, labels = batch.label_positions.cpu().numpy(), batch.labels.cpu().numpy()
        for j in range(len(batch)):
            yield {
                "sequence": seq[j],
                "input_ids": ids[j],
                "label_positions": positions[j],
                "labels": labels[j],
            }

    def manifest(self) -> dict[str, Any]:
        c = self.config
        return {
            "task": self.name,
            "generator_version": GENERATOR_VERSION,
            "params": {**asdict(c), "pool": c.pool_size},
            "layout": "x_1 ... x_L <copy> x_1 ... x_{L-1}; the logit at <copy> and at each copied token predicts the next",
            "seq_len": self.seq_len,
            "buckets": {"count": self.num_buckets, "meaning": self.bucket_name()},
            "vocabulary": {
                "sequence_tokens": {"first_id": c.context_offset, "count": c.pool_size, "format": "<c_{j}>"},
                "new_tokens": [
                    {"token": tok, "id": c.context_offset + j} for j, tok in enumerate(self.new_tokens)
                ],
            },
            "sampling": {
                "sequence": "i.i.d. uniform tokens: sum mod P of two seeded bank windows picked by a counter hash",
                "split_rule": "last token is a check digit: held-out iff (content hash of x_1..x_{L-1} + x_L) "
                "= 0 mod heldout_modulus",
            },
        }
