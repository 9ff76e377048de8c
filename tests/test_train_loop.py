"""The trainer: learns a short task, resumes exactly, early-stops, refuses bad input, writes the schema."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
from probes_cli import PROBES
from safetensors.torch import load_file

from probes.errors import UserError
from probes.train.config import ModelSpec, RunConfig, TaskSpec, TrainConfig, run_config_from_dict
from probes.train.loop import run
from probes.train.order import DataOrder


def small(model="pythia-tiny", length=4, steps=40, **train):
    params = dict(lr=3e-3, max_steps=steps, eval_every=10, eval_samples=200, n_train=4096, verify_disjoint=False)
    params.update(train)
    return RunConfig(ModelSpec(model), TaskSpec("grounding", {"length": length}), TrainConfig(**params))


def eval_lines(run_dir: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for rec in lines:
        rec.pop("wall_time")
    return lines


def test_data_order_is_a_permutation_per_epoch():
    order = DataOrder(n_train=100, batch_size=32, seed=5)
    seen = torch.cat([order.indices(s) for s in range(4)])  # 128 samples: one epoch and 28 of the next
    assert sorted(seen[:100].tolist()) == list(range(100))
    assert torch.equal(order.indices(3), DataOrder(100, 32, 5).indices(3))


@pytest.mark.slow
def test_tiny_run_learns_above_chance(tmp_path):
    summary = run(small(steps=300, eval_every=100, eval_samples=400), tmp_path / "r")
    assert summary["status"] == "finished"
    assert summary["best_acc"] > 0.5  # chance is 1/4 at L=4


def test_run_directory_schema(tmp_path):
    rd = tmp_path / "r"
    summary = run(small(steps=20), rd)
    for name in ("config.json", "manifest.json", "env.json", "metrics.jsonl", "per_position.safetensors", "summary.json"):
        assert (rd / name).is_file(), name
    cfg = json.loads((rd / "config.json").read_text())
    assert cfg["schema_version"] == 1 and cfg["model"]["family"] == "gpt_neox"
    assert run_config_from_dict(cfg) == small(steps=20)
    evals = [r for r in eval_lines(rd) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [10, 20]
    assert evals[-1]["frac_steps"] == 1.0 and len(evals[-1]["per_position_acc"]) == 4
    mat = load_file(str(rd / "per_position.safetensors"))
    assert mat["accuracy"].shape == (2, 4) and mat["step"].tolist() == [10, 20]
    assert mat["count"].sum(dim=1).tolist() == [200, 200]
    assert torch.allclose(mat["accuracy"][-1], torch.tensor(evals[-1]["per_position_acc"]))
    assert summary["steps_done"] == 20 and json.loads((rd / "summary.json").read_text())["status"] == "finished"
    manifest = json.loads((rd / "manifest.json").read_text())
    assert manifest["params"]["context_offset"] == 512  # new tokens start at the preset's vocabulary size


@pytest.mark.parametrize("model", ["pythia-tiny", "mamba-tiny"])
def test_resume_after_interruption_matches_uninterrupted(tmp_path, model):
    cfg = small(model=model, steps=30)
    run(cfg, tmp_path / "full")

    def stop_at_17(step, info):
        if step == 17:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "cut", on_step=stop_at_17)
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["status"] == "interrupted"
    run(cfg, tmp_path / "cut", resume=True)
    assert eval_lines(tmp_path / "cut") == eval_lines(tmp_path / "full")
    a = load_file(str(tmp_path / "full" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_early_stop(tmp_path):
    summary = run(small(steps=200, threshold=0.05), tmp_path / "r")
    assert summary["reached"] and summary["steps_to_threshold"] == 10 and summary["steps_done"] == 10
    assert summary["samples_to_threshold"] == 10 * 64


def test_existing_run_dir_is_refused(tmp_path):
    run(small(steps=10), tmp_path / "r")
    with pytest.raises(UserError, match="--resume"):
        run(small(steps=10), tmp_path / "r")
    with pytest.raises(UserError, match="different configuration"):
        run(small(steps=20), tmp_path / "r", resume=True)
    run(small(steps=10), tmp_path / "r", overwrite=True)


def test_length_beyond_vocabulary(tmp_path):
    with pytest.raises(UserError, match="vocabulary rows"):
        run(small(length=600), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_cli_synth_end_to_end(tmp_path):
    args = [*PROBES, "synth", "--len", "4", "--models", "pythia-tiny,mamba-tiny", "--max-steps", "10",
            "--eval-samples", "64", "--n-train", "640", "--lr", "1e-3", "--out", str(tmp_path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert runs == ["mamba-tiny-grounding-L4-suffix-lr0.001-gaussian0", "pythia-tiny-grounding-L4-suffix-lr0.001-gaussian0"]
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2
    assert again.stderr.strip().startswith("error:") and len(again.stderr.strip().splitlines()) == 1
    bad = subprocess.run([*PROBES, "synth", "--len", "4", "--model", "no-such-model", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_stop_after_bands_waits_for_every_third_of_the_positions() -> None:
    """README "Architecture study": with stop_after_bands the overall threshold alone does not stop a run."""
    from probes.train.loop import _stopping, bands_reached

    nan = float("nan")
    assert bands_reached([1.0, 1.0, 0.96, 0.97, 1.0, 0.99], 0.95)
    assert not bands_reached([1.0, 1.0, 0.90, 0.91, 1.0, 1.0], 0.95)  # the middle third is at 0.905
    assert bands_reached([1.0, nan, 0.96, 0.97, 1.0, 0.99], 0.95)  # a position without samples is skipped
    assert not bands_reached([nan, nan, 1.0, 1.0, 1.0, 1.0], 0.95)  # a band with no samples at all is not reached
    reached = {"reached_step": 300, "bands_reached": False}
    assert _stopping(reached, after_bands=False) and not _stopping(reached, after_bands=True)
    assert _stopping({**reached, "bands_reached": True}, after_bands=True)
    assert not _stopping({"reached_step": None, "bands_reached": True}, after_bands=True)
