"""The split rules (check digits, content hashes), sample fingerprints and the disjointness check."""

from __future__ import annotations

from typing import Any

import probes.synthetic.disjoint as disjoint
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from probes.synthetic.base import Batch, Split
from probes.synthetic.disjoint import (
    admissible_count,
    admissible_digit,
    check_digit,
    check_disjoint,
    check_residue,
    content_hash,
    digit_is_heldout,
    fingerprints,
    linear_form,
)
from probes.synthetic.iid import iid_tokens
from probes.synthetic.registry import build_task

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(
    residue=st.integers(0, 40), modulus=st.integers(2, 41), extra=st.integers(0, 60), heldout=st.booleans()
)
def test_admissible_digits_enumerate_exactly_the_split(
    residue: int, modulus: int, extra: int, heldout: bool
) -> None:
    residue %= modulus
    pool = modulus + extra
    r = torch.tensor([residue])
    count = int(admissible_count(r, pool, modulus, heldout))
    digits = [int(admissible_digit(torch.tensor([j]), r, modulus, heldout)) for j in range(count)]
    expected = [d for d in range(pool) if (d % modulus == residue) == heldout]
    assert digits == expected  # increasing, in range, each admissible value once


@FAST
@given(
    hashes=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=30),
    modulus=st.integers(2, 16),
    extra=st.integers(0, 50),
    split=st.sampled_from(["train", "heldout"]),
)
def test_check_digit_puts_every_sample_in_its_split(
    hashes: list[int], modulus: int, extra: int, split: Split
) -> None:
    rest = torch.tensor(hashes, dtype=torch.int64)
    pool = modulus + extra
    d = check_digit(rest, torch.arange(len(hashes)), 1234, pool, modulus, split)
    assert ((d >= 0) & (d < pool)).all()
    assert (digit_is_heldout(rest, d, modulus) == (split == "heldout")).all()
    assert torch.equal(check_residue(rest, modulus), (-rest) % modulus)


def test_check_digit_is_uniform_over_admissible_values() -> None:
    n, pool, modulus = 64_000, 10, 4
    rest = torch.zeros(n, dtype=torch.int64)  # residue 0: held-out digits {0, 4, 8}, train digits the other 7
    for split, values in (("heldout", [0, 4, 8]), ("train", [1, 2, 3, 5, 6, 7, 9])):
        counts = torch.bincount(check_digit(rest, torch.arange(n), 99, pool, modulus, split), minlength=pool)
        expected = n / len(values)
        assert set(torch.nonzero(counts).flatten().tolist()) == set(values)
        assert all(abs(int(counts[v]) - expected) < 5 * expected**0.5 for v in values)


def test_content_hash_skip_equals_hashing_without_the_column() -> None:
    tokens = torch.randint(0, 1000, (50, 9), generator=torch.Generator().manual_seed(0))
    skip = torch.randint(0, 9, (50,), generator=torch.Generator().manual_seed(1))
    zeroed = tokens.scatter(1, skip[:, None], 0)
    assert torch.equal(content_hash(tokens, 7, skip), content_hash(zeroed, 7))
    h = content_hash(tokens, 7)
    assert ((h >= 0) & (h < 2**32)).all()
    changed = tokens.clone()
    changed[:, 3] += 1
    assert (content_hash(changed, 7) != h).float().mean() > 0.99


