"""The induction-head task (H3, Fu et al. 2023; Olsson et al. 2022): complete ``A B … A →`` with ``B``.

A sample of length ``L`` is ``L`` context tokens followed by the trigger again (``L + 1`` input tokens)::

    x_0 … x_{p-1} <trig> x_{p+1} … x_{L-1} <trig>   → label x_{p+1}

The special token ``<trig>`` occurs exactly once in the context, at position ``p``; the logit at the final
``<trig>`` must predict the token that followed it. The per-position bucket is ``p`` (``0 … L-2``), chosen as
``p = i mod (L-1)`` so the buckets are exactly balanced for any range of indices. The other tokens are i.i.d.
uniform over a pool of ``P`` new tokens ``<t_j>``; ``<trig>`` is one more new token.

Sampling (:class:`.families.CheckDigitTask`): :func:`.iid.iid_tokens` draws the tokens from a counter
hash of the sample index. Disjointness: one filler token (the last context token, or the first when the pair
``<trig> x_{p+1}`` ends the context) is a *check digit* (:func:`.disjoint.check_digit`) that makes the
content hash of the whole context decide the split. ``order`` accepts only ``"suffix"`` (the query trigger
comes last).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Batch, Split, register_task
from .families import CheckDigitConfig, CheckDigitTask


@dataclass(frozen=True)
class InductionConfig(CheckDigitConfig):
    """Every parameter that determines the data; recorded in manifests and run directories.

    ``length`` is L, the context tokens before the final trigger; ``pool`` the filler / target tokens
    (None -> max(2 * L, 16)).
    """

    MIN_LENGTH: ClassVar[int] = 3
    LENGTH_RULE: ClassVar[str] = "trigger, target and one check token"
    ORDER_RULE: ClassVar[str] = "the trigger is repeated last"


@register_task
class InductionTask(CheckDigitTask[InductionConfig]):
    """Vectorised, counter-based induction-head generator; see the module docstring."""

    name = "induction"
    config_type = InductionConfig
    generator_version = 1
    token_blocks = (("filler_tokens", "<t_{j}>"),)
    special_tokens = (("trigger", "<trig>"),)
    bucket_meaning = "earlier trigger position"
    one_label = True
    layout = "x_1 ... <trig> y ... x_L <trig> -> label y (the token after the earlier trigger)"
    sampling = {
        "trigger_position": "p = i mod (L-1) (exactly balanced for any N)",
        "tokens": "i.i.d. uniform: sum mod P of two seeded bank windows picked by a counter hash",
        "split_rule": "one filler token (last, or first when the target is last) is a check digit: "
        "held-out iff (content hash of the rest + digit) = 0 mod heldout_modulus",
    }

    @property
    def seq_len(self) -> int:
        return self.config.length + 1

    @property
    def num_buckets(self) -> int:
        return self.config.length - 1

    @property
    def trigger_id(self) -> int:
        return self.special_id(0)

    def check_slots(self, trigger_positions: torch.Tensor) -> torch.Tensor:
        """The check-digit column per sample: the last context token, or the first if the target is last."""
        last = self.config.length - 1
        return torch.where(trigger_positions < last - 1, last, 0)

    def contexts(self, split: Split, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool-relative contexts ``[N, L]`` (the trigger as ``P``) and trigger positions ``[N]``."""
        p = indices % (self.config.length - 1)
        x = self.tokens(indices)
        x.scatter_(1, p[:, None], self.config.pool_size)
        self.set_check_digit(x, self.check_slots(p), indices, split)
        return x, p

    def split_of(self, contexts: torch.Tensor) -> torch.Tensor:
        """True where a pool-relative context belongs to the held-out split (the rule, for verification)."""
        p = (contexts == self.config.pool_size).to(torch.int64).argmax(dim=1)
        return self.heldout_by_digit(contexts, self.check_slots(p))

    def sample(self, split: Split, indices: torch.Tensor) -> Batch:
        n, length, device = indices.shape[0], self.config.length, indices.device
        x, p = self.contexts(split, indices)
        context = x.add_(self.config.context_offset)
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
