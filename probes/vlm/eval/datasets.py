"""What to evaluate: one benchmark as a list of :class:`EvalSample` (image, instruction, prompt, reference).

``--data`` is an annotation file or a directory. A directory written by ``probes vlm world`` is read through
its ``world.json``; other directories are searched for the usual file names. Formats (the first three reuse
the training loaders in :mod:`probes.vlm.data`):

| task | file | reference |
|---|---|---|
| grounding | RefCOCO JSONL (``refcoco.jsonl``, COCO ``xywh`` pixels) | box normalised on the letterboxed input |
| captioning | Karpathy ``dataset_coco.json`` | the reference captions |
| vqa | VQAv2 ``*questions.json`` + ``*annotations.json``, or JSONL ``{"id", "image", "question", "answers": […] or "answer"}`` (GQA and others) | the human answers |
| mc | JSONL ``{"id", "image", "question", "options": […], "answer": index or letter}`` | options + right index |
| pope | POPE JSONL ``{"question_id", "image", "text", "label": "yes"/"no"}`` | the yes/no label |

``split`` filters rows that carry a split (RefCOCO, Karpathy) and picks the world's VQA files; ``None`` keeps
everything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from probes.errors import UserError

from ..data.common import read_json, read_jsonl, require, resolve_image
from ..data.tasks import INSTRUCTIONS, resolve_instructions
from ..image import normalise_box

TASKS = ("grounding", "captioning", "vqa", "mc", "pope")
DEFAULT_GROUP = {"grounding": "grounding", "captioning": "captioning", "vqa": "vqa", "mc": "other", "pope": "other"}
MC_INSTRUCTION = INSTRUCTIONS["mc"]
INSTRUCTION_KEY = {"grounding": "grounding", "captioning": "caption", "vqa": "vqa", "mc": "mc", "pope": "vqa"}
DEFAULT_MAX_NEW_TOKENS = {"grounding": 32, "captioning": 48, "vqa": 10, "mc": 8, "pope": 8}


@dataclass(frozen=True)
class EvalSample:
    id: str
    image: str
    instruction: str
    prompt: str
    reference: Any  # see the module table


@dataclass(frozen=True)
class EvalSet:
    benchmark: str
    task: str
    task_group: str
    samples: list[EvalSample]


def _world(data: Path) -> dict[str, Any] | None:
    return read_json(data / "world.json") if (data / "world.json").is_file() else None


def _pick(data: Path, world_key: str, default_name: str) -> Path:
    """The annotation file: ``data`` itself, the world's file, or ``data/default_name``."""
    if data.is_file():
        return data
    if not data.is_dir():
        raise UserError(f"--data {data} does not exist")
    world = _world(data)
    if world is not None and world_key in world.get("files", {}):
        return data / world["files"][world_key]
    if (data / default_name).is_file():
        return data / default_name
    raise UserError(f"{data} has no {default_name} (give the annotation file itself with --data)")


def _grounding(data: Path, split: str | None, image_root: Path | None) -> tuple[str, list[EvalSample]]:
    from ..data.refcoco import load_refcoco_jsonl

    path = _pick(data, "refcoco", "refcoco.jsonl")
    if path.suffix != ".jsonl":
        raise UserError(f"{path}: grounding reads RefCOCO JSONL (convert the pickle release with write_refcoco_jsonl)")
    refs = load_refcoco_jsonl(path, image_root, split=split)
    samples = [
        EvalSample(r.id, r.image, INSTRUCTIONS["grounding"], r.expression, normalise_box(r.bbox, r.width, r.height))
        for r in refs
    ]
    return path.stem, samples


def _captioning(data: Path, split: str | None, image_root: Path | None) -> tuple[str, list[EvalSample]]:
    from ..data.captions import load_karpathy

    path = _pick(data, "karpathy", "dataset_coco.json")
    images = load_karpathy(path, image_root, split=split)
    samples = [EvalSample(im.id, im.image, INSTRUCTIONS["caption"], "", list(im.references)) for im in images]
    name = path.stem.removeprefix("dataset_") if path.stem.startswith("dataset_") else path.stem
    return name, samples


def _answers(row: dict[str, Any], where: str) -> list[str]:
    if "answers" in row:
        answers = row["answers"]
        out = [str(a["answer"] if isinstance(a, dict) else a) for a in answers]
    elif "answer" in row:
        out = [str(row["answer"])]
    else:
        raise UserError(f"{where}: missing field answers (or answer)")
    if not out:
        raise UserError(f"{where}: empty answers")
    return out


