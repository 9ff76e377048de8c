"""RefCOCO / RefCOCO+ / RefCOCOg referring expressions, in two layouts.

1. **JSONL, one row per expression** (the Hugging Face datasets layout, preferred)::

       {"id": "...", "image": "train2014/COCO_train2014_000000000009.jpg", "width": 640, "height": 480,
        "bbox": [x, y, w, h], "expression": "the man on the left", "split": "val", "ref_id": 7}

   ``bbox`` is COCO ``[x, y, width, height]`` in pixels, as in the original annotations.
2. **The original release**: ``<data_root>/<dataset>/refs(<split_by>).p`` (a pickle) + ``instances.json``.
   Pickle can execute code when loaded, so it is read only with ``allow_pickle=True`` — use it only on files
   you trust (the official download), or convert once with :func:`write_refcoco_jsonl`.

Both give :class:`RefExpression` with the box as pixel ``[x1, y1, x2, y2]``, validated against the image.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from probes.errors import UserError
from probes.io import atomic_write_text

from ..image import check_box
from .common import read_json, read_jsonl, require, resolve_image


@dataclass(frozen=True)
class RefExpression:
    id: str
    image: str
    width: int
    height: int
    bbox: tuple[float, float, float, float]  # pixel x1, y1, x2, y2
    expression: str
    split: str
    ref_id: int | str | None = None


def xywh_to_xyxy(b: list[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in b)
    return (x, y, x + w, y + h)


def load_refcoco_jsonl(
    path: str | Path, image_root: str | Path | None = None, *, split: str | None = None, check_images: bool = True
) -> list[RefExpression]:
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    for n, row in enumerate(read_jsonl(path), 1):
        where = f"{path}:{n}"
        require(row, ("image", "bbox", "expression", "width", "height"), where)
        if split is not None and row.get("split") != split:
            continue
        box = xywh_to_xyxy(row["bbox"])
        check_box(box, int(row["width"]), int(row["height"]), where)
        out.append(
            RefExpression(
                id=str(row.get("id", n)),
                image=resolve_image(root, row["image"], check=check_images),
                width=int(row["width"]),
                height=int(row["height"]),
                bbox=box,
                expression=str(row["expression"]).strip(),
                split=str(row.get("split", "")),
                ref_id=row.get("ref_id"),
            )
        )
    return out


def load_refcoco_pickle(
    data_root: str | Path,
    dataset: str,
    split_by: str,
    image_root: str | Path,
    *,
    split: str | None = None,
    allow_pickle: bool = False,
    check_images: bool = True,
) -> list[RefExpression]:
    """Read ``refs(<split_by>).p`` + ``instances.json`` (e.g. dataset ``refcoco``, split_by ``unc``).

    Image files are ``COCO_train2014_<image_id:012d>.jpg`` under ``image_root`` unless ``instances.json``
    names them (``file_name``)."""
    folder = Path(data_root) / dataset
    refs_file = folder / f"refs({split_by}).p"
    if not allow_pickle:
        raise UserError(
            f"{refs_file} is a pickle, which can run code when loaded: the CLI reads only RefCOCO JSONL. Convert a "
            "trusted copy once in Python: load_refcoco_pickle(..., allow_pickle=True), then write_refcoco_jsonl"
        )
    if not refs_file.is_file():
        raise UserError(f"annotation file not found: {refs_file}")
    try:
        with refs_file.open("rb") as fh:
            refs = pickle.load(fh)  # noqa: S301 — explicit opt-in above
    except (pickle.UnpicklingError, EOFError) as exc:
        raise UserError(f"{refs_file} is not a valid pickle: {exc}") from None
    inst = read_json(folder / "instances.json")
    anns = {a["id"]: a for a in inst.get("annotations", [])}
    images = {im["id"]: im for im in inst.get("images", [])}
    root = Path(image_root)
    out = []
    for ref in refs:
        if split is not None and ref.get("split") != split:
            continue
        ann = anns.get(ref["ann_id"])
        im = images.get(ref["image_id"])
        if ann is None or im is None:
            raise UserError(f"{refs_file}: ref {ref.get('ref_id')} points to a missing annotation or image")
        name = im.get("file_name") or f"COCO_train2014_{int(ref['image_id']):012d}.jpg"
        box = xywh_to_xyxy(ann["bbox"])
        check_box(box, int(im["width"]), int(im["height"]), f"{refs_file} ref {ref.get('ref_id')}")
        image = resolve_image(root, name, check=check_images)
        for sent in ref.get("sentences", []):
            out.append(
                RefExpression(
                    id=f"{ref['ref_id']}-{sent.get('sent_id', len(out))}",
                    image=image,
                    width=int(im["width"]),
                    height=int(im["height"]),
                    bbox=box,
                    expression=str(sent.get("sent", sent.get("raw", ""))).strip(),
                    split=str(ref.get("split", "")),
                    ref_id=ref.get("ref_id"),
                )
            )
    return out


def write_refcoco_jsonl(path: str | Path, rows: Iterable[RefExpression], image_root: str | Path | None = None) -> None:
    """Write expressions in the JSONL layout (image paths relative to ``image_root`` when given)."""
    lines = []
    for r in rows:
        d = asdict(r)
        x1, y1, x2, y2 = r.bbox
        d["bbox"] = [x1, y1, x2 - x1, y2 - y1]
        if image_root is not None:
            d["image"] = str(Path(r.image).relative_to(image_root))
        lines.append(json.dumps(d))
    atomic_write_text(path, "\n".join(lines) + "\n")
