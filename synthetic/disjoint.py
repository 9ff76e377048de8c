"""Train / held-out disjointness: split rules that guarantee it by construction, and a check that verifies it.

Every task assigns a sample to a split by a hash of the sample's *content*, never of its index, so two
identical samples always share a split and no sample of one split can appear in the other, whatever the
split sizes. Two constructions are used:

* **bank windows** (grounding, MQAR keys): a window of a permutation bank is admissible for a split iff the
  hash of its content is (held-out) or is not (train) 0 mod ``modulus``; samples pick among admissible
  windows only (:func:`bank_split_starts`).
* **check digit** (copying, induction): all tokens but one *check slot* are drawn freely; the slot's value
  ``d`` is then drawn uniformly among the values for which ``(content_hash(rest) + d) mod modulus == 0``
  (held-out) or ``!= 0`` (train) (:func:`check_digit`). The split is a function of the whole content.

:func:`check_disjoint` verifies the property on the actual index ranges a run uses: held-out fingerprints are
sorted once, every train sample is looked up by fingerprint, and each fingerprint match is confirmed by
comparing the tokens exactly (so a hash collision can neither hide nor invent an overlap).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from .bank import WindowBank
from .base import Batch, ProbeTask, Split
from .hashing import MASK32, derive_key, hash2, mix32

FINGERPRINT_KEY = derive_key("probes.disjoint.fingerprint", 1)
DEFAULT_CHUNK = 65536
MAX_EXAMPLES = 5


# -- split rules ------------------------------------------------------------------------------------------
def _weights(width: int, key: int, device: torch.device) -> torch.Tensor:
    """``width`` pseudo-random odd 64-bit weights (wrapping int64), a pure function of ``key``."""
    j = torch.arange(width, dtype=torch.int64, device=device)
    return (hash2(j, key) << 32) | hash2(j, key ^ 0x5BD1E995) | 1


def linear_form(rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``rows [N, T] @ weights [T]`` in wrapping int64 arithmetic (exact mod 2**64, same on every device).

    CPU: ``torch.mv`` (about 7x faster than multiply-then-sum); CUDA has no integer matmul, so there it is
    multiply-then-sum. Both are sums mod 2**64, which do not depend on the order of summation.
    """
    rows = rows.to(torch.int64)
    if rows.device.type == "cpu":
        return torch.mv(rows.contiguous(), weights)
    return (rows * weights).sum(dim=1)


def content_hash(tokens: torch.Tensor, key: int, skip: torch.Tensor | None = None) -> torch.Tensor:
    """A 32-bit hash (int64 in ``[0, 2**32)``) of each row of ``tokens [N, T]``: keyed linear form, mixed.

    ``skip`` (int64 ``[N]``) names one column per row left out of the hash (a check slot); the linear form
    makes that a subtraction instead of a copy of the tokens.
    """
    w = _weights(tokens.shape[1], key, tokens.device)
    h = linear_form(tokens, w)
    if skip is not None:
        h = h - tokens.gather(1, skip[:, None])[:, 0] * w[skip]
    return mix32(h ^ (h >> 32) ^ (key & MASK32))


def uniform_below(counter: torch.Tensor, key: int, high: torch.Tensor) -> torch.Tensor:
    """Integers in ``[0, high)`` for a per-sample bound ``high`` (int64 tensor, values in [1, 2**31])."""
    return (hash2(counter, key) * high) >> 32


def check_residue(rest_hash: torch.Tensor, modulus: int) -> torch.Tensor:
    """``r = -rest_hash mod modulus``: the digits ``d ≡ r`` are exactly the held-out ones."""
    return (modulus - rest_hash % modulus) % modulus


def admissible_count(residue: torch.Tensor, pool: int, modulus: int, heldout: bool) -> torch.Tensor:
    """How many digits in ``[0, pool)`` put the sample in the held-out (``d ≡ r``) or the train split."""
    n_held = (pool - residue + modulus - 1) // modulus  # >= 1 whenever pool >= modulus
    return n_held if heldout else pool - n_held


