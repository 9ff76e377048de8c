"""VLM evaluation: benchmark loaders, scoring of hand-written predictions, CLI errors, an end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from probes.cli.app import main

from probes.errors import UserError
from probes.vlm.data.world import write_world
from probes.vlm.eval.datasets import MC_INSTRUCTION, load_eval_set
from probes.vlm.eval.scoring import score_predictions
from probes.vlm.image import format_box


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    write_world(out, 20, 0)
    return out


def test_grounding_set_and_scoring(world: Path) -> None:
    es = load_eval_set("grounding", world, split="val")
    assert es.benchmark == "refcoco-val" and es.task_group == "grounding"
    s = es.samples[0]
    assert s.prompt.startswith("the ") and all(0.0 <= v <= 1.0 for v in s.reference)
    preds = [format_box(x.reference) for x in es.samples]
    preds[0] = "[0.00, 0.00, 0.01, 0.01]"  # a miss
    preds[1] = "somewhere on the left"  # unparseable
    scored = score_predictions("grounding", es.samples, preds)
    n = len(es.samples)
    assert scored.score == pytest.approx(100 * (n - 2) / n)
    assert scored.details["n_unparseable"] == 1
    assert scored.records[2]["correct"] is True and scored.records[2]["iou"] > 0.95  # 2-decimal rounding


def test_captioning_scoring_rewards_reference_text(world: Path) -> None:
    es = load_eval_set("captioning", world, split=None)
    good = score_predictions("captioning", es.samples, [s.reference[0] for s in es.samples])
    bad = score_predictions("captioning", es.samples, ["zebra zebra"] * len(es.samples))
    assert good.metric == "cider" and good.score > 100.0 and bad.score == 0.0


def test_vqa_scoring(world: Path) -> None:
    es = load_eval_set("vqa", world, split="val")
    assert es.benchmark == "vqav2-val" and len(es.samples[0].reference) == 10
    right = score_predictions("vqa", es.samples, [s.reference[0] for s in es.samples])
    assert right.score == pytest.approx(100.0) and right.metric == "vqa_score"
    wrong = score_predictions("vqa", es.samples, ["purple"] * len(es.samples))
    assert wrong.score == 0.0


def test_vqa_jsonl_single_answer_uses_exact_match(tmp_path: Path, world: Path) -> None:
    img = next((world / "images").iterdir())
    rows = [{"id": "a", "image": str(img), "question": "what?", "answer": "The table"},
            {"id": "b", "image": str(img), "question": "what?", "answers": ["chair"]}]  # fmt: skip
    (tmp_path / "gqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    es = load_eval_set("vqa", tmp_path / "gqa.jsonl", split=None)
    scored = score_predictions("vqa", es.samples, ["table", "sofa"])
    assert scored.metric == "accuracy" and scored.score == pytest.approx(50.0)


def test_mc_and_pope_jsonl(tmp_path: Path, world: Path) -> None:
    img = next((world / "images").iterdir())
    (tmp_path / "mc.jsonl").write_text(
        json.dumps({"id": 1, "image": str(img), "question": "Which shape?", "options": ["circle", "square"], "answer": "B"})
        + "\n"
    )
    es = load_eval_set("mc", tmp_path / "mc.jsonl", split=None)
    assert es.samples[0].instruction == MC_INSTRUCTION
    assert es.samples[0].prompt == "Which shape?\nA. circle\nB. square"
    assert score_predictions("mc", es.samples, ["B"]).score == 100.0
    pope = [{"question_id": i, "image": str(img), "text": "Is there a dog?", "label": lab}
            for i, lab in enumerate(["yes", "no", "no", "yes"])]  # fmt: skip
    (tmp_path / "pope.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pope))
    es = load_eval_set("pope", tmp_path / "pope.jsonl", split=None)
    scored = score_predictions("pope", es.samples, ["Yes", "No", "Yes", "maybe"])
    assert scored.score == pytest.approx(50.0)
    assert scored.details["precision"] == pytest.approx(50.0) and scored.details["recall"] == pytest.approx(50.0)
    assert es.task_group == "other" and es.benchmark == "pope"


@pytest.mark.parametrize(
    "task,data,match",
    [
        ("grounding", "missing-dir", "does not exist"),
        ("mc", ".", "reads a JSONL file"),
        ("riddles", ".", "unknown task"),
    ],
)
def test_loader_errors(task: str, data: str, match: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=match):
        load_eval_set(task, tmp_path / data)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    code = exc.value.code
    return (0 if code is None else int(code)), capsys.readouterr().err.strip()


def test_cli_missing_checkpoint_is_one_line_exit_2(tmp_path: Path, world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ev"
    code, err = _cli(
        ["vlm", "eval", str(tmp_path / "nope"), "--data", str(world), "--task", "grounding", "--out", str(out)], capsys
    )
    assert code == 2 and err == f"error: checkpoint {tmp_path / 'nope'} does not exist"
    assert not out.exists()


def test_cli_not_a_checkpoint(tmp_path: Path, world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli(["vlm", "eval", str(world), "--data", str(world), "--task", "vqa", "--out", str(tmp_path)], capsys)
    assert code == 2 and "is not a VLM checkpoint" in err and "\n" not in err


def test_cli_resolution_bad_sizes(tmp_path: Path, world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli(
        ["vlm", "resolution", str(world), "--data", str(world), "--sizes", "336,big", "--out", str(tmp_path)], capsys
    )
    assert code == 2 and "--sizes" in err


@pytest.mark.slow
def test_cli_eval_end_to_end_on_tiny_checkpoint(
    tmp_path: Path, world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real (untrained) tiny VLM: batched decoding, predictions.jsonl and scores.json per CONTRACTS."""
    from probes.vlm.model import build_vlm
    from probes.vlm.tokenizer import train_tokenizer

    texts = [s["raw"] for im in json.loads((world / "dataset_coco.json").read_text())["images"] for s in im["sentences"]]
    tok = train_tokenizer(texts + ["[0.12, 0.34, 0.56, 0.78]"], 300)
    build_vlm(backbone="pythia-tiny", encoder="tiny", connector="mlp", tokenizer=tok).save(tmp_path / "ckpt")
    out = tmp_path / "ev"
    argv = ["vlm", "eval", str(tmp_path / "ckpt"), "--data", str(world), "--task", "grounding", "--out", str(out),
            "--batch-size", "3", "--limit", "4", "--device", "cpu", "--max-new-tokens", "6"]  # fmt: skip
    code, _ = _cli(argv, capsys)
    assert code == 0
    scores = json.loads((out / "scores.json").read_text())
    assert scores["schema_version"] == 1 and scores["n"] == 4 and scores["task_group"] == "grounding"
    assert scores["model"]["family"] == "gpt_neox" and scores["resolution"] == 84
    assert 0.0 <= scores["score"] <= 100.0
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 4 and {"id", "prediction", "references", "correct"} <= set(preds[0])
    first = (out / "predictions.jsonl").read_text()
    code, _ = _cli(argv, capsys)  # greedy decoding is deterministic
    assert code == 0 and (out / "predictions.jsonl").read_text() == first


