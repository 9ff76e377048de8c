"""Counter-based randomness on integer tensors.

Every random choice of a generator is a pure function of ``(key, counter)``: a 32-bit integer hash of the
sample index mixed with a key derived from the generator parameters. Nothing depends on a stateful RNG, so
sample ``i`` is the same on CPU and GPU, in any batch split, in any order, and after a resume.

All arithmetic runs on int64 tensors holding values in ``[0, 2**32)``; products may wrap past 2**63, which
is harmless because only the low 32 bits are kept.
"""

from __future__ import annotations

import hashlib

import torch

MASK32 = 0xFFFFFFFF


def mix32(x: torch.Tensor) -> torch.Tensor:
    """The ``lowbias32`` integer finaliser (Wellons): a bijection of [0, 2**32) with good avalanche."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def hash2(counter: torch.Tensor, key: int) -> torch.Tensor:
    """Hash of ``(key, counter)`` for int64 counters in ``[0, 2**62)``: two mixing rounds keyed twice."""
    lo = counter & MASK32
    hi = counter >> 32
    h = mix32(lo ^ (key & MASK32))
    return mix32(h ^ mix32(hi + ((key >> 32) & MASK32) + 0x9E3779B9))


def derive_key(*parts: object) -> int:
    """A 64-bit key from any printable parameters, stable across Python processes and platforms."""
    text = "\x1f".join(repr(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def uniform_int(counter: torch.Tensor, key: int, high: int) -> torch.Tensor:
    """Integers in ``[0, high)`` from ``(key, counter)`` by multiply-shift (bias below 2**-32 · high)."""
    if high <= 0:
        raise ValueError(f"high must be positive, got {high}")
    return (hash2(counter, key) * high) >> 32
