"""`probes synth` as a sweep: one command plans the paper's grid, a YAML file sets any option, flags given on
the command line override it, `--dry-run` writes nothing, bad values are one line; `--version`; the progress
row at 80 columns; unknown hub names fail fast offline; `make demo` writes only ignored folders."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from probes.cli import common
from probes.cli.app import main
from rich.console import Console

from probes.errors import UserError
from probes.train.sweep import SweepSpec, build_sweep, load_sweep_file

ROOT = Path(__file__).resolve().parents[1]


def test_one_command_plans_the_papers_108_runs(tmp_path: Path) -> None:
    spec = SweepSpec(models=["pythia-tiny", "mamba-tiny"], len=[50, 100, 200], order=["suffix", "prefix"],
                     grid=True, out=str(tmp_path))
    runs = spec.plan()
    assert len(runs) == 3 * 2 * 2 * 3 * 3 == 108
    assert len({r.run_dir for r in runs}) == 108
    combos = {(r.config.model.name, r.config.task.params["length"], r.config.task.params["order"],
               r.config.train.lr, r.config.model.init_seed) for r in runs}
    assert len(combos) == 108
    assert {r.config.train.lr for r in runs} == {1e-5, 5e-5, 1e-4}
    # same data and order for every model: the task spec of a (length, order) cell does not depend on the model
    cell = [r.config.task for r in runs if r.config.task.params["length"] == 100
            and r.config.task.params["order"] == "prefix"]
    assert len({repr(t) for t in cell}) == 1


def test_grid_keeps_explicit_lr_and_seeds() -> None:
    spec = SweepSpec(grid=True, lr=[3e-3], init_seed=[4, 5])
    assert spec.lrs == [3e-3] and spec.init_seeds == [4, 5]
    assert SweepSpec().lrs == [1e-4] and SweepSpec().init_seeds == [0]


def test_config_file_values_and_flag_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(
        "models: [pythia-tiny, mamba-tiny]\nlen: 16\norder: [suffix, prefix]\nlr: [1e-3, 3e-3]\n"
        "init_seed: [0, 1]\nmax_steps: 500\nweight_decay: 0.1\nbetas: [0.9, 0.95]\nwarmup_steps: 20\n"
        f"out: {tmp_path / 'runs'}\n"
    )
    with pytest.raises(SystemExit) as done:
        main(["synth", "--config", str(cfg), "--dry-run", "--lr", "2e-3"])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    names = re.findall(r"(\w[\w.-]*-lr[\d.e-]+-gaussian\d)", out)
    assert len(names) == 2 * 2 * 1 * 2  # models x orders x lr (overridden to one) x seeds
    assert all("-lr0.002-" in n for n in names)
    assert "max_steps=500" in out and "weight_decay=0.1" in out and "betas=(0.9, 0.95)" in out
    assert "warmup_steps=20" in out
    assert not (tmp_path / "runs").exists()  # dry run: nothing written
    # a flag left at its default does not undo the file's value
    spec = build_sweep(load_sweep_file(cfg), {"max_steps": 40})
    assert spec.max_steps == 40 and spec.weight_decay == 0.1 and spec.lrs == [1e-3, 3e-3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", ","], "--lr (command line): needs at least one value"),
        (["--lr", "inf"], "--lr (command line): Input should be a finite number"),
        (["--init-seed", "1.7"], "--init-seed (command line): Input should be a valid integer"),
        (["--len", "10,abc"], "--len (command line): Input should be a valid integer"),
        (["--order", "middle"], "unknown order 'middle'"),
        # the task owns its orders: mqar has no prefix layout
        (["--task", "mqar", "--order", "prefix"], "--order (command line): unknown order 'prefix': use suffix (task mqar)"),
        (["--batch-size", "0"], "batch size must be >= 1"),
    ],
)
def test_bad_values_are_one_line(args: list[str], message: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["synth", "--dry-run", "--out", str(tmp_path / "r"), *args])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("modles: [pythia-tiny]\n", "unknown option 'modles' in the config file"),
        ("modles: [pythia-tiny]\n", "did you mean 'models'?"),
        ("max_step: 10\n", "did you mean 'max_steps'?"),
        ("len: [\n", "is not valid YAML"),
        ("- 1\n- 2\n", "must hold a mapping"),
        ("lr: [abc]\n", "--lr (config file)"),
    ],
)
def test_bad_config_files_are_one_line(text: str, message: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(SystemExit) as done:
        main(["synth", "--config", str(cfg), "--dry-run"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read config file"):
        load_sweep_file(tmp_path / "absent.yaml")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code in (0, None)
    assert re.fullmatch(r"probes \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_progress_row_fits_80_columns_and_keeps_the_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "console", Console(file=io.StringIO(), width=80, color_system=None))
    bar = common.progress_bar()
    label = "[107/108] a-very-long-model-name-from-a-local-directory L200 pre 5e-05 s2"
    job = bar.add_task(label, total=78000)
    bar.update(job, completed=1234, metrics="acc 0.953 loss 0.124")
    render = io.StringIO()
    Console(file=render, width=80, force_terminal=False, color_system=None).print(bar.make_tasks_table(bar.tasks))
    lines = [ln for ln in render.getvalue().splitlines() if ln.strip()]
    assert len(lines) == 1 and len(lines[0]) <= 80, lines
    assert lines[0].rstrip().endswith("acc 0.953 loss 0.124")
    assert "1234/78000" in lines[0] and "…" in lines[0]  # the label, not the numbers, is cut


def test_run_label_is_short() -> None:
    spec = SweepSpec(models=["EleutherAI/pythia-1.4b"], len=[200], order=["prefix"], lr=[5e-5], init_seed=[2])
    cfg = spec.plan()[0].config
    assert common.run_label(3, 108, cfg) == "[3/108] pythia-1.4b L200 pre 5e-5 s2"
    assert [common.short_lr(x) for x in (1e-4, 5e-5, 2.5e-4, 1e-3, 0.01)] == ["1e-4", "5e-5", "2.5e-4", "1e-3", "0.01"]


@pytest.mark.parametrize("model", ["pythia-tiny", "EleutherAI/pythia-1.4b", "/data/a-very-long-local-model-dir"])
def test_progress_label_keeps_lr_and_seed_at_80_columns(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 80 columns and the paper's 78,000 steps the model name is shortened, never the lr (`0.00…`)."""
    monkeypatch.setattr(common, "console", Console(file=io.StringIO(), width=80, color_system=None))
    cfg = SweepSpec(models=[model], len=[200], order=["prefix"], lr=[1e-4], init_seed=[2]).plan()[0].config
    bar = common.progress_bar()
    job = bar.add_task(common.run_label(107, 108, cfg, width=80 - common.PROGRESS_FIXED), total=78000)
    bar.update(job, completed=12345, metrics="acc 0.953 loss 0.124")
    render = io.StringIO()
    Console(file=render, width=80, force_terminal=False, color_system=None).print(bar.make_tasks_table(bar.tasks))
    (line,) = [ln for ln in render.getvalue().splitlines() if ln.strip()]
    assert " L200 pre 1e-4 s2 " in line and line.rstrip().endswith("acc 0.953 loss 0.124"), line


