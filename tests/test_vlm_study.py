"""`probes vlm study`: the whole study on a very small world, its report read back against the scores.json
files, determinism and resume, and bad inputs (one line, exit 2, nothing written)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from probes.cli.app import main

SMALL = ["--n-images", "20", "--stage1-steps", "5", "--stage2-steps", "40", "--batch-size", "8",
         "--stage2-lr", "3e-3", "--eval-batch-size", "8"]  # fmt: skip
MODELS = ["pythia-tiny-agnostic", "pythia-tiny-aware", "mamba-tiny-agnostic", "mamba-tiny-aware"]
TASKS = ["grounding", "captioning", "vqa"]


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    code = exc.value.code
    return (0 if code is None else int(code)), capsys.readouterr().err.strip()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    with pytest.raises(SystemExit) as exc:
        main(["vlm", "study", "--out", str(root / "out"), "--runs", str(root / "runs"), *SMALL])
    assert exc.value.code in (0, None)
    return root / "out"


def _scores(out: Path) -> dict[tuple[str, str], dict]:
    return {(m, t): json.loads((out / "evals" / m / t / "scores.json").read_text()) for m in MODELS for t in TASKS}


def _label(s: dict) -> str:
    return f"{s['model']['backbone']} ({'TA' if s['model']['task_aware'] else 'TAg'})"


@pytest.mark.slow
def test_study_writes_report_consistent_with_scores(study: Path) -> None:
    for name in ("study.json", "README.md", "report.md", "report.csv"):
        assert (study / name).is_file(), name
    assert not (study / "runs").exists()  # checkpoints went to --runs
    scores = _scores(study)
    assert {s["task_group"] for s in scores.values()} == {"grounding", "captioning", "vqa"}
    assert {s["benchmark"] for s in scores.values()} == {"refcoco-test", "coco-test", "vqav2-test"}
    assert sum(s["score"] > 0 for s in scores.values()) >= 2  # some non-zero numbers, so the sums below test something
    rows = list(csv.DictReader((study / "report.csv").open()))
    # every score row is the scores.json value, every group sum the sum of the group's scores read back
    for s in scores.values():
        (row,) = [r for r in rows if r["kind"] == "score" and r["model"] == _label(s) and r["benchmark"] == s["benchmark"]]
        assert float(row["value"]) == s["score"]
    for m in MODELS:
        for group in ("grounding", "captioning", "vqa"):
            expected = sum(s["score"] for (mm, _), s in scores.items() if mm == m and s["task_group"] == group)
            label = _label(scores[(m, "vqa")])
            (row,) = [r for r in rows if r["kind"] == "group_sum" and r["model"] == label and r["task_group"] == group]
            assert math.isclose(float(row["value"]), expected, abs_tol=1e-9)
    # Pythia − Mamba per group and setting
    diffs = [r for r in rows if r["kind"] == "difference"]
    assert len(diffs) == 6  # 3 groups × (agnostic, aware)
    for r in diffs:
        variant = "aware" if r["task_aware"] == "True" else "agnostic"
        expected = sum(scores[(f"pythia-tiny-{variant}", t)]["score"] - scores[(f"mamba-tiny-{variant}", t)]["score"]
                       for t in TASKS if scores[(f"pythia-tiny-{variant}", t)]["task_group"] == r["task_group"])  # fmt: skip
        assert math.isclose(float(r["value"]), expected, abs_tol=1e-9)
    # task-aware vs task-agnostic relative gains
    for r in (r for r in rows if r["kind"] == "gain"):
        backbone = r["model"]
        (task,) = [t for t in TASKS if scores[(f"{backbone}-aware", t)]["benchmark"] == r["benchmark"]]
        a, n = scores[(f"{backbone}-aware", task)]["score"], scores[(f"{backbone}-agnostic", task)]["score"]
        value = float(r["value"])
        assert (math.isnan(value) and n == 0) or math.isclose(value, 100 * (a - n) / n, abs_tol=1e-9)
    record = json.loads((study / "study.json").read_text())
    assert record["status"] == "finished" and record["command"].startswith("probes vlm study --out")
    assert record["env"]["torch"] and record["env"]["device"] == "cpu"
    stages = {s["name"]: s for s in record["stages"]}
    assert len(stages) == 2 + 4 * (2 + 3) + 1 and all(s["status"] == "done" and s["wall_s"] >= 0 for s in stages.values())
    for (m, t), s in scores.items():
        backbone, variant = m.rsplit("-", 1)
        assert stages[f"{backbone}/{variant}/eval-{t}"]["info"]["score"] == s["score"]
    assert math.isclose(record["total_wall_s"], sum(s["wall_s"] for s in stages.values()), abs_tol=1e-6)
    readme = (study / "README.md").read_text()
    assert record["command"] in readme
    (line,) = [ln for ln in readme.splitlines() if ln.startswith("| vqav2-test |")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    prior = [p for p in stages["blind-prior"]["info"]["blind_prior"] if p["task"] == "vqa"][0]
    assert cells[2] == f"{prior['score']:.2f}"
    header = [c.strip() for c in next(ln for ln in readme.splitlines() if ln.startswith("| benchmark |")).strip("|").split("|")]
    for s in (s for (m, t), s in scores.items() if t == "vqa"):
        assert cells[header.index(_label(s))] == f"{s['score']:.2f}"


@pytest.mark.slow
def test_study_is_deterministic_and_resumes_in_slices(study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same config run in slices (--stop-after 0: one stage per call, then --resume) gives the same files."""
    argv = ["vlm", "study", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), *SMALL,
            "--backbones", "pythia-tiny", "--variants", "agnostic"]  # fmt: skip
    code, err = _cli([*argv, "--stop-after", "0"], capsys)
    assert code == 0 and "rerun with --resume" in err
    record = json.loads((tmp_path / "out" / "study.json").read_text())
    assert record["status"] == "partial" and [s["status"] for s in record["stages"]].count("done") == 1
    code, err = _cli([*argv, "--resume"], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "out" / "study.json").read_text())
    assert record["status"] == "finished" and len(record["invocations"]) == 2
    for t in TASKS:  # pythia-tiny / agnostic depends only on (world, seed, its own options): same predictions
        a = study / "evals" / "pythia-tiny-agnostic" / t
        b = tmp_path / "out" / "evals" / "pythia-tiny-agnostic" / t
        assert (a / "predictions.jsonl").read_text().replace(str(study.parent / "runs"), "R") == (
            b / "predictions.jsonl"
        ).read_text().replace(str(tmp_path / "runs"), "R")
        assert json.loads((a / "scores.json").read_text())["score"] == json.loads((b / "scores.json").read_text())["score"]
    code, err = _cli([*argv[:-2], "--variants", "aware", "--resume"], capsys)
    assert code == 2 and "different config" in err and "\n" not in err
    code, err = _cli([*argv, "--overwrite", "--stop-after", "0"], capsys)  # a study directory may be replaced
    assert code == 0 and not (tmp_path / "out" / "evals").exists()
    assert json.loads((tmp_path / "out" / "study.json").read_text())["status"] == "partial"


