"""Small helpers shared by the dataset loaders: reading JSON with one-line errors, resolving image paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probes.errors import UserError


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"annotation file not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{n} is not valid JSON: {exc.msg}") from None
    return rows


def resolve_image(root: Path, rel: str, *, check: bool = True) -> str:
    """``root / rel`` as a string; with ``check``, a missing file is a UserError naming it."""
    path = Path(rel) if Path(rel).is_absolute() else root / rel
    if check and not path.is_file():
        raise UserError(f"image file not found: {path}")
    return str(path)


def require(row: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)}")
