"""Sequence layout token by token (per order), packing and its per-dataset caps, and every loss
normalisation against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from probes.vlm.packing import DATASET_CAPS, TokenisedConversation, pack, per_example_loss, sequence_loss
from probes.vlm.sequence import (
    IGNORE,
    SpecialIds,
    TextParts,
    Turn,
    as_order,
    build_sequence,
    image_block_len_bound,
)

SP = SpecialIds(image_open=900, row_sep=901, eos=2, pad=0)
P = SP.pad  # visual slot


def test_task_agnostic_layout_token_by_token() -> None:
    parts = TextParts((10, 11), (Turn((20,), (30, 31)), Turn((21, 22), (32,))))
    s = build_sequence(parts, SP, grid_w=2, n_patches=4, task_aware=False)
    assert s.input_ids == [900, P, P, 901, P, P, 900, 10, 11, 20, 30, 31, 2, 21, 22, 32, 2]
    assert s.image_mask == [False, True, True, False, True, True, False] + [False] * 10
    assert s.labels == [IGNORE] * 10 + [30, 31, 2, IGNORE, IGNORE, 32, 2]
    assert s.example_index == [-1] * 10 + [0, 0, 0, -1, -1, 1, 1]


def test_matched_order_has_task_aware_distances_without_the_instruction() -> None:
    """The distance-matched control: filler where task-aware has the instruction, so the image position and the
    image-to-answer distance equal task-aware's while nothing before the image names the task."""
    parts = TextParts((10, 11), (Turn((20,), (30,)),))
    aware = build_sequence(parts, SP, grid_w=2, n_patches=4, task_aware="aware")
    matched = build_sequence(parts, SP, grid_w=2, n_patches=4, task_aware="matched")
    agnostic = build_sequence(parts, SP, grid_w=2, n_patches=4, task_aware="agnostic")
    assert matched.input_ids == [P, P, 900, P, P, 901, P, P, 900, 20, 30, 2]
    assert 10 not in matched.input_ids and 11 not in matched.input_ids
    assert len(matched) == len(aware) and matched.labels == aware.labels and matched.image_mask == aware.image_mask

    def gap(seq) -> int:  # tokens between the image's closing ## and the first target
        first_target = next(i for i, x in enumerate(seq.labels) if x != IGNORE)
        return first_target - max(i for i, x in enumerate(seq.input_ids) if x == 900)

    assert gap(matched) == gap(aware) == 2 and gap(agnostic) == 4


def test_task_aware_puts_only_the_instruction_before_image() -> None:
    """Shaking Up VLMs §5.3.1 (and its released code): the instruction moves, the prompt stays after the image."""
    parts = TextParts((10,), (Turn((20, 21), (30,)), Turn((22,), (31,))))
    for order in (True, "aware"):
        s = build_sequence(parts, SP, grid_w=3, n_patches=6, task_aware=order)
        assert s.input_ids == [10, 900, P, P, P, 901, P, P, P, 900, 20, 21, 30, 2, 22, 31, 2]
        assert s.labels == [IGNORE] * 12 + [30, 2, IGNORE, 31, 2]
        assert s.example_index == [-1] * 12 + [0, 0, -1, 1, 1]


def test_query_first_puts_instruction_and_first_prompt_before_image() -> None:
    parts = TextParts((10,), (Turn((20, 21), (30,)), Turn((22,), (31,))))
    s = build_sequence(parts, SP, grid_w=3, n_patches=6, task_aware="query-first")
    assert s.input_ids == [10, 20, 21, 900, P, P, P, 901, P, P, P, 900, 30, 2, 22, 31, 2]
    assert s.labels == [IGNORE] * 12 + [30, 2, IGNORE, 31, 2]


def test_order_names() -> None:
    assert as_order(False) == "agnostic" and as_order(True) == "aware" and as_order("query-first") == "query-first"
    with pytest.raises(ValueError, match="unknown sequence order"):
        as_order("sideways")


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


