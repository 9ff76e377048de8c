"""VLM metric functions against hand-computed answers."""

from __future__ import annotations

import math

import pytest

from probes.vlm.eval.metrics import (
    cider_d,
    exact_match,
    grounding_scores,
    iou,
    multiple_choice_scores,
    normalize_vqa_answer,
    parse_box,
    parse_choice,
    parse_yes_no,
    pope_scores,
    tokenize_caption,
    vqa_accuracy,
)

# --- IoU -------------------------------------------------------------------------------------------------


def test_iou_identical_boxes_is_one() -> None:
    assert iou((0.1, 0.2, 0.5, 0.6), (0.1, 0.2, 0.5, 0.6)) == pytest.approx(1.0)


def test_iou_touching_boxes_is_zero() -> None:
    assert iou((0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 0.5)) == 0.0
    assert iou((0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 1.0, 1.0)) == 0.0  # corner contact


def test_iou_disjoint_is_zero() -> None:
    assert iou((0.0, 0.0, 0.2, 0.2), (0.5, 0.5, 0.9, 0.9)) == 0.0


def test_iou_containment_is_area_ratio() -> None:
    # inner 0.2 x 0.5 = 0.1 inside outer 1 x 1 → 0.1
    assert iou((0.0, 0.0, 1.0, 1.0), (0.3, 0.3, 0.5, 0.8)) == pytest.approx(0.1)


def test_iou_partial_overlap_hand_computed() -> None:
    # a = [0,0,0.4,0.4] (0.16), b = [0.2,0.2,0.6,0.6] (0.16), inter 0.2*0.2 = 0.04, union 0.28
    assert iou((0.0, 0.0, 0.4, 0.4), (0.2, 0.2, 0.6, 0.6)) == pytest.approx(0.04 / 0.28)


def test_iou_zero_area_boxes() -> None:
    assert iou((0.3, 0.3, 0.3, 0.3), (0.3, 0.3, 0.3, 0.3)) == 0.0  # empty union
    assert iou((0.3, 0.3, 0.3, 0.6), (0.0, 0.0, 1.0, 1.0)) == 0.0  # a line inside a box


def test_acc_counts_iou_exactly_half_as_hit() -> None:
    # ref [0,0,1,1] vs pred [0,0,0.5,1]: inter 0.5, union 1 → IoU exactly 0.5 (released code: > 0.5, miss)
    assert iou((0.0, 0.0, 0.5, 1.0), (0.0, 0.0, 1.0, 1.0)) == 0.5
    scores = grounding_scores(["[0, 0, 0.5, 1]", "[0, 0, 0.25, 1]"], [(0, 0, 1, 1), (0, 0, 1, 1)])
    assert scores.correct == (True, False)
    assert scores.accuracy == 0.5
    assert scores.mean_iou == pytest.approx((0.5 + 0.25) / 2)


# --- box parser -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("[0.10, 0.20, 0.30, 0.40]", (0.1, 0.2, 0.3, 0.4)),
        ("  [0,0,1,1]\n", (0.0, 0.0, 1.0, 1.0)),
        ("[.5, .5, .75, 1.]", (0.5, 0.5, 0.75, 1.0)),
        ("[0.2, 0.2, 0.2, 0.2]", (0.2, 0.2, 0.2, 0.2)),  # zero-area box is well formed
    ],
)
def test_parse_box_accepts_well_formed(text: str, expected: tuple[float, ...]) -> None:
    assert parse_box(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "[0.1, 0.2, 0.3]",  # arity 3
        "[0.1, 0.2, 0.3, 0.4, 0.5]",  # arity 5
        "[0.3, 0.2, 0.1, 0.4]",  # x2 < x1
        "[0.1, 0.4, 0.3, 0.2]",  # y2 < y1
        "the box is [0.1, 0.2, 0.3, 0.4]",  # extra words
        "[0.1, 0.2, 0.3, 0.4] [0.1, 0.2, 0.3, 0.4]",  # two boxes
        "(0.1, 0.2, 0.3, 0.4)",  # wrong brackets
        "[0.1 0.2 0.3 0.4]",  # no commas
        "[0.1, 0.2, 0.3, 1.2]",  # outside [0, 1]
        "[-0.1, 0.2, 0.3, 0.4]",
        "[nan, 0.2, 0.3, 0.4]",
        "",
        "a dog",
    ],
)
def test_parse_box_rejects_malformed(text: str) -> None:
    assert parse_box(text) is None


