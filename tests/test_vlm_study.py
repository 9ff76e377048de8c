"""`probes vlm study`: the whole study on a very small world, its report read back against the scores.json
files, determinism and resume, and bad inputs (one line, exit 2, nothing written)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from probes.cli.app import main

SMALL = ["--n-images", "20", "--encoder-steps", "5", "--stage1-steps", "5", "--stage2-steps", "20", "--batch-size", "8",
         "--stage2-lr", "3e-3", "--eval-batch-size", "8", "--seeds", "0,1", "--canvas", "96x96"]  # fmt: skip
VARIANTS = ["agnostic", "aware", "matched"]
ARMS = [f"{b}-{v}" for b in ("pythia-tiny", "mamba-tiny") for v in VARIANTS]
SEEDS = [0, 1]
TASKS = ["grounding", "captioning", "vqa"]


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    code = exc.value.code
    return (0 if code is None else int(code)), capsys.readouterr().err.strip()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study")
    with pytest.raises(SystemExit) as exc:  # two worker processes: the parallel path
        main(["vlm", "study", "--out", str(root / "out"), "--runs", str(root / "runs"), *SMALL, "--workers", "2"])
    assert exc.value.code in (0, None)
    return root / "out"


def _scores(out: Path) -> dict[tuple[str, int, str], dict]:
    return {(a, s, t): json.loads((out / "evals" / f"{a}-s{s}" / t / "scores.json").read_text())
            for a in ARMS for s in SEEDS for t in TASKS}  # fmt: skip


def _label(arm: str) -> str:
    backbone, variant = arm.rsplit("-", 1)
    return f"{backbone} ({ {'aware': 'TA', 'agnostic': 'TAg', 'matched': 'TAg-d'}[variant]})"


@pytest.mark.slow
def test_study_report_numbers_are_the_scores_read_back_with_cis(study: Path) -> None:
    for name in ("study.json", "README.md", "report.md", "report.csv"):
        assert (study / name).is_file(), name
    assert not (study / "runs").exists()  # checkpoints went to --runs
    scores = _scores(study)
    for (a, s, t), sc in scores.items():  # the benchmark score is the mean of the per-item values
        recs = [json.loads(x) for x in (study / "evals" / f"{a}-s{s}" / t / "predictions.jsonl").read_text().splitlines()]
        per_item = [100.0 * r["correct"] if t == "grounding" else r["score"] for r in recs]
        assert math.isclose(sum(per_item) / len(per_item), sc["score"], abs_tol=1e-6) and sc["n"] == len(recs)
        assert sc["tags"]["seed"] == s and sc["model"]["order"] == a.rsplit("-", 1)[1]
    rows = list(csv.DictReader((study / "report.csv").open()))
    mean = {}
    for a in ARMS:
        for t in TASKS:
            bench = scores[(a, 0, t)]["benchmark"]
            mean[(a, t)] = sum(scores[(a, s, t)]["score"] for s in SEEDS) / len(SEEDS)
            (row,) = [r for r in rows if r["kind"] == "score" and r["model"] == _label(a) and r["benchmark"] == bench]
            assert math.isclose(float(row["value"]), mean[(a, t)], abs_tol=1e-6)
            assert float(row["ci_lo"]) <= float(row["value"]) + 1e-9 <= float(row["ci_hi"]) + 2e-9
            assert int(row["n_seeds"]) == 2 and int(row["n_items"]) == scores[(a, 0, t)]["n"]
            (gsum,) = [r for r in rows if r["kind"] == "group_sum" and r["model"] == _label(a)
                       and r["task_group"] == scores[(a, 0, t)]["task_group"]]  # fmt: skip
            assert math.isclose(float(gsum["value"]), mean[(a, t)], abs_tol=1e-6)  # one benchmark per group
    for t in TASKS:
        prior = json.loads((study / "prior" / t / "prior.json").read_text())
        (row,) = [r for r in rows if r["kind"] == "score" and r["model"] == "blind prior" and r["benchmark"] == prior["benchmark"]]
        assert math.isclose(float(row["value"]), prior["score"], abs_tol=1e-6)
    diffs = [r for r in rows if r["kind"] == "difference" and r["benchmark"].startswith("Σ")]
    assert len(diffs) == 9  # 3 groups × 3 orders, paired per seed
    for r in diffs:
        variant = {"(TA)": "aware", "(TAg)": "agnostic", "(TAg-d)": "matched"}[r["model"].split(" ", 1)[1]]
        t = r["task_group"]
        expected = mean[(f"pythia-tiny-{variant}", t)] - mean[(f"mamba-tiny-{variant}", t)]
        assert math.isclose(float(r["value"]), expected, abs_tol=1e-6) and int(r["n_seeds"]) == 2
        assert float(r["ci_lo"]) <= float(r["value"]) + 1e-9 <= float(r["ci_hi"]) + 2e-9
    gains = [r for r in rows if r["kind"] == "gain" and "(" not in r["benchmark"]]
    assert {r["contrast"] for r in gains} == {"task-aware gain (Fig. 4)", "distance only", "task only (distance matched)"}
    for r in gains:  # points: the mean of the per-seed differences = the difference of the means
        (t,) = [t for t in TASKS if scores[(ARMS[0], 0, t)]["benchmark"] == r["benchmark"]]
        a, b = (f"{x.split(' ')[0]}-{ {'TA)': 'aware', 'TAg)': 'agnostic', 'TAg-d)': 'matched'}[x.split('(')[1]]}"
                for x in (r["model"], r["other_model"]))
        assert math.isclose(float(r["value"]), mean[(a, t)] - mean[(b, t)], abs_tol=1e-6)
    record = json.loads((study / "study.json").read_text())
    assert record["status"] == "finished" and record["command"].startswith("probes vlm study --out")
    assert record["env"]["torch"] and record["env"]["device"] == "cpu" and record["elapsed_s"] > 0
    stages = {s["name"]: s for s in record["stages"]}
    assert len(stages) == 3 + 2 * 2 * (1 + 3 * (1 + 3)) and all(s["status"] == "done" for s in stages.values())
    for (a, s, t), sc in scores.items():
        backbone, variant = a.rsplit("-", 1)
        assert stages[f"{backbone}/{variant}/seed{s}/eval-{t}"]["info"]["score"] == sc["score"]
    readme = (study / "README.md").read_text()
    assert record["command"] in readme and "95 % t-interval over seeds" in readme


@pytest.mark.slow
def test_study_is_deterministic_and_resumes_in_slices(study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same config run in slices (--stop-after 0: one stage per call, then --resume), in one process
    instead of two workers, gives the same predictions."""
    argv = ["vlm", "study", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), *SMALL,
            "--backbones", "pythia-tiny", "--variants", "agnostic", "--seeds", "0", "--workers", "1"]  # fmt: skip
    code, err = _cli([*argv, "--stop-after", "0"], capsys)
    assert code == 0 and "rerun with --resume" in err
    record = json.loads((tmp_path / "out" / "study.json").read_text())
    assert record["status"] == "partial" and [s["status"] for s in record["stages"]].count("done") == 1
    code, err = _cli([*argv, "--resume"], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "out" / "study.json").read_text())
    assert record["status"] == "finished" and len(record["invocations"]) == 2
    for t in TASKS:  # pythia-tiny / agnostic / seed 0 depends only on (world, seed, its own options)
        a = study / "evals" / "pythia-tiny-agnostic-s0" / t
        b = tmp_path / "out" / "evals" / "pythia-tiny-agnostic-s0" / t
        assert (a / "predictions.jsonl").read_text().replace(str(study.parent / "runs"), "R") == (
            b / "predictions.jsonl"
        ).read_text().replace(str(tmp_path / "runs"), "R")
    code, err = _cli([*argv[:-4], "--variants", "aware", "--seeds", "0", "--workers", "1", "--resume"], capsys)
    assert code == 2 and "different config" in err and "\n" not in err
    code, err = _cli([*argv, "--overwrite", "--stop-after", "0"], capsys)  # a study directory may be replaced
    assert code == 0 and not (tmp_path / "out" / "evals").exists()
    assert json.loads((tmp_path / "out" / "study.json").read_text())["status"] == "partial"


