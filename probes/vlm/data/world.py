"""An offline synthetic image world written in the real dataset formats, deterministic from a seed.

Each image (default 128×96, not square, so the letterbox padding is exercised) shows 2–3 objects (see
:class:`WorldSpec` for the knobs the study turns) — a
coloured circle, square, triangle or digit — placed without overlap; every (colour, kind) pair appears at
most once per image, so "the red circle" names exactly one object. From the scene it derives:

- captions (5 phrasings, objects listed left to right) → ``dataset_coco.json`` (Karpathy layout) and the
  stage-1 ``llava_pretrain.json``;
- referring expressions with pixel boxes → ``refcoco.jsonl`` (one row per expression, COCO ``xywh``);
- questions (count, colour of a kind, presence yes/no) → ``vqav2_{split}_questions.json`` and
  ``vqav2_{split}_annotations.json`` (10 identical answers, as VQAv2 scores against 10);
- ``llava_instruct.json`` for stage 2: per training image one grounding conversation (all expressions as
  turns, boxes as normalised text on the letterboxed input), one VQA conversation and one caption. Turn
  order is shuffled per image (the query-first layout puts the first turn's prompt before the image).
  Every record names its instruction and dataset (``refcoco``, ``vqav2``, ``coco``) explicitly.

Splits by image index: 80 % train, 10 % val, 10 % test. ``world.json`` records the seed and file list.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from probes.errors import UserError
from probes.io import atomic_path, atomic_write_json, atomic_write_text, ensure_writable_dir

from ..image import box_text
from .llava import llava_record
from .tasks import resolve_instructions

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 200, 20),
}
KINDS = ("circle", "square", "triangle", "digit")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
IMAGE_TEMPLATE = "images/COCO_{subtype}_{image_id:012d}.png"


@dataclass(frozen=True)
class WorldObject:
    kind: str
    colour: str
    box: tuple[int, int, int, int]  # pixel x1, y1, x2, y2 (exclusive ends)
    digit: int = -1

    @property
    def noun(self) -> str:
        return f"digit {DIGIT_WORDS[self.digit]}" if self.kind == "digit" else self.kind

    @property
    def phrase(self) -> str:
        return f"{self.colour} {self.noun}"


def split_of(index: int) -> str:
    r = index % 10
    return "train" if r < 8 else ("val" if r == 8 else "test")


@dataclass(frozen=True)
class WorldSpec:
    """How a scene is drawn and how boxes are written (the study's world is designed with these knobs).

    ``objects``: inclusive range of objects per image; ``size``: inclusive range of an object's side as a
    fraction of the shorter canvas side; ``box_decimals``: digits of the normalised box coordinates in the
    training targets (1 = a 0.1 grid: fewer target tokens and an easier regression for a tiny model).
    ``layout``: ``free`` places objects anywhere without overlap (a scene that does not fit them is redrawn;
    a spec no redraw can meet is an error, :func:`_scene`); ``quadrants`` puts each object inside its own quadrant of the canvas (at most
    4), at a random offset: coarse positions, so a tiny model can learn where an object is, while a box
    predicted without the image (the mean box sits in the middle) rarely overlaps one by half.
    The defaults reproduce the original world (2-3 free objects of 1/4-1/3, two decimals).
    """

    objects: tuple[int, int] = (2, 3)
    size: tuple[float, float] = (0.25, 1 / 3)
    box_decimals: int = 2
    layout: str = "free"

    def check(self) -> None:
        lo, hi = self.objects
        if not 1 <= lo <= hi <= 4:
            raise UserError(f"objects per image must satisfy 1 <= min <= max <= 4, got {self.objects}")
        if not 0.1 <= self.size[0] <= self.size[1] <= 0.5:
            raise UserError(f"object size fractions must satisfy 0.1 <= min <= max <= 0.5, got {self.size}")
        if self.layout not in ("free", "quadrants"):
            raise UserError(f"world layout must be free or quadrants, got {self.layout!r}")
        if self.layout == "quadrants" and self.size[1] > 0.48:
            raise UserError("with the quadrants layout an object's side must be at most 0.48 of the canvas")
        if self.box_decimals not in (1, 2):
            raise UserError(f"box decimals must be 1 or 2, got {self.box_decimals}")


SCENE_TRIES = 200  # fresh draws of a whole free scene before the spec is declared unsatisfiable
PLACEMENT_TRIES = 200  # object draws within one scene draw


def _scene(rng: random.Random, width: int, height: int, spec: WorldSpec = WorldSpec()) -> list[WorldObject]:
    """Exactly ``n`` objects (``n`` drawn from ``spec.objects``): a free scene that cannot place them all is
    redrawn whole (sizes included), so every image has the object count asked for; when that fails
    ``SCENE_TRIES`` times the spec cannot be met on this canvas and the world is not written (a world that
    quietly drops objects would turn a two-object referring study into a localisation one)."""
    n = rng.randint(*spec.objects)
    if spec.layout == "quadrants":
        return _quadrant_scene(rng, width, height, spec, n)
    for _ in range(SCENE_TRIES):
        objs = _free_scene(rng, width, height, spec, n)
        if len(objs) == n:
            return objs
    side = min(width, height)
    raise UserError(f"cannot place {n} objects of {spec.size[0]:g}-{spec.size[1]:g} of the short side ({side} px) "
                    f"without overlap on a {width}x{height} canvas; lower --size or --objects, or enlarge --canvas")


def _free_scene(rng: random.Random, width: int, height: int, spec: WorldSpec, n: int) -> list[WorldObject]:
    """Up to ``n`` non-overlapping objects with distinct (colour, kind) pairs, in ``PLACEMENT_TRIES`` draws."""
    objs: list[WorldObject] = []
    used: set[tuple[str, str]] = set()
    attempts = 0
    while len(objs) < n and attempts < PLACEMENT_TRIES:
        attempts += 1
        kind, colour = rng.choice(KINDS), rng.choice(list(COLOURS))
        if (kind, colour) in used:
            continue
        side = min(width, height)
        size = rng.randint(int(side * spec.size[0]), int(side * spec.size[1]))
        x, y = rng.randint(2, width - size - 2), rng.randint(2, height - size - 2)
        box = (x, y, x + size, y + size)
        if any(not (box[2] + 2 <= o.box[0] or o.box[2] + 2 <= box[0] or box[3] + 2 <= o.box[1] or o.box[3] + 2 <= box[1]) for o in objs):
            continue
        used.add((kind, colour))
        objs.append(WorldObject(kind, colour, box, rng.randrange(10) if kind == "digit" else -1))
    return sorted(objs, key=lambda o: (o.box[0], o.box[1]))


def _quadrant_scene(rng: random.Random, width: int, height: int, spec: WorldSpec, n: int) -> list[WorldObject]:
    """``n`` objects, each in its own quadrant, distinct (colour, kind) pairs (see :class:`WorldSpec`)."""
    side = min(width, height)
    pairs = [(k, c) for k in KINDS for c in COLOURS]
    objs = []
    for q, (kind, colour) in zip(rng.sample(range(4), n), rng.sample(pairs, n), strict=True):
        size = rng.randint(int(side * spec.size[0]), int(side * spec.size[1]))
        qx, qy = (q % 2) * (width // 2), (q // 2) * (height // 2)
        x = qx + rng.randint(1, max(1, width // 2 - size - 1))
        y = qy + rng.randint(1, max(1, height // 2 - size - 1))
        objs.append(WorldObject(kind, colour, (x, y, x + size, y + size), rng.randrange(10) if kind == "digit" else -1))
    return sorted(objs, key=lambda o: (o.box[0], o.box[1]))


def _draw(objs: list[WorldObject], width: int, height: int) -> tuple[Image.Image, list[WorldObject]]:
    """Render; a digit's box is tightened to its drawn glyph so the box is what is visible."""
    img = Image.new("RGB", (width, height), (245, 245, 245))
    d = ImageDraw.Draw(img)
    out = []
    for o in objs:
        x1, y1, x2, y2 = o.box
        fill = COLOURS[o.colour]
        if o.kind == "circle":
            d.ellipse([x1, y1, x2 - 1, y2 - 1], fill=fill)
        elif o.kind == "square":
            d.rectangle([x1, y1, x2 - 1, y2 - 1], fill=fill)
        elif o.kind == "triangle":
            d.polygon([((x1 + x2) / 2, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)], fill=fill)
        else:
            font = ImageFont.load_default(size=int((y2 - y1) * 1.2))
            gx1, gy1, gx2, gy2 = d.textbbox((0, 0), str(o.digit), font=font)
            ox, oy = x1 + ((x2 - x1) - (gx2 - gx1)) // 2 - gx1, y1 + ((y2 - y1) - (gy2 - gy1)) // 2 - gy1
            d.text((ox, oy), str(o.digit), fill=fill, font=font)
            tb = d.textbbox((ox, oy), str(o.digit), font=font)
            o = WorldObject(o.kind, o.colour, (max(tb[0], 0), max(tb[1], 0), min(tb[2], width), min(tb[3], height)), o.digit)
        out.append(o)
    return img, out


def listing(phrases: list[str]) -> str:
    """English list of noun phrases: ``a``, ``a and b``, ``a, b and c`` (never a dangling ``and``)."""
    if not phrases:
        raise ValueError("a caption needs at least one object")
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + f" and {phrases[-1]}"


def _captions(objs: list[WorldObject]) -> list[str]:
    listed = listing([f"a {o.phrase}" for o in objs])
    count = f"{len(objs)} object" + ("s" if len(objs) > 1 else "")
    return [
        listed,
        f"{count}: {listed}",
        f"an image with {listed}",
        f"{listed} on a grey background",
        f"from left to right, {listed}" if len(objs) > 1 else f"in the image, {listed}",
    ]


def _questions(rng: random.Random, objs: list[WorldObject]) -> list[tuple[str, str]]:
    qs = [("how many objects are there?", str(len(objs)))]
    kinds = [o.kind for o in objs]
    for o in objs:
        if kinds.count(o.kind) == 1:
            qs.append((f"what color is the {o.kind}?", o.colour))
    present = {(o.colour, o.kind) for o in objs}
    colour, kind = rng.choice(list(COLOURS)), rng.choice(KINDS[:3])
    qs.append((f"is there a {colour} {kind}?", "yes" if (colour, kind) in present else "no"))
    return qs


def write_world(
    out: str | Path, n_images: int, seed: int, *, width: int = 128, height: int = 96, spec: WorldSpec | None = None,
    instructions: Mapping[str, str] | None = None,
) -> dict:
    """Write the world into ``out`` (see module docstring); returns the ``world.json`` manifest."""
    spec = spec or WorldSpec()
    spec.check()
    ins = resolve_instructions(instructions)
    if n_images < 1:
        raise UserError("--n-images must be at least 1")
    if width < 48 or height < 48:
        raise UserError("the canvas must be at least 48x48 pixels")
    out = Path(out)
    ensure_writable_dir(out / "images")
    rng = random.Random(seed)
    subtype = "synth"
    pretrain, instruct, refs, karpathy = [], [], [], []
    vqa: dict[str, tuple[list, list]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    qid = 0
    for i in range(n_images):
        image_id = i + 1
        split = split_of(i)
        rel = IMAGE_TEMPLATE.format(subtype=subtype, image_id=image_id)
        img, objs = _draw(_scene(rng, width, height, spec), width, height)
        with atomic_path(out / rel, suffix=".png") as tmp:
            img.save(tmp, format="PNG")
        caps = _captions(objs)
        karpathy.append({
            "filepath": str(Path(rel).parent), "filename": Path(rel).name, "imgid": i, "cocoid": image_id,
            "split": split, "sentences": [{"raw": c, "tokens": c.replace(",", "").split()} for c in caps],
        })
        for k, o in enumerate(objs):
            x1, y1, x2, y2 = o.box
            refs.append({"id": f"{image_id}-{k}", "image": rel, "width": width, "height": height,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "expression": f"the {o.phrase}", "split": split,
                         "ref_id": len(refs)})
        questions = _questions(rng, objs)
        for q, a in questions:
            qid += 1
            vqa[split][0].append({"question_id": qid, "image_id": image_id, "question": q})
            vqa[split][1].append({"question_id": qid, "image_id": image_id, "question_type": q.split()[0],
                                  "answer_type": "yes/no" if a in ("yes", "no") else ("number" if a.isdigit() else "other"),
                                  "multiple_choice_answer": a,
                                  "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1} for j in range(10)]})
        if split != "train":
            continue
        pretrain.append(llava_record(f"{image_id}-cap", rel, "caption", ins["caption"], [("", caps[0])], "coco"))
        # Turn order shuffled per image (own RNG: the scenes stay as they were): the query-first layout reads
        # the first prompt before the image, so a fixed order would only ever train it on "the leftmost
        # object" / "how many objects are there?" there, while evaluation asks every expression there.
        order = random.Random(seed * 1_000_003 + image_id)
        ground = [(f"the {o.phrase}", box_text(o.box, width, height, spec.box_decimals)) for o in objs]
        order.shuffle(ground)
        turns = list(questions)
        order.shuffle(turns)
        instruct.append(llava_record(f"{image_id}-ground", rel, "grounding", ins["grounding"], ground, "refcoco"))
        instruct.append(llava_record(f"{image_id}-vqa", rel, "vqa", ins["vqa"], turns, "vqav2"))
        instruct.append(llava_record(f"{image_id}-cap", rel, "caption", ins["caption"], [("", caps[i % 5])], "coco"))
    files = {"llava_pretrain": "llava_pretrain.json", "llava_instruct": "llava_instruct.json",
             "refcoco": "refcoco.jsonl", "karpathy": "dataset_coco.json"}
    atomic_write_json(out / files["llava_pretrain"], pretrain)
    atomic_write_json(out / files["llava_instruct"], instruct)
    atomic_write_text(out / files["refcoco"], "".join(json.dumps(r) + "\n" for r in refs))
    atomic_write_json(out / files["karpathy"], {"dataset": "coco", "images": karpathy})
    for split, (qs, anns) in vqa.items():
        files[f"vqav2_{split}_questions"] = f"vqav2_{split}_questions.json"
        files[f"vqav2_{split}_annotations"] = f"vqav2_{split}_annotations.json"
        atomic_write_json(out / files[f"vqav2_{split}_questions"], {"data_subtype": subtype, "questions": qs})
        atomic_write_json(out / files[f"vqav2_{split}_annotations"], {"data_subtype": subtype, "annotations": anns})
    manifest = {"schema_version": 1, "seed": seed, "n_images": n_images, "canvas": [width, height],
                "spec": {"objects": list(spec.objects), "size": list(spec.size), "box_decimals": spec.box_decimals,
                         "layout": spec.layout},
                "instructions": ins,
                "image_template": IMAGE_TEMPLATE, "vqa_image_root": ".", "files": files}
    atomic_write_json(out / "world.json", manifest)
    return manifest