def test_unparseable_is_wrong_and_counted() -> None:
    refs = [(0.0, 0.0, 0.5, 0.5)] * 4
    preds = ["[0, 0, 0.5, 0.5]", "[0, 0, 0.5]", "[0.5, 0, 0, 0.5]", "dog"]
    scores = grounding_scores(preds, refs)
    assert scores.n == 4 and scores.n_unparseable == 3
    assert scores.accuracy == 0.25
    assert scores.ious == (1.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "text,strict,lenient",
    [
        ("[0.1, 0.2, 0.3, 0.4]", True, True),
        ("[0.1, 0.2, 0.3, 0.4].", False, True),  # trailing punctuation
        ("[0.1, 0.2, 0.3, 0.4]</s>", False, True),  # an end token left in the text
        ("the box is [0.1, 0.2, 0.3, 0.4]", False, True),
        ("[0.1, 0.2, 0.3, 0.4] [0.5, 0.5, 0.6, 0.6]", False, True),  # the first box, as the released code
        ("[0.1, 0.2, 0.3]", False, False),
        ("[0.3, 0.2, 0.1, 0.4].", False, False),  # flipped: unparseable under both
        ("no box", False, False),
    ],
)
def test_strict_and_lenient_box_parsing(text: str, strict: bool, lenient: bool) -> None:
    assert (parse_box(text) is not None) is strict
    assert (parse_box(text, strict=False) is not None) is lenient
    if lenient:
        assert parse_box(text, strict=False) == pytest.approx((0.1, 0.2, 0.3, 0.4))


def test_grounding_scores_strict_and_lenient_side_by_side() -> None:
    refs = [(0.1, 0.2, 0.3, 0.4)] * 3
    preds = ["[0.1, 0.2, 0.3, 0.4]", "[0.1, 0.2, 0.3, 0.4].", "[0.1, 0.2, 0.3, 0.4]</s>"]
    strict, lenient = grounding_scores(preds, refs), grounding_scores(preds, refs, strict=False)
    assert strict.accuracy == pytest.approx(1 / 3) and strict.n_unparseable == 2 and strict.strict
    assert lenient.accuracy == 1.0 and lenient.n_unparseable == 0 and not lenient.strict


def test_scoring_reports_lenient_headline_and_strict_detail() -> None:
    from probes.vlm.eval.datasets import EvalSample
    from probes.vlm.eval.scoring import score_predictions

    samples = [EvalSample(str(i), "img.png", "", "the red square", [0.1, 0.2, 0.3, 0.4]) for i in range(2)]
    scored = score_predictions("grounding", samples, ["[0.1, 0.2, 0.3, 0.4]", "[0.1, 0.2, 0.3, 0.4]."])
    assert scored.score == 100.0 and scored.details["acc_strict"] == 50.0
    assert [r["correct"] for r in scored.records] == [True, True]
    assert [r["correct_strict"] for r in scored.records] == [True, False]


def test_parse_box_bounds_can_be_disabled() -> None:
    assert parse_box("[10, 20, 30, 40]", bounds=None) == (10.0, 20.0, 30.0, 40.0)


# --- CIDEr-D ----------------------------------------------------------------------------------------------


def test_tokenize_caption_ptb_like() -> None:
    assert tokenize_caption("A Dog's toy, isn't it?") == "a dog 's toy is n't it"
    assert tokenize_caption('A "black-and-white" photo (2.5 MB)...') == "a black-and-white photo 2.5 mb"
    assert tokenize_caption("cats & dogs") == "cats & dogs"


def test_cider_hand_computed_two_images() -> None:
    # Two images, each predicted exactly as its single reference, no shared n-grams: every n-gram has
    # df = 1 so weight log(2); cosine 1 for 1- and 2-grams, 0 for 3-, 4-grams (no such n-grams) →
    # mean(1, 1, 0, 0) * 10 = 5.0 for each image.
    score, per = cider_d({"1": "red car", "2": "blue boat"}, {"1": ["red car"], "2": ["blue boat"]})
    assert per == pytest.approx({"1": 5.0, "2": 5.0})
    assert score == pytest.approx(5.0)


def test_cider_single_image_corpus_is_zero() -> None:
    score, _ = cider_d({"a": "a dog runs"}, {"a": ["a dog runs"]})
    assert score == 0.0