@pytest.mark.slow
def test_resolution_study_on_a_study_checkpoint(study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`probes vlm resolution` (Fig. 3 helper) on a trained checkpoint: one eval per size, CSV rows = scores.json."""
    runs = study.parent / "runs"
    out = tmp_path / "res"
    code, err = _cli(["vlm", "resolution", str(runs / "pythia-tiny-agnostic-s0" / "stage2"), "--data", str(runs / "world"),
                      "--task", "vqa", "--split", "test", "--sizes", "84,56,112", "--limit", "4", "--out", str(out)],
                     capsys)  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader((out / "resolution.csv").open()))
    assert [int(r["resolution"]) for r in rows] == [56, 84, 112]
    for r in rows:
        scores = json.loads(Path(r["path"]).read_text())
        assert scores["resolution"] == int(r["resolution"]) and float(r["score"]) == scores["score"] and scores["n"] == 4
    assert (out / "resolution.png").is_file() and (out / "resolution.pdf").is_file()


def test_seed_intervals_and_paired_differences_on_hand_built_values() -> None:
    """Seeds that agree give a zero-width interval; a constant per-seed offset between two arms is a paired
    difference with zero width even when the seeds disagree (what the pairing buys); the referring row
    counts only answers that hit an object (NaN items are outside it)."""
    import numpy as np
    from probes.analysis.vlm_study import Arm, Bench, StudyData, build_study_report

    ids = tuple(str(i) for i in range(4))
    bench = Bench("grounding", "grounding", "refcoco-test", "acc@iou>=0.5", ids)
    ref = Bench("grounding", "grounding", "refcoco-test (referring, 2+ objects)", "acc@iou>=0.5", ids)
    arms = [Arm("pythia-tiny", "gpt_neox", v, (0, 1, 2, 3)) for v in ("agnostic", "aware")]
    arms += [Arm("mamba-tiny", "mamba", v, (0, 1, 2, 3)) for v in ("agnostic", "aware")]
    flat = np.full((4, 4), 40.0)
    spread = np.array([[0.0] * 4, [25.0] * 4, [50.0] * 4, [75.0] * 4])
    values = {(arms[0].label, bench.name): flat, (arms[1].label, bench.name): flat,
              (arms[2].label, bench.name): spread, (arms[3].label, bench.name): spread + 10.0}
    nan = math.nan
    refs = np.array([[100.0, 0.0, nan, nan]] * 4)
    for a in arms:
        values[(a.label, ref.name)] = refs
    data = StudyData({"config": {"seeds": [0, 1, 2, 3]}}, [bench, ref], arms, values,
                     {bench.name: np.zeros((1, 4)), ref.name: np.full((1, 4), nan)}, {bench.name: "box", ref.name: "box"})  # fmt: skip
    rep = build_study_report(data)
    e = rep.scores[(arms[0].label, bench.name)]
    assert (e.estimate, e.low, e.high, e.n) == (40.0, 40.0, 40.0, 4)
    e = rep.scores[(arms[2].label, bench.name)]
    assert e.estimate == 37.5 and e.low < 0.0 < 75.0 < e.high and e.coverage == 0.95
    assert rep.scores[(arms[0].label, ref.name)].estimate == 50.0
    gain = next(c for c in rep.gains if c.a == arms[3].label and c.bench == bench.name and c.b == arms[2].label)
    assert (gain.points.estimate, gain.points.low, gain.points.high) == (10.0, 10.0, 10.0)
    diff = next(c for c in rep.differences if c.a == arms[0].label and c.bench == "Σ grounding")
    assert diff.points.estimate == 2.5 and diff.points.low < 0 < diff.points.high  # unpaired spread stays
    assert rep.grounding_check["learned"] is False  # n = 4 < 200


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
        (["--seeds", "0,0"], "--seeds must name distinct"),
        (["--seeds", "a"], "--seeds expects comma-separated integers"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--objects", "3-2"], "objects per image"),
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
