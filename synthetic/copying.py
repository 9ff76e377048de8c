"""The copying task: read a random sequence, then reproduce it after a separator, token by token.

A sample of length ``L`` is ``x_0 … x_{L-1} <copy> x_0 … x_{L-2}`` (``2L`` input tokens): the input holds the
copy shifted by one, as in language modelling (teacher forcing). The logit at ``<copy>`` predicts ``x_0`` and
the logit at the copy of ``x_{j-1}`` predicts ``x_j``; the per-position bucket is ``j``, the position in the
copied sequence, so every sample fills each bucket once (exactly balanced). Tokens are i.i.d. uniform over a
pool of ``P`` new tokens ``<c_j>`` (repetitions allowed, as in copying benchmarks); ``<copy>`` is one more
new token.

Sampling (:class:`.families.CheckDigitTask`): :func:`.iid.iid_tokens` draws ``x`` from a counter hash of
the sample index. Disjointness: the last token is a *check digit* (:func:`.disjoint.check_digit`) that makes
the content hash of the whole sequence decide the split, so identical sequences always share a split.
``order`` accepts only ``"suffix"`` (the copy follows the sequence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import Batch, Split, register_task
from .families import CheckDigitConfig, CheckDigitTask


@dataclass(frozen=True)
class CopyingConfig(CheckDigitConfig):
    """Every parameter that determines the data; recorded in manifests and run directories.

    ``length`` is L, the tokens to copy; ``pool`` the alphabet of new tokens (None -> max(2 * L, 16)).
    """

    LENGTH_RULE: ClassVar[str] = "copying one token is no sequence"
    ORDER_RULE: ClassVar[str] = "the copy follows the sequence"


@register_task
class CopyingTask(CheckDigitTask[CopyingConfig]):
    """Vectorised, counter-based copying generator; see the module docstring."""

    name = "copying"
    config_type = CopyingConfig
    generator_version = 1
    token_blocks = (("sequence_tokens", "<c_{j}>"),)
    special_tokens = ((None, "<copy>"),)
    bucket_meaning = "position in the copied sequence"
    layout = (
        "x_1 ... x_L <copy> x_1 ... x_{L-1}; the logit at <copy> and at each copied token predicts the next"
    )
    sampling = {
        "sequence": "i.i.d. uniform tokens: sum mod P of two seeded bank windows picked by a counter hash",
        "split_rule": "last token is a check digit: held-out iff (content hash of x_1..x_{L-1} + x_L) "
        "= 0 mod heldout_modulus",
    }

    @property
    def seq_len(self) -> int:
        return 2 * self.config.length

    @property
    def separator_id(self) -> int:
        return self.special_id(0)

    def _last(self, like: torch.Tensor) -> torch.Tensor:
        """The check slot of every sample: the last token of the sequence."""
        return torch.full_like(like, self.config.length - 1, dtype=torch.int64)

    def sequences(self, split: Split, indices: torch.Tensor) -> torch.Tensor:
        """The sequences to copy, ``[N, L]`` in ``[0, P)`` (pool-relative), last token the check digit."""
        x = self.tokens(indices)
        self.set_check_digit(x, self._last(indices), indices, split)
        return x

    def split_of(self, sequences: torch.Tensor) -> torch.Tensor:
        """True where a pool-relative sequence belongs to the held-out split (the rule, for verification)."""
        return self.heldout_by_digit(sequences, self._last(sequences[:, 0]))

    def sample(self, split: Split, indices: torch.Tensor) -> Batch:
        n, length, device = indices.shape[0], self.config.length, indices.device
        seq = self.sequences(split, indices).add_(self.config.context_offset)
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