def test_cider_matches_pycocoevalcap_on_same_tokens() -> None:
    from pycocoevalcap.cider.cider import Cider

    preds = {
        "0": "A man riding a horse on a beach.",
        "1": "Two dogs play with a ball",
        "2": "a plate of food, with broccoli!",
    }
    refs = {
        "0": ["A man rides a horse along the beach.", "Person on horseback near the ocean", "a horse on sand"],
        "1": ["Two dogs playing with a red ball.", "dogs chase a ball in the grass"],
        "2": ["A plate with broccoli and rice.", "food on a white plate", "a dish of vegetables"],
    }
    ours, per = cider_d(preds, refs)
    gts = {k: [tokenize_caption(r) for r in v] for k, v in refs.items()}
    res = {k: [tokenize_caption(v)] for k, v in preds.items()}
    theirs, theirs_per = Cider().compute_score(gts, res)
    assert ours == pytest.approx(float(theirs))
    assert [per[k] for k in sorted(per)] == pytest.approx(list(theirs_per))
    assert ours > 0.0


def test_cider_rejects_mismatched_ids() -> None:
    with pytest.raises(ValueError):
        cider_d({"1": "x"}, {"2": ["x"]})


# --- VQA ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,normalised",
    [
        ("Yes.", "yes"),
        ("Two", "2"),
        ("the dog", "dog"),
        ("an apple", "apple"),
        ("dont", "don't"),
        ("Isnt it", "isn't it"),
        ("1,000", "1000"),
        ("3.5", "3.5"),
        ("red, white", "red white"),
        ("black/white", "black white"),
        ("  A\tcat\n", "cat"),
        ("none", "0"),
    ],
)
def test_normalize_vqa_answer(raw: str, normalised: str) -> None:
    assert normalize_vqa_answer(raw) == normalised


@pytest.mark.parametrize(
    "n_match,expected",
    # 10 annotators, k agree with the prediction: mean over leave-one-out subsets of min(matches/3, 1)
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)],
)
def test_vqa_ten_annotator_formula(n_match: int, expected: float) -> None:
    answers = ["2"] * n_match + ["3"] * (10 - n_match)
    assert vqa_accuracy("two", answers) == pytest.approx(expected)


def test_vqa_formula_by_enumeration() -> None:
    answers = ["yes", "yes", "no", "yes", "no", "no", "no", "no", "no", "yes"]
    expected = 0.0
    for i in range(10):
        others = answers[:i] + answers[i + 1 :]
        expected += min(sum(a == "yes" for a in others) / 3, 1)
    assert vqa_accuracy("Yes", answers) == pytest.approx(expected / 10)


def test_exact_match_gqa() -> None:
    assert exact_match("The table.", "table")
    assert not exact_match("chair", "table")


# --- multiple choice / POPE --------------------------------------------------------------------------------


def test_parse_choice() -> None:
    options = ["a dog", "a cat", "a bird"]
    assert parse_choice("B", options) == 1
    assert parse_choice("(C)", options) == 2
    assert parse_choice("A. a dog", options) == 0
    assert parse_choice("a cat", options) == 1
    assert parse_choice("A cat", options) == 1  # option text wins over the letter A
    assert parse_choice("D", options) is None
    assert parse_choice("fish", options) is None


def test_parse_choice_lone_letter_is_a_letter() -> None:
    """A lone capital letter is the option letter, even when an option's text is that letter."""
    assert parse_choice("B", ["b", "c"]) == 1
    assert parse_choice("(A)", ["b", "a"]) == 0
    assert parse_choice("C.", ["b", "c"]) is None  # out of range, not the option "c"
    assert parse_choice("c", ["b", "c"]) == 1  # lowercase: the option text


def test_multiple_choice_scores() -> None:
    s = multiple_choice_scores(["A", "b", "zebra"], [["x", "y"]] * 3, [0, 0, 1])
    assert s.correct == (True, False, False)
    assert s.n_unparseable == 2  # "b" is lowercase (not a letter answer) and not an option
    assert s.accuracy == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Yes", True),
        ("yes, there is a dog.", True),
        ("No.", False),
        ("There is no dog in the image.", False),
        ("There is not a dog.", False),
        ("I think yes", True),
        ("maybe", None),
        ("", None),
    ],
)
def test_parse_yes_no(text: str, expected: bool | None) -> None:
    assert parse_yes_no(text) is expected


def test_pope_scores_hand_computed() -> None:
    preds = ["yes", "yes", "no", "no", "yes", "hmm"]
    labels = [True, False, True, False, True, False]
    # tp=2 (0, 4), fp=1 (1) + unparseable on a "no" label → fp=2, fn=1 (2), tn=1 (3)
    s = pope_scores(preds, labels)
    assert s.accuracy == pytest.approx(3 / 6)
    assert s.precision == pytest.approx(2 / 4)
    assert s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s.yes_ratio == pytest.approx(3 / 6)
    assert s.n_unparseable == 1
    assert not math.isnan(s.f1)
