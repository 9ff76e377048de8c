"""Loaders on small fixtures in the real formats, box geometry, the synthetic world, bad inputs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from PIL import Image

from probes.errors import UserError
from probes.vlm.data.captions import load_karpathy
from probes.vlm.data.llava import load_llava
from probes.vlm.data.refcoco import load_refcoco_jsonl, load_refcoco_pickle, write_refcoco_jsonl
from probes.vlm.data.vqav2 import load_vqav2
from probes.vlm.data.world import write_world
from probes.vlm.image import box_text, normalise_box, parse_box


def _img(path: Path, w: int = 200, h: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (1, 2, 3)).save(path)


def test_box_is_normalised_on_the_letterboxed_input() -> None:
    # 200x100 image padded to 200x200 with 50 px top and bottom
    assert normalise_box([0, 0, 100, 50], 200, 100) == [0.0, 0.25, 0.5, 0.5]
    assert box_text([20, 10, 60, 90], 200, 100) == "[0.10, 0.30, 0.30, 0.70]"
    assert parse_box("it is [0.10, 0.30, 0.30, 0.70].") == [0.1, 0.3, 0.3, 0.7]
    assert parse_box("no box") is None


@pytest.mark.parametrize("box", [[50, 10, 40, 20], [10, 10, 20, 10], [0, 0, 300, 50], [-20, 0, 10, 10]])
def test_bad_boxes_are_user_errors(box: list[float]) -> None:
    with pytest.raises(UserError, match="bad box"):
        normalise_box(box, 200, 100)


def test_llava_instruction_prompt_split_and_missing_image(tmp_path: Path) -> None:
    _img(tmp_path / "im" / "a.jpg")
    recs = [
        {"id": "1", "image": "a.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A cat."},
            {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "Grey."}]},
        {"id": "2", "image": "a.jpg", "task": "grounding", "conversations": [
            {"from": "human", "value": "<image>\nGive the box.\nthe cat"}, {"from": "gpt", "value": "[0.10, 0.20, 0.30, 0.40]"}]},
    ]
    (tmp_path / "d.json").write_text(json.dumps(recs))
    c = load_llava(tmp_path / "d.json", tmp_path / "im")
    assert c[0].instruction == "" and c[0].turns == (("What is it?", "A cat."), ("Colour?", "Grey."))
    assert c[0].task == "chat" and c[1].task == "grounding"
    assert c[1].instruction == "Give the box." and c[1].turns == (("the cat", "[0.10, 0.20, 0.30, 0.40]"),)
    recs[1]["image"] = "missing.jpg"
    (tmp_path / "d.json").write_text(json.dumps(recs))
    with pytest.raises(UserError, match="image file not found"):
        load_llava(tmp_path / "d.json", tmp_path / "im")


def test_refcoco_jsonl_and_pickle_layouts_agree(tmp_path: Path) -> None:
    _img(tmp_path / "img" / "COCO_train2014_000000000009.jpg", 200, 100)
    folder = tmp_path / "refcoco"
    folder.mkdir()
    refs = [{"ref_id": 0, "ann_id": 5, "image_id": 9, "split": "val", "sentences": [{"sent": "left cat", "sent_id": 3}]}]
    (folder / "refs(unc).p").write_bytes(pickle.dumps(refs))
    (folder / "instances.json").write_text(json.dumps({
        "images": [{"id": 9, "width": 200, "height": 100, "file_name": "COCO_train2014_000000000009.jpg"}],
        "annotations": [{"id": 5, "image_id": 9, "bbox": [10, 20, 30, 40]}]}))
    with pytest.raises(UserError, match="allow_pickle"):
        load_refcoco_pickle(tmp_path, "refcoco", "unc", tmp_path / "img")
    from_pickle = load_refcoco_pickle(tmp_path, "refcoco", "unc", tmp_path / "img", allow_pickle=True)
    assert from_pickle[0].bbox == (10.0, 20.0, 40.0, 60.0) and from_pickle[0].expression == "left cat"
    write_refcoco_jsonl(tmp_path / "img" / "r.jsonl", from_pickle, image_root=tmp_path / "img")
    from_jsonl = load_refcoco_jsonl(tmp_path / "img" / "r.jsonl", split="val")
    assert from_jsonl == from_pickle
    row = json.loads((tmp_path / "img" / "r.jsonl").read_text())
    row["bbox"] = [190, 20, 30, 40]  # runs off the right edge
    (tmp_path / "img" / "r.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(UserError, match="outside"):
        load_refcoco_jsonl(tmp_path / "img" / "r.jsonl")


def test_karpathy_and_vqav2(tmp_path: Path) -> None:
    _img(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg")
    (tmp_path / "k.json").write_text(json.dumps({"images": [
        {"filepath": "val2014", "filename": "COCO_val2014_000000000042.jpg", "imgid": 0, "cocoid": 42, "split": "test",
         "sentences": [{"raw": "A dog.", "tokens": ["a", "dog"]}, {"raw": "A brown dog.", "tokens": []}]},
        {"filepath": "val2014", "filename": "COCO_val2014_000000000042.jpg", "imgid": 1, "cocoid": 43, "split": "restval",
         "sentences": [{"raw": "x", "tokens": []}]}]}))
    test = load_karpathy(tmp_path / "k.json", split="test")
    assert [(c.id, c.references) for c in test] == [("42", ("A dog.", "A brown dog."))]
    assert load_karpathy(tmp_path / "k.json", split="train")[0].id == "43"
    (tmp_path / "q.json").write_text(json.dumps({"data_subtype": "val2014", "questions": [
        {"question_id": 1, "image_id": 42, "question": "What animal?"}]}))
    (tmp_path / "a.json").write_text(json.dumps({"annotations": [
        {"question_id": 1, "image_id": 42, "multiple_choice_answer": "dog", "answer_type": "other",
         "answers": [{"answer": "dog"}] * 9 + [{"answer": "puppy"}]}]}))
    q = load_vqav2(tmp_path / "q.json", tmp_path / "a.json", tmp_path / "val2014")
    assert q[0].question == "What animal?" and q[0].answers.count("dog") == 9 and q[0].multiple_choice_answer == "dog"


def test_world_is_deterministic_and_readable_by_the_loaders(tmp_path: Path) -> None:
    m = write_world(tmp_path / "a", 10, seed=3)
    write_world(tmp_path / "b", 10, seed=3)
    for name in m["files"].values():
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    png = "images/COCO_synth_000000000001.png"
    assert (tmp_path / "a" / png).read_bytes() == (tmp_path / "b" / png).read_bytes()
    root = tmp_path / "a"
    instruct = load_llava(root / "llava_instruct.json")
    assert {c.task for c in instruct} == {"grounding", "vqa", "caption"}
    grounding = next(c for c in instruct if c.task == "grounding")
    refs = {r.expression: r for r in load_refcoco_jsonl(root / "refcoco.jsonl") if r.image == grounding.image}
    for expr, box in grounding.turns:  # stage-2 box text == box of the RefCOCO row, normalised
        r = refs[expr]
        assert box == box_text(r.bbox, r.width, r.height)
    assert load_karpathy(root / "dataset_coco.json", split="val")
    assert load_vqav2(root / "vqav2_val_questions.json", root / "vqav2_val_annotations.json", root,
                      image_template=m["image_template"])
    assert write_world(tmp_path / "c", 10, seed=4)["files"]
    assert (tmp_path / "c" / "refcoco.jsonl").read_text() != (root / "refcoco.jsonl").read_text()


# --- instructions (Shaking Up VLMs, Table 6) ----------------------------------------------------------------


def test_default_instructions_are_table_6() -> None:
    from probes.vlm.data.tasks import INSTRUCTIONS

    assert INSTRUCTIONS["caption"] == "Provide a one-sentence caption for the provided image"
    assert INSTRUCTIONS["grounding"] == "Locate the region that is described by"
    assert INSTRUCTIONS["vqa"] == "Answer the question using a single word or phrase"
    assert INSTRUCTIONS["mc"] == "Answer with the option's letter from the given choices directly"


def test_instruction_file_overrides_defaults_and_bad_files_are_user_errors(tmp_path: Path) -> None:
    from probes.errors import UserError
    from probes.vlm.data.tasks import INSTRUCTIONS, load_instructions

    f = tmp_path / "ins.json"
    f.write_text(json.dumps({"vqa": "Answer briefly."}))
    got = load_instructions(f)
    assert got["vqa"] == "Answer briefly." and got["grounding"] == INSTRUCTIONS["grounding"]
    for bad in ('{"nope": "x"}', '{"vqa": ""}', "[1]", "{"):
        f.write_text(bad)
        with pytest.raises(UserError):
            load_instructions(f)


def test_world_records_instruction_and_dataset_and_eval_uses_them(tmp_path: Path) -> None:
    from probes.vlm.data.llava import load_llava
    from probes.vlm.eval.datasets import load_eval_set

    write_world(tmp_path, 10, seed=0, instructions={"grounding": "Find it:"})
    pre = load_llava(tmp_path / "llava_pretrain.json")
    assert pre[0].instruction == "Provide a one-sentence caption for the provided image"
    assert pre[0].turns[0][0] == "" and pre[0].dataset == "coco"  # the caption instruction is no prompt
    inst = load_llava(tmp_path / "llava_instruct.json")
    ground = [c for c in inst if c.task == "grounding"]
    assert ground and all(c.instruction == "Find it:" and c.dataset == "refcoco" for c in ground)
    assert {c.dataset for c in inst if c.task == "vqa"} == {"vqav2"}
    es = load_eval_set("grounding", tmp_path, split="test")
    assert {s.instruction for s in es.samples} == {"Find it:"}
    es = load_eval_set("grounding", tmp_path, split="test", instructions={"grounding": "Box:"})
    assert {s.instruction for s in es.samples} == {"Box:"}
    cap = load_eval_set("captioning", tmp_path, split="test")
    assert {(s.instruction, s.prompt) for s in cap.samples} == {("Provide a one-sentence caption for the provided image", "")}


def test_world_spec_knobs(tmp_path: Path) -> None:
    from probes.errors import UserError
    from probes.vlm.data.world import WorldSpec

    m = write_world(tmp_path, 20, seed=1, width=96, height=96, spec=WorldSpec((2, 2), (0.4, 0.5), 1))
    assert m["spec"] == {"objects": [2, 2], "size": [0.4, 0.5], "box_decimals": 1, "layout": "free"}
    refs = [json.loads(x) for x in (tmp_path / "refcoco.jsonl").read_text().splitlines()]
    assert len(refs) == 40  # exactly two objects per image: a scene that does not fit them is redrawn
    assert all(38 <= r["bbox"][2] <= 48 for r in refs if "digit" not in r["expression"])
    boxes = [t["value"] for r in json.loads((tmp_path / "llava_instruct.json").read_text()) if r["task"] == "grounding"
             for t in r["conversations"] if t["from"] == "gpt"]  # fmt: skip
    assert boxes and all(len(b.split(",")[0]) == len("[0.1") for b in boxes)  # one decimal
    with pytest.raises(UserError, match="objects per image"):
        WorldSpec((3, 2)).check()


def test_quadrant_layout_puts_each_object_in_its_own_quadrant(tmp_path: Path) -> None:
    from probes.vlm.data.world import WorldSpec

    write_world(tmp_path, 20, seed=2, width=96, height=96, spec=WorldSpec((2, 3), (0.35, 0.45), 1, "quadrants"))
    refs = [json.loads(x) for x in (tmp_path / "refcoco.jsonl").read_text().splitlines()]
    by_image: dict[str, list[int]] = {}
    for r in refs:
        x, y, w, h = r["bbox"]
        if "digit" not in r["expression"]:
            assert w >= 33 and h >= 33
        qx, qy = int(x >= 48), int(y >= 48)
        assert (x + w <= 48 or x >= 48) and (y + h <= 48 or y >= 48)  # inside one quadrant
        by_image.setdefault(r["image"], []).append(qy * 2 + qx)
    assert all(len(q) == len(set(q)) and 2 <= len(q) <= 3 for q in by_image.values())


def test_best_fixed_box_prior_on_hand_built_boxes() -> None:
    from probes.vlm.study.prior import best_fixed_box

    boxes = [[0.0, 0.0, 0.4, 0.4]] * 3 + [[0.6, 0.6, 1.0, 1.0]] * 2  # the mean box hits neither corner
    box, hits = best_fixed_box(boxes, 1)
    assert box == [0.0, 0.0, 0.4, 0.4] and hits == 60.0


def test_world_delivers_the_object_count_or_refuses(tmp_path: Path) -> None:
    """Every image has the requested number of objects (the study's 2-2 of 0.4-0.5 on 96x96 once lost one
    object in 46 % of the test images); a spec no scene can meet is one error, before any world is written."""
    from collections import Counter

    from probes.vlm.data.world import WorldSpec

    write_world(tmp_path / "w", 60, seed=0, width=96, height=96, spec=WorldSpec((2, 2), (0.4, 0.5), 1))
    refs = [json.loads(x) for x in (tmp_path / "w" / "refcoco.jsonl").read_text().splitlines()]
    assert set(Counter(r["image"] for r in refs).values()) == {2} and len(refs) == 120
    with pytest.raises(UserError, match="cannot place 4 objects"):
        write_world(tmp_path / "x", 3, seed=0, width=48, height=48, spec=WorldSpec((4, 4), (0.5, 0.5), 1))


@pytest.mark.parametrize("objects", [(1, 1), (2, 2), (3, 3)])
def test_captions_are_well_formed_for_any_object_count(tmp_path: Path, objects: tuple[int, int]) -> None:
    import re

    from probes.vlm.data.world import WorldSpec, listing

    assert listing(["a x"]) == "a x" and listing(["a x", "a y"]) == "a x and a y"
    assert listing(["a x", "a y", "a z"]) == "a x, a y and a z"
    write_world(tmp_path, 12, seed=3, width=128, height=96, spec=WorldSpec(objects, (0.2, 0.25), 1))
    sentences = [s["raw"] for im in json.loads((tmp_path / "dataset_coco.json").read_text())["images"] for s in im["sentences"]]
    n = objects[0]
    for s in sentences:
        assert not re.search(r"(^|:|with) *and |  |^ | $", s), s
        assert s.count(" and ") == (n > 1) and len(re.findall(r"\ba (red|green|blue|yellow) ", s)) == n, s
    assert any(s.startswith(f"{n} object{'s' if n > 1 else ''}: a ") for s in sentences)


def test_blind_caption_prior_is_a_whole_caption(tmp_path: Path) -> None:
    from probes.vlm.data.world import WorldSpec
    from probes.vlm.study.prior import blind_prior

    write_world(tmp_path, 60, seed=0, width=96, height=96, spec=WorldSpec((2, 2), (0.4, 0.5), 1))
    rule = blind_prior(tmp_path, "captioning", "test")["rule"]
    caption = rule.split("'")[1]
    assert caption.startswith("a ") and " and a " in caption and not caption.startswith("and"), rule