def admissible_digit(j: torch.Tensor, residue: torch.Tensor, modulus: int, heldout: bool) -> torch.Tensor:
    """The ``j``-th (0-based, increasing) admissible digit: ``r + j·m`` (held-out), else the j-th non-r value."""
    if heldout:
        return residue + modulus * j
    s = j % (modulus - 1)
    return (j // (modulus - 1)) * modulus + s + (s >= residue).to(torch.int64)


def check_digit(
    rest_hash: torch.Tensor, counter: torch.Tensor, key: int, pool: int, modulus: int, split: Split
) -> torch.Tensor:
    """A value in ``[0, pool)`` for the check slot that puts the sample in ``split`` (needs ``pool >= modulus``).

    Uniform among the admissible digits: held-out ones are ``r, r + m, r + 2m, …`` with
    ``r = -rest_hash mod m``, train ones are all the others.
    """
    residue = check_residue(rest_hash, modulus)
    heldout = split == "heldout"
    j = uniform_below(counter, key, admissible_count(residue, pool, modulus, heldout))
    return admissible_digit(j, residue, modulus, heldout)


def digit_is_heldout(rest_hash: torch.Tensor, digit: torch.Tensor, modulus: int) -> torch.Tensor:
    """The check-digit split rule: a sample is held-out iff ``(rest_hash + digit) mod modulus == 0``."""
    return (rest_hash + digit) % modulus == 0


def bank_split_starts(bank: WindowBank, split: Split, key: int, modulus: int) -> torch.Tensor:
    """Flat starts (``row * row_len + offset``) of the bank windows whose content belongs to ``split``.

    Empty when the sample space is too small for the split to receive any window; callers turn that into a
    :class:`~probes.synthetic.base.TaskConfigError` naming the parameter to raise.
    """
    fp = bank.fingerprints
    held = mix32(fp ^ (fp >> 32) ^ key) % modulus == 0
    t, o = torch.nonzero(held if split == "heldout" else ~held, as_tuple=True)
    return t * bank.rows.shape[1] + o


# -- verification -----------------------------------------------------------------------------------------
def _sample_matrix(batch: Batch) -> torch.Tensor:
    """Everything that defines a supervised sample, as one int64 row: input ids, label positions, labels."""
    return torch.cat([batch.input_ids, batch.label_positions, batch.labels], dim=1).to(torch.int64)


def fingerprints(batch: Batch) -> torch.Tensor:
    """A 64-bit fingerprint (int64 ``[N]``) of each sample's input ids and labels.

    A keyed linear form with random odd 64-bit weights: equal samples have equal fingerprints; different
    samples collide with probability about 2**-64. Label positions are left out (they are fixed by the task
    layout in every task so far); :func:`check_disjoint` confirms each match on all three tensors exactly.
    """
    t, q = batch.input_ids.shape[1], batch.labels.shape[1]
    w = _weights(t + q, FINGERPRINT_KEY, batch.input_ids.device)
    return linear_form(batch.input_ids, w[:t]) + linear_form(batch.labels, w[t:])


def _chunks(n: int, chunk: int, device: torch.device) -> list[torch.Tensor]:
    return [
        torch.arange(lo, min(lo + chunk, n), dtype=torch.int64, device=device) for lo in range(0, n, chunk)
    ]


def check_disjoint(
    task: ProbeTask,
    n_train: int,
    n_heldout: int,
    chunk: int = DEFAULT_CHUNK,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Verify that train samples ``0…n_train-1`` and held-out samples ``0…n_heldout-1`` share no sample.

    Returns JSON-ready counts: ``overlaps`` (train samples identical to some held-out sample, confirmed by
    exact comparison), ``hash_matches`` (train fingerprints found among held-out ones), ``heldout_distinct``
    (distinct held-out samples), ``fingerprint_collisions`` (different held-out samples sharing a
    fingerprint), up to five ``overlap_examples`` ``[train_index, heldout_index]`` and ``seconds``.
    ``progress`` is called with the number of samples processed after each chunk.
    """
    if n_train < 0 or n_heldout < 0 or chunk < 1:
        raise ValueError(
            f"n_train, n_heldout must be >= 0 and chunk >= 1 (got {n_train}, {n_heldout}, {chunk})"
        )
    start = time.perf_counter()
    device = torch.device(device)
    held_parts = []
    for idx in _chunks(n_heldout, chunk, device):
        held_parts.append(fingerprints(task.generate("heldout", idx)))
        if progress is not None:
            progress(idx.numel())
    held_fp = torch.cat(held_parts) if held_parts else torch.empty(0, dtype=torch.int64, device=device)
    sorted_fp, order = torch.sort(held_fp, stable=True)
    colliding, n_distinct = _internal_collisions(task, sorted_fp, order)

    hash_matches, overlaps, examples = 0, 0, []
    train_chunks = _chunks(n_train, chunk, device) if n_heldout else []
    if progress is not None and not n_heldout:
        progress(n_train)  # nothing to compare against
    for idx in train_chunks:
        batch = task.generate("train", idx)
        fp = fingerprints(batch)
        left = torch.searchsorted(sorted_fp, fp)
        safe = left.clamp(max=n_heldout - 1)
        hit = (left < n_heldout) & (sorted_fp[safe] == fp)
        if bool(hit.any()):
            rows = _sample_matrix(batch)[hit]
            train_idx, first = idx[hit], safe[hit]
            same = (rows == _sample_matrix(task.generate("heldout", order[first]))).all(dim=1)
            held_idx = order[first]
            if colliding:  # a fingerprint shared by different held-out samples: compare with all of them
                for j in torch.nonzero(~same).flatten().tolist():
                    same[j], held_idx[j] = _scan_equal(task, rows[j], sorted_fp, order, int(first[j]))
            hash_matches += int(hit.sum())
            overlaps += int(same.sum())
            for t, h in zip(train_idx[same].tolist(), held_idx[same].tolist(), strict=True):
                if len(examples) < MAX_EXAMPLES:
                    examples.append([t, h])
        if progress is not None:
            progress(idx.numel())
    return {
        "n_train": n_train,
        "n_heldout": n_heldout,
        "heldout_distinct": n_distinct,
        "fingerprint_collisions": len(colliding),
        "hash_matches": hash_matches,
        "overlaps": overlaps,
        "overlap_examples": examples,
        "method": "64-bit fingerprints of (input_ids, labels); matches confirmed on input_ids, label_positions, labels",
        "seconds": round(time.perf_counter() - start, 3),
    }


def _internal_collisions(
    task: ProbeTask, sorted_fp: torch.Tensor, order: torch.Tensor
) -> tuple[set[int], int]:
    """Fingerprints shared by *different* held-out samples (expected: none), and the exact distinct count.

    Adjacent equal fingerprints are compared exactly; a fingerprint group holding different samples has its
    distinct samples counted by regenerating the group.
    """
    distinct = int(torch.unique_consecutive(sorted_fp).numel())
    if sorted_fp.numel() < 2:
        return set(), distinct
    adjacent = torch.nonzero(sorted_fp[1:] == sorted_fp[:-1]).flatten()
    colliding: set[int] = set()
    for part in adjacent.split(DEFAULT_CHUNK):
        a = _sample_matrix(task.generate("heldout", order[part]))
        b = _sample_matrix(task.generate("heldout", order[part + 1]))
        colliding.update(sorted_fp[part[~(a == b).all(dim=1)]].tolist())
    for value in colliding:
        group = order[sorted_fp == value]
        distinct += int(torch.unique(_sample_matrix(task.generate("heldout", group)), dim=0).shape[0]) - 1
    return colliding, distinct


def _scan_equal(
    task: ProbeTask, row: torch.Tensor, sorted_fp: torch.Tensor, order: torch.Tensor, first: int
) -> tuple[bool, int]:
    """Compare ``row`` with every held-out sample of its fingerprint (only needed after a collision)."""
    last = int(torch.searchsorted(sorted_fp, sorted_fp[first : first + 1], right=True))
    candidates = order[first:last]
    equal = (_sample_matrix(task.generate("heldout", candidates)) == row).all(dim=1)
    if bool(equal.any()):
        return True, int(candidates[equal][0])
    return False, int(candidates[0])
