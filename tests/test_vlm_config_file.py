"""`probes vlm train --config FILE.yaml`: the file sets every VLMTrainConfig field, typed flags override it,
flag defaults never do, and bad files are one `error:` line (exit 2) before anything is written."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch
from probes.cli.app import main

from probes.vlm.data.world import write_world
from probes.vlm.train_config import VLMTrainConfig

Cap = pytest.CaptureFixture[str]


def _run(args: list[str], capsys: Cap) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(["vlm", "train", *args])
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def _dry(args: list[str], capsys: Cap) -> dict:
    code, out, err = _run([*args, "--dry-run"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_file_sets_every_field_and_typed_flags_override(tmp_path: Path, capsys: Cap) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"stage: 2\ndata: {tmp_path / 'world'}\nout: {tmp_path / 'run'}\n"
        "model: mamba-tiny\nconnector: vss-mlp-bsm\n"
        "encoder_overrides: {depth: 2}\nresolution: 64\nprune-k: 9\nimage_root: imgs\ninit_from: runs/s1\n"
        "tokenizer: tok\nencoder_weights: w.pt\nencoder_from: runs/enc\ntrain_encoder: true\norder: aware\nloss_norm: token\nmax-steps: 40\nepochs: 1.5\n"
        "task_repeats: {grounding: 3}\nbatch-size: 6\nlr: 3.0e-4\nwarmup_ratio: 0.1\nweight_decay: 0.05\n"
        "betas: [0.8, 0.95]\ngrad_clip: 0.5\nmax_length: 256\nseed: 5\nsave_every: 20\nlog_every: 2\n"
        "report_to: [csv]\n"
    )
    got = _dry(["--config", str(cfg)], capsys)
    assert set(got) == set(VLMTrainConfig.model_fields)  # the dry run shows every field
    assert got == {
        "stage": 2, "data": str(tmp_path / "world"), "out": str(tmp_path / "run"), "backbone": "mamba-tiny",
        "encoder": "tiny", "encoder_weights": "w.pt", "encoder_overrides": {"depth": 2},
        "connector": "vss-mlp-bsm", "resolution": 64, "prune_k": 9, "image_root": "imgs",
        "init_from": "runs/s1", "tokenizer": "tok", "encoder_from": "runs/enc", "train_encoder": True, "task_aware": "aware", "loss_norm": "token",
        "max_steps": 40, "epochs": 1.5, "task_repeats": {"grounding": 3}, "batch_size": 6, "lr": 3e-4,
        "warmup_ratio": 0.1, "weight_decay": 0.05, "betas": [0.8, 0.95], "grad_clip": 0.5, "max_length": 256,
        "seed": 5, "save_every": 20, "log_every": 2,
    }
    # typed flags win, even one typed at its default value (--loss-norm sequence); untyped ones leave the file
    other = str(tmp_path / "other")
    over = _dry(["--config", str(cfg), "--lr", "1e-3", "--max-steps", "7", "--loss-norm", "sequence",
                 "--order", "query-first", "--model", "pythia-tiny", "--out", other], capsys)
    assert (over["lr"], over["max_steps"], over["loss_norm"]) == (1e-3, 7, "sequence")
    assert (over["task_aware"], over["backbone"], over["out"]) == ("query-first", "pythia-tiny", other)
    assert over["seed"] == 5 and over["weight_decay"] == 0.05 and over["batch_size"] == 6
    assert not (tmp_path / "run").exists() and not (tmp_path / "other").exists()  # a dry run writes nothing


def test_stage_defaults_apply_when_neither_sets_them(tmp_path: Path, capsys: Cap) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("stage: 1\ndata: world\n")
    got = _dry(["--config", str(cfg), "--out", str(tmp_path / "r")], capsys)
    assert (got["lr"], got["batch_size"], got["weight_decay"]) == (1e-3, 256, 0.0)
    flags_only = _dry(["--stage", "2", "--data", "w", "--out", str(tmp_path / "r")], capsys)
    assert (flags_only["lr"], flags_only["batch_size"], flags_only["task_aware"]) == (2e-5, 128, "agnostic")


def test_flag_defaults_equal_the_config_defaults() -> None:
    """Only typed flags reach the config, so a flag's shown default must be the field's real default."""
    from probes.cli.vlm import _TRAIN_FIELDS, train_cmd

    params = inspect.signature(train_cmd).parameters
    for name, field in _TRAIN_FIELDS.items():
        info = VLMTrainConfig.model_fields[field]
        if info.is_required():
            assert params[name].default.default is None, name
        else:
            assert params[name].default.default == info.default, name


@pytest.mark.parametrize(
    ("text", "flags", "message"),
    [
        ("weight_decy: 0.1\n", [], "unknown key 'weight_decy' in the config file"),
        ("max_steps: abc\n", [], "'max_steps' in the config file: Input should be a valid integer"),
        ("betas: [a, 0.9]\n", [], "'betas' in the config file: Input should be a valid number"),
        ("order: middle\n", [], "'order' in the config file: Input should be 'agnostic', 'aware', 'query-first' or 'matched'"),
        ("order: aware\ntask_aware: agnostic\n", [], "sets 'task_aware' twice"),
        ("stage: [\n", [], "is not valid YAML (line 5)"),  # after the three lines every case starts with
        ("lr: 1: 2\n", [], "is not valid YAML (line 4)"),
        ("", ["--batch-size", "0"], "--batch-size (command line): Input should be greater than or equal"),
        ("report_to: nosuch\n", [], "unknown tracker 'nosuch'"),
    ],
)
def test_bad_config_is_one_error_line(text: str, flags: list[str], message: str, tmp_path: Path,
                                      capsys: Cap) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"stage: 1\ndata: world\nout: {tmp_path / 'run'}\n{text}")
    code, _, err = _run(["--config", str(cfg), *flags], capsys)  # not a dry run: nothing may start either
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "run").exists()


def test_missing_required_and_unreadable_file(tmp_path: Path, capsys: Cap) -> None:
    code, _, err = _run(["--dry-run"], capsys)
    assert code == 2 and err.strip() == (
        "error: missing --stage, --data, --out: give them on the command line "
        "or as `stage:`, `data:`, `out:` in --config FILE.yaml")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stage: 1\n")
    code, _, err = _run(["--config", str(cfg), "--data", "world"], capsys)
    assert code == 2 and err.strip().startswith("error: missing --out: give it") and "\n" not in err.strip()
    cfg.write_text("- 1\n- 2\n")
    code, _, err = _run(["--config", str(cfg), "--dry-run"], capsys)
    assert code == 2 and err.strip().endswith("must hold a mapping of option: value")
    code, _, err = _run(["--config", str(tmp_path / "absent.yaml"), "--dry-run"], capsys)
    assert code == 2 and err.strip().startswith("error: cannot read config file") and "\n" not in err.strip()


def test_a_run_from_a_config_file_trains_with_its_values(tmp_path: Path, capsys: Cap) -> None:
    """One tiny real run: the fields the file sets (and one flag override) are the ones the run records."""
    torch.set_num_threads(1)
    write_world(tmp_path / "world", 5, seed=0)
    out = tmp_path / "run"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"stage: 1\ndata: {tmp_path / 'world'}\nout: {out}\n"
                   "batch-size: 4\nmax_steps: 50\nlog_every: 1\n"
                   "weight_decay: 0.05\nbetas: [0.8, 0.95]\ngrad_clip: 0.5\nwarmup_ratio: 0.25\nlr: 3.0e-3\n"
                   "report_to: csv\n")
    code, _, err = _run(["--config", str(cfg), "--max-steps", "2"], capsys)
    assert code == 0, err
    saved = json.loads((out / "config.json").read_text())["train"]
    assert (saved["max_steps"], saved["batch_size"], saved["lr"]) == (2, 4, 3e-3)
    assert (saved["weight_decay"], saved["betas"], saved["grad_clip"], saved["warmup_ratio"]) == (
        0.05, [0.8, 0.95], 0.5, 0.25)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # log_every 1, two steps
    assert (out / "tracking" / "metrics.csv").is_file()  # report_to from the file
