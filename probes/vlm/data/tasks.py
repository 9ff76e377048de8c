"""Task instructions shared by the synthetic world, training data and evaluation prompts.

The instruction is the task description; the prompt is the per-sample input (a referring expression, a
question). Captioning has no per-sample prompt: its instruction is all the text before the response.

Defaults are the instructions of Shaking Up VLMs, App. A.2, Table 6, verbatim (no final full stop, as
printed). :func:`load_instructions` reads a JSON object ``{task: instruction}`` that overrides some of them
(``probes vlm world --instructions FILE``, ``probes vlm eval --instructions FILE``); a world records the
instructions it was written with in ``world.json`` and evaluation on that world uses them by default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from probes.errors import UserError

INSTRUCTIONS: dict[str, str] = {
    "caption": "Provide a one-sentence caption for the provided image",
    "dense_caption": "Provide a short description of the region",
    "grounded_caption": "Provide a one-sentence caption for the image and mention each entity.",
    "itm": "Determine if the image matches the description",
    "mc": "Answer with the option's letter from the given choices directly",
    "grounding": "Locate the region that is described by",
    "vqa": "Answer the question using a single word or phrase",
}


def resolve_instructions(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The defaults with ``overrides`` applied; unknown task names and empty strings are user errors."""
    out = dict(INSTRUCTIONS)
    for task, text in (overrides or {}).items():
        if task not in INSTRUCTIONS:
            raise UserError(f"unknown instruction task {task!r}; choose from {', '.join(INSTRUCTIONS)}")
        if not isinstance(text, str) or not text.strip() or "\n" in text:
            raise UserError(f"the instruction for {task!r} must be one non-empty line")
        out[task] = text.strip()
    return out


def load_instructions(path: str | Path | None) -> dict[str, str]:
    """The defaults with the overrides of a JSON file applied (``None``: the defaults)."""
    return resolve_instructions(read_overrides(path) if path is not None else None)


def read_overrides(path: str | Path) -> dict[str, str]:
    """Only the ``{task: instruction}`` entries a JSON file sets (validated)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"instructions file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{p} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a JSON object {{task: instruction}}")
    resolve_instructions(data)  # validates
    return {k: str(v).strip() for k, v in data.items()}
