"""COCO Karpathy captions (``dataset_coco.json``): ``{"images": [{"filepath", "filename", "imgid", "cocoid",
"split", "sentences": [{"raw", "tokens"}]}]}``. ``restval`` counts as train (Karpathy's convention)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from probes.errors import UserError

from .common import read_json, require, resolve_image


@dataclass(frozen=True)
class CaptionImage:
    id: str
    image: str
    references: tuple[str, ...]
    split: str


def load_karpathy(
    path: str | Path, image_root: str | Path | None = None, *, split: str | None = None, check_images: bool = True
) -> list[CaptionImage]:
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    data = read_json(path)
    if not isinstance(data, dict) or "images" not in data:
        raise UserError(f"{path}: expected a Karpathy split file with an 'images' list")
    out = []
    for n, im in enumerate(data["images"]):
        require(im, ("filename", "sentences", "split"), f"{path} image {n}")
        s = "train" if im["split"] == "restval" else str(im["split"])
        if split is not None and s != split:
            continue
        rel = str(Path(im.get("filepath", "")) / im["filename"])
        out.append(
            CaptionImage(
                id=str(im.get("cocoid", im.get("imgid", n))),
                image=resolve_image(root, rel, check=check_images),
                references=tuple(str(x.get("raw", " ".join(x.get("tokens", [])))).strip() for x in im["sentences"]),
                split=s,
            )
        )
    return out
