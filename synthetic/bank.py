"""A seeded bank of random pool permutations, with O(1) content fingerprints of every window.

Why a bank: drawing L distinct tokens per sample by sorting random keys costs O(P log P) per sample, far too
slow for 10^6 samples a second. Instead each sample picks a bank row ``t`` and a cyclic offset ``o`` (two
counter hashes) and takes the window ``row_t[o : o + L]``. A window of a uniform random permutation is a
uniform random *ordered* L-subset of the pool, so every sample is marginally exactly uniform; the only
approximation is that samples drawn from the same row are correlated, which the bank size bounds.
Taking a window is a strided copy of L contiguous ids, i.e. memcpy speed.

The rolling hash of every window (mod 2**64, wrapping int64 arithmetic) gives a fingerprint that depends on
the window's *content* only, which the split rule uses to keep train and held-out disjoint by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .hashing import derive_key, hash2

ROLL_BASE = 0x100000001B3  # FNV-64 prime: odd, so multiplication is a bijection mod 2**64


@dataclass(frozen=True)
class WindowBank:
    """``rows[t, o : o + L]`` is window (t, o) (absolute vocabulary ids); ``fingerprints[t, o]`` its hash."""

    rows: torch.Tensor  # [M, P + L - 1] int64
    windows: torch.Tensor  # [M, P, L] strided view of rows
    fingerprints: torch.Tensor  # [M, P] int64


def _permutations(seed: int, pool: int, size: int, device: torch.device) -> torch.Tensor:
    """``size`` random permutations of ``range(pool)``: argsort of unique counter-hash keys."""
    key = derive_key("probes.bank", seed, pool, size)
    counters = torch.arange(size * pool, device=device, dtype=torch.int64)
    # hash in the high bits, column in the low bits: keys are unique, so the sort has no ties to break
    keys = (hash2(counters, key) << 20) | (counters % pool)
    return keys.view(size, pool).argsort(dim=1)


@lru_cache(maxsize=8)
def window_bank(
    seed: int, pool: int, length: int, size: int, id_offset: int, device_str: str = "cpu"
) -> WindowBank:
    """The bank for one parameter set, built once per process and device (cached)."""
    device = torch.device(device_str)
    perm = _permutations(seed, pool, size, device) + id_offset
    rows = torch.cat([perm, perm[:, : length - 1]], dim=1).contiguous()
    windows = rows.unfold(1, length, 1)  # [M, P, L], no copy
    # rolling hash h_{j+1} = h_j * B + x_j over each row, then window(o) = h_{o+L} - h_o * B**L
    prefix = torch.zeros(size, rows.shape[1] + 1, dtype=torch.int64, device=device)
    acc = torch.zeros(size, dtype=torch.int64, device=device)
    for j in range(rows.shape[1]):
        acc = acc * ROLL_BASE + rows[:, j]
        prefix[:, j + 1] = acc
    base_pow = 1
    for _ in range(length):
        base_pow = (base_pow * ROLL_BASE) & 0xFFFFFFFFFFFFFFFF
    if base_pow >= 1 << 63:
        base_pow -= 1 << 64
    fingerprints = prefix[:, length : length + pool] - prefix[:, :pool] * base_pow
    return WindowBank(rows=rows, windows=windows, fingerprints=fingerprints.contiguous())


def sequence_fingerprint(tokens: torch.Tensor) -> torch.Tensor:
    """The same rolling hash for explicit rows ``[N, L]``: equals the bank fingerprint of equal content."""
    acc = torch.zeros(tokens.shape[0], dtype=torch.int64, device=tokens.device)
    for j in range(tokens.shape[1]):
        acc = acc * ROLL_BASE + tokens[:, j].to(torch.int64)
    return acc