def test_linear_form_wraps_like_multiply_then_sum() -> None:
    """torch.mv (CPU path) and multiply-sum (CUDA path) agree exactly, overflow included."""
    g = torch.Generator().manual_seed(3)
    rows = torch.randint(0, 2**40, (100, 33), generator=g)
    weights = torch.randint(-(2**62), 2**62, (33,), generator=g)
    assert torch.equal(linear_form(rows, weights), (rows * weights).sum(dim=1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_linear_form_same_on_cuda() -> None:
    g = torch.Generator().manual_seed(4)
    rows = torch.randint(0, 2**40, (100, 33), generator=g)
    weights = torch.randint(-(2**62), 2**62, (33,), generator=g)
    assert torch.equal(linear_form(rows, weights), linear_form(rows.cuda(), weights.cuda()).cpu())


def test_iid_tokens_are_uniform_per_position() -> None:
    n, pool, length = 40_000, 13, 6
    x = iid_tokens(torch.arange(n), seed=5, pool=pool, length=length)
    assert ((x >= 0) & (x < pool)).all()
    expected = n / pool
    for j in range(length):
        counts = torch.bincount(x[:, j], minlength=pool).double()
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 45, (j, chi2)  # 12 degrees of freedom: p < 1e-5
    pairs = torch.bincount(x[:, 0] * pool + x[:, 1], minlength=pool * pool).double()
    assert (
        float(((pairs - n / pool**2) ** 2 / (n / pool**2)).sum()) < 250
    )  # 168 dof: adjacent tokens independent


# -- fingerprints and check_disjoint -----------------------------------------------------------------------
def test_fingerprints_equal_iff_samples_equal() -> None:
    task = build_task("copying", {"length": 4, "pool": 8})
    b = task.generate("train", torch.arange(3000))
    fp = fingerprints(b)
    rows = torch.cat([b.input_ids, b.labels], dim=1)
    distinct_rows = torch.unique(rows, dim=0).shape[0]
    assert torch.unique(fp).numel() == distinct_rows < 3000  # 8**4 sequences: repeats exist, no collisions
    again = fingerprints(task.generate("train", torch.arange(3000)))
    assert torch.equal(fp, again)


class HeldoutIsShiftedTrain:
    """A real task whose held-out sample i is its train sample i + shift: a deliberately leaking split."""

    def __init__(self, inner: Any, shift: int) -> None:
        self.inner, self.shift, self.name = inner, shift, "leaky"

    def generate(self, split: Split, indices: torch.Tensor) -> Batch:
        return self.inner.generate("train", indices + self.shift if split == "heldout" else indices)


@pytest.mark.parametrize("name", ["grounding", "mqar", "copying", "induction"])
def test_check_disjoint_finds_real_overlaps(name: str) -> None:
    task = HeldoutIsShiftedTrain(build_task(name, {"length": 24}), shift=30)
    result = check_disjoint(task, n_train=100, n_heldout=50, chunk=17)  # type: ignore[arg-type]
    assert result["overlaps"] == result["hash_matches"] == 50  # train 30..79 are held-out 0..49
    assert result["overlap_examples"][0] == [30, 0]
    assert all(t - h == 30 for t, h in result["overlap_examples"])
    clean = check_disjoint(build_task(name, {"length": 24}), 100, 50, chunk=17)
    assert clean["overlaps"] == 0 and clean["heldout_distinct"] == 50


def test_check_disjoint_confirms_matches_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a deliberately weak fingerprint (many collisions) the exact comparison still counts right."""
    task = HeldoutIsShiftedTrain(build_task("induction", {"length": 8}), shift=10)
    strong = check_disjoint(task, 60, 40, chunk=13)  # type: ignore[arg-type]
    monkeypatch.setattr(disjoint, "fingerprints", lambda batch: batch.input_ids.sum(dim=1) % 5)
    weak = check_disjoint(task, 60, 40, chunk=13)  # type: ignore[arg-type]
    assert weak["fingerprint_collisions"] > 0 and weak["hash_matches"] == 60
    assert weak["overlaps"] == strong["overlaps"] == 40
    assert weak["heldout_distinct"] == strong["heldout_distinct"] == 40


def test_check_disjoint_edge_sizes_and_progress() -> None:
    task = build_task("grounding", {"length": 4})
    seen: list[int] = []
    result = check_disjoint(task, 0, 0, progress=seen.append)
    assert result["overlaps"] == 0 and result["heldout_distinct"] == 0
    seen.clear()
    check_disjoint(task, 25, 10, chunk=8, progress=seen.append)
    assert sum(seen) == 35
    with pytest.raises(ValueError):
        check_disjoint(task, -1, 10)
