"""Paper scale on real hardware (README "Disk and memory at paper scale"): gradient accumulation keeps the
global batch, gradient checkpointing goes through the model's own support, checkpoints follow --save-every /
--save-total-limit / --no-save-final with the resume point still a verified checkpoint, and progress is one
plain line per evaluation when the output is not a terminal."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
from probes_cli import PROBES, cli_ok
from safetensors.torch import load_file

from probes.errors import UserError
from probes.train.checkpoint import CONTINUE, FINISHED, resume_point, verify
from probes.train.config import ModelSpec, RunConfig, TaskSpec, TrainConfig
from probes.train.loop import run


def cfg(model: str = "pythia-tiny", **train) -> RunConfig:
    params = dict(lr=3e-3, batch_size=16, max_steps=4, eval_every=2, eval_samples=32, n_train=640,
                  verify_disjoint=False, train_log_every=1, early_stop=False, device="cpu")
    params.update(train)
    return RunConfig(ModelSpec(model), TaskSpec("grounding", {"length": 4}), TrainConfig(**params), run_name="r")


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoint" / "model.safetensors"))


def train_losses(run_dir: Path) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x["loss"] for x in lines if x["kind"] == "train"]


def _captured_step_grads(model_name: str, accumulation: int) -> tuple[list[torch.Tensor], int]:
    """The gradients AdamW sees in one engine step on a fixed batch of 16, and how often it stepped."""
    from probes.synthetic.grounding import GroundingConfig, GroundingTask

    from probes.models.registry import load_backbone
    from probes.train.engine import Engine
    from probes.train.forward import TargetLogits, probe_loss

    backbone = load_backbone(model_name, seed=0)
    task = GroundingTask(GroundingConfig(length=4, context_offset=backbone.vocab_size - 16))
    batch_ids = torch.arange(16)
    engine = Engine("cpu", accumulation)
    optimizer = engine.optimizer(backbone.model.parameters(), lr=1e-3)
    seen: list[list[torch.Tensor]] = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(
        [p.grad.clone() for g in opt.param_groups for p in g["params"] if p.grad is not None]))
    step = engine.step(TargetLogits(backbone.model), optimizer)
    parts = [batch_ids] if accumulation == 1 else list(batch_ids.chunk(accumulation))
    fns = [lambda part=part: probe_loss(step.module, task.generate("train", part)) for part in parts]
    step(fns[0] if accumulation == 1 else fns)
    return seen[0], len(seen)


@pytest.mark.parametrize("model", ["pythia-tiny", "mamba-tiny"])
def test_accumulating_4_micro_batches_gives_the_gradient_of_one_batch(model: str) -> None:
    """The gradient AdamW receives from 4 micro-batches of 4 (accelerate's accumulate, loss / 4 each) is the
    gradient of the batch of 16, to float tolerance (the partial sums round differently), and AdamW steps once."""
    one, n_one = _captured_step_grads(model, 1)
    four, n_four = _captured_step_grads(model, 4)
    assert (n_one, n_four) == (1, 1) and len(one) == len(four)
    for a, b in zip(one, four, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("model", ["pythia-tiny", "mamba-tiny"])
def test_a_run_with_accumulation_follows_the_run_without(tmp_path: Path, model: str) -> None:
    """End to end through the trainer: the same losses and weights. Weights only to 1e-4: AdamW's normalised
    update turns a rounding difference of a gradient near 0 into a difference of up to the lr per step."""
    run(cfg(model), tmp_path / "one")
    run(cfg(model, gradient_accumulation_steps=4), tmp_path / "four")
    a, b = weights(tmp_path / "one"), weights(tmp_path / "four")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4)
    assert train_losses(tmp_path / "four") == pytest.approx(train_losses(tmp_path / "one"), rel=1e-5)
    saved = json.loads((tmp_path / "four" / "config.json").read_text())["train"]
    assert saved["batch_size"] == 16 and saved["gradient_accumulation_steps"] == 4  # the global batch


def test_accumulation_must_divide_the_batch() -> None:
    with pytest.raises(UserError, match="batch size 10 is not divisible by 4 gradient accumulation steps"):
        cfg(batch_size=10, gradient_accumulation_steps=4)


@pytest.mark.parametrize("model", ["pythia-tiny", "mamba-tiny"])
def test_gradient_checkpointing_changes_memory_not_the_steps(tmp_path: Path, model: str) -> None:
    run(cfg(model), tmp_path / "plain")
    run(cfg(model, gradient_checkpointing=True), tmp_path / "ckpt")
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "ckpt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_a_model_without_gradient_checkpointing_is_one_error_line(tmp_path: Path) -> None:
    from transformers import CTRLConfig, CTRLLMHeadModel

    model_dir = tmp_path / "ctrl"
    CTRLLMHeadModel(CTRLConfig(vocab_size=64, n_embd=32, n_layer=1, n_head=2, dff=64, n_positions=64)).save_pretrained(model_dir)
    out = tmp_path / "runs"
    done = subprocess.run([*PROBES, "synth", "--model", str(model_dir), "--len", "4", "--max-steps", "2",
                           "--eval-samples", "16", "--batch-size", "8", "--n-train", "64", "--device", "cpu",
                           "--gradient-checkpointing", "--out", str(out)], capture_output=True, text=True, timeout=300)
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert "does not support gradient checkpointing" in err and "--gradient-checkpointing" in err
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_save_every_and_total_limit_keep_verified_checkpoints(tmp_path: Path) -> None:
    rd = tmp_path / "r"
    c = cfg(max_steps=7, eval_every=2, save_every=3, save_total_limit=3)
    run(c, rd)
    # saves at 3 and 6 (every 3 steps), and the final weights at 7
    names = sorted(p.name for p in rd.glob("checkpoint*"))
    assert names == ["checkpoint", "checkpoint.old", "checkpoint.old2"]
    steps = [verify(rd / n)[0]["step"] for n in ("checkpoint", "checkpoint.old", "checkpoint.old2")]
    assert steps == [7, 6, 3]
    rd1 = tmp_path / "one"
    run(cfg(max_steps=7, eval_every=2, save_every=3, save_total_limit=1), rd1)
    assert sorted(p.name for p in rd1.glob("checkpoint*")) == ["checkpoint"]
    assert weights(rd1).keys() == weights(rd).keys()


def test_save_every_resumes_exactly_from_its_checkpoint(tmp_path: Path) -> None:
    c = cfg(max_steps=8, eval_every=2, save_every=3, save_total_limit=1)
    run(c, tmp_path / "full")

    def stop(step: int, info: dict) -> None:
        if step == 5:  # last checkpoint at 3; the evals at 4 are recomputed
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(c, tmp_path / "part", on_step=stop)
    point = resume_point(tmp_path / "part")
    assert (point.action, point.step) == (CONTINUE, 3)
    run(c, tmp_path / "part", resume=True)

    def lines(rd: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(x).items() if k != "wall_time"}
                for x in (rd / "metrics.jsonl").read_text().splitlines()]

    assert lines(tmp_path / "part") == lines(tmp_path / "full")


def test_no_save_final_keeps_metrics_not_weights_and_resume_leaves_it(tmp_path: Path, capsys) -> None:
    rd = tmp_path / "r"
    summary = run(cfg(save_final=False), rd)
    assert summary["status"] == "finished"
    assert not list(rd.glob("checkpoint*"))
    assert resume_point(rd).action == FINISHED
    before = (rd / "metrics.jsonl").read_text()
    again = run(cfg(save_final=False), rd, resume=True)  # finished: nothing is trained again
    assert again["status"] == "finished" and (rd / "metrics.jsonl").read_text() == before
    assert "already finished" in capsys.readouterr().err


def test_resume_with_other_save_settings_is_allowed_and_recorded(tmp_path: Path) -> None:
    rd = tmp_path / "r"

    def stop(step: int, info: dict) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg(), rd, on_step=stop)
    run(cfg(save_total_limit=1, gradient_checkpointing=True), rd, resume=True)
    saved = json.loads((rd / "config.json").read_text())["train"]
    assert saved["save_total_limit"] == 1 and saved["gradient_checkpointing"] is True
    with pytest.raises(UserError, match="gradient_accumulation_steps: 1 in the run, 2 now"):
        run(cfg(gradient_accumulation_steps=2, max_steps=6), rd, resume=True)


def test_flags_and_config_file_keys_reach_the_run_config(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("save_every: 2\nsave_total_limit: 1\nsave_final: false\n"
                                     "gradient_accumulation_steps: 2\n")
    args = ["synth", "--len", "4", "--max-steps", "4", "--eval-every", "2", "--eval-samples", "16", "--n-train", "640",
            "--batch-size", "8", "--device", "cpu", "--no-early-stop", "--out", str(tmp_path / "runs")]
    cli_ok([*args, "--config", str(tmp_path / "c.yaml"), "--gradient-checkpointing"])
    (rd,) = (tmp_path / "runs").iterdir()
    train = json.loads((rd / "config.json").read_text())["train"]
    assert (train["save_every"], train["save_total_limit"], train["save_final"]) == (2, 1, False)
    assert (train["gradient_accumulation_steps"], train["gradient_checkpointing"]) == (2, True)
    cli_ok([*args[:-1], str(tmp_path / "flags"), "--save-every", "3", "--no-save-final",
            "--gradient-accumulation-steps", "4"])
    (rd,) = (tmp_path / "flags").iterdir()
    train = json.loads((rd / "config.json").read_text())["train"]
    assert (train["save_every"], train["save_final"], train["gradient_accumulation_steps"]) == (3, False, 4)


def test_without_a_terminal_progress_is_one_plain_line_per_evaluation(tmp_path: Path) -> None:
    """Under nohup / SLURM / tee stdout is a pipe: rich draws nothing, the plain log writes a line per eval."""
    done = subprocess.run([*PROBES, "synth", "--len", "4", "--max-steps", "6", "--eval-every", "2", "--eval-samples",
                           "16", "--n-train", "640", "--batch-size", "8", "--device", "cpu", "--no-early-stop",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [ln for ln in done.stdout.splitlines() if " eta " in ln]
    assert len(rows) == 3, done.stdout
    assert rows[0].startswith("[1/1] pythia-tiny L4 suf 1e-4 s0  2/6 33%  0:00:")
    assert " acc " in rows[0] and " loss " in rows[0]
    assert rows[-1].split("  ")[1] == "6/6 100%" and rows[-1].split("  ")[2].endswith("eta 0:00:00")
    assert all(len(ln) <= 90 for ln in rows)


def test_rotation_keeps_the_newest_k_and_shrinks_when_k_drops(tmp_path: Path) -> None:
    """checkpoint.finish with save_total_limit K: newest first under checkpoint, checkpoint.old, checkpoint.old2;
    a smaller K on a later save (a resume with --save-total-limit 1) deletes the older ones after the new one is in."""
    from probes.train.checkpoint import begin, candidates, finish

    def save(step: int, keep: int) -> None:
        new = begin(tmp_path)
        (new / "w.bin").write_bytes(bytes(step))
        finish(tmp_path, {"step": step}, keep)

    for step in (1, 2, 3, 4):
        save(step, keep=3)
    assert [(p.name, verify(p)[0]["step"]) for p in candidates(tmp_path)] == [
        ("checkpoint", 4), ("checkpoint.old", 3), ("checkpoint.old2", 2)]
    save(5, keep=1)
    assert [(p.name, verify(p)[0]["step"]) for p in candidates(tmp_path)] == [("checkpoint", 5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