def _vqa(data: Path, split: str | None, image_root: Path | None) -> tuple[str, list[EvalSample]]:
    from ..data.vqav2 import COCO_TEMPLATE, load_vqav2

    ins = INSTRUCTIONS["vqa"]
    if data.is_file() and data.suffix == ".jsonl":
        root = image_root or data.parent
        out = []
        for n, row in enumerate(read_jsonl(data), 1):
            where = f"{data}:{n}"
            require(row, ("image", "question"), where)
            if split is not None and "split" in row and row["split"] != split:
                continue
            image = resolve_image(root, str(row["image"]))
            out.append(EvalSample(str(row.get("id", n)), image, ins, str(row["question"]).strip(), _answers(row, where)))
        return data.stem, out
    world = _world(data) if data.is_dir() else None
    template = COCO_TEMPLATE
    if world is not None:
        s = split or "val"
        files = world.get("files", {})
        if f"vqav2_{s}_questions" not in files:
            raise UserError(f"{data}/world.json has no VQA files for split {s!r}")
        questions, annotations = data / files[f"vqav2_{s}_questions"], data / files[f"vqav2_{s}_annotations"]
        root = image_root or data / world.get("vqa_image_root", ".")
        template = world.get("image_template", COCO_TEMPLATE)
        name = f"vqav2-{s}"
    else:
        if data.is_dir():
            found = sorted(data.glob(f"*{split or ''}*questions*.json"))
            if len(found) != 1:
                raise UserError(f"{data}: expected one *questions*.json for split {split!r}, found {len(found)}")
            questions = found[0]
        else:
            questions = data
        annotations = questions.with_name(questions.name.replace("questions", "annotations"))
        if annotations == questions or not annotations.is_file():
            raise UserError(f"no annotations file beside {questions} (expected {annotations.name})")
        if image_root is None:
            raise UserError("VQAv2 images live apart from the annotations: give --image-root")
        root = image_root
        name = questions.stem.replace("_questions", "").replace("questions", "vqa")
    qs = load_vqav2(questions, annotations, root, image_template=template)
    samples = [EvalSample(q.id, q.image, ins, q.question, list(q.answers)) for q in qs]
    return name, samples


def _mc(data: Path, split: str | None, image_root: Path | None) -> tuple[str, list[EvalSample]]:
    if not data.is_file():
        raise UserError(f"--data {data}: multiple choice reads a JSONL file")
    root = image_root or data.parent
    out = []
    for n, row in enumerate(read_jsonl(data), 1):
        where = f"{data}:{n}"
        require(row, ("image", "question", "options", "answer"), where)
        if split is not None and "split" in row and row["split"] != split:
            continue
        options = [str(o) for o in row["options"]]
        if not 2 <= len(options) <= 26:
            raise UserError(f"{where}: need 2 to 26 options, got {len(options)}")
        answer = row["answer"]
        index = ord(answer.strip().upper()) - ord("A") if isinstance(answer, str) and len(answer.strip()) == 1 else answer
        if not isinstance(index, int) or not 0 <= index < len(options):
            raise UserError(f"{where}: answer {answer!r} is not an option index or letter")
        prompt = str(row["question"]).strip() + "\n" + "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(options))
        image = resolve_image(root, str(row["image"]))
        out.append(EvalSample(str(row.get("id", n)), image, MC_INSTRUCTION, prompt, {"options": options, "answer": index}))
    return data.stem, out


def _pope(data: Path, split: str | None, image_root: Path | None) -> tuple[str, list[EvalSample]]:
    if not data.is_file():
        raise UserError(f"--data {data}: POPE reads a JSONL file")
    root = image_root or data.parent
    out = []
    for n, row in enumerate(read_jsonl(data), 1):
        where = f"{data}:{n}"
        require(row, ("image",), where)
        question = row.get("text", row.get("question"))
        label = str(row.get("label", row.get("answer", ""))).strip().lower()
        if question is None or label not in ("yes", "no"):
            raise UserError(f"{where}: POPE rows need text (or question) and label yes/no")
        if split is not None and "split" in row and row["split"] != split:
            continue
        image = resolve_image(root, str(row["image"]))
        sid = str(row.get("question_id", row.get("id", n)))
        out.append(EvalSample(sid, image, INSTRUCTIONS["vqa"], str(question).strip(), label == "yes"))
    return data.stem, out


_LOADERS: dict[str, Callable[[Path, str | None, Path | None], tuple[str, list[EvalSample]]]] = {
    "grounding": _grounding,
    "captioning": _captioning,
    "vqa": _vqa,
    "mc": _mc,
    "pope": _pope,
}


def load_eval_set(
    task: str,
    data: str | Path,
    *,
    split: str | None = "val",
    image_root: str | Path | None = None,
    benchmark: str | None = None,
    task_group: str | None = None,
    limit: int | None = None,
    instructions: Mapping[str, str] | None = None,
) -> EvalSet:
    """Read one benchmark; ``benchmark`` defaults to the file name (+ ``-split``), ``task_group`` by task.

    Instructions: Table 6's defaults (:mod:`probes.vlm.data.tasks`), then those a world directory records in
    its ``world.json``, then ``instructions`` (``{task: text}``)."""
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    root = Path(image_root) if image_root is not None else None
    name, samples = _LOADERS[task](Path(data), split, root)
    if limit is not None:
        if limit < 1:
            raise UserError("--limit must be at least 1")
        samples = samples[:limit]
    if not samples:
        raise UserError(f"no {task} samples in {data}" + (f" for split {split!r}" if split else ""))
    world = _world(Path(data)) if Path(data).is_dir() else None
    chosen = resolve_instructions({**((world or {}).get("instructions") or {}), **(instructions or {})})
    text = chosen[INSTRUCTION_KEY[task]]
    samples = [replace(s, instruction=text) for s in samples]
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise UserError(f"{data}: sample ids are not unique")
    if benchmark is None:
        benchmark = name if (split is None or name.endswith(split) or task == "vqa") else f"{name}-{split}"
    group = task_group or DEFAULT_GROUP[task]
    return EvalSet(benchmark, task, group, samples)
