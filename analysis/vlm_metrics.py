"""VLM benchmark metrics: re-exported from :mod:`probes.vlm.eval.metrics`, where they live.

The evaluation runner in the library scores with them, and ``probes`` never imports ``probes.analysis``
(issue 13's layering rule), so the code moved into the library; analysis code keeps importing this name.
"""

from __future__ import annotations

from probes.vlm.eval.metrics import (
    IOU_THRESHOLD,
    ChoiceScores,
    GroundingScores,
    PopeScores,
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

__all__ = [
    "IOU_THRESHOLD",
    "ChoiceScores",
    "GroundingScores",
    "PopeScores",
    "cider_d",
    "exact_match",
    "grounding_scores",
    "iou",
    "multiple_choice_scores",
    "normalize_vqa_answer",
    "parse_box",
    "parse_choice",
    "parse_yes_no",
    "pope_scores",
    "tokenize_caption",
    "vqa_accuracy",
]
