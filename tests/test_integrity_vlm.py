"""Run-directory integrity (README) for the VLM trainer: exact resume past a truncated newest checkpoint and a torn metrics line,
from the same --out given absolute after a relative start, and no pickle registered with accelerate."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from probes.errors import UserError
from probes.vlm.data.world import write_world
from probes.vlm.train import train
from probes.vlm.train_config import VLMTrainConfig


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    write_world(out, 5, seed=0)
    return out


def _cfg(world: Path, out: str, **kw) -> VLMTrainConfig:
    base = dict(stage=1, data=str(world), out=out, max_steps=4, batch_size=2, log_every=1, save_every=1, lr=3e-3)
    return VLMTrainConfig.build(**{**base, **kw})


def _losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_vlm_resume_survives_torn_state_and_an_absolute_out(world: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    torch.set_num_threads(1)
    full = train(_cfg(world, str(tmp_path / "full")))
    monkeypatch.chdir(tmp_path)
    train(_cfg(world, "part"), stop_after=3)  # relative --out
    part = tmp_path / "part"
    assert sorted(p.name for p in part.glob("checkpoint*")) == ["checkpoint", "checkpoint.old"]
    assert not list(part.glob("checkpoint/custom_checkpoint_*.pkl"))  # nothing of ours pickled
    state = json.loads((part / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and "scheduler" in state and "rng" in state
    f = part / "checkpoint" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    with (part / "metrics.jsonl").open("a") as fh:
        fh.write('{"kind": "train", "st')
    with pytest.raises(UserError, match=r"different config \(max_steps: 4 in the run, 5 now\)"):
        train(_cfg(world, str(part), max_steps=5))
    train(_cfg(world, str(part)))  # the same directory, absolute
    assert "resumed from checkpoint.old/ at step 2" in capsys.readouterr().err
    a, b = load_file(str(full / "final/vision.safetensors")), load_file(str(part / "final/vision.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(full) == _losses(part)
    assert json.loads((part / "summary.json").read_text())["status"] == "finished"
