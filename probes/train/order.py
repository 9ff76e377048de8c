"""Data order: which training examples global step ``s`` uses, as a pure function of ``(seed, s)``.

Both trainers draw batches this way (README "One engine, one or many processes"): the example indices ``0 … n-1`` are shuffled once per epoch
by a permutation seeded with ``seed · stride + epoch``, the epochs are concatenated, and step ``s`` takes
global positions ``[s·B, (s+1)·B)``. Nothing about the order lives in a checkpoint except the step, so a
resumed run replays exactly the batches an uninterrupted one would have seen, and every model of a grid
sees the same examples in the same order.

With ``W`` processes (DDP/FSDP) process ``r`` takes every W-th example of the global batch
(:func:`shard`): the global batch, and hence the averaged gradient, does not depend on ``W``.
"""

from __future__ import annotations

import torch

from probes.errors import UserError

#: The epoch-seed strides in use. The probe trainer and the VLM trainer were written with different ones
#: and their committed reference runs depend on them, so the stride stays a parameter.
PROBE_STRIDE = 1_000_003
VLM_STRIDE = 100_003


class DataOrder:
    """Training indices for a global step: epoch-wise seeded permutations of ``range(n_train)``."""

    def __init__(self, n_train: int, batch_size: int, seed: int, stride: int = PROBE_STRIDE) -> None:
        if n_train < 1 or batch_size < 1:
            raise UserError(f"a data order needs at least one example and a batch size >= 1 (got {n_train}, {batch_size})")
        self.n, self.b, self.seed, self.stride = n_train, batch_size, seed, stride
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            gen = torch.Generator().manual_seed(self.seed * self.stride + epoch)
            self._perms[epoch] = torch.randperm(self.n, generator=gen)
        return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        """The ``B`` example indices of global step ``step`` (int64, CPU)."""
        pos = torch.arange(step * self.b, (step + 1) * self.b)
        epochs, offsets = pos // self.n, pos % self.n
        return torch.cat([self._perm(int(e))[offsets[epochs == e]] for e in torch.unique(epochs)])


def shard(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Process ``rank``'s part of a global batch: every ``world``-th index starting at ``rank``."""
    return indices[rank::world]


def check_divisible(batch_size: int, world: int) -> None:
    """Equal shards keep the mean of the processes' mean losses equal to the global batch's mean loss."""
    if batch_size % world:
        raise UserError(f"batch size {batch_size} is not divisible by {world} processes")
