"""LLaVA pretrain / instruct JSON: ``[{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}]}]``.

Each human/gpt pair is one turn. The first human message carries ``<image>``; once it is removed, a
message of several lines is read as ``instruction`` (first line) + ``prompt`` (the rest), a single line as
the prompt alone (LLaVA's own data has no separate instruction). Later human messages that repeat the
instruction line have it stripped. Optional keys (written by the synthetic world): ``"task"`` names the
task for packing (otherwise ``default_task``: ``caption`` for the stage-1 pretrain set), ``"instruction"``
states the instruction line explicitly (so a caption record, whose only line *is* the instruction, keeps it
as the instruction and gets an empty prompt), ``"dataset"`` selects the packing cap
(:data:`probes.vlm.packing.DATASET_CAPS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from probes.errors import UserError

from .common import read_json, require, resolve_image


@dataclass(frozen=True)
class Conversation:
    id: str
    image: str
    task: str
    instruction: str
    turns: tuple[tuple[str, str], ...]  # (prompt, response)
    dataset: str = ""


def _split_human(text: str, instruction: str | None) -> tuple[str, str]:
    lines = [ln.strip() for ln in text.replace("<image>", "").strip().splitlines() if ln.strip()]
    if instruction is not None:
        if lines and lines[0] == instruction and len(lines) > 1:
            lines = lines[1:]
        return instruction, " ".join(lines)
    if len(lines) >= 2:
        return lines[0], " ".join(lines[1:])
    return "", " ".join(lines)


def load_llava(
    path: str | Path, image_root: str | Path | None = None, *, default_task: str = "chat", check_images: bool = True
) -> list[Conversation]:
    """Read a LLaVA JSON file; image paths are relative to ``image_root`` (default: the file's folder)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    data = read_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of LLaVA records")
    out = []
    for n, rec in enumerate(data):
        where = f"{path} record {n}"
        if not isinstance(rec, dict):
            raise UserError(f"{where}: not an object")
        require(rec, ("image", "conversations"), where)
        conv = rec["conversations"]
        if not conv or len(conv) % 2:
            raise UserError(f"{where}: conversations must alternate human/gpt in pairs")
        explicit = rec.get("instruction")
        if explicit is not None and not isinstance(explicit, str):
            raise UserError(f"{where}: instruction must be a string")
        instruction: str | None = explicit.strip() if explicit is not None else None
        turns = []
        for i in range(0, len(conv), 2):
            h, g = conv[i], conv[i + 1]
            if h.get("from") != "human" or g.get("from") != "gpt":
                raise UserError(f"{where}: turn {i // 2} is not a human/gpt pair")
            instruction, prompt = _split_human(str(h.get("value", "")), instruction)
            if explicit is not None and prompt == instruction:
                prompt = ""
            turns.append((prompt, str(g.get("value", "")).strip()))
        out.append(
            Conversation(
                id=str(rec.get("id", n)),
                image=resolve_image(root, rec["image"], check=check_images),
                task=str(rec.get("task", default_task)),
                instruction=instruction or "",
                turns=tuple(turns),
                dataset=str(rec.get("dataset", "")),
            )
        )
    return out


def llava_record(
    id_: str, image: str, task: str, instruction: str, turns: list[tuple[str, str]], dataset: str = ""
) -> dict:
    """The JSON record :func:`load_llava` reads back as ``Conversation(id, image, task, instruction, turns)``."""
    conv = []
    for i, (prompt, response) in enumerate(turns):
        head = "<image>\n" if i == 0 else ""
        lines = [x for x in ((instruction if i == 0 else ""), prompt) if x]
        conv.append({"from": "human", "value": head + "\n".join(lines)})
        conv.append({"from": "gpt", "value": response})
    rec = {"id": id_, "image": image, "task": task, "instruction": instruction, "conversations": conv}
    if dataset:
        rec["dataset"] = dataset
    return rec
