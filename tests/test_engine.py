"""The shared training engine (README "One engine, one or many processes"): data order and shards, the step, processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from probes.errors import UserError
from probes.launch.processes import accelerate_command, strip_own_flags
from probes.train.engine import Engine, NonFiniteLoss, TrainStep, warmup_schedule
from probes.train.order import DataOrder, check_divisible, shard


def test_shards_of_a_global_batch_partition_it() -> None:
    order = DataOrder(n_train=50, batch_size=12, seed=3)
    for step in (0, 4, 9):  # 9 crosses into the third epoch
        batch = order.indices(step)
        parts = [shard(batch, r, 3) for r in range(3)]
        assert sorted(torch.cat(parts).tolist()) == sorted(batch.tolist())
        assert {len(p) for p in parts} == {4}
    with pytest.raises(UserError, match="not divisible by 3 processes"):
        check_divisible(10, 3)


def test_the_vlm_stride_keeps_the_vlm_order() -> None:
    """The VLM trainer's committed runs were drawn with seed·100003 + epoch per epoch, one position at a time."""
    order = DataOrder(n_train=7, batch_size=5, seed=2, stride=100_003)
    expected = []
    for pos in range(10, 15):
        epoch, offset = divmod(pos, 7)
        perm = torch.randperm(7, generator=torch.Generator().manual_seed(2 * 100_003 + epoch))
        expected.append(int(perm[offset]))
    assert order.indices(2).tolist() == expected


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def test_train_step_is_adamw_with_warmup_and_clipping() -> None:
    """Three engine steps give the weights of a hand-written AdamW loop with the same schedule and clip."""
    x, y = torch.randn(16, 4, generator=torch.Generator().manual_seed(1)), torch.randn(16, 1)
    ref = _model()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=0.1, weight_decay=0.01)
    for s in range(3):
        for g in ref_opt.param_groups:
            g["lr"] = 0.1 * min(1.0, (s + 1) / 2)
        loss = torch.nn.functional.mse_loss(ref(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        ref_opt.step()
        ref_opt.zero_grad()

    engine = Engine("cpu")
    model = _model()
    opt = engine.optimizer(model.parameters(), lr=0.1, weight_decay=0.01)
    step = engine.step(model, opt, scheduler=warmup_schedule(opt, 2), clip=0.5)
    assert isinstance(step, TrainStep)
    lrs = [step(lambda: torch.nn.functional.mse_loss(step.module(x), y)).lr for _ in range(3)]
    assert lrs == pytest.approx([0.05, 0.1, 0.1])
    for a, b in zip(ref.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_a_non_finite_loss_stops_before_the_update() -> None:
    engine = Engine("cpu")
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    step = engine.step(model, engine.optimizer(model.parameters(), lr=0.1))
    with pytest.raises(NonFiniteLoss):
        step(lambda: step.module(torch.ones(2, 4)).sum() * float("nan"))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_on_main_raises_the_user_error_and_returns_results() -> None:
    engine = Engine("cpu")
    assert engine.on_main(lambda: 41 + 1) == 42

    def refuse() -> None:
        raise UserError("run directory exists")

    with pytest.raises(UserError, match="run directory exists"):
        engine.on_main(refuse)
    env = engine.environment(None)
    assert env["num_processes"] == 1 and env["distributed_type"] == "NO" and env["dtype"] == "float32"


def test_bench_steps_through_the_engine() -> None:
    """`probes bench step` times the trainer's step: the engine's TrainStep, not a copy of it."""
    from probes.bench.probe import Stepper, build_probe, train_batch

    probe = build_probe("pythia-tiny", 6, torch.device("cpu"))
    stepper = Stepper(probe, train_batch(probe, 6, 4))
    assert isinstance(stepper.train_step, TrainStep)
    before = [p.detach().clone() for p in probe.model.parameters()]
    stepper.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, probe.model.parameters(), strict=True))


def test_the_relaunch_command() -> None:
    argv = ["synth", "--num-processes", "2", "--len", "4", "--fsdp", "--num-processes=3", "--out", "x"]
    assert strip_own_flags(argv) == ["synth", "--len", "4", "--out", "x"]
    cmd = accelerate_command(["synth", "--num-processes", "2", "--len", "4"], 2, device="cpu")
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in cmd
    assert cmd[-5:] == ["-m", "probes", "synth", "--len", "4"]
    with pytest.raises(UserError, match="--fsdp needs CUDA"):
        accelerate_command(["synth"], 2, fsdp=True, device="cpu")


def _evals(out: Path) -> list[tuple[int, float, list[float | None]]]:
    (metrics,) = out.glob("*/metrics.jsonl")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [(r["step"], r["heldout_acc"], r["per_position_acc"]) for r in rows if r["kind"] == "eval"]


def _losses(out: Path) -> list[float]:
    (metrics,) = out.glob("*/metrics.jsonl")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_on_the_same_global_batch(tmp_path: Path) -> None:
    """`probes synth --num-processes 2` (accelerate launch, DDP over gloo) and one process, global batch 8:
    the same held-out accuracies at every evaluation, position by position, and the same training losses; a
    2-process run stopped and resumed writes exactly the uninterrupted 2-process run's metrics."""
    args = ["synth", "--len", "4", "--models", "pythia-tiny", "--lr", "3e-3", "--max-steps", "60",
            "--eval-every", "20", "--eval-samples", "256", "--batch-size", "8", "--n-train", "512",
            "--no-early-stop", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "probes"]
    two = subprocess.run([*cli, *args, "--out", str(tmp_path / "two"), "--num-processes", "2"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    one = subprocess.run([*cli, *args, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    (env_two,) = (tmp_path / "two").glob("*/env.json")
    assert json.loads(env_two.read_text())["num_processes"] == 2
    evals_two, evals_one = _evals(tmp_path / "two"), _evals(tmp_path / "one")
    assert [e[0] for e in evals_one] == [20, 40, 60]
    assert len({tuple(e[2]) for e in evals_one}) > 1  # the model changes: the comparison is not of constants
    assert evals_two == evals_one
    assert _losses(tmp_path / "two") == pytest.approx(_losses(tmp_path / "one"), rel=1e-5)
    # exact resume on 2 processes: stopped after 30 steps (a checkpoint between evaluations), then resumed
    two_procs = ["--num-processes", "2"]
    for extra in (["--stop-after", "30"], ["--resume"]):
        res = subprocess.run([*cli, *args, "--out", str(tmp_path / "cut"), *two_procs, *extra], env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        if extra[0] == "--stop-after":
            (summary,) = (tmp_path / "cut").glob("*/summary.json")
            assert json.loads(summary.read_text())["status"] == "stopped" and _evals(tmp_path / "cut")[-1][0] == 20
    assert _evals(tmp_path / "cut") == evals_two and _losses(tmp_path / "cut") == _losses(tmp_path / "two")
    # a single-process --resume continues the 2-process run's checkpoint (the format does not depend on W)
    done = subprocess.run([*cli, *args, "--out", str(tmp_path / "two"), "--resume"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_num_processes_refusals(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "probes", "synth", "--len", "4", "--out", str(tmp_path / "r")]
    for extra, msg in ([["--num-processes", "2", "--launcher", "local"], "does not combine with --launcher"],
                       [["--fsdp"], "--fsdp needs --num-processes"],
                       [["--num-processes", "2", "--batch-size", "7", "--device", "cpu"], None]):
        res = subprocess.run([*cli, *extra], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1, res.stderr
        assert msg is None or msg in lines[0]
        if msg is None:
            assert "not divisible by 2 processes" in lines[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_failing_process_is_one_error_line(tmp_path: Path) -> None:
    """A run that diverges on 2 processes ends the command with the trainer's line and exit 2, without the
    launcher's traceback or failure report; an unknown model fails before any process starts."""
    cli = [sys.executable, "-m", "probes", "synth", "--len", "4", "--max-steps", "20", "--eval-samples", "32",
           "--batch-size", "8", "--device", "cpu", "--num-processes", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for extra, msg in ((["--lr", "1e30", "--out", str(tmp_path / "d")], "diverged"),
                       (["--models", "no-such-model", "--out", str(tmp_path / "u")], "unknown model")):
        res = subprocess.run([*cli, *extra], capture_output=True, text=True, timeout=300, env=env)
        assert res.returncode == 2, res.stderr[-2000:]
        assert "Traceback" not in res.stderr and "ChildFailedError" not in res.stderr, res.stderr[-2000:]
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and msg in lines[0], res.stderr[-2000:]
    assert not (tmp_path / "u").exists()


def test_demo_resume_goes_through_the_resumable_runner(tmp_path: Path) -> None:
    """`probes demo --resume` uses the launchers' runner: a finished run is skipped (not retrained), an
    interrupted one continues to the same result as an uninterrupted run."""
    from probes.demo import DemoSpec, run_demo

    spec = DemoSpec(tmp_path / "runs", models=("pythia-tiny",), orders=("suffix",), length=4, max_steps=20,
                    eval_samples=64)
    (planned,) = spec.plan()
    first = run_demo([planned])
    metrics = planned.run_dir / "metrics.jsonl"
    before = metrics.read_text()
    stamp = metrics.stat().st_mtime_ns
    again = run_demo([planned], resume=True)
    assert metrics.stat().st_mtime_ns == stamp and metrics.read_text() == before  # skipped
    name = planned.config.run_name
    assert again[name]["final_acc"] == first[name]["final_acc"] and again[name]["status"] == "finished"


@pytest.mark.parametrize("model", ["mamba-tiny", "hybrid-tiny"])
def test_resume_is_exact_with_a_tied_head(tmp_path: Path, model: str) -> None:
    """accelerate stores tied weights once (Mamba's embedding is its head): an interrupted run resumed from
    the engine's checkpoint writes the same metrics as an uninterrupted one."""
    from probes.train.config import ModelSpec, RunConfig, TaskSpec, TrainConfig
    from probes.train.loop import run

    cfg = RunConfig(ModelSpec(model), TaskSpec("grounding", {"length": 4}),
                    TrainConfig(lr=3e-3, batch_size=8, max_steps=6, eval_every=2, eval_samples=32, n_train=640,
                                verify_disjoint=False, train_log_every=1, early_stop=False), run_name="r")

    def stop_at_4(step: int, info: dict) -> None:
        if step == 4:
            raise KeyboardInterrupt

    run(cfg, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "part", on_step=stop_at_4)
    run(cfg, tmp_path / "part", resume=True)

    def rows(rd: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k != "wall_time"}
                for line in (rd / "metrics.jsonl").read_text().splitlines()]

    assert rows(tmp_path / "part") == rows(tmp_path / "full") and len(rows(tmp_path / "full")) == 9


def test_sharded_evaluation_adds_up_to_one_process(tmp_path: Path) -> None:
    """Each of W processes evaluates every W-th held-out sample (a process with none in a batch takes part
    with weight 0); added up, the shards give one process's counts and hits exactly. The W processes are
    played one after another here; the sum over processes is done by hand."""
    from dataclasses import dataclass

    from probes.bench.probe import build_probe
    from probes.train.evaluate import evaluate

    @dataclass
    class Shard:  # the two facts evaluate reads from an engine; world > 1 sums are left to the caller
        rank: int
        world: int

        def sum(self, tensor: torch.Tensor) -> torch.Tensor:
            return tensor

    probe = build_probe("pythia-tiny", 5, torch.device("cpu"))
    task = probe.task(5)
    cpu = torch.device("cpu")
    whole = evaluate(probe.model, task, 10, 4, cpu)  # batches of 4, 4, 2: with 3 processes one sits out
    parts = [evaluate(probe.model, task, 10, 4, cpu, engine=Shard(r, 3)) for r in range(3)]  # type: ignore[arg-type]
    counts = [sum(p.per_position_count[b] for p in parts) for b in range(task.num_buckets)]
    assert counts == whole.per_position_count and sum(counts) == 10
    hits = sum(p.accuracy * sum(p.per_position_count) for p in parts)
    assert hits == pytest.approx(whole.accuracy * 10)


def test_stop_after_then_resume_is_exact(tmp_path: Path) -> None:
    from probes.train.config import ModelSpec, RunConfig, TaskSpec, TrainConfig
    from probes.train.loop import run

    cfg = RunConfig(ModelSpec("pythia-tiny"), TaskSpec("grounding", {"length": 4}),
                    TrainConfig(lr=3e-3, batch_size=8, max_steps=9, eval_every=4, eval_samples=32, n_train=640,
                                verify_disjoint=False, train_log_every=1, early_stop=False), run_name="r")
    full = run(cfg, tmp_path / "full")
    stopped = run(cfg, tmp_path / "cut", stop_after=5)  # between evaluations: a checkpoint is written at 5
    assert stopped["status"] == "stopped" and stopped["steps_done"] == 5
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 5
    resumed = run(cfg, tmp_path / "cut", resume=True)
    assert resumed["status"] == "finished" and resumed["final_acc"] == full["final_acc"]

    def rows(rd: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k != "wall_time"}
                for line in (rd / "metrics.jsonl").read_text().splitlines()]

    assert rows(tmp_path / "cut") == rows(tmp_path / "full")