@pytest.mark.slow
def test_resolution_study_on_a_study_checkpoint(study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`probes vlm resolution` (Fig. 3 helper) on a trained checkpoint: one eval per size, CSV rows = scores.json."""
    runs = study.parent / "runs"
    out = tmp_path / "res"
    code, err = _cli(["vlm", "resolution", str(runs / "pythia-tiny-agnostic" / "stage2"), "--data", str(runs / "world"),
                      "--task", "vqa", "--split", "test", "--sizes", "84,56,112", "--limit", "4", "--out", str(out)],
                     capsys)  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader((out / "resolution.csv").open()))
    assert [int(r["resolution"]) for r in rows] == [56, 84, 112]
    for r in rows:
        scores = json.loads(Path(r["path"]).read_text())
        assert scores["resolution"] == int(r["resolution"]) and float(r["score"]) == scores["score"] and scores["n"] == 4
    assert (out / "resolution.png").is_file() and (out / "resolution.pdf").is_file()


def test_world_varies_the_first_turn(tmp_path: Path) -> None:
    """Task-aware training reads only the first turn's prompt before the image, as evaluation asks every
    question: the world must not always put the same kind of question (or the leftmost object) first."""
    from probes.vlm.data.world import write_world

    write_world(tmp_path, 40, seed=0)
    instruct = json.loads((tmp_path / "llava_instruct.json").read_text())
    firsts = {task: [r["conversations"][0]["value"].split("\n")[-1] for r in instruct if r["task"] == task]
              for task in ("vqa", "grounding")}  # fmt: skip
    kinds = {q.split()[0] for q in firsts["vqa"]}
    assert kinds == {"how", "what", "is"}
    refs = [json.loads(x) for x in (tmp_path / "refcoco.jsonl").read_text().splitlines()]
    leftmost = {r["image"]: r["expression"] for r in reversed(refs)}  # rows are written left to right
    ground = [r for r in instruct if r["task"] == "grounding"]
    assert any(f != leftmost[r["image"]] for f, r in zip(firsts["grounding"], ground, strict=True))


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--backbones", "no-such-model"], "unknown model"),
        (["--tasks", "pope"], "no 'pope' benchmark"),
        (["--variants", "sideways"], "unknown variant"),
        (["--n-images", "5"], "--n-images must be at least 10"),
        (["--connector", "conv"], "unknown connector"),
        (["--stage2-steps", "0"], "--stage2-steps must be at least 1"),
        (["--split", "train"], "--split must be one of"),
        (["--resume", "--overwrite"], "exclude each other"),
    ],
)
def test_bad_options_are_one_line_errors_and_write_nothing(
    extra: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _cli(["vlm", "study", "--out", str(tmp_path / "out"), *extra], capsys)
    assert code == 2 and err.startswith("error:") and match in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_existing_directory_needs_resume_or_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = _cli(["vlm", "study", "--out", str(out)], capsys)
    assert code == 2 and "exists and is not empty; pass --resume" in err and "\n" not in err
    code, err = _cli(["vlm", "study", "--out", str(out), "--overwrite"], capsys)
    assert code == 2 and "refusing to --overwrite" in err
    code, err = _cli(["vlm", "study", "--out", str(out), "--resume"], capsys)
    assert code == 2 and "nothing to resume" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # untouched
