"""Sequence layout token by token, packing, and the per-example loss against a hand computation."""

from __future__ import annotations

import math

import torch

from probes.vlm.packing import TokenisedConversation, pack, per_example_loss
from probes.vlm.sequence import IGNORE, SpecialIds, TextParts, Turn, build_sequence, image_block_len_bound

SP = SpecialIds(image_open=900, row_sep=901, eos=2, pad=0)
P = SP.pad  # visual slot


def test_task_agnostic_layout_token_by_token() -> None:
    parts = TextParts((10, 11), (Turn((20,), (30, 31)), Turn((21, 22), (32,))))
    s = build_sequence(parts, SP, grid_w=2, n_patches=4, task_aware=False)
    assert s.input_ids == [900, P, P, 901, P, P, 900, 10, 11, 20, 30, 31, 2, 21, 22, 32, 2]
    assert s.image_mask == [False, True, True, False, True, True, False] + [False] * 10
    assert s.labels == [IGNORE] * 10 + [30, 31, 2, IGNORE, IGNORE, 32, 2]
    assert s.example_index == [-1] * 10 + [0, 0, 0, -1, -1, 1, 1]


def test_task_aware_puts_instruction_and_prompt_before_image() -> None:
    parts = TextParts((10,), (Turn((20, 21), (30,)),))
    s = build_sequence(parts, SP, grid_w=3, n_patches=6, task_aware=True)
    assert s.input_ids == [10, 20, 21, 900, P, P, P, 901, P, P, P, 900, 30, 2]
    assert s.labels == [IGNORE] * 12 + [30, 2]


def test_generation_prompt_has_no_response_or_eos() -> None:
    s = build_sequence(TextParts((), (Turn((20,)),)), SP, grid_w=1, n_patches=2, task_aware=False)
    assert s.input_ids == [900, P, 901, P, 900, 20]
    assert all(x == IGNORE for x in s.labels)


def test_pruned_patches_get_separators_at_row_changes_only() -> None:
    # 3x3 grid, kept patches 1, 2 (row 0), 6 (row 2), 8 (row 2): one && between rows 0 and 2, none at the end
    s = build_sequence(TextParts((), (Turn((20,), (30,)),)), SP, grid_w=3, n_patches=9, task_aware=False, kept_index=[1, 2, 6, 8])
    assert s.input_ids[:7] == [900, P, P, 901, P, P, 900]
    assert sum(s.image_mask) == 4
    assert image_block_len_bound(3, 4) >= 7


def _conv(image: str, task: str, turns: list[tuple[int, int]]) -> TokenisedConversation:
    return TokenisedConversation(image, task, (5,), tuple(Turn((7,) * p, (8,) * r) for p, r in turns))


def test_packing_groups_same_image_and_task_up_to_max_length() -> None:
    convs = [
        _conv("a", "vqa", [(2, 1), (2, 1)]),
        _conv("b", "vqa", [(2, 1)]),
        _conv("a", "vqa", [(2, 1)]),
        _conv("a", "grounding", [(2, 1)]),
    ]
    # budget: 10 image tokens + 1 instruction + 4 per turn -> at most 2 turns in 20
    items, stats = pack(convs, image_tokens=10, max_length=20)
    layout = [(it.image, it.task, len(it.parts.turns)) for it in items]
    assert layout == [("a", "vqa", 2), ("a", "vqa", 1), ("b", "vqa", 1), ("a", "grounding", 1)]
    assert stats.examples == 5 and stats.dropped_too_long == 0


def test_captions_are_never_packed_and_overlong_turns_dropped() -> None:
    items, stats = pack([_conv("a", "caption", [(1, 1), (1, 1), (1, 30)])], image_tokens=4, max_length=20)
    assert [len(it.parts.turns) for it in items] == [1, 1]
    assert stats.dropped_too_long == 1


def test_per_example_loss_matches_hand_computation() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 5)
    # row 0: example 0 targets at positions 2, 3; example 1 target at position 5. row 1: example 0 at 4.
    labels = torch.tensor([[IGNORE, IGNORE, 1, 2, IGNORE, 3], [IGNORE] * 4 + [4, IGNORE]])
    ex = torch.tensor([[-1, -1, 0, 0, -1, 1], [-1, -1, -1, -1, 0, -1]])

    def ce(b: int, t: int) -> float:  # token at t predicted by the logit at t - 1
        return -torch.log_softmax(logits[b, t - 1], -1)[labels[b, t]].item()

    hand = ((ce(0, 2) + ce(0, 3)) / 2 + ce(0, 5) + ce(1, 4)) / 3
    got = per_example_loss(logits, labels, ex).item()
    assert math.isclose(got, hand, rel_tol=1e-6)
    # not the token mean (which would weight the two-token example double)
    assert not math.isclose(got, (ce(0, 2) + ce(0, 3) + ce(0, 5) + ce(1, 4)) / 4, rel_tol=1e-6)
