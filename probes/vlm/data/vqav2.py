"""VQAv2: ``questions.json`` (``{"data_subtype", "questions": [{"question_id", "image_id", "question"}]}``)
joined with ``annotations.json`` (``{"annotations": [{"question_id", "image_id", "answers": [{"answer"}] ×10,
"multiple_choice_answer", "answer_type"}]}``). Images are ``image_template`` under ``image_root``; the
default is COCO's ``COCO_{subtype}_{image_id:012d}.jpg``. Annotations may be omitted (test-dev)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from probes.errors import UserError

from .common import read_json, require, resolve_image

COCO_TEMPLATE = "COCO_{subtype}_{image_id:012d}.jpg"


@dataclass(frozen=True)
class VQAQuestion:
    id: str
    image: str
    question: str
    answers: tuple[str, ...]  # the 10 human answers (empty without annotations)
    multiple_choice_answer: str
    answer_type: str


def load_vqav2(
    questions: str | Path,
    annotations: str | Path | None,
    image_root: str | Path,
    *,
    image_template: str = COCO_TEMPLATE,
    check_images: bool = True,
) -> list[VQAQuestion]:
    qdata = read_json(questions)
    if not isinstance(qdata, dict) or "questions" not in qdata:
        raise UserError(f"{questions}: expected a VQAv2 questions file with a 'questions' list")
    subtype = str(qdata.get("data_subtype", ""))
    anns: dict[int, dict] = {}
    if annotations is not None:
        adata = read_json(annotations)
        if not isinstance(adata, dict) or "annotations" not in adata:
            raise UserError(f"{annotations}: expected a VQAv2 annotations file with an 'annotations' list")
        anns = {int(a["question_id"]): a for a in adata["annotations"]}
    root = Path(image_root)
    out = []
    for n, q in enumerate(qdata["questions"]):
        require(q, ("question_id", "image_id", "question"), f"{questions} question {n}")
        a = anns.get(int(q["question_id"]))
        if annotations is not None and a is None:
            raise UserError(f"{annotations}: no annotation for question {q['question_id']}")
        try:
            rel = image_template.format(subtype=subtype, image_id=int(q["image_id"]))
        except (KeyError, ValueError) as exc:
            raise UserError(f"bad image template {image_template!r}: {exc}") from None
        out.append(
            VQAQuestion(
                id=str(q["question_id"]),
                image=resolve_image(root, rel, check=check_images),
                question=str(q["question"]).strip(),
                answers=tuple(str(x["answer"]) for x in a["answers"]) if a else (),
                multiple_choice_answer=str(a.get("multiple_choice_answer", "")) if a else "",
                answer_type=str(a.get("answer_type", "")) if a else "",
            )
        )
    return out