# --- pruning quality vs k --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned_checkpoint(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained pythia-tiny VLM with a saliency pruner (k = 9 of 36 patches), saved as a checkpoint."""
    import torch

    from probes.vlm.model import build_vlm
    from probes.vlm.tokenizer import train_tokenizer

    torch.set_num_threads(1)
    tok = train_tokenizer(["the red circle", "[0.1, 0.2, 0.3, 0.4]", "how many objects are there?"], 300)
    vlm = build_vlm(backbone="pythia-tiny", encoder="tiny", connector="mlp", tokenizer=tok, prune_k=9, seed=0)
    out = tmp_path_factory.mktemp("pruned") / "ckpt"
    vlm.save(out)
    return out


def test_prune_quality_rows_per_k_and_method(pruned_checkpoint: Path, world: Path, tmp_path: Path) -> None:
    import csv

    with pytest.raises(SystemExit) as exc:
        main(["vlm", "prune-quality", str(pruned_checkpoint), "--data", str(world), "--task", "grounding",
              "--split", "test", "--k", "36,4", "--limit", "3", "--out", str(tmp_path / "q")])  # fmt: skip
    assert exc.value.code in (0, None)
    rows = list(csv.DictReader((tmp_path / "q" / "quality.csv").open()))
    assert [(int(r["k"]), r["method"]) for r in rows] == [(4, "saliency"), (4, "random"), (36, "saliency"), (36, "random")]
    for r in rows:
        scores = json.loads((tmp_path / "q" / f"{r['method']}-k{r['k']}" / "scores.json").read_text())
        assert float(r["score"]) == scores["score"] and scores["n"] == 3 and scores["tags"]["k"] == int(r["k"])
    # keeping all 36 patches is the same model whichever way they are chosen: identical predictions
    same = [(tmp_path / "q" / f"{m}-k36" / "predictions.jsonl").read_text() for m in ("saliency", "random")]
    assert same[0] == same[1]
    assert (tmp_path / "q" / "quality.png").is_file() and (tmp_path / "q" / "quality.pdf").is_file()


def test_random_pruner_is_seeded_and_in_raster_order() -> None:
    import torch

    from probes.vlm.eval.pruning_quality import RandomPruner

    x = torch.randn(2, 10, 3)
    a, b = RandomPruner(4, seed=1), RandomPruner(4, seed=1)
    (kept, idx), (_, idx2) = a(x), b(x)
    assert torch.equal(idx, idx2) and idx.shape == (2, 4)
    assert torch.equal(idx, idx.sort(dim=1).values)
    assert torch.equal(kept[0], x[0, idx[0]])
    # the generator advances image by image: slot 0 of later batches gets fresh subsets, replayed by a twin
    later = [a(x)[1] for _ in range(5)]
    assert any(not torch.equal(t[0], idx[0]) for t in later)
    assert all(torch.equal(t, b(x)[1]) for t in later)


def test_prune_quality_needs_a_scorer_for_saliency(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from probes.vlm.model import build_vlm
    from probes.vlm.tokenizer import train_tokenizer

    torch.set_num_threads(1)
    tok = train_tokenizer(["the red circle"], 300)
    build_vlm(backbone="pythia-tiny", encoder="tiny", connector="mlp", tokenizer=tok, seed=0).save(tmp_path / "plain")
    capsys.readouterr()  # the save's progress output
    with pytest.raises(SystemExit) as exc:
        main(["vlm", "prune-quality", str(tmp_path / "plain"), "--data", str(world), "--k", "4", "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "no saliency scorer" in err and "\n" not in err
