"""The report's three renderings (terminal, CSV, Markdown) carry the same numbers and censoring markers."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))
from analysis_fixtures import ramp, write_run  # noqa: E402
from probes.analysis.report import FILES, build_report, rich_tables, to_markdown, write_report  # noqa: E402
from probes.analysis.rundir import load_run  # noqa: E402


def _runs(root: Path) -> list:
    """Mamba-tiny, 9 positions: end learns at eval 1, beginning at eval 4, middle never within 10 evals."""
    runs = []
    for seed in range(3):
        reach = [4 + seed] * 3 + [99] * 3 + [1] * 3
        runs.append(
            write_run(
                root,
                f"m{seed}",
                ramp(10, 9, reach),
                model="mamba-tiny",
                family="mamba",
                init_seed=seed,
                max_steps=100,
            )
        )
        runs.append(write_run(root, f"p{seed}", ramp(10, 9, [2 + seed] * 9), init_seed=seed, max_steps=100))
    return [load_run(r) for r in runs]


def test_censored_group_is_reported_as_undetermined(tmp_path: Path) -> None:
    report = build_report(_runs(tmp_path))
    mamba, pythia = report.groups
    assert mamba.order == "end → beginning → (middle not reached)"
    assert str(mamba.median_steps) == ">100"
    assert pythia.order == "uniform" and str(pythia.median_steps) == "40"
    (ratio,) = report.ratios
    assert format(ratio.ratio, ".2f") == ">2.50"
    md = to_markdown(report)
    group_lines = [ln for ln in md.splitlines() if ln.startswith("| mamba-tiny | 9 |")]
    assert group_lines == [
        "| mamba-tiny | 9 | suffix | 0/3 | >100 | not reached [not reached, not reached] (75 %, n=3) | >6400 | 60 "
        "| >100 | 20 | end → beginning → (middle not reached) | middle (3/3) | 3/3 | end → beginning → middle | ? |"
    ]
    # pythia reaches at 30/40/50: with n=3 the exact interval is [min, max], whose real coverage is 75 %
    assert (pythia.steps_ci.estimate, pythia.steps_ci.low, pythia.steps_ci.high) == (40, 30, 50)
    assert pythia.steps_ci.coverage == 0.75
    line = "| pythia-tiny | 9 | suffix | 3/3 | 40 | 40 [30, 50] (75 %, n=3) |"
    assert any(ln.startswith(line) for ln in md.splitlines())
    assert "real coverage" in md and "bootstrap" not in md
    assert "| 9 | suffix | mamba-tiny | pythia-tiny | >100 | 40 | >2.50 |" in md


def test_terminal_and_files_agree(tmp_path: Path) -> None:
    report = build_report(_runs(tmp_path / "runs"))
    console = Console(file=io.StringIO(), width=250)
    for table in rich_tables(report):
        console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "not reached (>100)" in text and ">2.50" in text
    paths = write_report(report, tmp_path / "out")
    assert [p.name for p in paths] == list(FILES)
    rows = list(csv.DictReader((tmp_path / "out" / "report.csv").open()))
    assert len(rows) == 6
    m0 = next(r for r in rows if r["run"] == "m0")
    assert (m0["reached"], m0["observed_until_step"], m0["beginning_step"], m0["middle_bound"]) == (
        "False",
        "100",
        "50",
        "lower",
    )
    (ratio,) = csv.DictReader((tmp_path / "out" / "report_ratios.csv").open())
    assert (ratio["ratio"], ratio["ratio_bound"]) == ("2.5", "lower")
    groups = {g["model"]: g for g in csv.DictReader((tmp_path / "out" / "report_groups.csv").open())}
    assert (groups["mamba-tiny"]["median_steps_ci_lo"], groups["mamba-tiny"]["median_steps_ci_hi"]) == (
        "inf",
        "inf",
    )
    p = groups["pythia-tiny"]
    assert (p["median_steps_ci_lo"], p["median_steps_ci_hi"], p["median_steps_ci_coverage"]) == ("30", "50", "0.75")
    assert groups["mamba-tiny"]["censored_bands"] == "middle (3/3)"


def test_interval_is_deterministic_and_level_is_used(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    a, b = build_report(runs), build_report(runs)
    assert [g.steps_ci for g in a.groups] == [g.steps_ci for g in b.groups]
    assert to_markdown(a) == to_markdown(b)
    # a level n=3 can reach (75 %) gives the same [min, max]; the printed coverage is the real one either way
    assert "(75 %, n=3)" in to_markdown(build_report(runs, ci_level=0.5))


def test_band_criterion_all_changes_band_steps(tmp_path: Path) -> None:
    acc = ramp(10, 9, [1] * 9)
    acc[:, 0] = [0.5, 0.9, 0.9, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0]
    run = load_run(write_run(tmp_path, "r", acc))
    assert build_report([run]).runs[0].band_steps["beginning"].value == 20
    assert build_report([run], criterion="all").runs[0].band_steps["beginning"].value == 60
    assert "every position in the band" in to_markdown(build_report([run], criterion="all"))


@pytest.mark.parametrize("threshold", [0.5, 0.99])
def test_threshold_is_printed(tmp_path: Path, threshold: float) -> None:
    run = load_run(write_run(tmp_path, "r", ramp(3, 3, [0, 1, 2])))
    assert f"Threshold: {threshold:g}." in to_markdown(build_report([run], threshold=threshold))
