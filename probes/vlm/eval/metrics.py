"""VLM benchmark metrics as pure functions (README "VLM module").

Lives in the library (``probes.vlm.eval``) because the evaluation runner scores with it and ``probes``
never imports ``probes.analysis`` (docs/CONTRACTS.md); analysis code imports it from here.

Every function takes model outputs as plain strings, so the same code scores a live model, a saved
``predictions.jsonl`` or a hand-written test case. All scores are fractions in [0, 1] (CIDEr: the usual
pycocoevalcap scale, ~0–10); the evaluation runner converts them to the paper's 0–100 units.

- Grounding: :func:`parse_box` (``strict=True``: the whole answer is one ``[x1, y1, x2, y2]``;
  ``strict=False``: the first well-formed box anywhere in the answer, as the paper's released code takes the
  first ``[...]``, so ``[..].`` or ``[..]</s>`` score as the box), :func:`iou`, :func:`grounding_scores`
  (Acc@IoU ≥ 0.5 under both parsers, reported side by side; the headline is the lenient one). The paper's released code counted a hit when IoU **>** 0.5; we use **≥** 0.5, the usual
  definition of Acc@0.5 (the two differ only for predictions at exactly 0.5).
- Captioning: :func:`tokenize_caption` + :func:`cider_d` (pycocoevalcap's ``Cider``, which is CIDEr-D: clipped
  n-gram counts and a Gaussian length penalty, σ = 6).
- VQA: :func:`normalize_vqa_answer`, :func:`vqa_accuracy` (VQAv2 10-annotator score), :func:`exact_match`.
- Multiple choice: :func:`parse_choice`, :func:`multiple_choice_scores`.
- POPE: :func:`parse_yes_no`, :func:`pope_scores` (accuracy, precision, recall, F1, yes-ratio).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------------------
# Grounding
# ---------------------------------------------------------------------------------------------------------

Box = tuple[float, float, float, float]

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_BOX_RE = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]")

IOU_THRESHOLD = 0.5


def parse_box(
    text: str, *, bounds: tuple[float, float] | None = (0.0, 1.0), strict: bool = True
) -> Box | None:
    """Parse a model's box answer; ``None`` when it holds no acceptable box.

    ``strict``: the whole answer (surrounding whitespace aside) must be ``[x1, y1, x2, y2]``; trailing words,
    punctuation or a second box make it unparseable. Lenient (``strict=False``): the *first* bracketed group
    of four numbers anywhere in the answer (the released code's rule). Both need four finite numbers,
    ``x1 <= x2``, ``y1 <= y2`` and, when ``bounds`` is given, every coordinate inside it (boxes are normalised
    to [0, 1] on the model's input image, README "VLM module"); three or five numbers or a flipped box never parse.
    """
    match = _BOX_RE.fullmatch(text.strip()) if strict else _BOX_RE.search(text)
    if match is None:
        return None
    x1, y1, x2, y2 = (float(g) for g in match.groups())
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    if x2 < x1 or y2 < y1:
        return None
    if bounds is not None and not all(bounds[0] <= v <= bounds[1] for v in (x1, y1, x2, y2)):
        return None
    return (x1, y1, x2, y2)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes.

    Touching boxes (shared edge) have zero intersection → 0. When the union is empty (two zero-area boxes)
    the ratio is undefined and we return 0: a degenerate box never counts as a hit.
    """
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    inter_w = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    inter_h = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = inter_w * inter_h
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    if union <= 0.0:
        return 0.0
    return inter / union


@dataclass(frozen=True)
class GroundingScores:
    """Acc@IoU≥0.5 over a benchmark under one parser; ``ious[i]`` is 0 for an unparseable prediction."""

    accuracy: float
    mean_iou: float
    n: int
    n_unparseable: int
    ious: tuple[float, ...]
    correct: tuple[bool, ...]
    strict: bool = True


def grounding_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[float]],
    *,
    threshold: float = IOU_THRESHOLD,
    strict: bool = True,
) -> GroundingScores:
    """Acc@IoU ≥ ``threshold``: an unparseable prediction is wrong and counted in ``n_unparseable``."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    ious: list[float] = []
    unparseable = 0
    for text, ref in zip(predictions, references, strict=True):
        box = parse_box(text, strict=strict)
        if box is None:
            unparseable += 1
            ious.append(0.0)
        else:
            ious.append(iou(box, ref))
    correct = tuple(v >= threshold for v in ious)
    n = len(ious)
    return GroundingScores(
        accuracy=sum(correct) / n if n else 0.0,
        mean_iou=sum(ious) / n if n else 0.0,
        n=n,
        n_unparseable=unparseable,
        ious=tuple(ious),
        correct=correct,
        strict=strict,
    )


# ---------------------------------------------------------------------------------------------------------
# Captioning (CIDEr-D)
# ---------------------------------------------------------------------------------------------------------

# The tokens Stanford PTBTokenizer emits for punctuation that the COCO caption evaluation then deletes
# (pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS), as raw characters: . ? ! , : ; - quotes and brackets.
_CAPTION_DROP = frozenset(list(".?!,:;-'`\"()[]{}") + ["--", "..."])
_CONTRACTION_RE = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
_CAPTION_TOKEN_RE = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|[^\W_]+(?:[-./][^\W_]+)*|\S")


def tokenize_caption(text: str) -> str:
    """Pure-Python stand-in for the COCO caption tokenisation (PTBTokenizer needs Java, which we avoid).

    Lowercase; split PTB's clitics off (``don't`` → ``do n't``, ``dog's`` → ``dog 's``); keep words with
    internal hyphens, slashes or periods whole (``black-and-white``, ``3.5``); delete the punctuation tokens
    the COCO evaluation deletes (``. ? ! , : ; -`` quotes and brackets). Other symbols (``&``, ``%``) stay as
    one-character tokens, as PTB leaves them. Differences from PTB are limited to rare cases (PTB rewrites
    ``[`` as ``-lsb-``, we drop it), so scores match the Java pipeline closely but not bit for bit.
    """
    text = _CONTRACTION_RE.sub(r" \1", text.lower().replace("\n", " "))
    tokens = [t for t in _CAPTION_TOKEN_RE.findall(text) if t not in _CAPTION_DROP]
    return " ".join(tokens)


def cider_d(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> tuple[float, dict[str, float]]:
    """Corpus CIDEr-D (pycocoevalcap ``Cider``) and per-image scores, after :func:`tokenize_caption`.

    CIDEr's idf comes from the reference corpus, so the score of one image depends on all the others; a
    corpus of one image scores 0 by construction (every n-gram has idf log(1/1) = 0).
    """
    from pycocoevalcap.cider.cider import Cider

    if set(predictions) != set(references):
        raise ValueError("predictions and references must cover the same ids")
    if not predictions:
        return 0.0, {}
    ids = sorted(predictions)
    for key in ids:
        if not references[key]:
            raise ValueError(f"no reference caption for id {key!r}")
    res = {k: [tokenize_caption(predictions[k])] for k in ids}
    gts = {k: [tokenize_caption(r) for r in references[k]] for k in ids}
    score, per_image = Cider().compute_score(gts, res)
    return float(score), {k: float(s) for k, s in zip(ids, per_image, strict=True)}


# ---------------------------------------------------------------------------------------------------------
# VQA (VQAv2 answer normalisation and 10-annotator accuracy)
# ---------------------------------------------------------------------------------------------------------

# Tables of the official VQA evaluation (vqaEval.py): contractions written without apostrophes, number words,
# articles and the punctuation characters it strips.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "id've": "i'd've", "i'dve": "i'd've", "im": "i'm",
    "ive": "i've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
_VQA_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
              "?", "!")  # fmt: skip
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def _strip_vqa_punctuation(text: str) -> str:
    # As vqaEval.processPunctuation: a punctuation mark next to a space (or any text with a 1,000-style
    # number) is deleted, otherwise replaced by a space; then periods not followed by a digit are deleted
    # (the official regex intends "not a decimal point"; as written it only looks ahead, and so do we).
    out = text
    has_digit_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in _VQA_PUNCT:
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def normalize_vqa_answer(text: str) -> str:
    """The VQAv2 answer normalisation: whitespace, punctuation, number words → digits, articles, contractions.

    Applied to predictions and ground-truth answers alike (the official script skipped it for questions whose
    ten answers all agree; the released answers are already normalised, so this only matters for raw input).
    """
    text = text.replace("\n", " ").replace("\t", " ").strip()
    text = _strip_vqa_punctuation(text)
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQAv2 accuracy of one prediction against the annotators' answers (normally ten).

    ``acc = mean over i of min(#{j ≠ i : answers[j] == pred} / 3, 1)``: the min(#humans/3, 1) score averaged
    over the leave-one-annotator-out subsets, so agreeing with 3 of 10 annotators gives 0.9 and with 4 or
    more gives 1.0.
    """
    if not answers:
        raise ValueError("a VQA question needs at least one reference answer")
    pred = normalize_vqa_answer(prediction)
    gts = [normalize_vqa_answer(a) for a in answers]
    matches = [g == pred for g in gts]
    total = sum(matches)
    return sum(min((total - int(m)) / 3.0, 1.0) for m in matches) / len(gts)


def exact_match(prediction: str, answer: str) -> bool:
    """GQA-style accuracy for one question: equal after :func:`normalize_vqa_answer`."""
    return normalize_vqa_answer(prediction) == normalize_vqa_answer(answer)


# ---------------------------------------------------------------------------------------------------------
# Multiple choice
# ---------------------------------------------------------------------------------------------------------

_CHOICE_LETTER_RE = re.compile(r"\(?([A-Z])(?:[).:]|\s|$)")
_LONE_LETTER_RE = re.compile(r"\(?([A-Z])\)?[.:)]?")


def parse_choice(prediction: str, options: Sequence[str]) -> int | None:
    """Index of the chosen option, or ``None``.

    Accepted, in this order: a lone capital option letter (``B``, ``B.``, ``(B)``: a letter even when an
    option's text is that letter, the answer format Table 6's instruction asks for); the full text of exactly
    one option (after VQA normalisation); a leading option letter followed by text (``B) a dog``). Letters
    must be within the option range. Anything else is unparseable.
    """
    text = prediction.strip()
    lone = _LONE_LETTER_RE.fullmatch(text)
    if lone is not None:
        index = ord(lone.group(1)) - ord("A")
        return index if index < len(options) else None
    norm = normalize_vqa_answer(text)
    hits = [i for i, opt in enumerate(options) if normalize_vqa_answer(opt) == norm]
    if len(hits) == 1:  # checked first: "A dog" is the option "a dog", not the letter A
        return hits[0]
    match = _CHOICE_LETTER_RE.match(text)
    if match is not None:
        index = ord(match.group(1)) - ord("A")
        return index if index < len(options) else None
    return None


@dataclass(frozen=True)
class ChoiceScores:
    accuracy: float
    n: int
    n_unparseable: int
    correct: tuple[bool, ...]


def multiple_choice_scores(
    predictions: Sequence[str], options: Sequence[Sequence[str]], answers: Sequence[int]
) -> ChoiceScores:
    """Accuracy over multiple-choice questions; ``answers[i]`` is the index of the right option."""
    if not len(predictions) == len(options) == len(answers):
        raise ValueError("predictions, options and answers must have the same length")
    chosen = [parse_choice(p, o) for p, o in zip(predictions, options, strict=True)]
    correct = tuple(c is not None and c == a for c, a in zip(chosen, answers, strict=True))
    n = len(correct)
    return ChoiceScores(sum(correct) / n if n else 0.0, n, sum(c is None for c in chosen), correct)


# ---------------------------------------------------------------------------------------------------------
# POPE (yes/no object hallucination)
# ---------------------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[a-z]+")


def parse_yes_no(prediction: str) -> bool | None:
    """``True`` for yes, ``False`` for no, ``None`` when the answer says neither.

    The first word decides when it is ``yes`` or ``no``; otherwise the first sentence is searched: ``no`` /
    ``not`` → no (POPE's usual rule, so "there is not a dog" is a no), else ``yes`` → yes.
    """
    first_sentence = re.split(r"[.!?\n]", prediction.strip().lower(), maxsplit=1)[0]
    words = _WORD_RE.findall(first_sentence)
    if not words:
        return None
    if words[0] in ("yes", "no"):
        return words[0] == "yes"
    if "no" in words or "not" in words:
        return False
    if "yes" in words:
        return True
    return None


@dataclass(frozen=True)
class PopeScores:
    """POPE metrics with "yes" as the positive class."""

    accuracy: float
    precision: float
    recall: float
    f1: float
    yes_ratio: float
    n: int
    n_unparseable: int
    correct: tuple[bool, ...]


def pope_scores(predictions: Sequence[str], labels: Sequence[bool]) -> PopeScores:
    """Accuracy, precision, recall, F1 and the fraction of "yes" answers.

    An unparseable answer is wrong: it counts as a false negative when the label is yes and as a false
    positive when it is no (it is never rewarded, whatever the label).
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    tp = fp = fn = tn = unparseable = yes = 0
    correct: list[bool] = []
    for text, label in zip(predictions, labels, strict=True):
        answer = parse_yes_no(text)
        if answer is None:
            unparseable += 1
            answer = not label
        else:
            yes += int(answer)
        correct.append(answer == label)
        tp += int(answer and label)
        fp += int(answer and not label)
        fn += int(not answer and label)
        tn += int(not answer and not label)
    n = len(correct)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PopeScores(
        accuracy=(tp + tn) / n if n else 0.0,
        precision=precision,
        recall=recall,
        f1=f1,
        yes_ratio=yes / n if n else 0.0,
        n=n,
        n_unparseable=unparseable,
        correct=tuple(correct),
    )