def test_unknown_hub_name_fails_fast_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    from probes.models import hub, registry

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    hub.hub_reachable.cache_clear()
    t0 = time.perf_counter()
    try:
        with pytest.raises(UserError, match="unknown model 'no-such-org/no-such-model'.*unreachable"):
            registry.load_config("no-such-org/no-such-model")
    finally:
        hub.hub_reachable.cache_clear()
    assert time.perf_counter() - t0 < 10


def test_make_demo_writes_only_ignored_folders() -> None:
    """`make demo` must not dirty tracked files: its --out and --runs folders are git-ignored."""
    line = next(ln for ln in (ROOT / "Makefile").read_text().splitlines() if "probes demo" in ln)
    out = re.search(r"--out (\S+)", line).group(1)
    runs = re.search(r"--runs (\S+)", line).group(1)
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for folder in (out, runs):
        probe = f"{folder}/demo.json"
        ignored = subprocess.run(["git", "check-ignore", "-q", probe], cwd=ROOT).returncode == 0
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", folder], cwd=ROOT,
                                 capture_output=True).returncode == 0
        assert ignored and not tracked, folder


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "--start", "1e20", "--out", "x.jsonl"], "Invalid value for '--start'"),
        (["synth", "--no-such-flag"], "No such option: --no-such-flag"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
)
def test_usage_errors_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """click's framed usage box becomes one `error:` line naming where the help is; exit 2."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0] and "--help" in err[0], err
