"""The induction-head task (H3, Fu et al. 2023; Olsson et al. 2022): complete ``A B … A →`` with ``B``.

A sample of length ``L`` is ``L`` context tokens followed by the trigger again (``L + 1`` input tokens)::

    x_0 … x_{p-1} <trig> x_{p+1} … x_{L-1} <trig>   → label x_{p+1}

The special token ``<trig>`` occurs exactly once in the context, at position ``p``; the logit at the final
``<trig>`` must predict the token that followed it. The per-position bucket is ``p`` (``0 … L-2``), chosen as
``p = i mod (L-1)`` so the buckets are exactly balanced for any range of indices. The other tokens are i.i.d.
uniform over a pool of ``P`` new tokens ``<t_j>``; ``<trig>`` is one more new token.

Sampling: :func:`.iid.iid_tokens` draws the tokens from a counter hash of the sample index. Disjointness: one
filler token (the last context token, or the first when the pair ``<trig> x_{p+1}`` ends the context) is a
*check digit* (:func:`.disjoint.check_digit`) that makes the content hash of the whole context decide the
split. ``order`` accepts only ``"suffix"`` (the query trigger comes last).
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
class InductionConfig:
    """Every parameter that determines the data; recorded in manifests and run directories."""

    length: int = 64  # context tokens before the final trigger
    pool: int | None = None  # filler / target tokens; None -> max(2 * length, 16)
    order: str = "suffix"
    seed: int = 0
    context_offset: int = PYTHIA_TOKENIZER_SIZE  # id of <t_0>; the trainer sets it to the model's vocab size
    heldout_modulus: int = 8

    def __post_init__(self) -> None:
        if self.length < 3:
            raise TaskConfigError(
                f"--len must be at least 3 (got {self.length}): trigger, target and one check token"
            )
        if self.heldout_modulus < 2:
            raise TaskConfigError(f"heldout_modulus must be >= 2 (got {self.heldout_modulus})")
        if self.pool is not None and not self.heldout_modulus <= self.pool <= 2**31:
            raise TaskConfigError(
                f"--pool must be in {self.heldout_modulus}..2**31 (>= heldout_modulus, got {self.pool})"
            )
        if self.order not in ORDERS:
            raise TaskConfigError(
                f"unknown order {self.order!r} for induction; only 'suffix' (trigger repeated last)"
            )
        if self.context_offset < 0:
            raise TaskConfigError(f"context_offset must be >= 0 (got {self.context_offset})")

    @property
    def pool_size(self) -> int:
        return self.pool if self.pool is not None else max(2 * self.length, MIN_DEFAULT_POOL)


class InductionTask:
    """Vectorised, counter-based induction-head generator; see the module docstring."""

    name = "induction"

    def __init__(self, config: InductionConfig) -> None:
        self.config = c = config
        self._seed = derive_key("induction.tokens", c.seed)
        self._key_hash = derive_key("induction.content", c.seed)
        self._key_digit = derive_key("induction.digit", c.seed)

    @property
    def seq_len(self) -> int:
        return self.config.length + 1

    @property
    def num_buckets(self) -> int:
        return self.config.length - 1

    @property
    def new_tokens(self) -> list[str]:
        return [f"<t_{j}>" for j in range(self.config.pool_size)] + ["<trig>"]

    @property
    def first_new_id(self) -> int:
        return self.config.context_offset

    @property
    def min_base_vocab(self) -> int:
        return 0  # every token is new

    @property
    def trigger_id(self) -> int:
        return self.config.context_offset + self.config.pool_size

    def bucket_name(self) -> str:
        return "earlier trigger position"

    def check_slots(self, trigger_positions: torch.Tensor) -> torch.Tensor:
        """The check-digit column per sample: the last context token, or the first if the target is last."""
        last = self.config.length - 1
        return torch.where(trigger_positions < last - 1, last, 0)

    def contexts(self, split: Split, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool-relative contexts ``[N, L]`` (the trigger as ``P``) and trigger positions ``[N]``."""
        c = self.config
        p = indices % (c.length - 1)
        x = iid_tokens(indices, self._seed, c.pool_size, c.length)
        x.scatter_(1, p[:, None], c.pool_size)
        slot = self.check_slots(p)
        rest = content_hash(x, self._key_hash, skip=slot)
        digit = check_digit(rest, indices, self._key_digit, c.pool_size, c.heldout_modulus, split)
        x.scatter_(1, slot[:, None], digit[:, None])
        return x, p

    def split_of(self, contexts: torch.Tensor) -> torch.Tensor:
        """True where a pool-relative context belongs to the held-out split (the rule, for verification)."""
        p = (contexts == self.config.pool_size).to(torch.int64).argmax(dim=1)
        slot = self.check_slots(p)
        rest = content_hash(contexts, self._key_hash, skip=slot)
        return (rest + contexts.gather(1, slot[:, None])[:, 0]) % self.config.heldout_modulus == 0

    def generate(self, split: Split, indices: torch.Tensor) -> Batch:
        c = self.config
        if split not in ("train", "heldout"):
            raise TaskConfigError(f"unknown split {split!r}; choose train or heldout")
        indices = indices.to(torch.int64)
        if indices.numel() and int(indices.min()) < 0:
            raise TaskConfigError("sample indices must be non-negative")
        n, length, device = indices.shape[0], c.length, indices.device
        x, p = self.contexts(split, indices)
        context = x.add_(c.context_offset)
        input_ids = torch.empty(n, length + 1, dtype=torch.int64, device=device)
        input_ids[:, :length] = context
        input_ids[:, length] = self.trigger_id
        label = context.gather(1, (p + 1)[:, None])
        return Batch(
            input_ids=input_ids,
            label_positions=torch.full((n, 1), length, dtype=torch.int64, device=device),
            labels=label,
            metric_positions=p[:, None],
            extras={"context": context, "trigger_position": p},
        )

    def records(self, batch: Batch) -> Iterator[dict[str, Any]]:
        ctx, ids = batch.extras["context"].cpu().numpy(), batch.input_ids.cpu().numpy()
        ps, labels = batch.extras["trigger_position"].cpu().tolist(), batch.labels[:, 0].cpu().tolist()
        for j in range(len(ps)):
            yield {"context": ctx[j], "trigger_position": ps[j], "input_ids": ids[j], "label": labels[j]}

    def manifest(self) -> dict[str, Any]:
        c = self.config
        return {
            "task": self.name,
            "generator_version": GENERATOR_VERSION,
            "params": {**asdict(c), "pool": c.pool_size},
            "layout": "x_1 ... <trig> y ... x_L <trig> -> label y (the token after the earlier trigger)",
            "seq_len": self.seq_len,
            "buckets": {"count": self.num_buckets, "meaning": self.bucket_name()},
            "vocabulary": {
                "filler_tokens": {"first_id": c.context_offset, "count": c.pool_size, "format": "<t_{j}>"},
                "trigger": {"token": "<trig>", "id": self.trigger_id},
                "new_tokens": [
                    {"token": tok, "id": c.context_offset + j} for j, tok in enumerate(self.new_tokens)
                ],
            },
            "sampling": {
                "trigger_position": "p = i mod (L-1) (exactly balanced for any N)",
                "tokens": "i.i.d. uniform: sum mod P of two seeded bank windows picked by a counter hash",
                "split_rule": "one filler token (last, or first when the target is last) is a check digit: "
                "held-out iff (content hash of the rest + digit) = 0 mod heldout_modulus",
            },
        }