def test_packing_caps_turns_per_dataset() -> None:
    """App. A.3: VQAv2 ≤ 20 QA pairs, Visual7W telling 10 / pointing 5, Visual Genome 10 per sequence."""
    assert DATASET_CAPS["vqav2"] == 20 and DATASET_CAPS["visual7w-telling"] == 10
    assert DATASET_CAPS["visual7w-pointing"] == 5 and DATASET_CAPS["visual-genome"] == 10

    def conv(dataset: str, n: int) -> TokenisedConversation:
        return TokenisedConversation("a", "vqa", (5,), tuple(Turn((7,), (8,)) for _ in range(n)), dataset)

    items, stats = pack([conv("vqav2", 45)], image_tokens=4, max_length=1024)
    assert [len(it.parts.turns) for it in items] == [20, 20, 5] and stats.examples == 45
    items, _ = pack([conv("visual7w-pointing", 12)], image_tokens=4, max_length=1024)
    assert [len(it.parts.turns) for it in items] == [5, 5, 2]
    items, _ = pack([conv("", 45)], image_tokens=4, max_length=1024)  # no dataset: only the length budget
    assert [len(it.parts.turns) for it in items] == [45]
    items, _ = pack([conv("vqav2", 45)], image_tokens=4, max_length=1024, caps={"vqav2": 30})
    assert [len(it.parts.turns) for it in items] == [30, 15]


def _loss_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[float]]]:
    """Row 0: a packed sequence of two turns (2 target tokens, then 1); row 1: one turn of 2 tokens."""
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 5)
    labels = torch.tensor([[IGNORE, IGNORE, 1, 2, IGNORE, 3, IGNORE], [IGNORE] * 5 + [0, 1]])
    ex = torch.tensor([[-1, -1, 0, 0, -1, 1, -1], [-1, -1, -1, -1, -1, 0, 0]])
    ce = [[-torch.log_softmax(logits[b, t - 1], -1)[labels[b, t]].item() if labels[b, t] != IGNORE else math.nan
           for t in range(7)] for b in range(2)]  # fmt: skip
    return logits, labels, ex, ce


def test_sequence_loss_is_the_papers_per_sequence_mean_by_default() -> None:
    """App. B: mean over one sequence's target tokens, then mean over the sequences of the batch."""
    logits, labels, ex, ce = _loss_batch()
    row0 = (ce[0][2] + ce[0][3] + ce[0][5]) / 3
    row1 = (ce[1][5] + ce[1][6]) / 2
    got = sequence_loss(logits, labels, ex).item()
    assert math.isclose(got, (row0 + row1) / 2, rel_tol=1e-6)
    assert math.isclose(sequence_loss(logits, labels, ex, "sequence").item(), got)


def test_turn_and_token_normalisations_are_named_options() -> None:
    logits, labels, ex, ce = _loss_batch()
    turns = [(ce[0][2] + ce[0][3]) / 2, ce[0][5], (ce[1][5] + ce[1][6]) / 2]
    assert math.isclose(sequence_loss(logits, labels, ex, "turn").item(), sum(turns) / 3, rel_tol=1e-6)
    tokens = [ce[0][2], ce[0][3], ce[0][5], ce[1][5], ce[1][6]]
    assert math.isclose(sequence_loss(logits, labels, ex, "token").item(), sum(tokens) / 5, rel_tol=1e-6)
    values = {n: sequence_loss(logits, labels, ex, n).item() for n in ("sequence", "turn", "token")}
    assert len({round(v, 6) for v in values.values()}) == 3  # the batch tells the three apart
    with pytest.raises(ValueError, match="unknown loss normalisation"):
        sequence_loss(logits, labels, ex, "batch")


def test_sequence_loss_of_an_all_masked_batch_is_zero_with_a_graph() -> None:
    logits = torch.randn(1, 4, 5, requires_grad=True)
    loss = sequence_loss(logits, torch.full((1, 4), IGNORE), torch.full((1, 4), -1))
    assert loss.item() == 0.0 and loss.requires_grad
