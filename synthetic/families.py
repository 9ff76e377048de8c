"""The two families of tasks, by how they sample and keep train and held-out disjoint (see :mod:`.disjoint`).

* :class:`BankTask` (grounding, MQAR): distinct tokens are a window of a seeded permutation bank; a window is
  admissible for a split by a hash of its content (:func:`.disjoint.bank_split_starts`).
* :class:`CheckDigitTask` (copying, induction): i.i.d. tokens (:mod:`.iid`), one check slot per sample set so
  that the content hash of the whole sample decides its split (:func:`.disjoint.check_digit`).

Why here and not in each task: the keys, caches and split rules are the same code in both members of a
family; a task of either family only lays its tokens out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch

from .bank import WindowBank, window_bank
from .base import Split, TaskBase, TaskConfigBase, TaskConfigError
from .disjoint import bank_split_starts, check_digit, content_hash
from .hashing import derive_key
from .iid import iid_tokens


# -- bank-window tasks -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BankConfig(TaskConfigBase):
    """Tasks that draw distinct tokens from a bank of ``bank_size`` seeded pool permutations."""

    bank_size: int = 16384

    def validate(self) -> None:
        super().validate()
        if self.bank_size < 1:
            raise TaskConfigError(f"bank_size must be >= 1 (got {self.bank_size})")


BC = TypeVar("BC", bound=BankConfig)


class BankTask(TaskBase[BC]):
    """Split rule on the content of the main bank's windows (context / key sequence), cached per device."""

    def __init__(self, config: BC) -> None:
        super().__init__(config)
        self._key_split = derive_key(f"{self.name}.split", config.seed)
        self._split_cache: dict[tuple[str, str], torch.Tensor] = {}

    def _bank(self, device: torch.device) -> WindowBank:
        """The bank whose window content decides the split: ``length`` distinct pool tokens per window."""
        c = self.config
        return window_bank(c.seed, c.pool_size, c.length, c.bank_size, c.context_offset, str(device))

    def split_windows(self, split: Split, device: torch.device) -> torch.Tensor:
        """Flat starts (``row * row_len + offset``) of every bank window whose content belongs to ``split``.

        The split is a partition of window *contents*, so two samples with the same content always share a
        split: train and held-out cannot hold the same sample, whatever their sizes.
        """
        key = (split, str(device))
        if key not in self._split_cache:
            c = self.config
            starts = bank_split_starts(self._bank(device), split, self._key_split, c.heldout_modulus)
            if starts.numel() == 0:
                raise TaskConfigError(
                    f"the {split} split is empty at len={c.length}, pool={c.pool_size}: "
                    "the sample space is too small; raise --pool"
                )
            self._split_cache[key] = starts
        return self._split_cache[key]


def take_windows(bank: WindowBank, starts: torch.Tensor, length: int) -> torch.Tensor:
    """The windows starting at flat positions ``starts``: one strided copy of ``length`` ids per sample."""
    flat = bank.rows.view(-1)
    every_window = flat.as_strided((flat.numel() - length + 1, length), (1, 1))
    return torch.index_select(every_window, 0, starts)


# -- check-digit tasks -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckDigitConfig(TaskConfigBase):
    """Tasks of i.i.d. tokens with a check digit: the pool must offer a digit of each split."""

    MIN_DEFAULT_POOL: ClassVar[int] = 16
    POOL_RULE: ClassVar[str] = "the check digit needs a value of each split"

    def min_pool(self) -> tuple[int, str]:
        return self.heldout_modulus, "heldout_modulus"


CC = TypeVar("CC", bound=CheckDigitConfig)


class CheckDigitTask(TaskBase[CC]):
    """Pool-relative i.i.d. tokens with one check slot per sample that puts the sample in its split."""

    def __init__(self, config: CC) -> None:
        super().__init__(config)
        self._seed = derive_key(f"{self.name}.tokens", config.seed)
        self._key_hash = derive_key(f"{self.name}.content", config.seed)
        self._key_digit = derive_key(f"{self.name}.digit", config.seed)

    def tokens(self, indices: torch.Tensor) -> torch.Tensor:
        """``[N, length]`` i.i.d. tokens in ``[0, P)`` (pool-relative), a fresh tensor per call."""
        c = self.config
        return iid_tokens(indices, self._seed, c.pool_size, c.length)

    def set_check_digit(
        self, x: torch.Tensor, slot: torch.Tensor, indices: torch.Tensor, split: Split
    ) -> None:
        """Write into column ``slot`` (per sample) of ``x`` the digit that puts each row in ``split``."""
        c = self.config
        rest = content_hash(x, self._key_hash, skip=slot)
        digit = check_digit(rest, indices, self._key_digit, c.pool_size, c.heldout_modulus, split)
        x.scatter_(1, slot[:, None], digit[:, None])

    def heldout_by_digit(self, x: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """True where pool-relative rows ``x`` with check slots ``slot`` belong to the held-out split."""
        rest = content_hash(x, self._key_hash, skip=slot)
        return (rest + x.gather(1, slot[:, None])[:, 0]) % self.config.heldout_modulus == 0

