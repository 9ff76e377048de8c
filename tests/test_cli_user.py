"""The small things a new user meets: help without `<bool>` on flags, commands in workflow order, `status`
over several grids, did-you-mean for presets, the CPU warning for paper-scale defaults, no `mamba path None`
for a Transformer run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from probes.cli.app import WORKFLOW, _register, app, main
from probes.cli.options import warn_paper_scale_on_cpu
from probes.cli.synth import sweep_from_options
from probes_cli import cli_ok


def _exit(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)


def test_flags_show_no_bool_type(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    for argv in (["--help"], ["synth", "--help"], ["report", "--help"]):
        assert _exit(argv) == 0
        out = capsys.readouterr().out
        assert "<bool>" not in out, argv
        assert "--help" in out
    assert _exit(["synth", "--help"]) == 0
    assert re.search(r"--max-steps\s+<int>", capsys.readouterr().out)  # value options keep their type


def test_commands_are_listed_in_workflow_order(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    assert _exit(["--help"]) == 0
    out = capsys.readouterr().out
    listed = [m.group(1) for m in re.finditer(r"^│ (\S+)\s{2,}", out, re.M) if not m.group(1).startswith("-")]
    expected = [name for name in WORKFLOW if name in listed]
    assert listed == expected + [n for n in listed if n not in WORKFLOW]
    core = ["demo", "data", "synth", "status", "report", "curves", "heatmap"]
    assert [n for n in listed if n in core] == core


def test_status_takes_several_grids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for grid in ("a", "b"):
        cli_ok(["synth", "--len", "4", "--max-steps", "2", "--eval-every", "2", "--eval-samples", "16",
                "--n-train", "128", "--batch-size", "8", "--device", "cpu", "--out", str(tmp_path / grid)])
    capsys.readouterr()
    cli_ok(["status", str(tmp_path / "a"), str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert str(tmp_path / "a") in out and str(tmp_path / "b") in out and out.count("finished") >= 2


def test_transformer_run_prints_no_mamba_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_ok(["synth", "--len", "4", "--max-steps", "2", "--eval-every", "2", "--eval-samples", "16",
            "--n-train", "128", "--batch-size", "8", "--device", "cpu", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "final held-out acc" in err and "mamba path" not in err


@pytest.mark.parametrize(("name", "preset"), [("pythia-tyny", "pythia-tiny"), ("mamba-1.4b-shap", "mamba-1.4b-shape")])
def test_mistyped_preset_suggests(name: str, preset: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit(["synth", "--model", name, "--len", "4", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: unknown model {name!r}; did you mean the preset {preset!r}?"]


def _ctx(argv: list[str]) -> typer.Context:
    _register()
    return typer.main.get_command(app).commands["synth"].make_context("synth", argv)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "warned"),
    [
        (["--device", "cpu"], True),  # bare defaults: 78,000 steps, 100,000 eval samples
        (["--device", "cpu", "--max-steps", "3000", "--eval-samples", "1000"], False),  # CPU-sized, chosen
        (["--device", "cuda"], False),
    ],
)
def test_paper_scale_defaults_on_a_cpu_warn(argv: list[str], warned: bool, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _ctx(argv)
    warn_paper_scale_on_cpu(sweep_from_options(ctx, None), ctx, None)
    err = capsys.readouterr().err
    assert ("warning: no GPU" in err) is warned
    if warned:
        assert "78,000 steps" in err and "100,000 held-out" in err and "--max-steps" in err and "--eval-samples" in err
