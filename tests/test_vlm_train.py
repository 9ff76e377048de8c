"""End-to-end training on the synthetic world: both backbones, stage 2 from stage 1, exact resume, 2 processes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from probes.errors import UserError
from probes.vlm.data.world import write_world
from probes.vlm.model import load_vlm
from probes.vlm.train import train
from probes.vlm.train_config import VLMTrainConfig


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    write_world(out, 5, seed=0)  # 4 training images: a batch of 4 covers all stage-1 data every step
    return out


def _losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def _cfg(world: Path, out: Path, **kw) -> VLMTrainConfig:
    base = dict(stage=1, data=str(world), out=str(out), max_steps=6, batch_size=4, log_every=1)
    return VLMTrainConfig.build(**{**base, **kw})


def test_pythia_stage1_then_stage2_and_generate(world: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    s1 = train(_cfg(world, tmp_path / "s1", lr=3e-3))
    losses = _losses(s1)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert json.loads((s1 / "summary.json").read_text())["status"] == "finished"
    s2 = train(_cfg(world, tmp_path / "s2", stage=2, init_from=str(s1), max_steps=3, batch_size=2, task_aware=True))
    cfg = json.loads((s2 / "config.json").read_text())
    assert cfg["train"]["lr"] == 2e-5 and cfg["vlm"]["task_aware"] == "aware" and cfg["data"]["examples"] > cfg["data"]["sequences"]
    vlm = load_vlm(s2 / "final")
    px = vlm.pixel_values([world / "images/COCO_synth_000000000001.png"] * 2)
    out = vlm.generate(px, ["the red circle", "how many objects are there?"], task_aware=True, max_new_tokens=3)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)


def test_stage_length_in_epochs_and_stage1_is_task_agnostic(world: Path, tmp_path: Path) -> None:
    """A stage may be given in epochs of packed sequences; stage 1 trains task-agnostic whatever the order
    (the paper moves the instruction in instruction tuning only), stage 2 with the order asked for."""
    torch.set_num_threads(1)
    cfg = _cfg(world, tmp_path / "ep", epochs=1.5, batch_size=4, task_aware="aware")
    assert cfg.stage_order == "agnostic" and cfg.task_aware == "aware"
    assert _cfg(world, tmp_path / "x", stage=2, task_aware=True).stage_order == "aware"
    run = train(cfg)
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["total_steps"] == math.ceil(1.5 * data["sequences"] / 4)
    assert json.loads((run / "summary.json").read_text())["max_steps"] == data["total_steps"]
    assert cfg.total_steps(10) == 4 and _cfg(world, tmp_path / "y", max_steps=7).total_steps(10) == 7


@pytest.mark.slow
def test_mamba_tiny_trains_and_reloads(world: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run = train(_cfg(world, tmp_path / "m", backbone="mamba-tiny", max_steps=2, batch_size=2))
    assert all(math.isfinite(x) for x in _losses(run))
    assert json.loads((run / "env.json").read_text())["mamba_path"] is not None
    vlm = load_vlm(run / "final")
    assert vlm.config.family == "mamba"
    px = vlm.pixel_values([world / "images/COCO_synth_000000000002.png"])
    assert len(vlm.generate(px, ["the red circle"], task_aware=False, max_new_tokens=2)) == 1


def test_resume_is_exact(world: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    full = train(_cfg(world, tmp_path / "full", max_steps=4, batch_size=2))
    part = _cfg(world, tmp_path / "part", max_steps=4, batch_size=2)
    train(part, stop_after=2)
    assert json.loads((tmp_path / "part" / "summary.json").read_text())["status"] == "stopped"
    train(part)
    a, b = load_file(str(full / "final/vision.safetensors")), load_file(str(tmp_path / "part/final/vision.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(full) == _losses(tmp_path / "part")
    with pytest.raises(UserError, match="different config"):
        train(_cfg(world, tmp_path / "part", max_steps=5, batch_size=2))


def test_bad_inputs_are_one_line_user_errors(world: Path, tmp_path: Path) -> None:
    for kw, msg in [({"encoder": "resnet"}, "unknown vision encoder"), ({"connector": "linear"}, "unknown connector"),
                    ({"bogus": 1}, "bogus"), ({"data": str(tmp_path / "none")}, "not found")]:
        with pytest.raises(UserError, match=msg) as exc:
            train(_cfg(world, tmp_path / "bad", **kw))
        assert "\n" not in str(exc.value)
    assert not (tmp_path / "bad").exists()
    data = json.loads((world / "llava_pretrain.json").read_text())
    data[0]["image"] = "images/missing.png"
    (tmp_path / "d.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="image file not found"):
        train(_cfg(world, tmp_path / "bad2", data=str(tmp_path / "d.json"), image_root=str(world)))


@pytest.mark.slow
def test_two_processes_through_accelerate_match_one(world: Path, tmp_path: Path) -> None:
    """`vlm train --num-processes 2` starts 2 CPU processes; accelerate picks MULTI_CPU (gloo). Equal-weight examples per process
    make the averaged gradient equal to the single-process one, so the losses agree."""
    args = ["vlm", "train", "--stage", "1", "--data", str(world), "--max-steps", "3", "--batch-size", "4", "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "probes"]  # --num-processes: accelerate launch, torchrun underneath
    subprocess.run(cmd + args + ["--out", str(tmp_path / "ddp"), "--num-processes", "2"], check=True, env=env,
                   capture_output=True, timeout=120)
    subprocess.run([sys.executable, "-m", "probes", *args, "--out", str(tmp_path / "one")], check=True, env=env, capture_output=True, timeout=120)
    assert json.loads((tmp_path / "ddp" / "env.json").read_text())["num_processes"] == 2
    assert _losses(tmp_path / "ddp") == pytest.approx(_losses(tmp_path / "one"), rel=1e-4)


def test_training_packs_under_the_per_dataset_cap(world: Path, tmp_path: Path) -> None:
    """App. A.3 caps VQAv2 at 20 QA pairs per sequence: ``train`` must pass each record's dataset to the packer,
    so 25 VQAv2 turns of one image become 2 sequences (20 + 5), while the same 25 turns without a dataset name
    fit one sequence (the length budget alone allows it)."""
    from probes.vlm.data.llava import llava_record

    torch.set_num_threads(1)
    image = "images/COCO_synth_000000000001.png"
    turns = [(f"is there a red circle {i}?", "yes") for i in range(25)]

    def stats(dataset: str, name: str) -> dict:
        data = tmp_path / f"{name}.json"
        data.write_text(json.dumps([llava_record("1-vqa", image, "vqa", "answer the question.", turns, dataset)]))
        run = train(_cfg(world, tmp_path / name, stage=2, data=str(data), image_root=str(world), max_steps=1,
                         batch_size=1, max_length=1024))
        return json.loads((run / "config.json").read_text())["data"]

    capped, uncapped = stats("vqav2", "capped"), stats("", "uncapped")
    assert (capped["sequences"], capped["examples"]) == (2, 25)
    assert (uncapped["sequences"], uncapped["examples"]) == (1, 25)


def test_stage_two_keeps_the_encoder_frozen_and_encoder_from_shares_one(world: Path, tmp_path: Path) -> None:
    """The paper keeps the vision encoder frozen (§3.2): the tiny encoder learns in stage 1 only, and a run
    given --encoder-from starts from that checkpoint's encoder and never changes it."""
    torch.set_num_threads(1)

    def encoder(run: Path) -> dict[str, torch.Tensor]:
        return {k: v for k, v in load_file(run / "final" / "vision.safetensors").items() if k.startswith("encoder.")}

    s1 = train(_cfg(world, tmp_path / "s1", lr=3e-3, max_steps=2))
    s2 = train(_cfg(world, tmp_path / "s2", stage=2, init_from=str(s1), max_steps=2, batch_size=2, lr=1e-2))
    e1, e2 = encoder(s1), encoder(s2)
    assert e1 and all(torch.equal(e1[k], e2[k]) for k in e1)
    other = train(_cfg(world, tmp_path / "o", lr=3e-3, max_steps=2, seed=7, encoder_from=str(s1)))
    assert all(torch.equal(e1[k], encoder(other)[k]) for k in e1)
    learns = train(_cfg(world, tmp_path / "l", stage=2, init_from=str(s1), max_steps=2, batch_size=2, lr=1e-2,
                        train_encoder=True))
    assert any(not torch.equal(e1[k], encoder(learns)[k]) for k in e1)


def test_encoder_from_a_directory_that_is_no_checkpoint_is_one_user_error(world: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a VLM checkpoint") as exc:
        train(_cfg(world, tmp_path / "run", encoder_from=str(tmp_path / "nothing")))
    assert "\n" not in str(exc.value) and not (tmp_path / "run").exists()
