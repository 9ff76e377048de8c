"""`probes heatmap|curves|report` end to end on synthetic run directories, including the error path."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from analysis_fixtures import ramp, write_run  # noqa: E402
from probes.cli.app import main  # noqa: E402
from probes_cli import PROBES  # noqa: E402


def _grid(root: Path) -> Path:
    grid = root / "grid"
    for seed, reach in enumerate([3, 4, 5]):
        write_run(grid, f"pythia-L9-s{seed}", ramp(20, 9, [reach] * 9), init_seed=seed, max_steps=200)
    for seed, reach in enumerate([9, 11, 30]):
        order = [reach - 2] * 3 + [reach] * 3 + [min(reach - 6, 3)] * 3
        write_run(
            grid,
            f"mamba-L9-s{seed}",
            ramp(20, 9, order),
            model="mamba-tiny",
            family="mamba",
            init_seed=seed,
            max_steps=200,
        )
    return grid


def _run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code or 0)


def test_report_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures" / "report"
    assert _run(["report", str(_grid(tmp_path)), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "report.csv",
        "report.md",
        "report_groups.csv",
        "report_ratios.csv",
    ]
    rows = list(csv.DictReader((out / "report.csv").open()))
    by_name = {r["run"]: r for r in rows}
    assert by_name["pythia-L9-s1"]["steps_to_threshold"] == "50"
    assert by_name["pythia-L9-s1"]["samples_to_threshold"] == str(50 * 64)
    assert by_name["mamba-L9-s2"]["reached"] == "False" and by_name["mamba-L9-s2"]["steps_to_threshold"] == ""
    assert by_name["mamba-L9-s2"]["observed_until_step"] == "200"
    groups = {g["model"]: g for g in csv.DictReader((out / "report_groups.csv").open())}
    assert (
        groups["mamba-tiny"]["median_steps"] == "120"
        and groups["mamba-tiny"]["median_steps_bound"] == "exact"
    )
    assert groups["pythia-tiny"]["learning_order"] == "uniform" == groups["pythia-tiny"]["paper_expectation"]
    assert groups["mamba-tiny"]["learning_order"] == "end → beginning → middle"
    (ratio,) = csv.DictReader((out / "report_ratios.csv").open())
    assert float(ratio["ratio"]) == pytest.approx(120 / 50) and ratio["ratio_bound"] == "exact"
    md = (out / "report.md").read_text()
    assert "| mamba-L9-s2 |" in md and "not reached (>200)" in md and "| 2.40 |" in md
    printed = capsys.readouterr().out
    assert "SSM / Transformer (Mamba / Pythia) ratio" in printed and "not reached (>200)" in printed


def test_figures_end_to_end(tmp_path: Path) -> None:
    grid = _grid(tmp_path)
    assert (
        _run(
            [
                "heatmap",
                str(grid / "mamba-L9-s0"),
                str(grid / "pythia-L9-s0"),
                "--out",
                str(tmp_path / "f" / "heat.png"),
            ]
        )
        == 0
    )
    assert _run(["curves", str(grid), "--out", str(tmp_path / "f" / "curves")]) == 0
    names = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert names == ["curves.pdf", "curves.png", "heat.pdf", "heat.png"]


def _corrupt(grid: Path) -> Path:
    bad = grid / "mamba-L9-s1" / "metrics.jsonl"
    lines = bad.read_text().splitlines()
    lines[4] = lines[4][:-5]
    bad.write_text("\n".join(lines) + "\n")
    return bad


def test_corrupt_run_exit_2_one_line_no_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = _grid(tmp_path)
    bad = _corrupt(grid)
    for cmd, out in (
        ("report", tmp_path / "rep"),
        ("heatmap", tmp_path / "h.png"),
        ("curves", tmp_path / "c.png"),
    ):
        assert _run([cmd, str(grid), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {bad.resolve()} line 5: not valid JSON (Expecting ',' delimiter)\n"
        assert not out.exists() and not out.with_suffix(".pdf").exists()


@pytest.mark.slow  # a fresh interpreter imports torch through the CLI root: ~10-25 s on a shared 2-core box
def test_corrupt_run_installed_command(tmp_path: Path) -> None:
    grid = _grid(tmp_path)
    bad = _corrupt(grid)
    out = tmp_path / "rep"
    proc = subprocess.run(
        [*PROBES, "report", str(grid), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(
        f"error: {bad.resolve()} line 5: not valid JSON"
    )
    assert proc.stdout == "" and not out.exists()


def test_no_runs_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert _run(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no run directories") and err.count("\n") == 1
    assert not (tmp_path / "rep").exists()


def test_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = _grid(tmp_path)
    assert _run(["heatmap", str(grid), "--out", str(tmp_path / "h.svg")]) == 2
    assert _run(["report", str(grid), "--threshold", "1.5", "--out", str(tmp_path / "r")]) == 2
    assert _run(["report", str(grid), "--band-criterion", "max", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: --out {tmp_path / 'h.svg'}: use a .png or .pdf name (both are written)",
        "error: --threshold must be in (0, 1] (got 1.5)",
        "error: --band-criterion must be mean or all (got 'max')",
    ]
    assert not (tmp_path / "r").exists()


def test_report_threshold_override(tmp_path: Path) -> None:
    acc = np.array([[0.5] * 3, [0.85] * 3, [0.97] * 3])
    write_run(tmp_path / "runs", "r", acc)
    out = tmp_path / "rep"
    assert _run(["report", str(tmp_path / "runs"), "--threshold", "0.8", "--out", str(out)]) == 0
    (row,) = csv.DictReader((out / "report.csv").open())
    assert row["steps_to_threshold"] == "20" and row["threshold"] == "0.8"


@pytest.mark.parametrize("cmd", ["heatmap", "curves", "report"])
def test_help_ends_with_example(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([cmd, "--help"]) == 0
    lines = [ln.strip(" │") for ln in capsys.readouterr().out.splitlines() if ln.strip(" │")]
    example = next(i for i, ln in enumerate(lines) if ln.startswith("Example: "))
    assert lines[example].startswith(f"Example: probes {cmd} ")
    assert lines[example + 1].lstrip("╭─ ").startswith("Arguments")  # the docstring's last line


def test_select_and_best_lr_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = _grid(tmp_path)
    for seed in range(2):  # a second, slower lr for pythia
        write_run(grid, f"pythia-slow-s{seed}", ramp(20, 9, [12] * 9), init_seed=seed, lr=1e-5, max_steps=200)
    out = tmp_path / "rep"
    assert (
        _run(["report", str(grid), "--select", "model=pythia-tiny", "--select", "lr=1e-4", "--out", str(out)])
        == 0
    )
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert sorted(r["run"] for r in rows) == ["pythia-L9-s0", "pythia-L9-s1", "pythia-L9-s2"]
    (group,) = csv.DictReader((out / "report_groups.csv").open())
    assert group["median_steps"] == "50" and group["median_steps_ci_lo"] == "40"
    assert group["median_steps_ci_hi"] == "60" and group["median_steps_ci_coverage"] == "0.75"
    f = tmp_path / "f"
    assert (
        _run(["curves", str(grid), "--best-lr", "--select", "kind=transformer,ssm", "--out", str(f / "c")])
        == 0
    )
    assert _run(["heatmap", str(grid), "--select", "order=suffix", "--out", str(f / "h.png")]) == 0
    assert sorted(p.name for p in f.iterdir()) == ["c.pdf", "c.png", "h.pdf", "h.png"]
    capsys.readouterr()
    for cmd, target in (("curves", f / "x.png"), ("heatmap", f / "y.png"), ("report", tmp_path / "r2")):
        assert _run([cmd, str(grid), "--select", "colour=red", "--out", str(target)]) == 2
        assert _run([cmd, str(grid), "--select", "model=llama", "--out", str(target)]) == 2
        assert not target.exists()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all(line.startswith("error: --select ") for line in err)
    assert "unknown key 'colour'" in err[0] and "matches none of the 8 runs" in err[1]


def test_unfinished_runs_are_left_out_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A running (or dead) run does not count in the medians unless asked for, and a warning line names it;
    with --include-unfinished it counts and the report marks its state (a dead writer: `dead`)."""
    grid = _grid(tmp_path)
    write_run(grid, "pythia-L9-s3", ramp(2, 9, [30] * 9), init_seed=3, max_steps=200, status="running")
    out = tmp_path / "rep"
    assert _run(["report", str(grid), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: left out 1 unfinished run(s) (1 dead): pythia-L9-s3" in err
    assert "pythia-L9-s3" not in (out / "report.csv").read_text()
    assert _run(["report", str(grid), "--out", str(out), "--include-unfinished"]) == 0
    assert "warning: including 1 unfinished run(s)" in capsys.readouterr().err
    by_name = {r["run"]: r for r in csv.DictReader((out / "report.csv").open())}
    assert by_name["pythia-L9-s3"]["status"] == "dead"
    for cmd in ("heatmap", "curves"):
        assert _run([cmd, str(grid), "--out", str(tmp_path / f"{cmd}.png")]) == 0
        assert "left out 1 unfinished run(s)" in capsys.readouterr().err


def test_a_live_writer_is_running_not_dead(tmp_path: Path) -> None:
    import fcntl

    from probes.analysis.rundir import load_run

    run = write_run(tmp_path, "r", ramp(2, 3, [30] * 3), status="running")
    with (run / ".writer.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        assert load_run(run).state == "running"
    assert load_run(run).state == "dead"


def test_only_unfinished_runs_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "g", "r", ramp(2, 3, [30] * 3), status=None)
    assert _run(["report", str(tmp_path / "g"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no finished run" in err[0] and "--include-unfinished" in err[0]


def test_heatmap_says_which_lr_it_drew_and_what_it_left_out(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "g"
    for seed in (0, 1):
        write_run(grid, f"fast-s{seed}", ramp(20, 9, [3] * 9), lr=1e-4, init_seed=seed, max_steps=200)
        write_run(grid, f"slow-s{seed}", ramp(20, 9, [30] * 9), lr=1e-5, init_seed=seed, max_steps=200)
    assert _run(["heatmap", str(grid), "--out", str(tmp_path / "h.png")]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("heatmap: "))
    assert "drew lr 0.0001 (2 run(s)" in line and "left out lr 1e-05 (not reached), 2 run(s)" in line
    assert "fewest median steps" in line
    assert _run(["curves", str(grid), "--best-lr", "--out", str(tmp_path / "c.png")]) == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("curves: "))
    assert "drew lr 0.0001" in line and "left out lr 1e-05" in line


def test_figures_default_to_the_ignored_out_folder() -> None:
    from probes.cli import analysis

    defaults = {name: analysis.__dict__[name].__defaults__ for name in ("heatmap", "curves", "report")}
    for name, values in defaults.items():
        paths = [v for v in values or () if isinstance(v, Path)]
        assert paths and all(p.parts[0] == "out" for p in paths), (name, paths)
    ignored = subprocess.run(["git", "check-ignore", "out/heatmap.png"], cwd=Path(__file__).parents[1],
                             capture_output=True, text=True)
    assert ignored.returncode == 0
