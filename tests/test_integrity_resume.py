"""Run-directory integrity (README): resume survives torn state (partial metrics line, truncated or garbage checkpoint,
garbage config.json), keeps two checkpoints, restores RNG states (dropout resumes exactly), names the fields
of a different config, and says when --resume matches no run."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from probes.cli.app import main
from probes_cli import cli_ok
from safetensors.torch import load_file

from probes.errors import UserError
from probes.train.config import ModelSpec, RunConfig, TaskSpec, TrainConfig
from probes.train.loop import run


def cfg(model: str = "pythia-tiny", **train) -> RunConfig:
    params = dict(lr=3e-3, batch_size=8, max_steps=6, eval_every=2, eval_samples=32, n_train=640,
                  verify_disjoint=False, train_log_every=1, early_stop=False)
    params.update(train)
    return RunConfig(ModelSpec(model), TaskSpec("grounding", {"length": 4}), TrainConfig(**params), run_name="r")


def stop_at(step: int):
    def on_step(s: int, info: dict) -> None:
        if s == step:
            raise KeyboardInterrupt

    return on_step


def lines(run_dir: Path) -> list[dict]:
    out = []
    for ln in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(ln)
        rec.pop("wall_time")
        out.append(rec)
    return out


def interrupted(run_dir: Path, config: RunConfig, at: int = 4) -> None:
    with pytest.raises(KeyboardInterrupt):
        run(config, run_dir, on_step=stop_at(at))
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    rd = tmp_path_factory.mktemp("ref") / "r"
    run(cfg(), rd)
    return rd


def test_two_checkpoints_are_kept_and_state_has_rng_and_sizes(tmp_path: Path) -> None:
    rd = tmp_path / "r"
    interrupted(rd, cfg())
    new = json.loads((rd / "checkpoint" / "state.json").read_text())
    old = json.loads((rd / "checkpoint.old" / "state.json").read_text())
    assert (new["step"], old["step"]) == (4, 2)
    assert set(new["rng"]) == {"torch", "cuda", "python", "numpy"}
    assert new["files"]["model.safetensors"] == (rd / "checkpoint" / "model.safetensors").stat().st_size


def test_partial_last_metrics_line_is_dropped_and_resume_is_exact(tmp_path: Path, reference: Path, capsys) -> None:
    rd = tmp_path / "r"
    interrupted(rd, cfg())
    with (rd / "metrics.jsonl").open("a") as fh:
        fh.write('{"kind": "train", "step": 5, "samp')  # a kill in the middle of an append
    summary = run(cfg(), rd, resume=True)
    assert summary["status"] == "finished"
    assert "dropped 1 unreadable line" in capsys.readouterr().err
    assert lines(rd) == lines(reference)


@pytest.mark.parametrize("damage", ["truncate-model", "garbage-state", "truncate-optimizer"])
def test_damaged_newest_checkpoint_falls_back_to_the_older(tmp_path: Path, reference: Path, capsys, damage: str) -> None:
    rd = tmp_path / "r"
    interrupted(rd, cfg())
    ckpt = rd / "checkpoint"
    if damage == "truncate-model":
        f = ckpt / "model.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif damage == "truncate-optimizer":
        f = ckpt / "optimizer.bin"
        f.write_bytes(f.read_bytes()[:100])
    else:
        (ckpt / "state.json").write_text("{not json")
    summary = run(cfg(), rd, resume=True)
    err = capsys.readouterr().err
    assert "recovered" in err and "resumed from checkpoint.old/ at step 2" in err
    assert summary["status"] == "finished"
    assert lines(rd) == lines(reference)
    ref_w, got_w = load_file(str(reference / "checkpoint" / "model.safetensors")), load_file(str(ckpt / "model.safetensors"))
    assert all(torch.equal(ref_w[k], got_w[k]) for k in ref_w)


def test_both_checkpoints_damaged_is_one_line_error(tmp_path: Path) -> None:
    rd = tmp_path / "r"
    interrupted(rd, cfg())
    for d in ("checkpoint", "checkpoint.old"):
        (rd / d / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(UserError, match=r"cannot resume .*checkpoint/: .*checkpoint.old/: .*--overwrite"):
        run(cfg(), rd, resume=True)


def test_garbage_config_json_is_restored_from_the_checkpoint(tmp_path: Path, reference: Path, capsys) -> None:
    rd = tmp_path / "r"
    interrupted(rd, cfg())
    (rd / "config.json").write_text("garbage")
    run(cfg(), rd, resume=True)
    assert "config.json was unreadable; restored" in capsys.readouterr().err
    assert json.loads((rd / "config.json").read_text())["train"]["lr"] == 3e-3
    assert lines(rd) == lines(reference)


def test_resume_with_a_different_config_names_the_fields(tmp_path: Path) -> None:
    rd = tmp_path / "r"
    interrupted(rd, cfg())
    with pytest.raises(UserError, match=r"train\.max_steps: 6 in the run, 8 now; train\.threshold: 0\.95 in the run, 0\.9 now"):
        run(cfg(max_steps=8, threshold=0.9), rd, resume=True)


def test_resume_that_matches_no_run_says_so(tmp_path: Path, capsys) -> None:
    args = ["synth", "--len", "4", "--max-steps", "2", "--eval-every", "2", "--eval-samples", "16",
            "--n-train", "640", "--batch-size", "8", "--out", str(tmp_path), "--device", "cpu"]
    cli_ok([*args, "--lr", "1e-3"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*args, "--lr", "2e-3", "--resume"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: --resume: no existing run under") and "train.lr: 0.001 in the run, 0.002 now" in err


@pytest.fixture(scope="module")
def dropout_model(tmp_path_factory) -> Path:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=64, hidden_dropout=0.3,
                           attention_dropout=0.3)
    path = tmp_path_factory.mktemp("model") / "neox-dropout"
    GPTNeoXForCausalLM(config).save_pretrained(path)
    return path


def test_dropout_model_resumes_exactly(tmp_path: Path, dropout_model: Path) -> None:
    c = cfg(model=str(dropout_model))
    full = tmp_path / "full"
    run(c, full)
    part = tmp_path / "part"
    interrupted(part, c)
    torch.manual_seed(12345)  # a resumed process starts from other RNG states
    random.seed(1), np.random.seed(1)
    run(c, part, resume=True)
    assert lines(part) == lines(full)
    a, b = load_file(str(full / "checkpoint" / "model.safetensors")), load_file(str(part / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
